//! Typed provider errors, mirroring `error-kind` / `provider-error` of the WIT.

use serde::{Deserialize, Serialize};

/// Classes of failure; each client dialect maps them to its own error shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    NotFound,
    RateLimited,
    Overloaded,
    Upstream,
    Internal,
}

impl ErrorKind {
    /// The kind an upstream HTTP status means.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 | 409 | 413 | 415 | 422 => ErrorKind::InvalidRequest,
            401 => ErrorKind::Authentication,
            403 => ErrorKind::Permission,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            503 | 529 => ErrorKind::Overloaded,
            _ if status >= 500 => ErrorKind::Upstream,
            _ => ErrorKind::InvalidRequest,
        }
    }

    /// The status the gateway answers a client with for this kind.
    pub fn default_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::RateLimited => 429,
            ErrorKind::Overloaded => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::Internal => 500,
        }
    }
}

/// A typed error from a provider (or from translating its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?} ({status}): {message}")]
pub struct ProviderError {
    pub kind: ErrorKind,
    pub status: u16,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ProviderError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            status: kind.default_status(),
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// The upstream answered something we cannot read.
    pub fn bad_upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An upstream error response: the kind follows the status. Client
    /// errors and overload keep their status; an upstream failure (other
    /// 5xx) is this gateway's bad gateway, 502.
    pub fn from_upstream(
        status: u16,
        message: impl Into<String>,
        retry_after_ms: Option<u64>,
    ) -> Self {
        Self::upstream_with_kind(
            ErrorKind::from_status(status),
            status,
            message,
            retry_after_ms,
        )
    }

    /// An upstream error whose kind the provider's error body names.
    pub fn upstream_with_kind(
        kind: ErrorKind,
        status: u16,
        message: impl Into<String>,
        retry_after_ms: Option<u64>,
    ) -> Self {
        let status = if kind == ErrorKind::Upstream {
            502
        } else {
            status
        };
        Self {
            kind,
            status,
            message: message.into(),
            retry_after_ms,
        }
    }
}
