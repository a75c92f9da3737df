//! What travels with one client call through the gateway: who called and
//! how ([`CallContext`]), what happened ([`CallRecord`]), and the hooks that
//! admit calls and observe their outcome ([`CallHooks`]).
//!
//! Access control (gateway keys, rate limits) and telemetry (request log,
//! metrics) plug in as hooks, so routing depends on neither.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use portico_model::plugin::{Dialect, Operation};
use portico_model::{ErrorKind, ProviderError, Usage};

use crate::endpoints::{EndpointDef, EndpointTable};

/// The request id of one client request, set as a request extension by the
/// request-id middleware and echoed in the `x-request-id` response header.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// The gateway key a client presented, as authenticated by the access
/// middleware (a request extension). Limits here apply per key.
#[derive(Debug, Clone, PartialEq)]
pub struct CallerKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, safe to show and log.
    pub prefix: String,
    /// Endpoints the key may call; `None` means all.
    pub endpoints: Option<Vec<String>>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

impl CallerKey {
    pub fn may_call(&self, endpoint: &str) -> bool {
        self.endpoints
            .as_ref()
            .is_none_or(|allowed| allowed.iter().any(|e| e == endpoint))
    }

    /// The refusal of a call to `endpoint`, which this key may not call.
    pub fn refusal(&self, endpoint: &str) -> ProviderError {
        ProviderError::new(
            ErrorKind::Permission,
            format!(
                "gateway key {} may not call endpoint '{endpoint}'",
                self.prefix
            ),
        )
    }
}

/// Who is calling and how, for one call through the gateway.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub request_id: Arc<str>,
    pub dialect: Dialect,
    pub key: Option<Arc<CallerKey>>,
    pub started: Instant,
    pub received_at: SystemTime,
}

impl CallContext {
    /// A context for a call made outside an HTTP request (tests, tools).
    pub fn new(dialect: Dialect) -> Self {
        Caller::default().context(dialect)
    }
}

/// The per-request facts the middlewares left in the request extensions;
/// a dialect handler turns them into a [`CallContext`].
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub request_id: Option<RequestId>,
    pub key: Option<Arc<CallerKey>>,
}

impl Caller {
    /// The endpoints this caller may call, as the model lists show them.
    pub fn visible(&self, endpoints: &EndpointTable) -> Vec<Arc<EndpointDef>> {
        let mut all = endpoints.list();
        if let Some(key) = &self.key {
            all.retain(|endpoint| key.may_call(&endpoint.name));
        }
        all
    }

    /// One endpoint, for a model lookup: not found, or refused to a key
    /// that may not call it, as a call would be.
    pub fn lookup(
        &self,
        endpoints: &EndpointTable,
        name: &str,
    ) -> Result<Arc<EndpointDef>, ProviderError> {
        let endpoint = endpoints.get(name).ok_or_else(|| unknown_endpoint(name))?;
        match &self.key {
            Some(key) if !key.may_call(name) => Err(key.refusal(name)),
            _ => Ok(endpoint),
        }
    }

    pub fn context(self, dialect: Dialect) -> CallContext {
        let request_id = match self.request_id {
            Some(RequestId(id)) => id,
            None => Arc::from(new_request_id()),
        };
        CallContext {
            request_id,
            dialect,
            key: self.key,
            started: Instant::now(),
            received_at: SystemTime::now(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            request_id: parts.extensions.get::<RequestId>().cloned(),
            key: parts.extensions.get::<Arc<CallerKey>>().cloned(),
        })
    }
}

/// The answer to a call or lookup naming no endpoint.
pub fn unknown_endpoint(name: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::NotFound,
        format!("endpoint '{name}' does not exist"),
    )
}

/// A fresh request id (`req_` and 32 hex digits): a v7 UUID, time-ordered,
/// so the request log's index on it grows at its end instead of touching a
/// random page per row.
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

/// The upstream target that served (or last failed) a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Served {
    /// The endpoint whose provider, model and config were used: the called
    /// endpoint itself, or one of its targets or fallbacks.
    pub target: String,
    pub provider: String,
    /// Upstream model id.
    pub model: String,
    /// Upstream attempts made, retries and fallbacks included (0 when the
    /// call was refused before reaching any upstream).
    pub attempts: u32,
    /// Targets given up on before the one that served.
    pub fallbacks: u32,
}

/// What happened to one call, reported to every hook when it ends: after
/// the answer for plain calls, at the end of the stream (or when the client
/// goes away) for streams.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// The endpoint the client named.
    pub endpoint: String,
    pub operation: Operation,
    pub served: Served,
    /// The status the call ended with: 200, or the error's status (also
    /// for a stream that failed after it started).
    pub status: u16,
    /// The error, when the call failed.
    pub error: Option<ProviderError>,
    /// From the call's start to its last byte.
    pub latency: Duration,
    /// For streams: from the call's start to the first content event.
    pub time_to_first_token: Option<Duration>,
    pub usage: Option<Usage>,
    /// The client went away before a stream ended.
    pub cancelled: bool,
}

/// Hooks around every call. Both methods run on the request path: keep
/// them fast and move slow work (writes) elsewhere.
pub trait CallHooks: Send + Sync + 'static {
    /// Runs before any upstream work; an error refuses the call and is
    /// answered in the client's dialect.
    fn admit(&self, _ctx: &CallContext, _endpoint: &EndpointDef) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Runs once when the call has ended, whatever the outcome.
    fn finished(&self, _ctx: &CallContext, _record: &CallRecord) {}
}
