//! The host's services (`gateway:provider/host`), as safe functions.
//!
//! Inside the Portico host (wasm32) these call the host imports. Natively
//! (plugin unit tests) there is no host, so they fall back to local
//! stand-ins: `log` writes to stderr, `now_unix_ms` reads the system clock,
//! the cache lives in a thread-local map, and `http_fetch` fails. Keep
//! translation code free of host calls where possible so tests exercise the
//! real logic.

use portico_model::plugin::{HttpRequest, HttpResponse};

/// Severity of a [`log`] line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Writes a line to the host's structured log, tagged with the plugin id.
/// Never log secrets (endpoint config values of kind secret).
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Wall-clock time, milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    imp::now_unix_ms()
}

/// Performs an HTTP request through the host, e.g. an OAuth token exchange.
/// Only hosts of the endpoint's `url` config values and the plugin's
/// declared `egress_hosts` are allowed; other requests fail with a message.
pub fn http_fetch(request: &HttpRequest) -> Result<HttpResponse, String> {
    imp::http_fetch(request)
}

/// A value this plugin cached earlier with [`cache_set`], if still fresh.
pub fn cache_get(key: &str) -> Option<Vec<u8>> {
    imp::cache_get(key)
}

/// Caches `value` under `key` for `ttl_ms` milliseconds (per plugin,
/// size-bounded by the host: a later `cache_get` may miss).
pub fn cache_set(key: &str, value: &[u8], ttl_ms: u64) {
    imp::cache_set(key, value, ttl_ms)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::__private::bindings::gateway::provider0_1_0::host as wit;
    use crate::bridge;
    use portico_model::plugin::{HttpRequest, HttpResponse};

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => wit::LogLevel::Trace,
            Level::Debug => wit::LogLevel::Debug,
            Level::Info => wit::LogLevel::Info,
            Level::Warn => wit::LogLevel::Warn,
            Level::Error => wit::LogLevel::Error,
        };
        wit::log(level, message)
    }

    pub fn now_unix_ms() -> u64 {
        wit::now_unix_ms()
    }

    pub fn http_fetch(request: &HttpRequest) -> Result<HttpResponse, String> {
        wit::http_fetch(&bridge::request_to_wit(request.clone())).map(bridge::response_from_wit)
    }

    pub fn cache_get(key: &str) -> Option<Vec<u8>> {
        wit::cache_get(key)
    }

    pub fn cache_set(key: &str, value: &[u8], ttl_ms: u64) {
        wit::cache_set(key, value, ttl_ms)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::Level;
    use portico_model::formats::common::system_now_ms;
    use portico_model::plugin::{HttpRequest, HttpResponse};

    thread_local! {
        /// key -> (expiry in Unix ms, value)
        static CACHE: RefCell<HashMap<String, (u64, Vec<u8>)>> = RefCell::new(HashMap::new());
    }

    pub fn log(level: Level, message: &str) {
        eprintln!("[plugin {level:?}] {message}");
    }

    pub fn now_unix_ms() -> u64 {
        system_now_ms()
    }

    pub fn http_fetch(request: &HttpRequest) -> Result<HttpResponse, String> {
        Err(format!(
            "http_fetch({} {}) is only available inside the Portico host",
            request.method, request.url
        ))
    }

    pub fn cache_get(key: &str) -> Option<Vec<u8>> {
        let now = system_now_ms();
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            match cache.get(key) {
                Some((expiry, value)) if *expiry > now => Some(value.clone()),
                Some(_) => {
                    cache.remove(key);
                    None
                }
                None => None,
            }
        })
    }

    pub fn cache_set(key: &str, value: &[u8], ttl_ms: u64) {
        let expiry = system_now_ms().saturating_add(ttl_ms);
        CACHE.with(|cache| {
            cache
                .borrow_mut()
                .insert(key.to_string(), (expiry, value.to_vec()))
        });
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn native_stand_ins() {
        cache_set("k", b"v", 60_000);
        assert_eq!(cache_get("k"), Some(b"v".to_vec()));
        cache_set("gone", b"v", 0);
        assert_eq!(cache_get("gone"), None);
        assert_eq!(cache_get("never"), None);
        assert!(now_unix_ms() > 1_600_000_000_000);
        let request = HttpRequest {
            method: "GET".into(),
            url: "https://x.test/".into(),
            ..Default::default()
        };
        assert!(
            http_fetch(&request)
                .unwrap_err()
                .contains("only available inside the Portico host")
        );
        log(Level::Info, "hello from a test");
    }
}
