//! Client dialects: the public APIs (OpenAI, Anthropic, Gemini) the gateway
//! serves. Each converts its wire format to the neutral model with the
//! shared `portico_model::formats` translations, calls the [`Gateway`], and
//! renders answers and errors in its own shape.
//!
//! [`Gateway`]: crate::routing::Gateway

pub mod anthropic;
pub mod gemini;
pub mod openai;

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use portico_model::{ChatResponse, ErrorKind, ProviderError, StreamEvent};
use serde_json::Value;

use crate::routing::EventStream;

/// A request body, or the dialect-neutral error for why it could not be
/// read (too large: 413).
pub fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ProviderError> {
    body.map_err(|rejection| ProviderError {
        kind: ErrorKind::InvalidRequest,
        status: rejection.status().as_u16(),
        message: format!("could not read the request body: {}", rejection.body_text()),
        retry_after_ms: None,
    })
}

/// A request's query parameters, or the dialect-neutral error for a query
/// string that does not read as them.
pub fn query_or_error<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ProviderError> {
    query
        .map(|Query(query)| query)
        .map_err(|_| ProviderError::invalid_request("the query string is not valid"))
}

/// Seconds since the Unix epoch, as the APIs' `created` fields want.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// One step of a translated stream, as a dialect renders it.
pub enum StreamItem {
    Event(StreamEvent),
    /// The stream failed after it started; nothing follows.
    Error(ProviderError),
    /// The upstream stream ended normally.
    End,
}

/// Most stream events rendered into one write to the client.
const MAX_EVENTS_PER_WRITE: usize = 64;

/// Streams `events` to the client as they arrive. `render` appends each
/// step's bytes in the dialect's framing (possibly none).
pub fn stream_response(
    events: EventStream,
    content_type: &'static str,
    mut render: impl FnMut(StreamItem, &mut Vec<u8>) + Send + 'static,
) -> Response {
    let frames = events
        .map(|item| match item {
            Ok(event) => StreamItem::Event(event),
            Err(error) => {
                tracing::warn!(status = error.status, error = %error.message, "stream failed mid-way");
                StreamItem::Error(error)
            }
        })
        .chain(futures::stream::once(futures::future::ready(StreamItem::End)))
        // Events already waiting (one upstream chunk often decodes into
        // several) go out in one write instead of a system call and a
        // client wake-up each; nothing waits for more to arrive.
        .ready_chunks(MAX_EVENTS_PER_WRITE)
        .map(move |items| {
            let mut frame = Vec::new();
            for item in items {
                render(item, &mut frame);
            }
            Ok::<_, Infallible>(Bytes::from(frame))
        })
        .filter(|frame| futures::future::ready(!matches!(frame, Ok(b) if b.is_empty())));
    let mut response = Response::new(Body::from_stream(frames));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Appends one server-sent event (`event:` line only when named).
pub fn push_sse<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, event: Option<&str>, data: &T) {
    if let Some(event) = event {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    // The events written here have string keys only, so writing cannot fail.
    if let Ok(text) = portico_model::json::to_string(data) {
        out.extend_from_slice(text.as_bytes());
    }
    out.extend_from_slice(b"\n\n");
}

/// A JSON error answer with the given status and `Retry-After` when known.
pub fn json_error(status: u16, body: Value, retry_after_ms: Option<u64>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = (status, axum::Json(body)).into_response();
    if let Some(value) =
        retry_after_ms.and_then(|ms| HeaderValue::from_str(&ms.div_ceil(1000).to_string()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// The answer: the upstream body unchanged, as the same bytes, when the
/// gateway kept it (the client speaks the provider's native dialect, so
/// fields the neutral model does not know survive), else the translation
/// `render` makes.
pub fn passthrough_or(
    response: ChatResponse,
    render: impl FnOnce(&ChatResponse) -> Response,
) -> Response {
    match response.raw {
        Some(raw) if raw.is_object() => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            raw.into_string(),
        )
            .into_response(),
        _ => render(&response),
    }
}

/// `value` as a JSON answer, written by the gateway's JSON writer (see
/// `portico_model::json`).
pub fn json_answer<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    match portico_model::json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        // As `axum::Json` does; answers with string keys cannot fail.
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not write the answer: {error}"),
        )
            .into_response(),
    }
}

/// The status for a client of a non-Anthropic dialect: Anthropic's 529
/// "overloaded" is not a status other SDKs know, so it becomes 503.
pub fn status_outside_anthropic(error: &ProviderError) -> u16 {
    if error.kind == ErrorKind::Overloaded {
        503
    } else {
        error.status
    }
}
