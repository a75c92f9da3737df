//! The OpenAI dialect: `/gateway/openai/v1/...`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portico_model::ProviderError;
use portico_model::formats::openai;
use serde_json::{Value, json};

use super::{
    StreamItem, body_or_error, json_error, passthrough_or, push_sse, stream_response, unix_now,
};
use crate::routing::EventStream;
use crate::routing::Gateway;
use portico_model::plugin::Dialect;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/embeddings", post(embeddings))
        .route("/models", get(list_models))
        .route("/models/{model}", get(get_model))
        .fallback(not_found)
}

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body_or_error(body).and_then(|body| openai::parse_chat_request(&body));
    let client = match parsed {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let created = unix_now();
    if client.stream {
        match gateway.chat_stream(&client.endpoint, client.request).await {
            Ok(events) => {
                let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
                let encoder =
                    openai::ChunkEncoder::new(id, client.endpoint, created, client.include_usage);
                sse_response(events, encoder)
            }
            Err(error) => error_response(&error),
        }
    } else {
        match gateway.chat(&client.endpoint, client.request).await {
            Ok(response) => Json(passthrough_or(
                &gateway,
                &client.endpoint,
                Dialect::Openai,
                response,
                |r| openai::chat_completion_body(r, &client.endpoint, created),
            ))
            .into_response(),
            Err(error) => error_response(&error),
        }
    }
}

/// Renders neutral events as OpenAI `chat.completion.chunk` server-sent
/// events, ending with `[DONE]`; a mid-stream failure becomes an `error`
/// event (OpenAI's own convention), after which the stream ends.
fn sse_response(events: EventStream, mut encoder: openai::ChunkEncoder) -> Response {
    stream_response(events, "text/event-stream", move |item| {
        let mut out = Vec::new();
        match item {
            StreamItem::Event(event) => {
                for chunk in encoder.encode(&event) {
                    push_sse(&mut out, None, &chunk);
                }
            }
            StreamItem::Error(error) => push_sse(&mut out, None, &openai::error_body(&error)),
            StreamItem::End => {
                for chunk in encoder.finish() {
                    push_sse(&mut out, None, &chunk);
                }
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
        }
        out
    })
}

async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body).and_then(|body| openai::parse_embeddings_request(&body))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    match gateway.embeddings(&client.endpoint, client.request).await {
        Ok(response) => Json(openai::embeddings_body(
            &response,
            &client.endpoint,
            client.base64,
        ))
        .into_response(),
        Err(error) => error_response(&error),
    }
}

fn model_object(name: &str, provider: &str) -> Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": provider})
}

async fn list_models(State(gateway): State<Arc<Gateway>>) -> Json<Value> {
    let data: Vec<Value> = gateway
        .endpoints
        .list()
        .iter()
        .map(|endpoint| model_object(&endpoint.name, &endpoint.provider))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    axum::extract::Path(model): axum::extract::Path<String>,
) -> Response {
    match gateway.endpoints.get(&model) {
        Some(endpoint) => Json(model_object(&endpoint.name, &endpoint.provider)).into_response(),
        None => error_response(&ProviderError::new(
            portico_model::ErrorKind::NotFound,
            format!("endpoint '{model}' does not exist"),
        )),
    }
}

async fn not_found() -> Response {
    error_response(&ProviderError::new(
        portico_model::ErrorKind::NotFound,
        "unknown OpenAI API route on this gateway",
    ))
}

/// An error in OpenAI's shape and status, with `Retry-After` when known.
pub fn error_response(error: &ProviderError) -> Response {
    json_error(
        super::status_outside_anthropic(error),
        openai::error_body(error),
        error.retry_after_ms,
    )
}
