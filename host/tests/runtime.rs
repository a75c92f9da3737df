//! Plugin runtime and registry tests against real components built from
//! tests/plugins/ (run scripts/build-plugins first).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use portico::registry::Registry;
use portico::runtime::{
    CompileSource, LoadError, Plugin, PluginError, PluginRuntime, RuntimeConfig,
};
use portico_model::plugin::{Endpoint, FieldKind, HttpResponse, Operation};
use portico_model::{
    ChatRequest, EmbeddingsRequest, ErrorKind, FinishReason, Message, StreamEvent,
};
use serde_json::Value;

// ---------------------------------------------------------------- helpers

fn plugins_dir() -> PathBuf {
    std::env::var_os("PORTICO_TEST_PLUGINS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins"))
}

/// Path of a built test plugin; fails (does not skip) when it is missing.
fn plugin_path(name: &str) -> PathBuf {
    let path = plugins_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "test plugin {} is missing: run scripts/build-plugins (or set PORTICO_TEST_PLUGINS)",
        path.display()
    );
    path
}

fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin_path(name)).expect("read test plugin")
}

/// Test plugins that every test may load.
const ALL_PLUGINS: [&str; 5] = [
    "test-echo",
    "test-echo-v2",
    "test-bad-describe",
    "test-bad-wit",
    "test-describe-trap",
];

/// A compiled-component cache shared by the tests (and kept between runs),
/// filled once per process: Cranelift in a debug build takes seconds per
/// plugin, and latency assertions must not measure it.
fn shared_cache() -> PathBuf {
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("portico-plugin-cache");
            let cache = dir.clone();
            // Own thread and runtime: callers are inside a Tokio runtime.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let config = RuntimeConfig {
                        cache_dir: Some(cache),
                        ..RuntimeConfig::default()
                    };
                    let runtime = PluginRuntime::new(config, reqwest::Client::new()).unwrap();
                    for name in ALL_PLUGINS {
                        // Load errors (bad test plugins) are expected here.
                        let _ = runtime.load_file(&plugin_path(name)).await;
                    }
                })
            })
            .join()
            .expect("warming the compiled-plugin cache failed (see the panic above)");
            dir
        })
        .clone()
}

fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        call_time_limit: Duration::from_millis(300),
        memory_limit_bytes: 64 << 20,
        cache_dir: Some(shared_cache()),
        ..RuntimeConfig::default()
    }
}

fn runtime_with(config: RuntimeConfig) -> Arc<PluginRuntime> {
    PluginRuntime::new(config, reqwest::Client::new()).expect("runtime")
}

fn runtime() -> Arc<PluginRuntime> {
    runtime_with(test_config())
}

async fn load(runtime: &Arc<PluginRuntime>, name: &str) -> Arc<Plugin> {
    runtime
        .load_file(&plugin_path(name))
        .await
        .unwrap_or_else(|e| panic!("load {name}: {e}"))
}

fn endpoint(config: &[(&str, &str)]) -> Endpoint {
    let mut map: BTreeMap<String, String> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    map.entry("base_url".into())
        .or_insert_with(|| "http://127.0.0.1:9".into());
    Endpoint {
        name: "my-echo".into(),
        model: "echo-1".into(),
        config: map,
    }
}

fn chat(text: &str) -> ChatRequest {
    ChatRequest {
        model: "echo-1".into(),
        messages: vec![Message::user(text)],
        ..ChatRequest::default()
    }
}

/// Runs build-chat-request and returns the echoed body as JSON.
async fn echo(plugin: &Plugin, endpoint: &Endpoint, text: &str) -> Result<Value, PluginError> {
    let request = plugin
        .build_chat_request(endpoint, &chat(text), false)
        .await?;
    Ok(serde_json::from_slice(&request.body).expect("echo body is JSON"))
}

fn ok_response(body: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.into(),
    }
}

fn expect_fault(result: Result<impl std::fmt::Debug, PluginError>, needle: &str) -> String {
    match result {
        Err(e @ PluginError::Fault { .. }) => {
            let message = e.to_string();
            assert!(
                message.contains(needle),
                "fault {message:?} should mention {needle:?}"
            );
            assert!(
                message.starts_with("provider plugin 'test-echo' failed: "),
                "{message}"
            );
            let error = e.into_provider_error();
            assert_eq!(error.status, 502);
            assert_eq!(error.kind, ErrorKind::Upstream);
            message
        }
        other => panic!("expected a fault mentioning {needle:?}, got {other:?}"),
    }
}

/// Polls `check` every 10 ms until it holds or `timeout` passes; returns
/// the time it took.
async fn eventually(timeout: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// A tiny upstream on 127.0.0.1 for http-fetch tests.
async fn upstream() -> (String, u16) {
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    let app = Router::new()
        .route(
            "/token",
            post(|headers: HeaderMap, body: String| async move {
                let from = headers
                    .get("x-from-plugin")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                (
                    [("X-Custom-Header", "Yes")],
                    format!("token for {from}: {body}"),
                )
            }),
        )
        .route("/big", post(|| async { "x".repeat(4096) }))
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "slow token"
            }),
        )
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (format!("http://127.0.0.1:{port}"), port)
}

// ------------------------------------------------------------ load + call

