//! The Claude Messages flow shared by the providers that serve Claude with
//! Anthropic's own body and stream (the Anthropic API, and Vertex AI's
//! `publishers/anthropic` models): the `max_tokens` default Anthropic
//! requires, the client's `anthropic-beta` header, and the SSE stream
//! decoder with its completeness check. The wire translation itself is
//! [`portico_model::formats::anthropic`].

use portico_model::formats::anthropic;
use portico_model::plugin::{Endpoint, ModelInfo};
use portico_model::{ChatRequest, ProviderError, StreamEvent};

use crate::http::RequestBuilder;
use crate::sse::{EventDecoder, SseEvent, SseStream};

/// Adds an Anthropic client's beta names ([`anthropic::betas`]) as the
/// `anthropic-beta` header, which both the Anthropic API and Vertex AI's
/// Claude models take; without betas the request is unchanged.
pub fn with_betas(builder: RequestBuilder, request: &ChatRequest) -> RequestBuilder {
    builder.header_opt(
        "anthropic-beta",
        anthropic::betas_header(request).as_deref(),
    )
}

/// `max_tokens` when neither the client, the endpoint nor the catalog gives
/// one.
pub const FALLBACK_MAX_TOKENS: u32 = 4096;

/// `max_tokens` for a request that sets none (Anthropic rejects requests
/// without it): the endpoint's `max_tokens` config, else the model's
/// maximum output from `catalog`, else [`FALLBACK_MAX_TOKENS`].
pub fn default_max_tokens(
    endpoint: &Endpoint,
    catalog: &[ModelInfo],
    model: &str,
) -> Result<u32, ProviderError> {
    if let Some(value) = endpoint.get("max_tokens") {
        return value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ProviderError::invalid_request(format!(
                    "config 'max_tokens' of endpoint '{}' must be a positive integer",
                    endpoint.name
                ))
            });
    }
    Ok(catalog
        .iter()
        .find(|m| m.id == model)
        .map(|m| m.max_output_tokens)
        .filter(|n| *n > 0)
        .unwrap_or(FALLBACK_MAX_TOKENS))
}

/// Decoder of Messages API SSE bodies.
pub type MessagesStreamDecoder = SseStream<MessagesEvents>;

/// A fresh [`MessagesStreamDecoder`].
pub fn stream_decoder() -> MessagesStreamDecoder {
    SseStream::new(MessagesEvents::default())
}

/// The SSE events of a Messages stream as neutral events (the shared
/// decoder), plus the completeness check: a stream without `message_stop`
/// was cut.
#[derive(Debug, Default)]
pub struct MessagesEvents {
    decoder: anthropic::EventDecoder,
    stopped: bool,
}

impl EventDecoder for MessagesEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        // The SSE decoder names unnamed events "message"; Anthropic never
        // uses that name, and the shared decoder reads `type` instead.
        let name = if event.event == "message" {
            ""
        } else {
            event.event.as_str()
        };
        let events = self.decoder.decode(name, &event.data)?;
        let stop = match name {
            "" => serde_json::from_str::<serde_json::Value>(&event.data)
                .is_ok_and(|v| v["type"] == "message_stop"),
            name => name == "message_stop",
        };
        self.stopped |= stop;
        Ok(events)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "the Anthropic stream ended before message_stop: the answer is incomplete",
            ))
        }
    }
}
