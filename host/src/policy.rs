//! How an endpoint is served beyond its provider, model and config: traffic
//! split, fallbacks, retries, timeouts, circuit breaking and rate limits.
//! Routing applies the resilience parts; the access hooks enforce limits.
//!
//! A target is another endpoint, named: it brings its own provider, model
//! and config (and secrets). Only the called endpoint's policy applies to a
//! call; the policies of its targets are not consulted (no nesting).

use serde::{Deserialize, Serialize};

/// An endpoint's serving policy. Every part is optional: the default is
/// one target (the endpoint itself), no retries, no limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointPolicy {
    pub limits: RateLimits,
    /// Primary targets, one picked per call by weight among the healthy
    /// ones. Empty: the endpoint itself is the only primary.
    pub targets: Vec<Target>,
    /// Endpoints tried in order when the primary fails (429, 5xx, timeout,
    /// unreachable).
    pub fallbacks: Vec<String>,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    /// `None`: no circuit breaking.
    pub circuit_breaker: Option<CircuitBreaker>,
}

/// Per-minute limits; `None` means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

impl RateLimits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.tokens_per_minute.is_none()
    }
}

/// A primary target: an endpoint (possibly the router itself) and its share
/// of the traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub endpoint: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Retries of one target before falling back, with exponential backoff and
/// full jitter; an upstream `Retry-After` replaces the backoff, and one
/// longer than `max_backoff_ms` moves on to the next target instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts per target, the first included (1 = no retry).
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_backoff_ms: 200,
            max_backoff_ms: 5_000,
        }
    }
}

/// Upstream timeouts; unset ones use the gateway-wide settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// TCP (and TLS) connect, per attempt.
    pub connect_ms: Option<u64>,
    /// One attempt: the whole answer, or a stream's first event. A target
    /// that takes longer counts as failed (504) and may be retried or fall
    /// back.
    pub attempt_ms: Option<u64>,
    /// The whole call, retries and fallbacks included (for a stream, until
    /// its first event).
    pub total_ms: Option<u64>,
}

/// After `failure_threshold` consecutive failures a target is skipped for
/// `cooldown_ms`; then one probe call decides: success closes the breaker,
/// failure opens it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CircuitBreaker {
    pub failure_threshold: u32,
    pub cooldown_ms: u64,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// Upper bounds that keep a typo from stalling calls for hours.
const MAX_ATTEMPTS: u32 = 10;
const MAX_BACKOFF_MS: u64 = 60_000;
const MAX_TIMEOUT_MS: u64 = 3_600_000;

impl EndpointPolicy {
    /// Routes to other endpoints (targets or fallbacks).
    pub fn is_router(&self) -> bool {
        !self.targets.is_empty() || !self.fallbacks.is_empty()
    }

    /// Every endpoint named, targets first, without repeats.
    pub fn referenced(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self
            .targets
            .iter()
            .map(|t| t.endpoint.as_str())
            .chain(self.fallbacks.iter().map(String::as_str))
        {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Checks the policy on its own (references are checked against the
    /// other endpoints by the endpoint manager).
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = Vec::new();
        for target in &self.targets {
            if target.endpoint.trim().is_empty() {
                return Err("a target has an empty endpoint name".into());
            }
            if seen.contains(&target.endpoint.as_str()) {
                return Err(format!("target '{}' is listed twice", target.endpoint));
            }
            seen.push(target.endpoint.as_str());
        }
        if !self.targets.is_empty() && self.targets.iter().all(|t| t.weight == 0) {
            return Err("at least one target needs a weight above 0".into());
        }
        let mut seen = Vec::new();
        for fallback in &self.fallbacks {
            if fallback.trim().is_empty() {
                return Err("a fallback has an empty endpoint name".into());
            }
            if seen.contains(&fallback.as_str()) {
                return Err(format!("fallback '{fallback}' is listed twice"));
            }
            seen.push(fallback.as_str());
        }
        let retry = &self.retry;
        if !(1..=MAX_ATTEMPTS).contains(&retry.max_attempts) {
            return Err(format!(
                "retry.max_attempts must be between 1 and {MAX_ATTEMPTS}"
            ));
        }
        if retry.max_backoff_ms > MAX_BACKOFF_MS {
            return Err(format!(
                "retry.max_backoff_ms must be at most {MAX_BACKOFF_MS}"
            ));
        }
        if retry.initial_backoff_ms > retry.max_backoff_ms {
            return Err("retry.initial_backoff_ms must not exceed retry.max_backoff_ms".into());
        }
        for (name, value) in [
            ("connect_ms", self.timeouts.connect_ms),
            ("attempt_ms", self.timeouts.attempt_ms),
            ("total_ms", self.timeouts.total_ms),
        ] {
            if let Some(ms) = value
                && !(1..=MAX_TIMEOUT_MS).contains(&ms)
            {
                return Err(format!(
                    "timeouts.{name} must be between 1 and {MAX_TIMEOUT_MS} milliseconds"
                ));
            }
        }
        if let Some(breaker) = &self.circuit_breaker {
            if breaker.failure_threshold == 0 {
                return Err("circuit_breaker.failure_threshold must be at least 1".into());
            }
            if !(1..=MAX_TIMEOUT_MS).contains(&breaker.cooldown_ms) {
                return Err(format!(
                    "circuit_breaker.cooldown_ms must be between 1 and {MAX_TIMEOUT_MS}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_json_shape() {
        let policy: EndpointPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(policy, EndpointPolicy::default());
        assert_eq!(policy.retry.max_attempts, 1);
        assert!(!policy.is_router());
        let policy: EndpointPolicy = serde_json::from_value(serde_json::json!({
            "targets": [{"endpoint": "a"}, {"endpoint": "b", "weight": 3}],
            "fallbacks": ["c", "a"],
            "retry": {"max_attempts": 3},
            "circuit_breaker": {"failure_threshold": 2}
        }))
        .unwrap();
        assert_eq!(policy.targets[0].weight, 1);
        assert_eq!(policy.retry.max_backoff_ms, 5_000);
        assert_eq!(policy.circuit_breaker.unwrap().cooldown_ms, 30_000);
        assert_eq!(policy.referenced(), ["a", "b", "c"]);
        assert!(policy.validate().is_ok());
        assert!(serde_json::from_str::<EndpointPolicy>(r#"{"retries": 1}"#).is_err());
    }

    #[test]
    fn validation_errors() {
        let bad = |json: serde_json::Value| {
            serde_json::from_value::<EndpointPolicy>(json)
                .unwrap()
                .validate()
                .unwrap_err()
        };
        assert!(
            bad(serde_json::json!({"targets": [{"endpoint": "a"}, {"endpoint": "a"}]}))
                .contains("twice")
        );
        assert!(
            bad(serde_json::json!({"targets": [{"endpoint": "a", "weight": 0}]}))
                .contains("weight")
        );
        assert!(bad(serde_json::json!({"fallbacks": ["b", "b"]})).contains("twice"));
        assert!(bad(serde_json::json!({"retry": {"max_attempts": 0}})).contains("max_attempts"));
        assert!(
            bad(serde_json::json!({"retry": {"initial_backoff_ms": 9000, "max_backoff_ms": 10}}))
                .contains("initial")
        );
        assert!(bad(serde_json::json!({"timeouts": {"total_ms": 0}})).contains("total_ms"));
        assert!(
            bad(serde_json::json!({"circuit_breaker": {"failure_threshold": 0}}))
                .contains("threshold")
        );
    }
}