#[tokio::test]
async fn load_describe_and_call() {
    let runtime = runtime();
    let plugin = load(&runtime, "test-echo").await;
    let bytes = plugin_bytes("test-echo");

    assert_eq!(plugin.info.id, "test-echo");
    assert_eq!(plugin.info.version, "1.0.0");
    assert_eq!(plugin.wit_version, "0.1.0");
    assert_eq!(plugin.sha256, {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    });
    assert_eq!(
        plugin.info.operations,
        vec![
            Operation::Chat,
            Operation::ChatStream,
            Operation::Embeddings
        ]
    );
    let kinds: Vec<_> = plugin
        .info
        .config_fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("base_url", FieldKind::Url),
            ("fetch_url", FieldKind::String),
            ("api_key", FieldKind::Secret),
            ("mode", FieldKind::Enum)
        ]
    );
    assert!(plugin.info.models[0].capabilities.tools && plugin.info.models[0].capabilities.vision);
    assert!(!plugin.info.models[0].capabilities.reasoning);
    assert_eq!(
        plugin.info.egress_hosts,
        vec!["egress.test-echo.invalid".to_string()]
    );
    let age = portico_now_ms().saturating_sub(plugin.loaded_at_unix_ms);
    assert!(age < 60_000, "loaded_at should be recent");

    // build-chat-request: the plugin echoes what it got.
    let ep = endpoint(&[
        ("base_url", "https://api.example.com/v1/"),
        ("api_key", "sk-secret"),
    ]);
    let request = plugin
        .build_chat_request(&ep, &chat("hello there"), true)
        .await
        .expect("build");
    assert_eq!(request.method, "POST");
    assert_eq!(request.url, "https://api.example.com/v1/chat");
    assert!(
        request
            .headers
            .contains(&("authorization".into(), "Bearer sk-secret".into()))
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["endpoint"], "my-echo");
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["request"]["messages"][0]["content"][0]["text"],
        "hello there"
    );

    // parse-chat-response.
    let response = plugin
        .parse_chat_response(&ep, ok_response("four words right here"))
        .await
        .expect("parse");
    assert_eq!(response.text(), "four words right here");
    assert_eq!(response.id, "test-echo-1.0.0");
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage.input_tokens, 4);

    // Upstream errors come back typed, not as faults.
    let mut limited = ok_response("too many");
    limited.status = 429;
    limited.headers.push(("retry-after".into(), "3".into()));
    match plugin.parse_chat_response(&ep, limited.clone()).await {
        Err(PluginError::Provider(e)) => {
            assert_eq!(
                (e.kind, e.status, e.retry_after_ms),
                (ErrorKind::RateLimited, 429, Some(3000))
            );
            assert_eq!(e.message, "too many");
        }
        other => panic!("expected a typed error, got {other:?}"),
    }
    let error = plugin.parse_error(&ep, limited).await.expect("parse-error");
    assert_eq!(
        (error.kind, error.retry_after_ms),
        (ErrorKind::RateLimited, Some(3000))
    );

    // A typed error from build.
    match plugin
        .build_chat_request(&endpoint(&[("mode", "error")]), &chat("x"), false)
        .await
    {
        Err(e @ PluginError::Provider(_)) => {
            assert!(!e.is_fault());
            let e = e.into_provider_error();
            assert_eq!(
                (e.kind, e.status, e.retry_after_ms),
                (ErrorKind::RateLimited, 429, Some(1500))
            );
        }
        other => panic!("expected a typed error, got {other:?}"),
    }

    // Embeddings.
    let request = EmbeddingsRequest {
        model: "echo-1".into(),
        inputs: vec!["ab".into(), "abcd".into()],
        ..Default::default()
    };
    let built = plugin
        .build_embeddings_request(&ep, &request)
        .await
        .expect("build embeddings");
    assert_eq!(built.url, "https://api.example.com/v1/embeddings");
    let body: Value = serde_json::from_slice(&built.body).unwrap();
    assert_eq!(body["request"]["inputs"][1], "abcd");
    let parsed = plugin
        .parse_embeddings_response(&ep, ok_response(r#"["ab","abcd"]"#))
        .await
        .expect("parse embeddings");
    assert_eq!(parsed.embeddings, vec![vec![2.0, 1.0], vec![4.0, 1.0]]);

    // Calls reuse pooled instances rather than instantiating every time.
    assert!(plugin.idle_instances() >= 1);
}

fn portico_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn stream_decoder_handles_chunks_split_anywhere() {
    let runtime = runtime();
    let plugin = load(&runtime, "test-echo").await;
    let ep = endpoint(&[]);
    let body = "hello\n\nwörld ünïcödé\nlast line\n".as_bytes();
    let expected = vec![
        StreamEvent::Start {
            id: "test-echo-1.0.0".into(),
            model: "echo-1".into(),
        },
        StreamEvent::TextDelta {
            text: "hello".into(),
        },
        StreamEvent::TextDelta {
            text: "wörld ünïcödé".into(),
        },
        StreamEvent::TextDelta {
            text: "last line".into(),
        },
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        },
    ];
    // Every split into three chunks, including inside multi-byte characters.
    for i in 0..=body.len() {
        for j in (i..=body.len()).step_by(3) {
            let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
            let mut events = Vec::new();
            for chunk in [&body[..i], &body[i..j], &body[j..]] {
                events.extend(decoder.push(chunk).await.expect("push"));
            }
            events.extend(decoder.finish().await.expect("finish"));
            assert_eq!(events, expected, "split at {i}/{j}");
        }
    }
    // Byte by byte.
    let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
    let mut events = Vec::new();
    for byte in body {
        events.extend(
            decoder
                .push(std::slice::from_ref(byte))
                .await
                .expect("push"),
        );
    }
    events.extend(decoder.finish().await.expect("finish"));
    assert_eq!(events, expected);

    // A body cut mid-line is a typed error at finish.
    let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
    decoder.push(b"partial").await.expect("push");
    match decoder.finish().await {
        Err(PluginError::Provider(e)) => assert_eq!(e.message, "stream ended mid-line"),
        other => panic!("expected a typed error, got {other:?}"),
    }
    // Decoders are Send: a stream is decoded in a spawned task. One dropped
    // midway is closed in the background; the plugin keeps working.
    let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
    let events = tokio::spawn(async move {
        let events = decoder.push(b"abandoned\nmid").await.expect("push");
        drop(decoder);
        events
    })
    .await
    .unwrap();
    assert_eq!(events.len(), 2);
    echo(&plugin, &ep, "still fine")
        .await
        .expect("call after abandoned stream");
}

