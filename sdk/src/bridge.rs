//! The one place where WIT bindings meet the `portico_model` types: the
//! generic implementation of the generated `Guest` traits for any
//! [`Provider`], and the record conversions both ways.

use std::cell::RefCell;
use std::marker::PhantomData;

use portico_model::plugin::{self as model, Endpoint};
use portico_model::{ProviderError, StreamEvent};
use serde::de::DeserializeOwned;

use crate::__private::bindings::exports::gateway::provider0_3_0::provider::{
    Decoded, Guest, GuestStreamDecoder,
};
use crate::__private::bindings::gateway::provider0_1_0::types as wit;
use crate::{Provider, StreamDecoder};

/// Access to the plugin's provider value; implemented by
/// [`export_provider!`](crate::export_provider), which owns the storage.
pub trait Instance: 'static {
    type Provider: Provider;
    fn with<R>(f: impl FnOnce(&Self::Provider) -> R) -> R;
}

/// Implements the generated export traits for the provider behind `I`.
pub struct Bridge<I>(PhantomData<I>);

/// The `stream-decoder` resource: the provider's decoder behind a
/// `RefCell`, since resource methods get `&self`.
pub struct DecoderResource<I: Instance> {
    inner: RefCell<<I::Provider as Provider>::StreamDecoder>,
}

type WitResult<T> = Result<T, wit::ProviderError>;

impl<I: Instance> Guest for Bridge<I> {
    type StreamDecoder = DecoderResource<I>;

    fn describe() -> wit::ProviderInfo {
        I::with(|p| info_to_wit(p.info()))
    }

    fn build_chat_request(
        endpoint: wit::Endpoint,
        request: String,
        stream: bool,
    ) -> WitResult<wit::HttpRequest> {
        let endpoint = endpoint_from_wit(endpoint);
        let result = payload(&request, "chat request")
            .and_then(|request| I::with(|p| p.build_chat_request(&endpoint, request, stream)));
        result.map(request_to_wit).map_err(error_to_wit)
    }

    fn parse_chat_response(
        endpoint: wit::Endpoint,
        response: wit::HttpResponse,
    ) -> WitResult<String> {
        let endpoint = endpoint_from_wit(endpoint);
        let response = response_from_wit(response);
        let result =
            I::with(|p| crate::parse_chat(p, &endpoint, response)).and_then(|r| to_json(&r));
        result.map_err(error_to_wit)
    }

    fn build_embeddings_request(
        endpoint: wit::Endpoint,
        request: String,
    ) -> WitResult<wit::HttpRequest> {
        let endpoint = endpoint_from_wit(endpoint);
        let result = payload(&request, "embeddings request")
            .and_then(|request| I::with(|p| p.build_embeddings_request(&endpoint, request)));
        result.map(request_to_wit).map_err(error_to_wit)
    }

    fn parse_embeddings_response(
        endpoint: wit::Endpoint,
        response: wit::HttpResponse,
    ) -> WitResult<String> {
        let endpoint = endpoint_from_wit(endpoint);
        let response = response_from_wit(response);
        let result =
            I::with(|p| crate::parse_embeddings(p, &endpoint, response)).and_then(|r| to_json(&r));
        result.map_err(error_to_wit)
    }

    fn build_count_tokens_request(
        endpoint: wit::Endpoint,
        request: String,
    ) -> WitResult<wit::HttpRequest> {
        let endpoint = endpoint_from_wit(endpoint);
        let result = payload(&request, "chat request")
            .and_then(|request| I::with(|p| p.build_count_tokens_request(&endpoint, request)));
        result.map(request_to_wit).map_err(error_to_wit)
    }

    fn parse_count_tokens_response(
        endpoint: wit::Endpoint,
        response: wit::HttpResponse,
    ) -> WitResult<u64> {
        let endpoint = endpoint_from_wit(endpoint);
        let response = response_from_wit(response);
        I::with(|p| crate::parse_count_tokens(p, &endpoint, response)).map_err(error_to_wit)
    }

    fn parse_error(endpoint: wit::Endpoint, response: wit::HttpResponse) -> wit::ProviderError {
        let endpoint = endpoint_from_wit(endpoint);
        let response = response_from_wit(response);
        error_to_wit(I::with(|p| p.parse_error(&endpoint, &response)))
    }
}

