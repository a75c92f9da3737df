//! Mapping upstream failures to [`ProviderError`]s.

use portico_model::formats::common;
use portico_model::plugin::{Endpoint, HttpResponse};
use portico_model::{ErrorKind, ProviderError};

pub use portico_model::formats::common::{error_message, json_error_message, truncate};

/// The error kind an upstream HTTP status means (401 authentication, 404
/// not found, 429 rate limited, 503/529 overloaded, other 5xx upstream…).
pub fn kind_for_status(status: u16) -> ErrorKind {
    ErrorKind::from_status(status)
}

/// The upstream's requested delay in milliseconds, from `retry-after-ms`
/// or `Retry-After` (delay seconds or an HTTP date).
pub fn retry_after_ms(headers: &[(String, String)]) -> Option<u64> {
    common::retry_after_ms(headers, crate::host::now_unix_ms())
}

/// A typed error for an upstream error response: kind from the status,
/// message from the usual JSON error shapes (or the truncated body text),
/// `Retry-After` honoured.
pub fn from_response(response: &HttpResponse) -> ProviderError {
    common::upstream_error(
        response.status,
        &response.headers,
        &response.body,
        crate::host::now_unix_ms(),
    )
}

/// The 400 for an operation this provider does not offer.
pub fn not_supported(endpoint: &Endpoint, operation: &str) -> ProviderError {
    ProviderError::invalid_request(format!(
        "endpoint '{}' does not support {operation}: its provider does not offer it",
        endpoint.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_responses() {
        let response = HttpResponse {
            status: 429,
            headers: vec![("retry-after".into(), "2".into())],
            body: br#"{"error": {"message": "slow down"}}"#.to_vec(),
        };
        let err = from_response(&response);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(2000))
        );
        assert_eq!(err.message, "slow down");
        assert_eq!(retry_after_ms(&response.headers), Some(2000));
        assert_eq!(kind_for_status(401), ErrorKind::Authentication);
        let endpoint = Endpoint {
            name: "ep".into(),
            ..Default::default()
        };
        let err = not_supported(&endpoint, "embeddings");
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert!(err.message.contains("'ep' does not support embeddings"));
    }
}