/// test-echo implements contract 0.1.0, whose failing decoder call returns
/// its error alone: chunks fed together still go one call each, so the
/// events of the chunks before an upstream error reach the client first.
#[tokio::test]
async fn feeding_a_0_1_0_decoder_keeps_events_before_an_error() {
    let runtime = runtime();
    let plugin = load(&runtime, "test-echo").await;
    assert_eq!(plugin.wit_version, "0.1.0");
    let ep = endpoint(&[]);

    let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
    let decoded = decoder
        .feed(&[&b"one\ntw"[..], b"o\n", b"three\nERROR\n"])
        .await;
    let texts: Vec<&str> = StreamEvent::text_deltas(&decoded.events).collect();
    // "three" shares the failing call, which 0.1.0 cannot return with it.
    assert_eq!(texts, ["one", "two"]);
    assert!(matches!(decoded.events[0], StreamEvent::Start { .. }));
    match decoded.error {
        Some(PluginError::Provider(e)) => {
            assert_eq!(
                (e.status, e.message.as_str()),
                (502, "upstream stream error")
            )
        }
        other => panic!("expected the decoder's error, got {other:?}"),
    }

    // Without an error, feeding several chunks equals pushing each.
    let mut decoder = plugin.stream_decoder(&ep).await.expect("decoder");
    let decoded = decoder.feed(&[&b"a\nb"[..], b"\nc\n"]).await;
    assert!(decoded.error.is_none());
    assert_eq!(decoded.events.len(), 4, "{:?}", decoded.events);
    let end = decoder.end().await;
    assert!(end.error.is_none());
    assert_eq!(
        end.events,
        [StreamEvent::Finish {
            reason: FinishReason::Stop
        }]
    );
}

/// Holds `count` instances at once (one stream decoder each), then lets
/// them all go back to the pool.
async fn pool_instances(plugin: &Arc<Plugin>, count: usize) {
    let ep = endpoint(&[]);
    let mut decoders = Vec::new();
    for _ in 0..count {
        decoders.push(plugin.stream_decoder(&ep).await.expect("decoder"));
    }
    for mut decoder in decoders {
        decoder.push(b"x\n").await.expect("push");
        decoder.finish().await.expect("finish");
    }
}

#[tokio::test]
async fn idle_instances_are_dropped_after_their_ttl() {
    let ttl = Duration::from_secs(60);
    let runtime = runtime_with(RuntimeConfig {
        idle_instance_ttl: ttl,
        ..test_config()
    });
    let plugin = load(&runtime, "test-echo").await;
    pool_instances(&plugin, 5).await;
    let pooled = plugin.idle_instances();
    assert!(pooled >= 5, "{pooled} pooled");

    // None has been idle for the TTL yet.
    assert_eq!(plugin.trim_idle(Instant::now()), 0);
    assert_eq!(plugin.idle_instances(), pooled);

    // Two used again later: only the others are stale at `older + ttl`.
    let older = Instant::now();
    tokio::time::sleep(Duration::from_millis(30)).await;
    pool_instances(&plugin, 2).await;
    assert_eq!(plugin.idle_instances(), pooled);
    assert_eq!(plugin.trim_idle(older + ttl), pooled - 2);
    assert_eq!(plugin.idle_instances(), 2);

    // Long idle: all go but the most recently used, kept warm.
    assert_eq!(plugin.trim_idle(Instant::now() + 2 * ttl), 1);
    assert_eq!(plugin.idle_instances(), 1);
    assert_eq!(plugin.trim_idle(Instant::now() + 3 * ttl), 0);
    echo(&plugin, &endpoint(&[]), "after trim")
        .await
        .expect("the kept instance serves");
    assert_eq!(plugin.idle_instances(), 1);
}

/// A caller with no time budget of its own: only `busy_wait` bounds it.
const NO_BUDGET: Duration = Duration::MAX;

