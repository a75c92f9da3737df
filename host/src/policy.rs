//! How an endpoint is served beyond its provider, model and config: traffic
//! split, fallbacks, retries, timeouts, circuit breaking and rate limits.
//! Routing applies the resilience parts; the access hooks enforce limits.

use serde::{Deserialize, Serialize};

/// An endpoint's serving policy. Every part is optional: the default is
/// one target (the endpoint itself), no retries, no limits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointPolicy {
    pub limits: RateLimits,
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
