//! Portico plugin SDK: write a provider adapter as a Rust trait impl plus
//! one macro call, and build it to a WebAssembly component.
//!
//! ```ignore
//! use portico_sdk::prelude::*;
//!
//! struct Echo;
//!
//! impl Provider for Echo {
//!     type StreamDecoder = portico_sdk::openai_compat::ChatStreamDecoder;
//!     fn new() -> Self { Echo }
//!     fn info(&self) -> ProviderInfo { /* identity, config fields, catalog */ }
//!     fn build_chat_request(&self, endpoint: &Endpoint, request: ChatRequest, stream: bool)
//!         -> Result<HttpRequest, ProviderError> { /* … */ }
//!     fn parse_chat_response(&self, endpoint: &Endpoint, response: HttpResponse)
//!         -> Result<ChatResponse, ProviderError> { /* … */ }
//!     fn stream_decoder(&self, endpoint: &Endpoint) -> Self::StreamDecoder { /* … */ }
//! }
//!
//! portico_sdk::export_provider!(Echo);
//! ```
//!
//! The SDK owns the WIT contract (`gateway:provider@0.3.0`, world `plugin`):
//! it converts WIT records to and from the `portico_model` types and does
//! all JSON (de)serialization of the payloads, so a plugin only ever sees
//! typed values. Helpers keep plugins small: [`sse`] and [`ndjson`] stream
//! framing, [`http`] request building, [`config`] endpoint settings,
//! [`errors`] status/`Retry-After` mapping, [`catalog`] model lists from an
//! embedded `models.toml`, [`describe`] provider descriptions, [`host`]
//! imports, [`testing`] unit-test checks, [`gemini`] and [`anthropic`] (the
//! Gemini and Claude flows two plugins each share), and [`openai_compat`] — a
//! complete OpenAI-compatible chat/embeddings flow.
//!
//! Everything except [`host`] is plain Rust that also compiles natively, so
//! plugin logic is unit-tested with `cargo test`. On native targets the
//! host imports fall back to local stand-ins (see [`host`]).

/// Plugins allocate with Talc rather than wasi-libc's dlmalloc (see the
/// `fast-alloc` feature). Plugin components are single-threaded; Talc
/// claims memory with `memory.grow` and copes with other users of it.
#[cfg(all(
    feature = "fast-alloc",
    target_family = "wasm",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

pub mod anthropic;
pub mod catalog;
pub mod config;
pub mod describe;
pub mod errors;
pub mod eventstream;
pub mod gemini;
pub mod host;
pub mod http;
pub mod json;
pub mod jwt;
pub mod ndjson;
pub mod openai_compat;
pub mod sigv4;
pub mod sse;
pub mod testing;

mod bridge;

pub use portico_model as model;
pub use portico_model::formats;

use portico_model::plugin::{Endpoint, HttpRequest, HttpResponse, ProviderInfo};
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ProviderError, StreamEvent,
};

/// A provider adapter. One value is created per plugin instance (with
/// [`Provider::new`]) and shared by all calls; the host may run several
/// instances of a plugin, so keep no state that must be global.
pub trait Provider: Sized + 'static {
    /// Decoder of this provider's streaming response bodies.
    type StreamDecoder: StreamDecoder;

    /// Creates the provider (once per plugin instance).
    fn new() -> Self;

    /// Identity, operations, config fields and model catalog. Called once
    /// at load; must be cheap and deterministic.
    fn info(&self) -> ProviderInfo;

    /// The upstream request of a chat call; `stream` selects the streaming
    /// variant. `request.model` is the endpoint's upstream model id.
    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError>;

    /// A complete successful (2xx) upstream chat response as a neutral
    /// answer, or a typed error when its body is not a valid answer. Other
    /// statuses never get here: the export bridge sends them to
    /// [`Provider::parse_error`] (see [`parse_chat`]).
    fn parse_chat_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError>;

    /// The upstream request of an embeddings call. Default: unsupported.
    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let _ = request;
        Err(errors::not_supported(endpoint, "embeddings"))
    }

    /// A complete successful (2xx) upstream embeddings response; other
    /// statuses go to [`Provider::parse_error`] (see [`parse_embeddings`]).
    /// Default: unsupported.
    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let _ = response;
        Err(errors::not_supported(endpoint, "embeddings"))
    }

    /// The upstream request counting the input tokens of `request` (a chat
    /// request, `request.model` the endpoint's upstream model id) without
    /// running it. Default: unsupported.
    fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let _ = request;
        Err(errors::not_supported(endpoint, "token counting"))
    }

    /// The input-token count of a complete successful (2xx) answer to that
    /// request; other statuses go to [`Provider::parse_error`] (see
    /// [`parse_count_tokens`]). Default: unsupported.
    fn parse_count_tokens_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, ProviderError> {
        let _ = response;
        Err(errors::not_supported(endpoint, "token counting"))
    }

    /// Maps an upstream error response (any non-2xx status) of any call,
    /// streaming or not. Default: kind from the status, message from the common JSON
    /// error shapes, `Retry-After` honoured.
    fn parse_error(&self, endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        let _ = endpoint;
        errors::from_response(response)
    }

    /// A fresh decoder for one streaming response body of `endpoint`.
    fn stream_decoder(&self, endpoint: &Endpoint) -> Self::StreamDecoder;
}