/// Past `max_concurrent_calls` requests in flight, a request waits for a
/// slot and gets a 503 `Busy` when none frees up in time; a stream keeps
/// its slot until it finishes or is abandoned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_capped_and_streams_keep_their_slot_to_the_end() {
    let wait = Duration::from_millis(300);
    let runtime = runtime_with(RuntimeConfig {
        max_concurrent_calls: 2,
        busy_wait: wait,
        ..test_config()
    });
    let plugin = load(&runtime, "test-echo").await;
    let ep = endpoint(&[]);
    assert_eq!(plugin.requests_in_flight(), 0);

    // Two streams in flight take both slots.
    let mut first = plugin.stream_decoder(&ep).await.expect("decoder");
    first.hold(plugin.reserve(NO_BUDGET).await.expect("slot"));
    let mut second = plugin.stream_decoder(&ep).await.expect("decoder");
    second.hold(plugin.reserve(NO_BUDGET).await.expect("slot"));
    assert_eq!(plugin.requests_in_flight(), 2);

    // A third request waits its full turn, then is refused as overloaded.
    let start = Instant::now();
    let busy = plugin
        .reserve(NO_BUDGET)
        .await
        .expect_err("no slot is free");
    let waited = start.elapsed();
    let message = busy.to_string();
    assert!(
        message.contains("'test-echo' is at its limit of requests in flight (2, "),
        "{message}"
    );
    let error = busy.into_provider_error();
    assert_eq!(error.status, 503);
    assert_eq!(error.kind, ErrorKind::Overloaded);
    assert!(waited >= wait, "refused after {waited:?}, before the wait");
    assert!(waited < wait * 10, "refused only after {waited:?}");

    // A caller whose time budget is shorter than the wait is refused when
    // its budget is spent, not after the whole wait.
    let budget = Duration::from_millis(40);
    let start = Instant::now();
    plugin
        .reserve(budget)
        .await
        .expect_err("no slot is free within the budget");
    let waited = start.elapsed();
    assert!(
        waited >= budget,
        "refused after {waited:?}, before the budget"
    );
    assert!(
        waited < wait,
        "waited {waited:?}, past the budget of {budget:?}"
    );

    // One that arrives while full gets the slot of the stream that ends.
    let waiting = {
        let plugin = plugin.clone();
        tokio::spawn(async move { plugin.reserve(NO_BUDGET).await.map(|_slot| Instant::now()) })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.push(b"x\n").await.expect("push");
    let finished = Instant::now();
    first.finish().await.expect("finish");
    let served = waiting
        .await
        .unwrap()
        .expect("the waiting request gets a slot");
    assert!(served >= finished, "served before the stream ended");

    // An abandoned stream (client gone) frees its slot too.
    drop(second);
    assert_eq!(plugin.requests_in_flight(), 0);

    // Plugin calls themselves take no slot: a request holding one runs
    // its calls (and conformance checks run) whatever the load.
    let _a = plugin.reserve(NO_BUDGET).await.expect("slot");
    let _b = plugin.reserve(NO_BUDGET).await.expect("slot");
    echo(&plugin, &ep, "still served")
        .await
        .expect("a call of a request in flight");
}