impl<I: Instance> GuestStreamDecoder for DecoderResource<I> {
    fn new(endpoint: wit::Endpoint) -> Self {
        let endpoint = endpoint_from_wit(endpoint);
        Self {
            inner: RefCell::new(I::with(|p| p.stream_decoder(&endpoint))),
        }
    }

    fn push(&self, chunk: Vec<u8>) -> Decoded {
        // A resource method cannot re-enter its own resource, so the borrow
        // never conflicts.
        let mut events = Vec::new();
        let result = self.inner.borrow_mut().push_into(&chunk, &mut events);
        decoded(&events, result)
    }

    fn finish(&self) -> Decoded {
        let mut events = Vec::new();
        let result = self.inner.borrow_mut().finish_into(&mut events);
        decoded(&events, result)
    }
}

/// The events decoded, then the error that ended the stream, if any.
fn decoded(events: &[StreamEvent], result: Result<(), ProviderError>) -> Decoded {
    let (events, error) = match events_to_json(events) {
        Ok(events) => (events, result.err()),
        Err(error) => (Vec::new(), Some(error)),
    };
    Decoded {
        events,
        error: error.map(error_to_wit),
    }
}

fn payload<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, ProviderError> {
    serde_json::from_str(json)
        .map_err(|e| ProviderError::internal(format!("the host sent an unreadable {what}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, ProviderError> {
    portico_model::json::to_string(value)
        .map_err(|e| ProviderError::internal(format!("cannot serialize plugin answer: {e}")))
}

fn events_to_json(events: &[StreamEvent]) -> Result<Vec<String>, ProviderError> {
    events.iter().map(to_json).collect()
}

// --- WIT -> model ----------------------------------------------------------

pub(crate) fn endpoint_from_wit(endpoint: wit::Endpoint) -> Endpoint {
    Endpoint {
        name: endpoint.name,
        model: endpoint.model,
        config: endpoint.config.into_iter().collect(),
    }
}

pub(crate) fn response_from_wit(response: wit::HttpResponse) -> model::HttpResponse {
    model::HttpResponse {
        status: response.status,
        headers: response.headers,
        body: response.body,
    }
}

// --- model -> WIT ----------------------------------------------------------

pub(crate) fn request_to_wit(request: model::HttpRequest) -> wit::HttpRequest {
    wit::HttpRequest {
        method: request.method,
        url: request.url,
        headers: request.headers,
        body: request.body,
    }
}

pub(crate) fn error_to_wit(error: ProviderError) -> wit::ProviderError {
    use portico_model::ErrorKind as K;
    let kind = match error.kind {
        K::InvalidRequest => wit::ErrorKind::InvalidRequest,
        K::Authentication => wit::ErrorKind::Authentication,
        K::Permission => wit::ErrorKind::Permission,
        K::NotFound => wit::ErrorKind::NotFound,
        K::RateLimited => wit::ErrorKind::RateLimited,
        K::Overloaded => wit::ErrorKind::Overloaded,
        K::Upstream => wit::ErrorKind::Upstream,
        K::Internal => wit::ErrorKind::Internal,
    };
    wit::ProviderError {
        kind,
        status: error.status,
        message: error.message,
        retry_after_ms: error.retry_after_ms,
    }
}

fn info_to_wit(info: model::ProviderInfo) -> wit::ProviderInfo {
    wit::ProviderInfo {
        id: info.id,
        display_name: info.display_name,
        version: info.version,
        description: info.description,
        operations: info
            .operations
            .into_iter()
            .filter_map(|op| match op {
                model::Operation::Chat => Some(wit::Operation::Chat),
                model::Operation::ChatStream => Some(wit::Operation::ChatStream),
                model::Operation::Embeddings => Some(wit::Operation::Embeddings),
                // Not listed: the count-tokens calls answer for themselves.
                model::Operation::CountTokens => None,
            })
            .collect(),
        native_dialect: info.native_dialect.map(|d| match d {
            model::Dialect::Openai => wit::Dialect::Openai,
            model::Dialect::Anthropic => wit::Dialect::Anthropic,
            model::Dialect::Gemini => wit::Dialect::Gemini,
        }),
        config_fields: info.config_fields.into_iter().map(field_to_wit).collect(),
        egress_hosts: info.egress_hosts,
        models: info.models.into_iter().map(model_to_wit).collect(),
    }
}

fn field_to_wit(field: model::ConfigField) -> wit::ConfigField {
    wit::ConfigField {
        name: field.name,
        label: field.label,
        kind: match field.kind {
            model::FieldKind::String => wit::FieldKind::String,
            model::FieldKind::Secret => wit::FieldKind::Secret,
            model::FieldKind::Url => wit::FieldKind::Url,
            model::FieldKind::Enum => wit::FieldKind::Enum,
            model::FieldKind::SecretJson => wit::FieldKind::SecretJson,
        },
        required: field.required,
        default_value: field.default_value,
        help: field.help,
        options: field.options,
    }
}

fn model_to_wit(m: model::ModelInfo) -> wit::ModelInfo {
    let c = m.capabilities;
    let mut capabilities = wit::Capabilities::empty();
    for (on, flag) in [
        (c.tools, wit::Capabilities::TOOLS),
        (c.vision, wit::Capabilities::VISION),
        (c.reasoning, wit::Capabilities::REASONING),
        (c.prompt_caching, wit::Capabilities::PROMPT_CACHING),
        (c.embeddings, wit::Capabilities::EMBEDDINGS),
    ] {
        capabilities.set(flag, on);
    }
    wit::ModelInfo {
        id: m.id,
        display_name: m.display_name,
        context_window: m.context_window,
        max_output_tokens: m.max_output_tokens,
        input_price_per_mtok: m.input_price_per_mtok,
        output_price_per_mtok: m.output_price_per_mtok,
        capabilities,
        embedding_dimensions: m.embedding_dimensions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_model::ErrorKind;
    use portico_model::plugin::{
        Capabilities, ConfigField, FieldKind, ModelInfo, Operation, ProviderInfo,
    };

    #[test]
    fn converts_provider_info() {
        let info = ProviderInfo {
            id: "x".into(),
            display_name: "X".into(),
            version: "1.0.0".into(),
            description: "d".into(),
            operations: vec![
                Operation::Chat,
                Operation::ChatStream,
                Operation::Embeddings,
            ],
            native_dialect: Some(model::Dialect::Openai),
            config_fields: vec![ConfigField {
                name: "api_key".into(),
                label: "API key".into(),
                kind: FieldKind::Secret,
                required: true,
                default_value: None,
                help: "h".into(),
                options: vec![],
            }],
            egress_hosts: vec!["auth.example.com".into()],
            models: vec![ModelInfo {
                id: "m".into(),
                display_name: "M".into(),
                context_window: 10,
                max_output_tokens: 5,
                input_price_per_mtok: 1.5,
                output_price_per_mtok: 2.5,
                capabilities: Capabilities {
                    tools: true,
                    vision: false,
                    reasoning: true,
                    ..Default::default()
                },
                embedding_dimensions: Some(3),
            }],
        };
        let wit = info_to_wit(info);
        assert_eq!(
            wit.operations,
            vec![
                wit::Operation::Chat,
                wit::Operation::ChatStream,
                wit::Operation::Embeddings
            ]
        );
        assert_eq!(wit.native_dialect, Some(wit::Dialect::Openai));
        assert_eq!(wit.config_fields[0].kind, wit::FieldKind::Secret);
        assert!(wit.config_fields[0].required);
        assert_eq!(
            wit.models[0].capabilities,
            wit::Capabilities::TOOLS | wit::Capabilities::REASONING
        );
        assert_eq!(wit.models[0].embedding_dimensions, Some(3));
        assert_eq!(wit.egress_hosts, vec!["auth.example.com"]);
    }

    #[test]
    fn converts_errors_and_http() {
        let mut error = ProviderError::new(ErrorKind::RateLimited, "slow down");
        error.retry_after_ms = Some(1000);
        let wit = error_to_wit(error);
        assert_eq!(wit.kind, wit::ErrorKind::RateLimited);
        assert_eq!(
            (wit.status, wit.retry_after_ms, wit.message.as_str()),
            (429, Some(1000), "slow down")
        );

        let endpoint = endpoint_from_wit(wit::Endpoint {
            name: "ep".into(),
            model: "m".into(),
            config: vec![("api_key".into(), "k".into())],
        });
        assert_eq!(endpoint.get("api_key"), Some("k"));
        let response = response_from_wit(wit::HttpResponse {
            status: 200,
            headers: vec![],
            body: b"{}".to_vec(),
        });
        assert_eq!(response.body, b"{}");
    }
}
