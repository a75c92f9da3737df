//! The WIT contract versions this host supports, and the one place where
//! wasmtime bindgen types are converted to and from `portico_model` types.
//!
//! Supporting a new contract version (say 0.3.0) means: a `v0_3_0` bindgen
//! module, one arm in [`WitVersion`], [`Pre`] and [`Bindings`] (the
//! [`each_version!`] macro writes the arms of every call; a result whose
//! type changed, like the decoder's, is converted with `From`), and host
//! trait impls for any new import interface. 0.2.0 and 0.3.0 reuse 0.1.0's
//! `types` and `host` interfaces, so all share the conversions and imports.
//! A call a version lacks (token counting before 0.3.0) answers a typed
//! error without entering the plugin.

use portico_model::error::{ErrorKind, ProviderError};
use portico_model::plugin::{
    Capabilities, ConfigField, Dialect, Endpoint, FieldKind, HttpRequest, HttpResponse, ModelInfo,
    Operation, ProviderInfo,
};
use wasmtime::Store;
use wasmtime::component::{HasSelf, InstancePre, Linker, ResourceAny};

use super::host_imports::{HostState, LogLevel};

/// Bindings of `gateway:provider@0.1.0` (plugins built before 0.2.0).
pub(crate) mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/deps/provider-0.1.0",
        world: "plugin",
        imports: {
            // Awaits the shared reqwest client; the others are quick.
            "gateway:provider/host.http-fetch": async,
        },
        exports: { default: async },
    });
}

/// Bindings of `gateway:provider@0.2.0` (plugins built before 0.3.0). Its
/// imports and shared types are 0.1.0's, bound once above.
pub(crate) mod v0_2_0 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "gateway:provider/plugin@0.2.0",
        with: {
            "gateway:provider/types@0.1.0": super::v0_1_0::gateway::provider::types,
            "gateway:provider/host@0.1.0": super::v0_1_0::gateway::provider::host,
        },
        exports: { default: async },
    });
}

/// Bindings of `gateway:provider@0.3.0`, the version the SDK builds. Its
/// imports and shared types are 0.1.0's, bound once above.
pub(crate) mod v0_3_0 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "plugin",
        with: {
            "gateway:provider/types@0.1.0": super::v0_1_0::gateway::provider::types,
            "gateway:provider/host@0.1.0": super::v0_1_0::gateway::provider::host,
        },
        exports: { default: async },
    });
}

/// A contract version a component can implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WitVersion {
    V0_1_0,
    V0_2_0,
    V0_3_0,
}

