//! The request-id middleware for `/gateway`: every request gets an id (the
//! client's `x-request-id` when it is sane, else a fresh one), available to
//! handlers as a [`RequestId`] extension (routing sends it upstream) and
//! returned in the `x-request-id` response header, errors included. Each
//! request runs in a `gateway_request` span carrying the id, and requests
//! the gateway never saw (unknown route, unreadable body, refused by another
//! middleware) are logged and counted here.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use portico_model::plugin::Dialect;
use tracing::Instrument as _;

use super::{MAX_ENDPOINT_NAME, Telemetry, millis, truncate};
use crate::routing::{REQUEST_ID_HEADER, RequestId, new_request_id};
use crate::store::{RequestLogEntry, unix_ms};

/// Longest client-supplied request id accepted.
const MAX_ID_LEN: usize = 128;

/// A client-supplied id is kept if it is short and plain ASCII, so it is
/// safe in headers, logs and upstream requests.
pub fn sane_request_id(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The dialect a `/gateway` path belongs to.
fn dialect_of(path: &str) -> Option<Dialect> {
    let rest = path.strip_prefix("/gateway/")?;
    match rest.split('/').next()? {
        "openai" => Some(Dialect::Openai),
        "anthropic" => Some(Dialect::Anthropic),
        "gemini" => Some(Dialect::Gemini),
        _ => None,
    }
}

/// The endpoint named in a Gemini path (`.../models/{endpoint}:{method}`),
/// for logging requests refused before the handler read it.
fn gemini_endpoint(path: &str) -> Option<&str> {
    let (_, tail) = path.rsplit_once("/models/")?;
    Some(tail.split(':').next().unwrap_or(tail))
}

pub async fn middleware(
    State(telemetry): State<Arc<Telemetry>>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    if !path.starts_with("/gateway/") {
        return next.run(request).await;
    }
    let started = Instant::now();
    let received_at = SystemTime::now();
    let id: Arc<str> = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane_request_id(v))
        .map(Arc::from)
        .unwrap_or_else(|| Arc::from(new_request_id()));
    request.extensions_mut().insert(RequestId(id.clone()));
    let method = request.method().to_string();

    let span = tracing::info_span!(
        "gateway_request",
        request_id = %id,
        method = %method,
        path = %path,
        status = tracing::field::Empty,
    );
    telemetry.begin_request(&id);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    span.record("status", status);
    if !telemetry.end_request(&id) {
        let dialect = dialect_of(&path);
        let endpoint = match dialect {
            Some(Dialect::Gemini) => gemini_endpoint(&path).unwrap_or_default(),
            _ => "",
        };
        telemetry.record_unrouted(RequestLogEntry {
            request_id: id.to_string(),
            at_ms: unix_ms(received_at),
            endpoint: truncate(endpoint, MAX_ENDPOINT_NAME),
            provider: String::new(),
            model: String::new(),
            operation: String::new(),
            dialect: dialect.map(Dialect::as_str).unwrap_or_default().to_string(),
            key_id: None,
            key_prefix: None,
            status,
            error_kind: None,
            error_message: None,
            latency_ms: millis(started.elapsed()),
            ttft_ms: None,
            input_tokens: None,
            output_tokens: None,
            cached_input_tokens: None,
            cost_usd: None,
            attempts: 0,
            fallbacks: 0,
            cancelled: false,
        });
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_accepted() {
        assert!(sane_request_id("req_abc-123.x:y"));
        assert!(!sane_request_id(""));
        assert!(!sane_request_id("has space"));
        assert!(!sane_request_id("new\nline"));
        assert!(!sane_request_id(&"a".repeat(129)));
    }

    #[test]
    fn paths_map_to_dialects_and_gemini_endpoints() {
        assert_eq!(
            dialect_of("/gateway/openai/v1/chat/completions"),
            Some(Dialect::Openai)
        );
        assert_eq!(dialect_of("/gateway/nope"), None);
        assert_eq!(
            gemini_endpoint("/gateway/gemini/v1beta/models/chat:generateContent"),
            Some("chat")
        );
    }
}
