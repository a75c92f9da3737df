//! Access control: gateway keys and rate limits.
//!
//! - [`keys`]: keys are generated here, stored as SHA-256 only, and kept
//!   in an in-memory index so authenticating a call costs no query.
//! - [`require_key`]: the middleware on the `/gateway/*` routes. It takes
//!   the key from wherever the client's SDK sends its API key
//!   (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`, `?key=`) and
//!   puts the [`CallerKey`] in the request extensions. When keys are
//!   required, a call without a valid key is refused with 401 in the
//!   client's dialect; when not, a valid key is still recognised (its
//!   limits apply) and anything else passes.
//! - [`Access`] as [`CallHooks`]: refuses a key on an endpoint it may not
//!   call (403) and applies the endpoint's and the key's rate limits
//!   ([`limits`]; 429 with `Retry-After`).
//! - [`api`]: `/api/v1/keys`, the management API for keys.

pub mod api;
pub mod keys;
pub mod limits;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use portico_model::plugin::Dialect;
use portico_model::{ErrorKind, ProviderError};
use serde::{Deserialize, Serialize};

use crate::dialects;
use crate::endpoints::EndpointDef;
use crate::routing::{CallContext, CallHooks, CallRecord, CallerKey};
use crate::store::{Store, StoreError, StoredGatewayKey};
use keys::KeyIndex;
use limits::{Check, Clock, Limiter, Scope, Unit};

/// Longest key name.
const MAX_NAME_LEN: usize = 128;
/// How often last-use times are written to the store (and refilled
/// rate-limit buckets forgotten).
const LAST_USED_FLUSH: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot generate a key: {0}")]
    Random(getrandom::Error),
}

/// A key to create, as the management API takes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub name: String,
    /// Endpoints the key may call; absent or null for all.
    #[serde(default)]
    pub endpoints: Option<Vec<String>>,
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default)]
    pub tokens_per_minute: Option<u32>,
}

/// A key as the management API shows it: never the key nor its hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub endpoints: Option<Vec<String>>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    /// `active` or `revoked`.
    pub status: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub revoked_at: Option<String>,
    /// Updated in the background, so up to a few seconds late.
    pub last_used_at: Option<String>,
}

/// A created key: the only time the key itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub view: KeyView,
    pub key: String,
}

/// Gateway keys and rate limits; one per gateway.
pub struct Access {
    store: Arc<dyn Store>,
    index: KeyIndex,
    limiter: Limiter,
    required: AtomicBool,
    /// Last use per key id, not yet written to the store.
    used: Mutex<HashMap<String, SystemTime>>,
    /// Serialises key writes, so the index reload after each write sees
    /// every earlier write.
    writes: tokio::sync::Mutex<()>,
}

impl Access {
    /// Loads the keys from the store. Keys start not required.
    pub async fn load(store: Arc<dyn Store>) -> Result<Arc<Self>, AccessError> {
        Self::load_with_clock(store, Arc::new(limits::SystemClock)).await
    }

