//! The Anthropic dialect: `/gateway/anthropic/v1/messages`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use portico_model::formats::anthropic;
use portico_model::{ErrorKind, ProviderError};
use serde_json::json;

use super::{
    StreamItem, body_or_error, json_answer, json_error, passthrough_or, push_sse, stream_response,
};
use crate::routing::{Caller, Gateway};
use portico_model::plugin::Dialect;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .fallback(not_found)
}

async fn messages(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body)
        .and_then(|body| anthropic::parse_messages_request(&body))
        .and_then(|client| with_betas(client, &headers))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Anthropic);
    if !client.stream {
        return match gateway.chat(&ctx, &client.endpoint, client.request).await {
            Ok(response) => passthrough_or(response, |r| {
                json_answer(&anthropic::message_body(r, &client.endpoint))
            }),
            Err(error) => error_response(&error),
        };
    }
    let events = match gateway
        .chat_stream(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(events) => events,
        Err(error) => return error_response(&error),
    };
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut encoder = anthropic::EventEncoder::new(id, client.endpoint);
    stream_response(events, "text/event-stream", move |item, out| {
        let frames = match item {
            StreamItem::Event(event) => encoder.encode(&event),
            StreamItem::End => encoder.finish(),
            StreamItem::Error(error) => vec![("error", anthropic::error_body(&error))],
        };
        for (name, data) in frames {
            push_sse(out, Some(name), &data);
        }
    })
}

/// `messages.count_tokens`: counted by the endpoint's provider (any whose
/// plugin can count, not only Anthropic).
async fn count_tokens(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body)
        .and_then(|body| anthropic::parse_messages_request(&with_max_tokens(&body)))
        .and_then(|client| with_betas(client, &headers))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Anthropic);
    match gateway
        .count_tokens(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(tokens) => Json(json!({ "input_tokens": tokens })).into_response(),
        Err(error) => error_response(&error),
    }
}

/// The client's `anthropic-beta` headers, kept on its request for the
/// providers that serve Claude (the header, or Bedrock's model fields).
fn with_betas(
    mut client: anthropic::ClientMessagesRequest,
    headers: &HeaderMap,
) -> Result<anthropic::ClientMessagesRequest, ProviderError> {
    let values = headers
        .get_all(BETA_HEADER)
        .iter()
        .map(|value| {
            value.to_str().map_err(|_| {
                ProviderError::invalid_request("anthropic-beta: beta names are ASCII tokens")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    anthropic::set_betas(&mut client.request, values)?;
    Ok(client)
}

const BETA_HEADER: &str = "anthropic-beta";

/// count_tokens requests carry no max_tokens, which the messages parser
/// requires; add a placeholder so the rest is validated the same way.
fn with_max_tokens(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.entry("max_tokens").or_insert(serde_json::json!(1));
            serde_json::to_vec(&object).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

async fn not_found() -> Response {
    error_response(&ProviderError::new(
        ErrorKind::NotFound,
        "unknown Anthropic API route on this gateway",
    ))
}

/// An error in Anthropic's shape; overload is 529 as Anthropic answers it.
pub fn error_response(error: &ProviderError) -> Response {
    json_error(
        anthropic::error_status(error),
        anthropic::error_body(error),
        error.retry_after_ms,
    )
}
