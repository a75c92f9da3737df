//! Gateway keys and rate limits, in process: the real router on a real
//! socket, the real openai plugin (plugins/openai.wasm) and a fake OpenAI
//! upstream that records the credentials it receives.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portico::endpoints::EndpointDef;
use portico::policy::RateLimits;
use portico::registry::Registry;
use portico::routing::UpstreamTimeouts;
use portico::runtime::{PluginRuntime, RuntimeConfig};
use portico::server::{self, App, AppOptions};
use serde_json::{Value, json};
use support::FakeOpenAi;

async fn openai_registry(work: &Path) -> Arc<Registry> {
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(support::plugin_cache("access")),
            ..RuntimeConfig::default()
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let registry = Registry::load_dir(runtime, support::openai_plugins_dir(work))
        .await
        .unwrap();
    assert!(
        registry.get("openai").is_some(),
        "{:?}",
        registry.statuses()
    );
    registry
}

struct Running {
    app: App,
    base: String,
    server: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
    upstream: FakeOpenAi,
}

impl Running {
    /// A gateway with endpoints `a` and `b` on the fake upstream.
    async fn start(work: &Path) -> Running {
        let registry = openai_registry(work).await;
        let app = server::build(
            AppOptions {
                data_dir: work.join("data"),
                config_file: None,
                watch_config: false,
                admin_token: None,
                master_key: None,
                max_body_bytes: 1 << 20,
                timeouts: UpstreamTimeouts {
                    request: Duration::from_secs(10),
                    stream_idle: Duration::from_secs(10),
                },
            },
            registry,
            support::upstream_clients(),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        let running = Running {
            app,
            base,
            server,
            client: reqwest::Client::new(),
            upstream: FakeOpenAi::start(12, 8).await,
        };
        for name in ["a", "b"] {
            let (status, body) = running
                .api(
                    reqwest::Method::POST,
                    "/api/v1/endpoints",
                    Some(
                        json!({"name": name, "provider": "openai", "model": "gpt-4o-mini",
                           "config": {"api_key": "sk-upstream-secret",
                                      "base_url": running.upstream.base_url}}),
                    ),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        running
    }

    async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
        self.app.close().await;
    }

    /// Sets an endpoint's rate limits in the live table (the policy's
    /// persistence is the endpoint manager's business, not tested here).
    fn limit(&self, endpoint: &str, limits: RateLimits) {
        let table = &self.app.gateway.endpoints;
        let defs: Vec<EndpointDef> = table
            .list()
            .iter()
            .map(|def| {
                let mut def = EndpointDef::clone(def);
                if def.name == endpoint {
                    def.policy.limits = limits;
                }
                def
            })
            .collect();
        table.replace_all(defs);
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut builder = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            builder = builder
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn create_key(&self, body: Value) -> (String, Value) {
        let (status, created) = self
            .api(reqwest::Method::POST, "/api/v1/keys", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        (created["key"].as_str().unwrap().to_string(), created)
    }

    /// A chat completion with `key` as the OpenAI SDK sends it; returns
    /// status, Retry-After and body.
    async fn chat(&self, endpoint: &str, key: Option<&str>) -> (u16, Option<String>, Value) {
        let mut builder = self
            .client
            .post(format!("{}/gateway/openai/v1/chat/completions", self.base))
            .header("content-type", "application/json")
            .body(
                json!({"model": endpoint, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            );
        if let Some(key) = key {
            builder = builder.bearer_auth(key);
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        (
            status,
            retry_after,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }
}

fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_required_accepted_refused_and_revoked() {
    let work = tempfile::tempdir().unwrap();
    let gw = Running::start(work.path()).await;

    // Not required (the default): any API key works.
    assert_eq!(gw.chat("a", Some("dummy")).await.0, 200);
    assert_eq!(gw.chat("a", None).await.0, 200);

    let (key, created) = gw
        .create_key(json!({"name": "ci", "endpoints": ["a"]}))
        .await;
    assert!(key.starts_with("pk_") && key.len() == 43, "{key}");
    assert_eq!(created["prefix"], &key[..10]);
    assert_eq!(created["status"], "active");
    let id = created["id"].as_str().unwrap().to_string();

    // The key is shown once: listing and getting show the prefix only.
    let (status, list) = gw.api(reqwest::Method::GET, "/api/v1/keys", None).await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let text = list.to_string();
    assert!(!text.contains(&key), "{text}");
    assert!(!text.contains(&key[10..20]), "{text}");
    assert!(list[0].get("key").is_none() && list[0].get("hash").is_none());
    assert_eq!(list[0]["endpoints"], json!(["a"]));
    let (status, one) = gw
        .api(reqwest::Method::GET, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(one["name"], "ci");

    gw.app.access.set_required(true);
    let (status, _, body) = gw.chat("a", None).await;
    assert_eq!(
        (status, error_type(&body)),
        (401, "authentication_error"),
        "{body}"
    );
    let (status, _, body) = gw.chat("a", Some("dummy")).await;
    assert_eq!(
        (status, error_type(&body)),
        (401, "authentication_error"),
        "{body}"
    );
    let mut wrong = key.clone();
    wrong.replace_range(20..21, if &key[20..21] == "x" { "y" } else { "x" });
    assert_eq!(gw.chat("a", Some(&wrong)).await.0, 401);

    let (status, _, body) = gw.chat("a", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    // Allowed on a only.
    let (status, _, body) = gw.chat("b", Some(&key)).await;
    assert_eq!(
        (status, error_type(&body)),
        (403, "permission_error"),
        "{body}"
    );

    // The upstream got the endpoint's credential, never the gateway key.
    let seen = gw.upstream.headers();
    assert!(!seen.is_empty());
    for headers in &seen {
        let all: Vec<&str> = headers.values().filter_map(|v| v.to_str().ok()).collect();
        assert!(all.contains(&"Bearer sk-upstream-secret"), "{headers:?}");
        assert!(!all.iter().any(|v| v.contains(&key[..10])), "{headers:?}");
    }

    // Anthropic and Gemini clients present the key their way and get
    // errors in their own dialect.
    let anthropic = gw
        .client
        .post(format!("{}/gateway/anthropic/v1/messages", gw.base))
        .header("x-api-key", "nope")
        .header("content-type", "application/json")
        .body(
            json!({"model": "a", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status().as_u16(), 401);
    let body: Value = serde_json::from_str(&anthropic.text().await.unwrap()).unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "authentication_error", "{body}");
    let gemini = gw
        .client
        .post(format!(
            "{}/gateway/gemini/v1beta/models/a:generateContent",
            gw.base
        ))
        .header("x-goog-api-key", &key)
        .header("content-type", "application/json")
        .body(json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status().as_u16(), 200);
    let gemini = gw
        .client
        .post(format!(
            "{}/gateway/gemini/v1beta/models/a:generateContent?key=wrong",
            gw.base
        ))
        .header("content-type", "application/json")
        .body(json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(gemini.status().as_u16(), 401);
    let body: Value = serde_json::from_str(&gemini.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED", "{body}");

    // Revoked: refused at once.
    let (status, revoked) = gw
        .api(reqwest::Method::DELETE, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert_eq!((status, revoked["status"].as_str()), (200, Some("revoked")));
    assert!(revoked["revoked_at"].is_string());
    assert_eq!(gw.chat("a", Some(&key)).await.0, 401);
    // Last use is recorded.
    let (_, one) = gw
        .api(reqwest::Method::GET, &format!("/api/v1/keys/{id}"), None)
        .await;
    assert!(one["last_used_at"].is_string(), "{one}");

    // Management API errors.
    let (status, body) = gw
        .api(reqwest::Method::GET, "/api/v1/keys/key_nope", None)
        .await;
    assert_eq!((status, error_type(&body)), (404, "not_found"));
    let (status, body) = gw
        .api(reqwest::Method::DELETE, "/api/v1/keys/key_nope", None)
        .await;
    assert_eq!((status, error_type(&body)), (404, "not_found"));
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "endpoints": []}),
        json!({"name": "x", "requests_per_minute": 0}),
        json!({"name": "x", "colour": "red"}),
        json!({"name": "x", "tokens_per_minute": -1}),
    ] {
        let (status, body) = gw
            .api(reqwest::Method::POST, "/api/v1/keys", Some(bad.clone()))
            .await;
        assert_eq!(
            (status, error_type(&body)),
            (400, "invalid_request"),
            "{bad}: {body}"
        );
    }
    gw.stop().await;

    // Keys survive a restart (stored hashed), revoked ones stay revoked.
    let gw = Running::start_again(work.path()).await;
    gw.app.access.set_required(true);
    assert_eq!(gw.chat("a", Some(&key)).await.0, 401);
    gw.stop().await;
}

impl Running {
    /// Restarts on an existing data dir (endpoints a and b exist).
    async fn start_again(work: &Path) -> Running {
        let registry = openai_registry(work).await;
        let app = server::build(
            AppOptions {
                data_dir: work.join("data"),
                config_file: None,
                watch_config: false,
                admin_token: None,
                master_key: None,
                max_body_bytes: 1 << 20,
                timeouts: UpstreamTimeouts {
                    request: Duration::from_secs(10),
                    stream_idle: Duration::from_secs(10),
                },
            },
            registry,
            support::upstream_clients(),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Running {
            app,
            base,
            server,
            client: reqwest::Client::new(),
            upstream: FakeOpenAi::start(12, 8).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_request_limit_holds_under_concurrent_load() {
    let work = tempfile::tempdir().unwrap();
    let gw = Arc::new(Running::start(work.path()).await);
    gw.limit(
        "a",
        RateLimits {
            requests_per_minute: Some(10),
            tokens_per_minute: None,
        },
    );
    let calls = (0..30).map(|_| {
        let gw = gw.clone();
        tokio::spawn(async move { gw.chat("a", None).await })
    });
    let results = futures_join(calls).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let limited: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!((ok, limited.len()), (10, 20), "{results:?}");
    for (_, retry_after, body) in limited {
        assert_eq!(error_type(body), "rate_limit_error", "{body}");
        let seconds: u64 = retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=6).contains(&seconds), "{seconds}");
    }
    // Other endpoints are not affected.
    assert_eq!(gw.chat("b", None).await.0, 200);
    Arc::into_inner(gw).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_limits_per_endpoint_and_per_key() {
    let work = tempfile::tempdir().unwrap();
    let gw = Running::start(work.path()).await;
    // 30 tokens a minute, 20 per call: the first call leaves 10, the
    // second is admitted on that and goes into debt, the third waits.
    gw.limit(
        "a",
        RateLimits {
            requests_per_minute: None,
            tokens_per_minute: Some(30),
        },
    );
    assert_eq!(gw.chat("a", None).await.0, 200);
    assert_eq!(gw.chat("a", None).await.0, 200);
    let (status, retry_after, body) = gw.chat("a", None).await;
    assert_eq!(
        (status, error_type(&body)),
        (429, "rate_limit_error"),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tokens")
    );
    // 10 tokens of debt at 0.5 per second: 20 s.
    assert_eq!(retry_after.as_deref(), Some("20"));

    // Per key, across endpoints: 2 requests a minute.
    let (rpm_key, _) = gw
        .create_key(json!({"name": "rpm", "requests_per_minute": 2}))
        .await;
    let (tpm_key, _) = gw
        .create_key(json!({"name": "tpm", "tokens_per_minute": 15}))
        .await;
    assert_eq!(gw.chat("b", Some(&rpm_key)).await.0, 200);
    assert_eq!(gw.chat("b", Some(&rpm_key)).await.0, 200);
    let (status, retry_after, body) = gw.chat("b", Some(&rpm_key)).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(retry_after.as_deref(), Some("30"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&rpm_key[..10])
    );
    // The tokens key: one call (20 tokens) spends its 15.
    assert_eq!(gw.chat("b", Some(&tpm_key)).await.0, 200);
    assert_eq!(gw.chat("b", Some(&tpm_key)).await.0, 429);
    // Other callers of b are not limited by those keys.
    assert_eq!(gw.chat("b", None).await.0, 200);
    gw.stop().await;
}

/// Awaits all handles in order.
async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