    /// As [`Access::load`], with the rate limiter's clock given (tests).
    pub async fn load_with_clock(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, AccessError> {
        let access = Access {
            store,
            index: KeyIndex::default(),
            limiter: Limiter::new(clock),
            required: AtomicBool::new(false),
            used: Mutex::new(HashMap::new()),
            writes: tokio::sync::Mutex::new(()),
        };
        access.reload().await?;
        Ok(Arc::new(access))
    }

    /// Whether every gateway call needs a gateway key.
    pub fn set_required(&self, required: bool) {
        self.required.store(required, Ordering::Relaxed);
    }

    pub fn required(&self) -> bool {
        self.required.load(Ordering::Relaxed)
    }

    /// `router` (a dialect's routes) behind the key middleware.
    pub fn guard(self: &Arc<Self>, dialect: Dialect, router: Router) -> Router {
        crate::server::around(
            router,
            axum::middleware::from_fn_with_state(
                KeyGuard {
                    access: self.clone(),
                    dialect,
                },
                require_key,
            ),
        )
    }

    /// Active (not revoked) keys.
    pub fn active_keys(&self) -> usize {
        self.index.len()
    }

    /// The active key `presented` is, noting its use.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<CallerKey>> {
        let key = self.index.find(presented)?;
        self.used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.id.clone(), SystemTime::now());
        Some(key)
    }

    async fn reload(&self) -> Result<(), AccessError> {
        let stored = self.store.list_gateway_keys().await?;
        self.index.replace(&stored);
        Ok(())
    }

    pub async fn create_key(&self, new: NewKey) -> Result<CreatedKey, AccessError> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(AccessError::Invalid(format!(
                "a key needs a name of 1 to {MAX_NAME_LEN} characters"
            )));
        }
        let endpoints = match new.endpoints {
            Some(list) => {
                let mut list: Vec<String> =
                    list.into_iter().map(|e| e.trim().to_string()).collect();
                if list.is_empty() || list.iter().any(String::is_empty) {
                    return Err(AccessError::Invalid(
                        "`endpoints` lists endpoint names; leave it out (or null) for all endpoints"
                            .into(),
                    ));
                }
                list.sort();
                list.dedup();
                Some(list)
            }
            None => None,
        };
        for (field, value) in [
            ("requests_per_minute", new.requests_per_minute),
            ("tokens_per_minute", new.tokens_per_minute),
        ] {
            if value == Some(0) {
                return Err(AccessError::Invalid(format!(
                    "`{field}` must be at least 1; leave it out for no limit"
                )));
            }
        }
        let key = keys::generate().map_err(AccessError::Random)?;
        let now = crate::store::from_unix_ms(crate::store::unix_ms(SystemTime::now()));
        let stored = StoredGatewayKey {
            id: format!("key_{}", uuid::Uuid::new_v4().simple()),
            name,
            prefix: keys::shown_prefix(&key),
            hash: keys::digest_hex(&key),
            endpoints,
            requests_per_minute: new.requests_per_minute,
            tokens_per_minute: new.tokens_per_minute,
            created_at: now,
            revoked_at: None,
            last_used_at: None,
        };
        {
            let _write = self.writes.lock().await;
            self.store.create_gateway_key(&stored).await?;
            self.reload().await?;
        }
        tracing::info!(id = %stored.id, key = %stored.prefix, name = %stored.name, "gateway key created");
        Ok(CreatedKey {
            view: self.view(stored),
            key,
        })
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyView>, AccessError> {
        let stored = self.store.list_gateway_keys().await?;
        Ok(stored.into_iter().map(|k| self.view(k)).collect())
    }

    pub async fn get_key(&self, id: &str) -> Result<KeyView, AccessError> {
        match self.store.get_gateway_key(id).await? {
            Some(stored) => Ok(self.view(stored)),
            None => Err(not_found(id)),
        }
    }

    /// Revokes a key; it is refused from the moment this returns.
    /// Revoking a revoked key changes nothing.
    pub async fn revoke_key(&self, id: &str) -> Result<KeyView, AccessError> {
        {
            let _write = self.writes.lock().await;
            if !self.store.revoke_gateway_key(id, SystemTime::now()).await? {
                return Err(not_found(id));
            }
            self.reload().await?;
        }
        self.limiter.forget(&Scope::Key(id.to_string()));
        let view = self.get_key(id).await?;
        tracing::info!(id = %view.id, key = %view.prefix, "gateway key revoked");
        Ok(view)
    }

    /// Writes the pending last-use times to the store.
    pub async fn flush_last_used(&self) {
        let used: Vec<(String, SystemTime)> =
            std::mem::take(&mut *self.used.lock().unwrap_or_else(PoisonError::into_inner))
                .into_iter()
                .collect();
        if used.is_empty() {
            return;
        }
        if let Err(error) = self.store.touch_gateway_keys(&used).await {
            tracing::warn!(%error, "could not record when gateway keys were last used");
        }
    }

    /// Periodically, off the request path, for as long as the access
    /// service lives: writes last-use times, and forgets rate-limit buckets
    /// that have refilled (so those of deleted endpoints and keys go).
    pub fn spawn_housekeeping(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(LAST_USED_FLUSH);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(access) = weak.upgrade() else { break };
                access.flush_last_used().await;
                let forgotten = access.limiter.forget_full();
                if forgotten > 0 {
                    tracing::debug!(forgotten, "refilled rate-limit buckets forgotten");
                }
            }
        })
    }

    fn view(&self, stored: StoredGatewayKey) -> KeyView {
        // A use not yet written is newer than the stored one.
        let pending = self
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&stored.id)
            .copied();
        let last_used = match (stored.last_used_at, pending) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        KeyView {
            status: if stored.revoked_at.is_some() {
                "revoked"
            } else {
                "active"
            }
            .into(),
            created_at: rfc3339(stored.created_at),
            revoked_at: stored.revoked_at.map(rfc3339),
            last_used_at: last_used.map(rfc3339),
            id: stored.id,
            name: stored.name,
            prefix: stored.prefix,
            endpoints: stored.endpoints,
            requests_per_minute: stored.requests_per_minute,
            tokens_per_minute: stored.tokens_per_minute,
        }
    }
}

