//! Management API, endpoint store, secrets at rest and the declarative
//! file, in process: the real router on a real socket, the real openai
//! plugin (plugins/openai.wasm; run scripts/build-plugins first) and a fake
//! OpenAI upstream that records the API keys it receives.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use portico::registry::Registry;
use portico::routing::UpstreamTimeouts;
use portico::runtime::{PluginRuntime, RuntimeConfig};
use portico::server::{self, App, AppOptions};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::FakeOpenAi;

// ---------------------------------------------------------------- helpers

/// A compiled-plugin cache shared by the tests, filled once per process so
/// the tests do not each compile the plugin (seconds in a debug build).
fn shared_cache() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = support::plugin_cache("admin-api");
            let cache = dir.clone();
            // Own thread and runtime: callers are inside a Tokio runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let runtime = PluginRuntime::new(
                        RuntimeConfig {
                            cache_dir: Some(cache),
                            ..RuntimeConfig::default()
                        },
                        reqwest::Client::new(),
                    )
                    .unwrap();
                    runtime.load_file(&support::openai_plugin()).await.unwrap();
                })
            })
            .join()
            .expect("warming the compiled-plugin cache failed (see the panic above)");
            dir
        })
        .clone()
}

/// A registry holding only the openai plugin.
async fn openai_registry(work: &Path) -> Arc<Registry> {
    let plugins = work.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(support::openai_plugin(), plugins.join("openai.wasm")).unwrap();
    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(shared_cache()),
            ..RuntimeConfig::default()
        },
        reqwest::Client::new(),
    )
    .unwrap();
    let registry = Registry::load_dir(runtime, plugins).await.unwrap();
    assert!(
        registry.get("openai").is_some(),
        "openai plugin did not load: {:?}",
        registry.statuses()
    );
    registry
}

struct Options {
    config_file: Option<PathBuf>,
    admin_token: Option<String>,
    master_key: Option<String>,
}

fn options() -> Options {
    Options {
        config_file: None,
        admin_token: None,
        master_key: None,
    }
}

impl Options {
    fn with_file(mut self, file: PathBuf) -> Self {
        self.config_file = Some(file);
        self
    }
}

