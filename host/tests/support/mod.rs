//! What the in-process host test suites share: the built provider plugins
//! (the openai one above all) and a fake OpenAI upstream that records the headers it receives.
//!
//! Each suite includes this with `mod support;` and uses what it needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::HeaderMap;
use serde_json::json;

/// A built provider plugin, `plugins/<id>.wasm`; fails (does not skip)
/// when it is missing.
pub fn provider_plugin(id: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../plugins/{id}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-plugins first",
        path.display()
    );
    path
}

/// The built openai plugin.
pub fn openai_plugin() -> PathBuf {
    provider_plugin("openai")
}

/// A plugins dir in `work` holding only the openai plugin.
pub fn openai_plugins_dir(work: &Path) -> PathBuf {
    let plugins = work.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(openai_plugin(), plugins.join("openai.wasm")).unwrap();
    plugins
}

/// A compiled-plugin cache dir under the test target dir, one per suite.
pub fn plugin_cache(suite: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{suite}-plugin-cache"))
}

/// A fake OpenAI chat upstream: every answer is "hello" with
/// `prompt_tokens` + `completion_tokens` usage; it records each request's
/// headers.
pub struct FakeOpenAi {
    pub base_url: String,
    headers: Arc<Mutex<Vec<HeaderMap>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeOpenAi {
    pub async fn start(prompt_tokens: u32, completion_tokens: u32) -> FakeOpenAi {
        let headers = Arc::new(Mutex::new(Vec::new()));
        let recorded = headers.clone();
        let chat = move |request_headers: HeaderMap| {
            recorded.lock().unwrap().push(request_headers);
            async move {
                Json(json!({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens}
                }))
            }
        };
        let router: axum::Router = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state(());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeOpenAi {
            base_url,
            headers,
            server,
        }
    }

    /// The headers of every request received so far.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.headers.lock().unwrap().clone()
    }

    /// The `Authorization` header of every request received so far.
    pub fn authorizations(&self) -> Vec<String> {
        self.headers()
            .iter()
            .map(|h| {
                h.get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Upstream clients for a gateway under test.
pub fn upstream_clients() -> portico::routing::UpstreamClients {
    portico::routing::UpstreamClients::new(
        std::time::Duration::from_secs(10),
        &portico::routing::UpstreamTrust::default(),
    )
    .expect("building the HTTP client")
}