fn not_found(id: &str) -> AccessError {
    AccessError::NotFound(format!("gateway key '{id}' does not exist"))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl CallHooks for Access {
    fn admit(&self, ctx: &CallContext, endpoint: &EndpointDef) -> Result<(), ProviderError> {
        match &ctx.key {
            Some(key) if !key.may_call(&endpoint.name) => {
                return Err(key.refusal(&endpoint.name));
            }
            Some(_) => {}
            // The middleware refuses these first; this covers calls that
            // reach the gateway another way.
            None if self.required() => return Err(missing_key()),
            None => {}
        }
        let mut checks = Vec::new();
        let limits = endpoint.policy.limits;
        let scope = || Scope::Endpoint(endpoint.name.clone());
        if let Some(per_minute) = limits.requests_per_minute {
            checks.push(Check {
                scope: scope(),
                unit: Unit::Requests,
                per_minute,
            });
        }
        if let Some(per_minute) = limits.tokens_per_minute {
            checks.push(Check {
                scope: scope(),
                unit: Unit::Tokens,
                per_minute,
            });
        }
        if let Some(key) = &ctx.key {
            let scope = || Scope::Key(key.id.clone());
            if let Some(per_minute) = key.requests_per_minute {
                checks.push(Check {
                    scope: scope(),
                    unit: Unit::Requests,
                    per_minute,
                });
            }
            if let Some(per_minute) = key.tokens_per_minute {
                checks.push(Check {
                    scope: scope(),
                    unit: Unit::Tokens,
                    per_minute,
                });
            }
        }
        self.limiter.admit(&checks).map_err(|refusal| {
            let whose = match (&refusal.check.scope, &ctx.key) {
                (Scope::Endpoint(name), _) => format!("endpoint '{name}'"),
                (Scope::Key(_), Some(key)) => format!("gateway key {}", key.prefix),
                (Scope::Key(id), None) => format!("gateway key {id}"),
            };
            let unit = match refusal.check.unit {
                Unit::Requests => "requests",
                Unit::Tokens => "tokens",
            };
            let mut error = ProviderError::new(
                ErrorKind::RateLimited,
                format!(
                    "rate limit reached: {whose} allows {} {unit} per minute; retry in {} s",
                    refusal.check.per_minute,
                    refusal.retry_after.as_millis().div_ceil(1000)
                ),
            );
            error.retry_after_ms =
                Some(u64::try_from(refusal.retry_after.as_millis()).unwrap_or(u64::MAX));
            error
        })
    }

    fn finished(&self, ctx: &CallContext, record: &CallRecord) {
        let Some(usage) = record.usage else { return };
        let tokens = u64::from(usage.input_tokens) + u64::from(usage.output_tokens);
        self.limiter
            .charge(&Scope::Endpoint(record.endpoint.clone()), tokens);
        if let Some(key) = &ctx.key {
            self.limiter.charge(&Scope::Key(key.id.clone()), tokens);
        }
    }
}

fn missing_key() -> ProviderError {
    ProviderError::new(
        ErrorKind::Authentication,
        "this gateway requires a gateway key: pass it as the SDK's API key",
    )
}

/// The dialect a `/gateway/*` router speaks, for the middleware's errors.
#[derive(Clone)]
pub struct KeyGuard {
    pub access: Arc<Access>,
    pub dialect: Dialect,
}

/// The middleware on a dialect's routes (see the module docs).
pub async fn require_key(
    State(guard): State<KeyGuard>,
    mut request: Request,
    next: Next,
) -> Response {
    let candidates = presented_keys(request.headers(), request.uri().query());
    let found = candidates
        .iter()
        .find_map(|candidate| guard.access.authenticate(candidate));
    match found {
        Some(key) => {
            request.extensions_mut().insert(key);
            next.run(request).await
        }
        None if !guard.access.required() => next.run(request).await,
        None => {
            let error = if candidates.is_empty() {
                missing_key()
            } else {
                let shown = candidates
                    .iter()
                    .find(|c| c.starts_with(keys::KEY_PREFIX))
                    .map(|c| keys::shown_prefix(c));
                tracing::debug!(
                    key = shown.as_deref().unwrap_or("(not a gateway key)"),
                    "refused an invalid gateway key"
                );
                ProviderError::new(ErrorKind::Authentication, "invalid or revoked gateway key")
            };
            error_response(guard.dialect, &error)
        }
    }
}

fn error_response(dialect: Dialect, error: &ProviderError) -> Response {
    match dialect {
        Dialect::Openai => dialects::openai::error_response(error),
        Dialect::Anthropic => dialects::anthropic::error_response(error),
        Dialect::Gemini => dialects::gemini::error_response(error),
    }
}

/// Every value the request carries where an SDK puts its API key, in
/// order: `x-api-key` (Anthropic), `x-goog-api-key` (Gemini),
/// `Authorization: Bearer` (OpenAI and most others), `?key=` (Gemini).
fn presented_keys(headers: &HeaderMap, query: Option<&str>) -> Vec<String> {
    let mut found = Vec::new();
    for name in ["x-api-key", "x-goog-api-key"] {
        for value in headers.get_all(name) {
            if let Ok(value) = value.to_str() {
                found.push(value.trim().to_string());
            }
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        if let Some((scheme, token)) = value.to_str().ok().and_then(|v| v.trim().split_once(' '))
            && scheme.eq_ignore_ascii_case("bearer")
        {
            found.push(token.trim().to_string());
        }
    }
    if let Some(query) = query {
        for pair in query.split('&') {
            if let Some(value) = pair.strip_prefix("key=") {
                found.push(value.to_string());
            }
        }
    }
    found.retain(|v| !v.is_empty());
    found
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn keys_are_found_where_each_sdk_sends_them() {
        let mut headers = HeaderMap::new();
        assert!(presented_keys(&headers, None).is_empty());
        headers.insert("x-api-key", HeaderValue::from_static("anthropic"));
        headers.insert("x-goog-api-key", HeaderValue::from_static("gemini"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  openai "),
        );
        assert_eq!(
            presented_keys(&headers, Some("alt=sse&key=query")),
            ["anthropic", "gemini", "openai", "query"]
        );
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(presented_keys(&basic, Some("key=&alt=sse")).is_empty());
    }

    #[test]
    fn endpoint_allow_list() {
        let key = CallerKey {
            id: "k".into(),
            name: "n".into(),
            prefix: "pk_1234567".into(),
            endpoints: Some(vec!["a".into()]),
            requests_per_minute: None,
            tokens_per_minute: None,
        };
        assert!(key.may_call("a"));
        assert!(!key.may_call("b"));
        let all = CallerKey {
            endpoints: None,
            ..key
        };
        assert!(all.may_call("b"));
    }
}
