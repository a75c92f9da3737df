//! Client dialects: the public APIs (OpenAI, Anthropic, Gemini) the gateway
//! serves. Each converts its wire format to the neutral model with the
//! shared `portico_model::formats` translations, calls the [`Gateway`], and
//! renders answers and errors in its own shape.
//!
//! [`Gateway`]: crate::routing::Gateway

pub mod openai;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use portico_model::{ErrorKind, ProviderError};

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

/// Seconds since the Unix epoch, as the APIs' `created` fields want.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}