#[tokio::test]
async fn registry_trims_idle_instances_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("test-echo", &dir.path().join("echo.wasm"));
    let runtime = runtime_with(RuntimeConfig {
        idle_instance_ttl: Duration::from_millis(200),
        ..test_config()
    });
    let registry = Registry::load_dir(runtime, dir.path().to_path_buf())
        .await
        .unwrap();
    let _trim = registry.trim_idle_periodically();
    let plugin = registry.get("test-echo").expect("loaded");
    pool_instances(&plugin, 6).await;
    let idle_in_status = || {
        registry
            .statuses()
            .iter()
            .find(|status| status.id.as_deref() == Some("test-echo"))
            .map(|status| status.idle_instances)
    };
    assert!(idle_in_status() >= Some(6), "{:?}", idle_in_status());
    // Within a TTL and a half (plus slack for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(5);
    while plugin.idle_instances() > 1 {
        assert!(
            Instant::now() < deadline,
            "{} still idle",
            plugin.idle_instances()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(idle_in_status(), Some(1));
    echo(&plugin, &endpoint(&[]), "after trim")
        .await
        .expect("still serves");
}

// ----------------------------------------------------------- load failures

#[tokio::test]
async fn rejects_files_that_are_not_components() {
    let runtime = runtime();
    let dir = tempfile::tempdir().unwrap();

    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").unwrap();
    let err = runtime.load_file(&garbage).await.unwrap_err();
    assert!(matches!(err, LoadError::NotComponent(_)), "{err:?}");
    assert_eq!(err.to_string(), "not a WebAssembly component");

    let module = dir.path().join("module.wasm");
    std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
    let err = runtime.load_file(&module).await.unwrap_err().to_string();
    assert!(
        err.starts_with("not a WebAssembly component (it is a core module"),
        "{err}"
    );

    // A truncated component (e.g. caught mid-copy).
    let bytes = plugin_bytes("test-echo");
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = runtime.load_file(&truncated).await.unwrap_err();
    assert!(matches!(err, LoadError::Compile(_)), "{err:?}");
    assert!(err.to_string().starts_with("invalid component: "), "{err}");

    let err = runtime
        .load_file(&dir.path().join("missing.wasm"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Io { .. }), "{err:?}");
}

#[tokio::test]
async fn a_plugin_of_a_contract_before_0_3_0_cannot_count_tokens() {
    let runtime = runtime();
    let plugin = load(&runtime, "test-echo").await;
    assert_eq!(plugin.wit_version, "0.1.0");
    let endpoint = endpoint(&[]);
    let refused = plugin
        .build_count_tokens_request(&endpoint, &chat("x"))
        .await
        .unwrap_err();
    let refused_answer = plugin
        .parse_count_tokens_response(&endpoint, ok_response("{}"))
        .await
        .unwrap_err();
    for error in [refused, refused_answer] {
        match error {
            PluginError::Provider(error) => {
                assert_eq!((error.kind, error.status), (ErrorKind::InvalidRequest, 400));
                assert!(
                    error
                        .message
                        .starts_with("endpoint 'my-echo' cannot count tokens")
                        && error.message.contains("0.3.0"),
                    "{}",
                    error.message
                );
            }
            other => panic!("expected a typed error, got {other:?}"),
        }
    }
    // Answered without entering the plugin: the instance is still usable.
    assert!(echo(&plugin, &endpoint, "still here").await.is_ok());
}

#[tokio::test]
async fn rejects_wit_incompatible_component() {
    let runtime = runtime();
    let err = runtime
        .load_file(&plugin_path("test-bad-wit"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::IncompatibleWit(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "incompatible WIT: component exports gateway:provider/provider@9.9.9; \
         this host supports gateway:provider@0.3.0, gateway:provider@0.2.0, gateway:provider@0.1.0"
    );
}

#[tokio::test]
async fn rejects_invalid_provider_info() {
    let runtime = runtime();
    let err = runtime
        .load_file(&plugin_path("test-bad-describe"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::InvalidInfo(_)), "{err:?}");
    assert_eq!(err.to_string(), "invalid provider info: empty id");
}

#[tokio::test]
async fn rejects_plugin_whose_describe_traps() {
    let runtime = runtime();
    let err = runtime
        .load_file(&plugin_path("test-describe-trap"))
        .await
        .unwrap_err();
    assert!(matches!(err, LoadError::Describe(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "describe failed: trapped: wasm `unreachable` instruction executed"
    );
}

// ------------------------------------------------------------------ faults

/// One faulting call among concurrent good ones: only it fails, and the
/// plugin keeps serving.
async fn fault_is_contained(plugin: Arc<Plugin>, mode: &str, needle: &str) {
    let bad = {
        let plugin = plugin.clone();
        let mode = mode.to_string();
        tokio::spawn(async move { echo(&plugin, &endpoint(&[("mode", &mode)]), "boom").await })
    };
    let good: Vec<_> = (0..8)
        .map(|i| {
            let plugin = plugin.clone();
            tokio::spawn(async move { echo(&plugin, &endpoint(&[]), &format!("good {i}")).await })
        })
        .collect();
    for (i, call) in good.into_iter().enumerate() {
        let body = call
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("good call {i} failed during {mode}: {e}"));
        assert_eq!(
            body["request"]["messages"][0]["content"][0]["text"],
            format!("good {i}")
        );
    }
    expect_fault(bad.await.unwrap(), needle);
    // The host is healthy: the next calls work.
    for _ in 0..3 {
        echo(&plugin, &endpoint(&[]), "after")
            .await
            .unwrap_or_else(|e| panic!("call after {mode} failed: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_fails_only_that_call() {
    let plugin = load(&runtime(), "test-echo").await;
    fault_is_contained(
        plugin,
        "trap",
        "trapped: wasm `unreachable` instruction executed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_hits_cpu_limit() {
    let plugin = load(&runtime(), "test-echo").await;
    let start = Instant::now();
    fault_is_contained(plugin, "spin", "exceeded its CPU time limit (300 ms)").await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "CPU limit took {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbounded_allocation_hits_memory_limit() {
    let plugin = load(&runtime(), "test-echo").await;
    fault_is_contained(plugin, "hog", "exceeded its memory limit (64 MiB)").await;
}

/// On a single-threaded runtime a spinning plugin must still yield, so
/// other calls complete long before its CPU budget runs out.
#[tokio::test(flavor = "current_thread")]
async fn spinning_plugin_does_not_block_the_worker() {
    let runtime = runtime_with(RuntimeConfig {
        call_time_limit: Duration::from_secs(2),
        ..test_config()
    });
    let plugin = load(&runtime, "test-echo").await;
    let start = Instant::now();
    let spin = {
        let plugin = plugin.clone();
        tokio::spawn(async move { echo(&plugin, &endpoint(&[("mode", "spin")]), "spin").await })
    };
    tokio::task::yield_now().await;
    let mut good_done = Duration::ZERO;
    for i in 0..5 {
        echo(&plugin, &endpoint(&[]), &format!("good {i}"))
            .await
            .expect("good call");
        good_done = start.elapsed();
    }
    expect_fault(spin.await.unwrap(), "exceeded its CPU time limit (2000 ms)");
    let spin_done = start.elapsed();
    assert!(
        good_done < spin_done / 2,
        "good calls finished at {good_done:?}, spin at {spin_done:?}"
    );
}

#[tokio::test]
async fn bad_json_and_stream_faults() {
    let runtime = runtime();
    let plugin = load(&runtime, "test-echo").await;
    let result = plugin
        .parse_chat_response(&endpoint(&[("mode", "bad-json")]), ok_response("x"))
        .await;
    expect_fault(result, "returned invalid JSON from parse-chat-response");
    let result = plugin
        .parse_embeddings_response(&endpoint(&[("mode", "bad-json")]), ok_response("x"))
        .await;
    expect_fault(
        result,
        "returned invalid JSON from parse-embeddings-response",
    );

    // A fault mid-stream fails that stream only; the decoder is closed.
    let mut decoder = plugin
        .stream_decoder(&endpoint(&[]))
        .await
        .expect("decoder");
    let mut other = plugin
        .stream_decoder(&endpoint(&[]))
        .await
        .expect("decoder");
    assert_eq!(decoder.push(b"one\n").await.expect("push").len(), 2);
    expect_fault(decoder.push(b"TRAP\n").await, "trapped");
    expect_fault(
        decoder.push(b"more\n").await,
        "used after it finished or failed",
    );
    let mut spinning = plugin
        .stream_decoder(&endpoint(&[]))
        .await
        .expect("decoder");
    expect_fault(spinning.push(b"SPIN\n").await, "CPU time limit");
    // The other stream is unaffected.
    let events = other.push(b"two\n").await.expect("push");
    assert_eq!(events[1], StreamEvent::TextDelta { text: "two".into() });
    other.finish().await.expect("finish");
    // Faults in the decoder constructor too.
    expect_fault(
        plugin
            .stream_decoder(&endpoint(&[("mode", "trap")]))
            .await
            .map(|_| ()),
        "trapped",
    );
    echo(&plugin, &endpoint(&[]), "healthy")
        .await
        .expect("healthy");
}

// -------------------------------------------------------------- host calls

#[tokio::test]
async fn http_fetch_allow_list() {
    let (base, port) = upstream().await;
    let runtime = runtime_with(RuntimeConfig {
        call_time_limit: Duration::from_millis(200),
        http_fetch_timeout: Duration::from_millis(2000),
        http_fetch_max_bytes: 1024,
        ..test_config()
    });
    let plugin = load(&runtime, "test-echo").await;

    // Allowed: the host of the endpoint's `url` field (base_url).
    let body = echo(
        &plugin,
        &endpoint(&[("base_url", &base), ("mode", "fetch")]),
        "x",
    )
    .await
    .expect("fetch");
    assert_eq!(body["host"]["fetch"]["status"], 200, "{body}");
    assert_eq!(
        body["host"]["fetch"]["body"],
        "token for test-echo: token please"
    );
    let headers = body["host"]["fetch"]["headers"].as_array().unwrap();
    assert!(
        headers
            .iter()
            .any(|h| h[0] == "x-custom-header" && h[1] == "Yes"),
        "{headers:?}"
    );

    // Refused: another host (same machine, other name), a `string` field's
    // host, another port of the allowed host.
    for url in [
        format!("http://localhost:{port}/token"),
        "http://example.com/token".to_string(),
        format!("http://127.0.0.1:{}/token", port.wrapping_add(1)),
    ] {
        let ep = endpoint(&[("base_url", &base), ("mode", "fetch"), ("fetch_url", &url)]);
        let body = echo(&plugin, &ep, "x").await.expect("call");
        let error = body["host"]["fetch_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{url} allowed: {body}"));
        assert!(error.starts_with("host not allowed: "), "{error}");
    }

    // Declared egress hosts are allowed (this one does not resolve, so the
    // request fails at connect, not at the allow-list).
    let ep = endpoint(&[
        ("base_url", &base),
        ("mode", "fetch"),
        ("fetch_url", "http://egress.test-echo.invalid/x"),
    ]);
    let body = echo(&plugin, &ep, "x").await.expect("call");
    let error = body["host"]["fetch_error"].as_str().unwrap();
    assert!(error.starts_with("http-fetch "), "{error}");

    // Response size cap.
    let ep = endpoint(&[
        ("base_url", &base),
        ("mode", "fetch"),
        ("fetch_url", &format!("{base}/big")),
    ]);
    let body = echo(&plugin, &ep, "x").await.expect("call");
    assert_eq!(
        body["host"]["fetch_error"],
        "response body exceeds 1024 bytes"
    );

    // Time awaiting the upstream (800 ms) is not charged to the plugin's
    // CPU budget (200 ms).
    let ep = endpoint(&[
        ("base_url", &base),
        ("mode", "fetch"),
        ("fetch_url", &format!("{base}/slow")),
    ]);
    let body = echo(&plugin, &ep, "x")
        .await
        .expect("slow fetch must not hit the CPU limit");
    assert_eq!(body["host"]["fetch"]["body"], "slow token");

    // Fetch timeout.
    let quick = runtime_with(RuntimeConfig {
        http_fetch_timeout: Duration::from_millis(100),
        ..test_config()
    });
    let plugin = load(&quick, "test-echo").await;
    let body = echo(&plugin, &ep, "x").await.expect("call");
    assert_eq!(
        body["host"]["fetch_error"],
        "http-fetch timed out after 100 ms"
    );
}

#[tokio::test]
async fn plugin_cache_is_per_provider_and_survives_reload() {
    let runtime = runtime();
    let v1 = load(&runtime, "test-echo").await;
    let ep = endpoint(&[("mode", "cache")]);
    for expected in 1..=3 {
        assert_eq!(
            echo(&v1, &ep, "x").await.unwrap()["host"]["counter"],
            expected
        );
    }
    // A new version of the same provider id sees the same cache.
    let v2 = load(&runtime, "test-echo-v2").await;
    assert_eq!(v2.info.version, "2.0.0");
    assert_eq!(echo(&v2, &ep, "x").await.unwrap()["host"]["counter"], 4);
    // Another runtime (another process) starts empty.
    let other = load(&runtime_with(test_config()), "test-echo").await;
    assert_eq!(echo(&other, &ep, "x").await.unwrap()["host"]["counter"], 1);
}

#[test]
fn plugin_log_lines_are_tagged_and_redacted() {
    use std::io::Write;
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let plugin = load(&runtime(), "test-echo").await;
            let body = echo(
                &plugin,
                &endpoint(&[("mode", "log"), ("api_key", "sk-very-secret")]),
                "x",
            )
            .await
            .unwrap();
            let now = body["host"]["now"].as_u64().unwrap();
            assert!(now.abs_diff(portico_now_ms()) < 60_000, "now-unix-ms {now}");
        });
    });
    let logs = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("test-echo log line"))
        .unwrap_or_else(|| panic!("no log line in {logs}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("plugin=\"test-echo\""), "{line}");
    assert!(line.contains("key=[redacted]"), "{line}");
    assert!(
        !logs.contains("sk-very-secret"),
        "secret leaked into logs: {logs}"
    );
}

// -------------------------------------------------------------- disk cache

#[tokio::test]
async fn compiled_components_are_cached_on_disk() {
    let cache = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..test_config()
    };

    let first = load(&runtime_with(config()), "test-echo").await;
    assert_eq!(first.compile_source(), CompileSource::CompiledAndCached);
    let runtime = runtime_with(config());
    let entry = runtime.cache_file(&first.sha256).unwrap();
    assert!(entry.is_file(), "cache entry {} missing", entry.display());
    let name = entry.file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with(&format!("{}-", first.sha256)) && name.ends_with(".cwasm"),
        "{name}"
    );

    // A new runtime (a restart) loads from the cache, and it works.
    let second = load(&runtime, "test-echo").await;
    assert_eq!(second.compile_source(), CompileSource::Cache);
    echo(&second, &endpoint(&[]), "cached")
        .await
        .expect("cached plugin works");

    // Corrupt entries (a flipped byte, truncation) are ignored and
    // rewritten.
    let good = std::fs::read(&entry).unwrap();
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0xff;
    for bad in [flipped, good[..good.len() / 3].to_vec()] {
        std::fs::write(&entry, &bad).unwrap();
        let plugin = load(&runtime_with(config()), "test-echo").await;
        assert_eq!(plugin.compile_source(), CompileSource::CompiledAndCached);
        echo(&plugin, &endpoint(&[]), "recompiled")
            .await
            .expect("recompiled plugin works");
        assert_eq!(
            load(&runtime_with(config()), "test-echo")
                .await
                .compile_source(),
            CompileSource::Cache
        );
    }
    // No temp files left behind.
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // Without a cache dir nothing is cached.
    let plain = load(
        &runtime_with(RuntimeConfig {
            cache_dir: None,
            ..test_config()
        }),
        "test-echo",
    )
    .await;
    assert_eq!(plain.compile_source(), CompileSource::Compiled);
}