async fn try_build(work: &Path, opts: Options) -> anyhow::Result<App> {
    let registry = openai_registry(work).await;
    server::build(
        AppOptions {
            data_dir: work.join("data"),
            config_file: opts.config_file,
            watch_config: true,
            admin_token: opts.admin_token,
            master_key: opts.master_key,
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
}

/// A running gateway on 127.0.0.1.
struct Running {
    app: Option<App>,
    base: String,
    server: tokio::task::JoinHandle<()>,
    client: reqwest::Client,
    token: Option<String>,
}

impl Running {
    async fn start(work: &Path, opts: Options) -> Running {
        let token = opts.admin_token.clone();
        let app = try_build(work, opts).await.expect("gateway builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router.clone();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Running {
            app: Some(app),
            base,
            server,
            client: reqwest::Client::new(),
            token,
        }
    }

    fn app(&self) -> &App {
        self.app.as_ref().unwrap()
    }

    async fn stop(mut self) {
        self.server.abort();
        let _ = (&mut self.server).await;
        if let Some(app) = self.app.take() {
            app.close().await;
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut builder = self.request(method, path);
        if let Some(body) = body {
            builder = builder
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = builder.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("response is not JSON ({e}): {text}"))
        };
        (status, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A chat completion through the OpenAI dialect.
    async fn chat(&self, endpoint: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/gateway/openai/v1/chat/completions", self.base))
            .header("content-type", "application/json")
            .body(
                json!({"model": endpoint, "messages": [{"role": "user", "content": "hi"}]})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The secret-bearing config the router would hand the plugin.
    fn routed_config(&self, endpoint: &str) -> Option<std::collections::BTreeMap<String, String>> {
        self.app()
            .gateway
            .endpoints
            .get(endpoint)
            .map(|d| d.config.clone())
    }
}

/// Polls `check` until it holds (the file watcher works in the background).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn error_type(body: &Value) -> &str {
    body["error"]["type"].as_str().unwrap_or_default()
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

/// Writes a file the way deployment tools do: a temporary file renamed
/// over the target, so the watcher never reads it half-written.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn db_bytes(data_dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("portico.db") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn create_list_get_update_delete_take_effect_without_restart() {
    let work = tempfile::tempdir().unwrap();
    let upstream = FakeOpenAi::start(1, 1).await;
    let gw = Running::start(work.path(), options()).await;

    let (status, created) = gw
        .post(
            "/api/v1/endpoints",
            json!({"name": "chat", "provider": "openai", "model": "gpt-4o-mini",
                   "config": {"api_key": "sk-first-secret", "base_url": upstream.base_url}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "chat");
    assert_eq!(created["provider"], "openai");
    assert_eq!(created["model"], "gpt-4o-mini");
    assert_eq!(created["source"], "api");
    assert_eq!(created["config"]["api_key"], "********");
    assert_eq!(created["config"]["base_url"], upstream.base_url.as_str());
    assert_eq!(created["secrets_set"], json!(["api_key"]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(created["created_at"], created["updated_at"]);

    // Takes effect for the next request, with the secret in clear only on
    // the way to the upstream.
    let (status, answer) = gw.chat("chat").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["message"]["content"], "hello");
    assert_eq!(upstream.authorizations(), vec!["Bearer sk-first-secret"]);

    let (status, list) = gw.get("/api/v1/endpoints").await;
    assert_eq!(status, 200);
    assert_eq!(names(&list), vec!["chat"]);
    assert_eq!(list[0], created);
    let (status, got) = gw.get("/api/v1/endpoints/chat").await;
    assert_eq!(status, 200);
    assert_eq!(got, created);
    assert!(!list.to_string().contains("sk-first-secret"));

    // PUT with the mask (as a UI sends back what it got) keeps the key.
    let mut edited = got.clone();
    edited["model"] = json!("gpt-4.1");
    let (status, updated) = gw.put("/api/v1/endpoints/chat", edited).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["model"], "gpt-4.1");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(
        gw.routed_config("chat").unwrap()["api_key"],
        "sk-first-secret"
    );

    // Omitting the secret keeps it too; a new value replaces it.
    let (status, _) = gw
        .put(
            "/api/v1/endpoints/chat",
            json!({"provider": "openai", "model": "gpt-4.1",
                   "config": {"base_url": upstream.base_url}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        gw.routed_config("chat").unwrap()["api_key"],
        "sk-first-secret"
    );
    let (status, updated) = gw
        .put(
            "/api/v1/endpoints/chat",
            json!({"provider": "openai", "model": "gpt-4.1",
                   "config": {"api_key": "sk-second-secret", "base_url": upstream.base_url,
                              "organization": "org-1"}}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(updated["config"]["organization"], "org-1");
    assert_eq!(updated["config"]["api_key"], "********");
    let (status, _) = gw.chat("chat").await;
    assert_eq!(status, 200);
    assert_eq!(
        upstream.authorizations().last().unwrap(),
        "Bearer sk-second-secret"
    );

    let (status, body) = gw.delete("/api/v1/endpoints/chat").await;
    assert_eq!(status, 204);
    assert_eq!(body, Value::Null);
    let (status, body) = gw.get("/api/v1/endpoints/chat").await;
    assert_eq!((status, error_type(&body)), (404, "not_found"));
    let (status, _) = gw.chat("chat").await;
    assert_eq!(status, 404, "deleted endpoint no longer routes");
    let (_, list) = gw.get("/api/v1/endpoints").await;
    assert_eq!(list, json!([]));

    // The existing listings still work.
    let (status, providers) = gw.get("/api/v1/providers").await;
    assert_eq!(status, 200);
    assert_eq!(providers[0]["id"], "openai");
    let (status, plugins) = gw.get("/api/v1/plugins").await;
    assert_eq!(status, 200);
    assert_eq!(plugins[0]["status"], "loaded");
    gw.stop().await;
}

#[tokio::test]
async fn validation_errors() {
    let work = tempfile::tempdir().unwrap();
    let gw = Running::start(work.path(), options()).await;
    let good = json!({"name": "ok", "provider": "openai", "model": "gpt-4o-mini",
                      "config": {"api_key": "sk-x"}});
    let with = |key: &str, value: Value| {
        let mut body = good.clone();
        body[key] = value;
        body
    };
    let cases = [
        (with("name", json!("-bad")), "invalid endpoint name"),
        (with("name", json!("has space")), "invalid endpoint name"),
        (
            with("name", json!("x".repeat(129))),
            "invalid endpoint name",
        ),
        (with("provider", json!("nosuch")), "openai"),
        (with("config", json!({})), "api_key"),
        (
            with("config", json!({"api_key": "sk", "colour": "blue"})),
            "unknown config key 'colour'",
        ),
        (
            with(
                "config",
                json!({"api_key": "sk", "base_url": "ftp://example.com"}),
            ),
            "base_url",
        ),
        (
            with("config", json!({"api_key": "sk", "base_url": "not a url"})),
            "http",
        ),
        (with("model", json!(" ")), "model"),
    ];
    for (body, needle) in cases {
        let (status, error) = gw.post("/api/v1/endpoints", body.clone()).await;
        assert_eq!(status, 400, "{body} -> {error}");
        assert_eq!(error_type(&error), "invalid_request");
        assert!(
            error_message(&error).contains(needle),
            "{body}: '{}' should mention '{needle}'",
            error_message(&error)
        );
    }
    let (status, error) = gw
        .post("/api/v1/endpoints", with("provider", json!("nosuch")))
        .await;
    assert_eq!(status, 400);
    assert!(error_message(&error).contains("nosuch"));

    // Malformed bodies are JSON errors too.
    let response = gw
        .request(reqwest::Method::POST, "/api/v1/endpoints")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(error_type(&error), "invalid_request");
    let (status, error) = gw
        .post(
            "/api/v1/endpoints",
            json!({"name": "x", "provider": "openai"}),
        )
        .await;
    assert_eq!(status, 400, "missing model: {error}");
    let (status, _) = gw.post("/api/v1/endpoints", with("extra", json!(1))).await;
    assert_eq!(status, 400, "unknown top-level field");

    // Duplicate, missing, renamed.
    let (status, _) = gw.post("/api/v1/endpoints", good.clone()).await;
    assert_eq!(status, 201);
    let (status, error) = gw.post("/api/v1/endpoints", good.clone()).await;
    assert_eq!((status, error_type(&error)), (409, "conflict"));
    let update = json!({"provider": "openai", "model": "m", "config": {"api_key": "k"}});
    for (status, error) in [
        gw.get("/api/v1/endpoints/missing").await,
        gw.put("/api/v1/endpoints/missing", update.clone()).await,
        gw.delete("/api/v1/endpoints/missing").await,
    ] {
        assert_eq!((status, error_type(&error)), (404, "not_found"), "{error}");
    }
    let mut renamed = update.clone();
    renamed["name"] = json!("other");
    let (status, _) = gw.put("/api/v1/endpoints/ok", renamed).await;
    assert_eq!(status, 400);
    // A failed update changes nothing.
    let (status, _) = gw
        .put(
            "/api/v1/endpoints/ok",
            json!({"provider": "openai", "model": "m", "config": {"base_url": "nope"}}),
        )
        .await;
    assert_eq!(status, 400);
    let (_, got) = gw.get("/api/v1/endpoints/ok").await;
    assert_eq!(got["model"], "gpt-4o-mini");

    let (status, error) = gw.get("/api/v1/nowhere").await;
    assert_eq!((status, error_type(&error)), (404, "not_found"));
    gw.stop().await;
}

#[tokio::test]
async fn persisted_encrypted_and_key_protected() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let gw = Running::start(work.path(), options()).await;
    let secret = "sk-very-secret-value-1234567890";
    let (status, _) = gw
        .post(
            "/api/v1/endpoints",
            json!({"name": "kept", "provider": "openai", "model": "gpt-4o-mini",
                   "config": {"api_key": secret, "base_url": "https://example.com/v1"}}),
        )
        .await;
    assert_eq!(status, 201);
    let (_, before) = gw.get("/api/v1/endpoints/kept").await;
    gw.stop().await;

    // Encrypted at rest: the database files hold a ciphertext, not the key.
    let bytes = db_bytes(&data);
    assert!(!bytes.is_empty());
    assert!(
        !contains(&bytes, secret),
        "plaintext secret found in the database"
    );
    assert!(contains(&bytes, "enc:v1:"));
    assert!(
        contains(&bytes, "https://example.com/v1"),
        "non-secrets stay readable"
    );

    // The generated key file is owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = data.join("master.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "master.key mode {mode:o}");
        let db = std::fs::metadata(data.join("portico.db"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(db & 0o777, 0o600, "portico.db mode {db:o}");
    }

    // A restart finds it, secret and all.
    let gw = Running::start(work.path(), options()).await;
    let (status, after) = gw.get("/api/v1/endpoints/kept").await;
    assert_eq!(status, 200);
    assert_eq!(after, before);
    assert_eq!(gw.routed_config("kept").unwrap()["api_key"], secret);
    gw.stop().await;

    // Another key cannot open these secrets: start-up fails clearly.
    let other_key = base64_of(&[9u8; 32]);
    let mut opts = options();
    opts.master_key = Some(other_key);
    let error = try_build(work.path(), opts)
        .await
        .err()
        .expect("wrong key refused");
    assert!(
        format!("{error:#}").contains("PORTICO_MASTER_KEY"),
        "{error:#}"
    );

    // A malformed PORTICO_MASTER_KEY is refused with a clear message.
    let fresh = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.master_key = Some("c2hvcnQ=".into());
    let error = try_build(fresh.path(), opts)
        .await
        .err()
        .expect("short key refused");
    let text = format!("{error:#}");
    assert!(
        text.contains("PORTICO_MASTER_KEY") && text.contains("32"),
        "{text}"
    );

    // With PORTICO_MASTER_KEY no key file is written.
    let mut opts = options();
    opts.master_key = Some(base64_of(&[3u8; 32]));
    let app = try_build(fresh.path(), opts).await.unwrap();
    app.close().await;
    assert!(!fresh.path().join("data/master.key").exists());
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn admin_token_guards_the_api_only() {
    let work = tempfile::tempdir().unwrap();
    let mut opts = options();
    opts.admin_token = Some("let-me-in".into());
    let mut gw = Running::start(work.path(), opts).await;

    let (status, _) = gw.get("/api/v1/endpoints").await;
    assert_eq!(status, 200, "with the token");
    gw.token = None;
    for path in [
        "/api/v1/endpoints",
        "/api/v1/providers",
        "/api/v1/plugins",
        "/api/v1/openapi.json",
        "/api/v1/endpoints/x",
        "/api/v1/unknown",
    ] {
        let (status, body) = gw.get(path).await;
        assert_eq!((status, error_type(&body)), (401, "unauthorized"), "{path}");
    }
    gw.token = Some("let-me-out".into());
    let (status, body) = gw.get("/api/v1/endpoints").await;
    assert_eq!((status, error_type(&body)), (401, "unauthorized"));
    let response = gw
        .client
        .get(format!("{}/api/v1/endpoints", gw.base))
        .header("authorization", "Basic bGV0LW1lLWlu")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Writes too.
    let (status, _) = gw
        .post(
            "/api/v1/endpoints",
            json!({"name": "x", "provider": "openai", "model": "m", "config": {"api_key": "k"}}),
        )
        .await;
    assert_eq!(status, 401);
    gw.token = Some("let-me-in".into());
    let (_, list) = gw.get("/api/v1/endpoints").await;
    assert_eq!(list, json!([]), "the unauthorized write did nothing");

    // Health and the gateway itself need no admin token.
    let health = gw
        .client
        .get(format!("{}/healthz", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    gw.token = None;
    let (status, _) = gw.chat("nosuch").await;
    assert_eq!(status, 404, "gateway routes are not behind the admin token");
    gw.stop().await;
}

#[tokio::test]
async fn declarative_file_is_applied_and_followed() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("portico.toml");
    let entry = |name: &str, model: &str, key: &str| {
        format!(
            "[[endpoints]]\nname = \"{name}\"\nprovider = \"openai\"\nmodel = \"{model}\"\n\
             [endpoints.config]\napi_key = \"{key}\"\nbase_url = \"https://example.com/v1\"\n\n"
        )
    };
    write_atomically(&file, &entry("f1", "gpt-4o-mini", "sk-file-1"));
    let opts = options().with_file(file.clone());
    let gw = Running::start(work.path(), opts).await;

    let (status, f1) = gw.get("/api/v1/endpoints/f1").await;
    assert_eq!(status, 200, "{f1}");
    assert_eq!(f1["source"], "file");
    assert_eq!(f1["config"]["api_key"], "********");
    assert_eq!(gw.routed_config("f1").unwrap()["api_key"], "sk-file-1");

    // File endpoints follow the file: the API may not change them.
    let (status, error) = gw
        .put(
            "/api/v1/endpoints/f1",
            json!({"provider": "openai", "model": "x", "config": {"api_key": "k"}}),
        )
        .await;
    assert_eq!((status, error_type(&error)), (409, "conflict"));
    let (status, _) = gw.delete("/api/v1/endpoints/f1").await;
    assert_eq!(status, 409);
    let (status, _) = gw
        .post(
            "/api/v1/endpoints",
            json!({"name": "api1", "provider": "openai", "model": "m", "config": {"api_key": "k"}}),
        )
        .await;
    assert_eq!(status, 201);

    // A change to the file is applied without a restart.
    write_atomically(
        &file,
        &(entry("f1", "gpt-4.1", "sk-file-1b") + &entry("f2", "gpt-4o", "sk-file-2")),
    );
    eventually("f2 appears and f1 changes", || async {
        let (_, list) = gw.get("/api/v1/endpoints").await;
        names(&list) == ["api1", "f1", "f2"]
            && gw
                .routed_config("f1")
                .is_some_and(|c| c["api_key"] == "sk-file-1b")
    })
    .await;
    let (_, f1_after) = gw.get("/api/v1/endpoints/f1").await;
    assert_eq!(f1_after["model"], "gpt-4.1");
    assert_eq!(f1_after["created_at"], f1["created_at"]);
    let (_, f2) = gw.get("/api/v1/endpoints/f2").await;

    // A broken file is ignored: everything keeps serving as it was.
    write_atomically(&file, "[[endpoints]\nname = ");
    // An invalid endpoint (unknown key for the loaded provider) rejects the
    // whole file too.
    tokio::time::sleep(Duration::from_millis(800)).await;
    write_atomically(
        &file,
        &(entry("f1", "gpt-4.1", "sk-file-1b")
            + "[[endpoints]]\nname = \"bad\"\nprovider = \"openai\"\nmodel = \"m\"\n\
               [endpoints.config]\napi_key = \"k\"\ncolour = \"blue\"\n"),
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, list) = gw.get("/api/v1/endpoints").await;
    assert_eq!(names(&list), ["api1", "f1", "f2"]);
    assert_eq!(gw.routed_config("f2").unwrap()["api_key"], "sk-file-2");

    // Removing an endpoint from the file deletes it (API endpoints stay);
    // an unchanged endpoint is not rewritten. A provider that is not loaded
    // is stored anyway, every value encrypted.
    write_atomically(
        &file,
        &(entry("f2", "gpt-4o", "sk-file-2")
            + "[[endpoints]]\nname = \"later\"\nprovider = \"notyet\"\nmodel = \"m\"\n\
               [endpoints.config]\ntoken = \"tok-later\"\nregion = \"eu\"\n"),
    );
    eventually("f1 removed and 'later' added", || async {
        let (_, list) = gw.get("/api/v1/endpoints").await;
        names(&list) == ["api1", "f2", "later"]
    })
    .await;
    let (_, f2_after) = gw.get("/api/v1/endpoints/f2").await;
    assert_eq!(f2_after, f2, "unchanged endpoint left as it was");
    let (_, later) = gw.get("/api/v1/endpoints/later").await;
    assert_eq!(
        later["config"],
        json!({"region": "********", "token": "********"})
    );
    assert_eq!(later["secrets_set"], json!(["region", "token"]));
    assert_eq!(gw.routed_config("later").unwrap()["token"], "tok-later");
    let (status, error) = gw.chat("later").await;
    assert_eq!(status, 503, "provider not loaded: {error}");

    // Deleting the file removes its endpoints.
    std::fs::remove_file(&file).unwrap();
    eventually("file endpoints removed", || async {
        let (_, list) = gw.get("/api/v1/endpoints").await;
        names(&list) == ["api1"]
    })
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn file_applied_at_start_up_and_restart_keeps_it() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("endpoints.toml");
    std::fs::write(
        &file,
        "[[endpoints]]\nname = \"boot\"\nprovider = \"openai\"\nmodel = \"m\"\n\
         config = { api_key = \"sk-boot\" }\n",
    )
    .unwrap();
    let gw = Running::start(work.path(), options().with_file(file.clone())).await;
    let (_, first) = gw.get("/api/v1/endpoints/boot").await;
    assert_eq!(first["source"], "file");
    gw.stop().await;

    // Same file at the next start: nothing rewritten.
    let gw = Running::start(work.path(), options().with_file(file.clone())).await;
    let (_, second) = gw.get("/api/v1/endpoints/boot").await;
    assert_eq!(second, first);
    gw.stop().await;

    // A broken file at start-up is logged and ignored: the gateway starts
    // and serves what the store has.
    std::fs::write(&file, "this is not toml").unwrap();
    let gw = Running::start(work.path(), options().with_file(file.clone())).await;
    let (status, third) = gw.get("/api/v1/endpoints/boot").await;
    assert_eq!(status, 200);
    assert_eq!(third, first);
    assert_eq!(gw.routed_config("boot").unwrap()["api_key"], "sk-boot");
    gw.stop().await;
}

/// Every operation in the OpenAPI document is served by a real route, and
/// every route is documented.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let work = tempfile::tempdir().unwrap();
    let gw = Running::start(work.path(), options()).await;
    let (status, doc) = gw.get("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));

    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    documented.sort();
    let mut served = vec![
        "GET /api/v1/endpoints",
        "POST /api/v1/endpoints",
        "GET /api/v1/endpoints/{name}",
        "PUT /api/v1/endpoints/{name}",
        "DELETE /api/v1/endpoints/{name}",
        "GET /api/v1/providers",
        "GET /api/v1/plugins",
        "GET /api/v1/openapi.json",
        "GET /api/v1/keys",
        "POST /api/v1/keys",
        "GET /api/v1/keys/{id}",
        "DELETE /api/v1/keys/{id}",
        "GET /api/v1/usage",
        "GET /api/v1/requests",
    ];
    served.sort();
    assert_eq!(documented, served);

    for operation in &documented {
        let (method, path) = operation.split_once(' ').unwrap();
        let path = path.replace("{name}", "no-such-endpoint");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let body = matches!(method, reqwest::Method::POST | reqwest::Method::PUT)
            .then(|| json!({"provider": "openai", "model": "m"}));
        let (status, answer) = gw.call(method, &path, body).await;
        assert_ne!(status, 405, "{operation} not routed");
        assert_ne!(
            error_message(&answer),
            "no such API route",
            "{operation} not routed"
        );
        let documented_statuses = &doc["paths"][operation.split_once(' ').unwrap().1]
            [operation.split_once(' ').unwrap().0.to_lowercase()]["responses"];
        assert!(
            documented_statuses.get(status.to_string()).is_some(),
            "{operation} answered {status}, which is not documented"
        );
    }
    gw.stop().await;
}