/// Whether `status` is a success, which a `parse_*_response` method
/// handles; everything else is [`Provider::parse_error`]'s.
pub fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What the host gets for a complete chat response: the provider's
/// [`parse_error`](Provider::parse_error) for a non-2xx status, else its
/// [`parse_chat_response`](Provider::parse_chat_response). The export
/// bridge calls this, so plugins' parse methods see only successes; tests
/// call it to check the whole path.
pub fn parse_chat<P: Provider>(
    provider: &P,
    endpoint: &Endpoint,
    response: HttpResponse,
) -> Result<ChatResponse, ProviderError> {
    on_success(provider, endpoint, response, P::parse_chat_response)
}

/// [`parse_chat`] for embeddings responses.
pub fn parse_embeddings<P: Provider>(
    provider: &P,
    endpoint: &Endpoint,
    response: HttpResponse,
) -> Result<EmbeddingsResponse, ProviderError> {
    on_success(provider, endpoint, response, P::parse_embeddings_response)
}

/// [`parse_chat`] for token counts.
pub fn parse_count_tokens<P: Provider>(
    provider: &P,
    endpoint: &Endpoint,
    response: HttpResponse,
) -> Result<u64, ProviderError> {
    on_success(provider, endpoint, response, P::parse_count_tokens_response)
}

/// `parse` for a 2xx answer, the provider's `parse_error` for any other.
fn on_success<P: Provider, T>(
    provider: &P,
    endpoint: &Endpoint,
    response: HttpResponse,
    parse: impl FnOnce(&P, &Endpoint, HttpResponse) -> Result<T, ProviderError>,
) -> Result<T, ProviderError> {
    if !is_success(response.status) {
        return Err(provider.parse_error(endpoint, &response));
    }
    parse(provider, endpoint, response)
}

/// Incremental decoder of one streaming response body.
///
/// The host may hand over several upstream chunks in one call, so an error
/// must not lose the events decoded before it: they go to `out` as they are
/// decoded, and stay there when the call then fails.
pub trait StreamDecoder: 'static {
    /// Feeds the next raw bytes (split anywhere, even inside a frame or a
    /// UTF-8 sequence) and appends the events they complete to `out`; an
    /// error ends the stream after the events already appended.
    fn push_into(&mut self, chunk: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), ProviderError>;

    /// Signals the end of the body: appends the remaining events, then
    /// fails if the body ended mid-frame or before the answer was complete.
    fn finish_into(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), ProviderError>;

    /// The events of the next bytes, or the error alone (for tests).
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut out = Vec::new();
        self.push_into(chunk, &mut out)?;
        Ok(out)
    }

    /// The remaining events, or the error alone (for tests).
    fn finish(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        let mut out = Vec::new();
        self.finish_into(&mut out)?;
        Ok(out)
    }
}

/// The names a plugin usually needs: `use portico_sdk::prelude::*;`.
pub mod prelude {
    pub use crate::config::EndpointExt as _;
    pub use crate::describe::Describe;
    pub use crate::model::plugin::{
        Capabilities, ConfigField, Dialect, Endpoint, FieldKind, HttpRequest, HttpResponse,
        ModelInfo, Operation, ProviderInfo,
    };
    pub use crate::model::{
        ChatRequest, ChatResponse, ContentPart, EmbeddingsRequest, EmbeddingsResponse, ErrorKind,
        FinishReason, ImageSource, Message, ProviderError, Role, SamplingParams, StreamEvent, Tool,
        ToolChoice, Usage,
    };
    pub use crate::{Provider, StreamDecoder, catalog, config, errors, host, http, json};
}

/// Exports a [`Provider`] implementation as the plugin's `provider`
/// interface. Call it once, at the crate root of a `cdylib` crate:
///
/// ```ignore
/// portico_sdk::export_provider!(MyProvider);
/// ```
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        const _: () = {
            struct __PorticoInstance;

            impl $crate::__private::Instance for __PorticoInstance {
                type Provider = $provider;

                fn with<R>(f: impl FnOnce(&$provider) -> R) -> R {
                    ::std::thread_local! {
                        static PROVIDER: $provider = <$provider as $crate::Provider>::new();
                    }
                    PROVIDER.with(f)
                }
            }

            type __PorticoPlugin = $crate::__private::Bridge<__PorticoInstance>;
            $crate::__private::bindings::__export_portico_plugin!(
                __PorticoPlugin with_types_in $crate::__private::bindings
            );
        };
    };
}

/// Implementation details of [`export_provider!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bridge::{Bridge, Instance};

    pub mod bindings {
        wit_bindgen::generate!({
            world: "plugin",
            path: "../wit",
            // 0.3.0's world uses 0.1.0's `types` (and imports its `host`).
            generate_all,
            pub_export_macro: true,
            export_macro_name: "__export_portico_plugin",
            default_bindings_module: "portico_sdk::__private::bindings",
        });
    }
}