// ---------------------------------------------------------------- registry

fn copy_plugin(name: &str, to: &Path) {
    // Write-then-rename, as a deploy would; the temp name is ignored.
    let tmp = to.with_file_name(format!(
        ".{}.tmp",
        to.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::write(&tmp, plugin_bytes(name)).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

fn status<'a>(
    statuses: &'a [portico::registry::PluginStatus],
    file: &str,
) -> &'a portico::registry::PluginStatus {
    statuses
        .iter()
        .find(|s| s.file == file)
        .unwrap_or_else(|| panic!("no status for {file}: {statuses:?}"))
}

#[tokio::test]
async fn registry_loads_dir_and_records_failures() {
    let dir = tempfile::tempdir().unwrap();
    copy_plugin("test-echo", &dir.path().join("echo.wasm"));
    copy_plugin("test-echo-v2", &dir.path().join("echo-copy.wasm"));
    copy_plugin("test-bad-wit", &dir.path().join("bad-wit.wasm"));
    std::fs::write(dir.path().join("garbage.wasm"), b"nope").unwrap();
    std::fs::write(dir.path().join("README.md"), b"not a plugin").unwrap();
    std::fs::write(dir.path().join(".hidden.wasm"), b"temp file").unwrap();

    let registry = Registry::load_dir(runtime(), dir.path().to_path_buf())
        .await
        .expect("load_dir");
    let plugins = registry.plugins();
    assert_eq!(plugins.len(), 1);
    // Files load in name order: echo-copy.wasm claims the id first.
    assert_eq!(plugins[0].info.version, "2.0.0");

    let statuses = registry.statuses();
    let files: Vec<_> = statuses.iter().map(|s| s.file.as_str()).collect();
    assert_eq!(
        files,
        vec![
            "bad-wit.wasm",
            "echo-copy.wasm",
            "echo.wasm",
            "garbage.wasm"
        ]
    );
    let loaded = status(&statuses, "echo-copy.wasm");
    assert_eq!(loaded.status, "loaded");
    assert_eq!(loaded.id.as_deref(), Some("test-echo"));
    assert_eq!(loaded.display_name.as_deref(), Some("Test Echo"));
    assert_eq!(loaded.wit_version.as_deref(), Some("0.1.0"));
    assert_eq!(
        loaded.operations,
        vec![
            Operation::Chat,
            Operation::ChatStream,
            Operation::Embeddings
        ]
    );
    assert!(loaded.loaded_at.as_deref().unwrap().ends_with('Z'));
    assert!(loaded.last_error.is_none());
    let dup = status(&statuses, "echo.wasm");
    assert_eq!(dup.status, "failed");
    assert_eq!(
        dup.last_error.as_deref(),
        Some("provider id 'test-echo' is already supplied by echo-copy.wasm")
    );
    assert!(
        status(&statuses, "bad-wit.wasm")
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("incompatible WIT: ")
    );
    assert_eq!(
        status(&statuses, "garbage.wasm").last_error.as_deref(),
        Some("not a WebAssembly component")
    );
    let json = serde_json::to_value(&statuses).unwrap();
    assert_eq!(json[0]["status"], "failed");

    // Once the file holding the id goes, the other one takes over.
    std::fs::remove_file(dir.path().join("echo-copy.wasm")).unwrap();
    registry.rescan().await.unwrap();
    assert_eq!(
        registry.get("test-echo").expect("loaded").info.version,
        "1.0.0"
    );
    assert_eq!(status(&registry.statuses(), "echo.wasm").status, "loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_under_load() {
    let (base, _) = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    copy_plugin("test-echo", &file);
    let registry = Registry::load_dir(runtime(), dir.path().to_path_buf())
        .await
        .unwrap();
    let _watch = registry.watch().expect("watch");
    let v1 = registry.get("test-echo").expect("v1 loaded");
    assert_eq!(v1.info.version, "1.0.0");

    // In flight before the swap: a stream, and a call awaiting a slow
    // http-fetch (800 ms).
    let mut stream = v1.stream_decoder(&endpoint(&[])).await.expect("decoder");
    let slow_call = {
        let plugin = registry.get("test-echo").unwrap();
        let ep = endpoint(&[
            ("base_url", &base),
            ("mode", "fetch"),
            ("fetch_url", &format!("{base}/slow")),
        ]);
        tokio::spawn(async move { echo(&plugin, &ep, "slow").await })
    };
    // Steady traffic through the registry during the swap.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let registry = registry.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut versions = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let plugin = registry.get("test-echo").expect("always served");
                let body = echo(&plugin, &endpoint(&[]), "traffic")
                    .await
                    .expect("call during swap");
                versions.push(body["version"].as_str().unwrap().to_string());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            versions
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    copy_plugin("test-echo-v2", &file);
    let took = eventually(Duration::from_secs(10), "v2 to be served", || {
        registry
            .get("test-echo")
            .is_some_and(|p| p.info.version == "2.0.0")
    })
    .await;
    assert!(took < Duration::from_secs(1), "swap took {took:?}");

    // The in-flight call and stream finish on v1.
    let body = slow_call.await.unwrap().expect("in-flight call");
    assert_eq!(body["version"], "1.0.0");
    assert_eq!(body["host"]["fetch"]["body"], "slow token");
    let mut events = stream.push(b"after the swap\n").await.expect("push");
    events.extend(stream.finish().await.expect("finish"));
    assert_eq!(
        events[0],
        StreamEvent::Start {
            id: "test-echo-1.0.0".into(),
            model: "echo-1".into()
        }
    );
    assert_eq!(
        events[1],
        StreamEvent::TextDelta {
            text: "after the swap".into()
        }
    );
    assert_eq!(stream.plugin().info.version, "1.0.0");

    // New calls and streams see v2.
    let v2 = registry.get("test-echo").unwrap();
    assert_eq!(
        echo(&v2, &endpoint(&[]), "new").await.unwrap()["version"],
        "2.0.0"
    );
    let mut stream = v2.stream_decoder(&endpoint(&[])).await.unwrap();
    assert_eq!(
        stream.push(b"x\n").await.unwrap()[0],
        StreamEvent::Start {
            id: "test-echo-2.0.0".into(),
            model: "echo-1".into()
        }
    );

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let versions = traffic.await.unwrap();
    assert!(
        versions.len() > 10,
        "only {} calls during the swap",
        versions.len()
    );
    let switch = versions
        .iter()
        .position(|v| v == "2.0.0")
        .expect("traffic saw v2");
    assert!(
        versions[..switch].iter().all(|v| v == "1.0.0")
            && versions[switch..].iter().all(|v| v == "2.0.0"),
        "{versions:?}"
    );
    let s = registry.statuses();
    assert_eq!(status(&s, "echo.wasm").version.as_deref(), Some("2.0.0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_update_keeps_old_version_then_partial_write_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.wasm");
    copy_plugin("test-echo", &file);
    let registry = Registry::load_dir(runtime(), dir.path().to_path_buf())
        .await
        .unwrap();
    let _watch = registry.watch().expect("watch");

    // A corrupt file is rejected; v1 keeps serving.
    std::fs::write(&file, b"\0asm\x0d\0\x01\0 corrupted").unwrap();
    eventually(
        Duration::from_secs(10),
        "the corrupt file to be rejected",
        || {
            status(&registry.statuses(), "echo.wasm")
                .last_error
                .is_some()
        },
    )
    .await;
    let s = registry.statuses();
    let st = status(&s, "echo.wasm");
    assert_eq!(st.status, "loaded");
    assert_eq!(st.version.as_deref(), Some("1.0.0"));
    assert!(
        st.last_error
            .as_deref()
            .unwrap()
            .starts_with("invalid component: "),
        "{st:?}"
    );
    let plugin = registry.get("test-echo").expect("old version still served");
    assert_eq!(
        echo(&plugin, &endpoint(&[]), "x").await.unwrap()["version"],
        "1.0.0"
    );

    // A WIT-incompatible replacement is rejected the same way.
    copy_plugin("test-bad-wit", &file);
    eventually(
        Duration::from_secs(10),
        "the bad-WIT file to be rejected",
        || {
            status(&registry.statuses(), "echo.wasm")
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with("incompatible WIT"))
        },
    )
    .await;
    assert_eq!(registry.get("test-echo").unwrap().info.version, "1.0.0");

    // A new build written in two steps, slower than the debounce: the
    // half-written file fails without evicting v1, then the complete file
    // loads.
    let v2 = plugin_bytes("test-echo-v2");
    let half = v2.len() / 2;
    std::fs::write(&file, &v2[..half]).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(registry.get("test-echo").unwrap().info.version, "1.0.0");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&file)
            .unwrap();
        f.write_all(&v2[half..]).unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "v2 after the write completed",
        || {
            registry
                .get("test-echo")
                .is_some_and(|p| p.info.version == "2.0.0")
        },
    )
    .await;
    let s = registry.statuses();
    assert!(status(&s, "echo.wasm").last_error.is_none(), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_loads_new_files_and_unloads_removed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::load_dir(runtime(), dir.path().to_path_buf())
        .await
        .unwrap();
    let _watch = registry.watch().expect("watch");
    assert!(registry.plugins().is_empty());

    let file = dir.path().join("echo.wasm");
    copy_plugin("test-echo", &file);
    let took = eventually(Duration::from_secs(10), "the new file to load", || {
        registry.get("test-echo").is_some()
    })
    .await;
    assert!(took < Duration::from_secs(1), "load took {took:?}");
    let held = registry.get("test-echo").unwrap();

    // Non-plugin files are ignored.
    std::fs::write(dir.path().join("notes.txt"), b"hi").unwrap();

    std::fs::remove_file(&file).unwrap();
    let took = eventually(Duration::from_secs(10), "the provider to unload", || {
        registry.get("test-echo").is_none()
    })
    .await;
    assert!(took < Duration::from_secs(1), "unload took {took:?}");
    assert!(registry.statuses().is_empty(), "{:?}", registry.statuses());
    // A request still holding the removed version finishes on it.
    assert_eq!(
        echo(&held, &endpoint(&[]), "x").await.unwrap()["version"],
        "1.0.0"
    );

    // Dropping the guard stops watching.
    drop(_watch);
    copy_plugin("test-echo", &file);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(registry.get("test-echo").is_none());
}