impl WitVersion {
    /// Newest first, so a component exporting several picks the newest.
    pub(crate) const ALL: &'static [WitVersion] =
        &[WitVersion::V0_3_0, WitVersion::V0_2_0, WitVersion::V0_1_0];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "0.1.0",
            WitVersion::V0_2_0 => "0.2.0",
            WitVersion::V0_3_0 => "0.3.0",
        }
    }

    /// The name under which a component exports the provider interface.
    pub(crate) fn export_name(self) -> &'static str {
        match self {
            WitVersion::V0_1_0 => "gateway:provider/provider@0.1.0",
            WitVersion::V0_2_0 => "gateway:provider/provider@0.2.0",
            WitVersion::V0_3_0 => "gateway:provider/provider@0.3.0",
        }
    }

    /// Human list of supported packages, for error messages.
    pub(crate) fn supported() -> String {
        Self::ALL
            .iter()
            .map(|v| format!("gateway:provider@{}", v.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Adds the host side of every supported version (and WASI) to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    // 0.2.0 and 0.3.0 import exactly 0.1.0's `host`: this serves them all.
    v0_1_0::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    Ok(())
}

/// A component pre-linked for one contract version.
pub(crate) enum Pre {
    V0_1_0(v0_1_0::PluginPre<HostState>),
    V0_2_0(v0_2_0::PluginPre<HostState>),
    V0_3_0(v0_3_0::PluginPre<HostState>),
}

impl Pre {
    /// Type-checks the component's exports against the version's bindings.
    pub(crate) fn new(version: WitVersion, pre: InstancePre<HostState>) -> wasmtime::Result<Self> {
        Ok(match version {
            WitVersion::V0_1_0 => Pre::V0_1_0(v0_1_0::PluginPre::new(pre)?),
            WitVersion::V0_2_0 => Pre::V0_2_0(v0_2_0::PluginPre::new(pre)?),
            WitVersion::V0_3_0 => Pre::V0_3_0(v0_3_0::PluginPre::new(pre)?),
        })
    }

    pub(crate) async fn instantiate(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<Bindings> {
        Ok(match self {
            Pre::V0_1_0(pre) => Bindings::V0_1_0(pre.instantiate_async(store).await?),
            Pre::V0_2_0(pre) => Bindings::V0_2_0(pre.instantiate_async(store).await?),
            Pre::V0_3_0(pre) => Bindings::V0_3_0(pre.instantiate_async(store).await?),
        })
    }
}

/// An instantiated component, whatever its contract version. Every method
/// returns `Err` only for a fault (trap, limit, host failure); a typed
/// provider error is the inner `Err`.
pub(crate) enum Bindings {
    V0_1_0(v0_1_0::Plugin),
    V0_2_0(v0_2_0::Plugin),
    V0_3_0(v0_3_0::Plugin),
}

type Typed<T> = Result<T, ProviderError>;

/// What a decoder call produced, whatever the version: the events decoded
/// and the error that ended the stream after them.
pub(crate) struct Decoded {
    pub(crate) events: Vec<String>,
    pub(crate) error: Option<ProviderError>,
}

/// A 0.1.0 decoder's answer: events, or an error alone.
impl From<Result<Vec<String>, v1::w::ProviderError>> for Decoded {
    fn from(result: Result<Vec<String>, v1::w::ProviderError>) -> Self {
        match result {
            Ok(events) => Decoded {
                events,
                error: None,
            },
            Err(error) => Decoded {
                events: Vec::new(),
                error: Some(v1::provider_error(error)),
            },
        }
    }
}

impl From<v0_2_0::exports::gateway::provider0_2_0::provider::Decoded> for Decoded {
    fn from(decoded: v0_2_0::exports::gateway::provider0_2_0::provider::Decoded) -> Self {
        Decoded {
            events: decoded.events,
            error: decoded.error.map(v1::provider_error),
        }
    }
}

impl From<v0_3_0::exports::gateway::provider0_3_0::provider::Decoded> for Decoded {
    fn from(decoded: v0_3_0::exports::gateway::provider0_3_0::provider::Decoded) -> Self {
        Decoded {
            events: decoded.events,
            error: decoded.error.map(v1::provider_error),
        }
    }
}

/// Writes one match arm per contract version, each running `$call` with
/// `$provider` bound to that version's export.
macro_rules! each_version {
    ($bindings:expr, $provider:ident => $call:expr) => {
        match $bindings {
            Bindings::V0_1_0(b) => {
                let $provider = b.gateway_provider_provider();
                $call
            }
            Bindings::V0_2_0(b) => {
                let $provider = b.gateway_provider0_2_0_provider();
                $call
            }
            Bindings::V0_3_0(b) => {
                let $provider = b.gateway_provider0_3_0_provider();
                $call
            }
        }
    };
}

impl Bindings {
    /// Whether the decoder returns its events together with an error, so
    /// one call may take several upstream chunks without losing events.
    pub(crate) fn decodes_batches(&self) -> bool {
        !matches!(self, Bindings::V0_1_0(_))
    }

    pub(crate) async fn describe(
        &self,
        store: &mut Store<HostState>,
    ) -> wasmtime::Result<ProviderInfo> {
        let info = each_version!(self, p => p.call_describe(store).await?);
        Ok(v1::provider_info(info))
    }

    pub(crate) async fn build_chat_request(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        request: &str,
        stream: bool,
    ) -> wasmtime::Result<Typed<HttpRequest>> {
        let endpoint = v1::endpoint(endpoint);
        let result = each_version!(self, p => {
            p.call_build_chat_request(store, &endpoint, request, stream).await?
        });
        Ok(result
            .map(v1::http_request_from)
            .map_err(v1::provider_error))
    }

    pub(crate) async fn parse_chat_response(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> wasmtime::Result<Typed<String>> {
        let endpoint = v1::endpoint(endpoint);
        let response = v1::http_response_into(response);
        let result = each_version!(self, p => {
            p.call_parse_chat_response(store, &endpoint, &response).await?
        });
        Ok(result.map_err(v1::provider_error))
    }

    pub(crate) async fn build_embeddings_request(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        request: &str,
    ) -> wasmtime::Result<Typed<HttpRequest>> {
        let endpoint = v1::endpoint(endpoint);
        let result = each_version!(self, p => {
            p.call_build_embeddings_request(store, &endpoint, request).await?
        });
        Ok(result
            .map(v1::http_request_from)
            .map_err(v1::provider_error))
    }

    pub(crate) async fn parse_embeddings_response(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> wasmtime::Result<Typed<String>> {
        let endpoint = v1::endpoint(endpoint);
        let response = v1::http_response_into(response);
        let result = each_version!(self, p => {
            p.call_parse_embeddings_response(store, &endpoint, &response).await?
        });
        Ok(result.map_err(v1::provider_error))
    }

    pub(crate) async fn build_count_tokens_request(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        request: &str,
    ) -> wasmtime::Result<Typed<HttpRequest>> {
        let Bindings::V0_3_0(b) = self else {
            return Ok(Err(cannot_count(endpoint)));
        };
        let endpoint = v1::endpoint(endpoint);
        let result = b
            .gateway_provider0_3_0_provider()
            .call_build_count_tokens_request(store, &endpoint, request)
            .await?;
        Ok(result
            .map(v1::http_request_from)
            .map_err(v1::provider_error))
    }

    pub(crate) async fn parse_count_tokens_response(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> wasmtime::Result<Typed<u64>> {
        let Bindings::V0_3_0(b) = self else {
            return Ok(Err(cannot_count(endpoint)));
        };
        let endpoint = v1::endpoint(endpoint);
        let response = v1::http_response_into(response);
        let result = b
            .gateway_provider0_3_0_provider()
            .call_parse_count_tokens_response(store, &endpoint, &response)
            .await?;
        Ok(result.map_err(v1::provider_error))
    }

    pub(crate) async fn parse_error(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> wasmtime::Result<ProviderError> {
        let endpoint = v1::endpoint(endpoint);
        let response = v1::http_response_into(response);
        let error = each_version!(self, p => {
            p.call_parse_error(store, &endpoint, &response).await?
        });
        Ok(v1::provider_error(error))
    }

    pub(crate) async fn decoder_new(
        &self,
        store: &mut Store<HostState>,
        endpoint: &Endpoint,
    ) -> wasmtime::Result<ResourceAny> {
        let endpoint = v1::endpoint(endpoint);
        each_version!(self, p => {
            p.stream_decoder().call_constructor(store, &endpoint).await
        })
    }

    pub(crate) async fn decoder_push(
        &self,
        store: &mut Store<HostState>,
        decoder: ResourceAny,
        chunk: &[u8],
    ) -> wasmtime::Result<Decoded> {
        Ok(each_version!(self, p => {
            Decoded::from(p.stream_decoder().call_push(store, decoder, chunk).await?)
        }))
    }

    pub(crate) async fn decoder_finish(
        &self,
        store: &mut Store<HostState>,
        decoder: ResourceAny,
    ) -> wasmtime::Result<Decoded> {
        Ok(each_version!(self, p => {
            Decoded::from(p.stream_decoder().call_finish(store, decoder).await?)
        }))
    }
}

/// A plugin built against a contract without token counting.
fn cannot_count(endpoint: &Endpoint) -> ProviderError {
    ProviderError::invalid_request(format!(
        "endpoint '{}' cannot count tokens: its provider plugin is built against a contract \
         version without token counting (0.3.0 added it)",
        endpoint.name
    ))
}

/// The host imports of 0.1.0, delegating to the version-independent
/// implementations on [`HostState`].
impl v0_1_0::gateway::provider::types::Host for HostState {}

impl v0_1_0::gateway::provider::host::Host for HostState {
    fn log(&mut self, level: v0_1_0::gateway::provider::host::LogLevel, message: String) {
        use v0_1_0::gateway::provider::host::LogLevel as L;
        let level = match level {
            L::Trace => LogLevel::Trace,
            L::Debug => LogLevel::Debug,
            L::Info => LogLevel::Info,
            L::Warn => LogLevel::Warn,
            L::Error => LogLevel::Error,
        };
        self.log(level, &message);
    }

    fn now_unix_ms(&mut self) -> u64 {
        super::unix_ms_now()
    }

    async fn http_fetch(
        &mut self,
        request: v0_1_0::gateway::provider::types::HttpRequest,
    ) -> Result<v0_1_0::gateway::provider::types::HttpResponse, String> {
        let response = self.http_fetch(v1::http_request_from(request)).await?;
        Ok(v1::http_response_to(&response))
    }

    fn cache_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.cache_get(&key)
    }

    fn cache_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) {
        self.cache_set(key, value, ttl_ms)
    }
}

/// Conversions between the 0.1.0 bindgen types (shared by 0.2.0 and 0.3.0) and the
/// model.
mod v1 {
    pub(super) use super::v0_1_0::gateway::provider::types as w;
    use super::*;

    pub(super) fn endpoint(e: &Endpoint) -> w::Endpoint {
        w::Endpoint {
            name: e.name.clone(),
            model: e.model.clone(),
            config: e
                .config
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    pub(super) fn http_request_from(r: w::HttpRequest) -> HttpRequest {
        HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }

    /// Moves the body (a whole upstream answer) instead of copying it.
    pub(super) fn http_response_into(r: HttpResponse) -> w::HttpResponse {
        w::HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        }
    }

    pub(super) fn http_response_to(r: &HttpResponse) -> w::HttpResponse {
        w::HttpResponse {
            status: r.status,
            headers: r.headers.clone(),
            body: r.body.clone(),
        }
    }

    pub(super) fn provider_error(e: w::ProviderError) -> ProviderError {
        let kind = match e.kind {
            w::ErrorKind::InvalidRequest => ErrorKind::InvalidRequest,
            w::ErrorKind::Authentication => ErrorKind::Authentication,
            w::ErrorKind::Permission => ErrorKind::Permission,
            w::ErrorKind::NotFound => ErrorKind::NotFound,
            w::ErrorKind::RateLimited => ErrorKind::RateLimited,
            w::ErrorKind::Overloaded => ErrorKind::Overloaded,
            w::ErrorKind::Upstream => ErrorKind::Upstream,
            w::ErrorKind::Internal => ErrorKind::Internal,
        };
        ProviderError {
            kind,
            status: e.status,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
        }
    }

    fn operation(o: w::Operation) -> Operation {
        match o {
            w::Operation::Chat => Operation::Chat,
            w::Operation::ChatStream => Operation::ChatStream,
            w::Operation::Embeddings => Operation::Embeddings,
        }
    }

    fn dialect(d: w::Dialect) -> Dialect {
        match d {
            w::Dialect::Openai => Dialect::Openai,
            w::Dialect::Anthropic => Dialect::Anthropic,
            w::Dialect::Gemini => Dialect::Gemini,
        }
    }

    fn field_kind(k: w::FieldKind) -> FieldKind {
        match k {
            w::FieldKind::String => FieldKind::String,
            w::FieldKind::Secret => FieldKind::Secret,
            w::FieldKind::Url => FieldKind::Url,
            w::FieldKind::Enum => FieldKind::Enum,
            w::FieldKind::SecretJson => FieldKind::SecretJson,
        }
    }

    fn capabilities(c: w::Capabilities) -> Capabilities {
        Capabilities {
            tools: c.contains(w::Capabilities::TOOLS),
            vision: c.contains(w::Capabilities::VISION),
            reasoning: c.contains(w::Capabilities::REASONING),
            prompt_caching: c.contains(w::Capabilities::PROMPT_CACHING),
            embeddings: c.contains(w::Capabilities::EMBEDDINGS),
        }
    }

    pub(super) fn provider_info(i: w::ProviderInfo) -> ProviderInfo {
        ProviderInfo {
            id: i.id,
            display_name: i.display_name,
            version: i.version,
            description: i.description,
            operations: i.operations.into_iter().map(operation).collect(),
            native_dialect: i.native_dialect.map(dialect),
            config_fields: i
                .config_fields
                .into_iter()
                .map(|f| ConfigField {
                    name: f.name,
                    label: f.label,
                    kind: field_kind(f.kind),
                    required: f.required,
                    default_value: f.default_value,
                    help: f.help,
                    options: f.options,
                })
                .collect(),
            egress_hosts: i.egress_hosts,
            models: i
                .models
                .into_iter()
                .map(|m| ModelInfo {
                    id: m.id,
                    display_name: m.display_name,
                    context_window: m.context_window,
                    max_output_tokens: m.max_output_tokens,
                    input_price_per_mtok: m.input_price_per_mtok,
                    output_price_per_mtok: m.output_price_per_mtok,
                    capabilities: capabilities(m.capabilities),
                    embedding_dimensions: m.embedding_dimensions,
                })
                .collect(),
        }
    }
}
