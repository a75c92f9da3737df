//! Targets, retries, fallbacks and the circuit breaker through the real
//! `Gateway` and openai plugin (plugins/openai.wasm; run
//! scripts/build-plugins first), against in-process fake upstreams with
//! scripted faults. Checks what the hooks are told (`Served`: the target
//! used, attempts, fallbacks) and what each upstream received.

mod support;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use portico::endpoints::{EndpointDef, EndpointTable};
use portico::policy::{CircuitBreaker, EndpointPolicy, RetryPolicy, Target, Timeouts};
use portico::registry::Registry;
use portico::routing::{CallContext, CallHooks, CallRecord, Gateway, UpstreamTimeouts};
use portico::runtime::{PluginRuntime, RuntimeConfig};
use portico_model::plugin::Dialect;
use portico_model::{ChatRequest, ContentPart, Message, StreamEvent};
use serde_json::{Value, json};

// ------------------------------------------------------------ fake upstream

#[derive(Debug, Clone, Copy)]
enum Fault {
    Ok,
    Status(u16),
    /// 429 with `Retry-After` in seconds.
    RateLimited(u64),
    Hang,
}

#[derive(Default)]
struct Upstream {
    script: Mutex<VecDeque<Fault>>,
    default: Mutex<Option<Fault>>,
    /// (arrival, body) of every request.
    seen: Mutex<Vec<(Instant, Value)>>,
}

struct Fake {
    state: Arc<Upstream>,
    base_url: String,
}

impl Fake {
    async fn start(name: &'static str) -> Fake {
        let state = Arc::new(Upstream::default());
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(chat))
            .with_state((name, state.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { state, base_url }
    }

    fn script(&self, faults: &[Fault]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(faults.iter().copied());
    }

    fn always(&self, fault: Fault) {
        *self.state.default.lock().unwrap() = Some(fault);
    }

    fn seen(&self) -> Vec<(Instant, Value)> {
        self.state.seen.lock().unwrap().clone()
    }

    fn def(&self, name: &str) -> EndpointDef {
        EndpointDef {
            name: name.into(),
            provider: "openai".into(),
            model: "fake-model".into(),
            config: BTreeMap::from([
                ("api_key".into(), "sk-test".into()),
                ("base_url".into(), self.base_url.clone()),
            ]),
            policy: EndpointPolicy::default(),
        }
    }
}

async fn chat(
    State((name, state)): State<(&'static str, Arc<Upstream>)>,
    _headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    state
        .seen
        .lock()
        .unwrap()
        .push((Instant::now(), body.clone()));
    let fault = state
        .script
        .lock()
        .unwrap()
        .pop_front()
        .or(*state.default.lock().unwrap())
        .unwrap_or(Fault::Ok);
    let error = |status: u16| {
        (
            StatusCode::from_u16(status).unwrap(),
            Json(
                json!({"error": {"message": format!("injected {status}"), "type": "server_error"}}),
            ),
        )
    };
    match fault {
        Fault::Status(status) => error(status).into_response(),
        Fault::RateLimited(secs) => {
            let mut response = error(429).into_response();
            response
                .headers_mut()
                .insert("retry-after", secs.to_string().parse().unwrap());
            response
        }
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            error(500).into_response()
        }
        Fault::Ok if body["stream"] == json!(true) => {
            let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": name}, "finish_reason": null}]});
            let end = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "fake-model",
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            let sse = format!("data: {chunk}\n\ndata: {end}\n\ndata: [DONE]\n\n");
            ([("content-type", "text/event-stream")], sse).into_response()
        }
        Fault::Ok => Json(json!({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": name}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        }))
        .into_response(),
    }
}

// ----------------------------------------------------------------- gateway

#[derive(Default)]
struct Records(Mutex<Vec<CallRecord>>);

impl CallHooks for Records {
    fn finished(&self, _ctx: &CallContext, record: &CallRecord) {
        self.0.lock().unwrap().push(record.clone());
    }
}

struct Harness {
    gateway: Gateway,
    records: Arc<Records>,
    _work: tempfile::TempDir,
}

impl Harness {
    async fn new(defs: Vec<EndpointDef>) -> Harness {
        let work = tempfile::tempdir().unwrap();
        let plugins = support::openai_plugins_dir(work.path());
        let runtime = PluginRuntime::new(
            RuntimeConfig {
                cache_dir: Some(support::plugin_cache("resilience")),
                ..RuntimeConfig::default()
            },
            reqwest::Client::new(),
        )
        .unwrap();
        let registry = Registry::load_dir(runtime, plugins).await.unwrap();
        let records = Arc::new(Records::default());
        let gateway = Gateway::new(
            registry,
            Arc::new(EndpointTable::new(defs)),
            support::upstream_clients(),
            UpstreamTimeouts {
                request: Duration::from_secs(10),
                stream_idle: Duration::from_secs(10),
            },
        )
        .with_hooks(records.clone());
        Harness {
            gateway,
            records,
            _work: work,
        }
    }

    async fn ask(&self, endpoint: &str) -> Result<String, portico_model::ProviderError> {
        let request = ChatRequest {
            messages: vec![Message::user("hello")],
            ..ChatRequest::default()
        };
        let response = self
            .gateway
            .chat(&CallContext::new(Dialect::Openai), endpoint, request)
            .await?;
        Ok(response
            .content
            .iter()
            .filter_map(|part| match part {
                ContentPart::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect())
    }

    fn last(&self) -> CallRecord {
        self.records.0.lock().unwrap().last().cloned().unwrap()
    }
}

fn router(targets: &[&str], fallbacks: &[&str]) -> EndpointDef {
    EndpointDef {
        name: "router".into(),
        provider: String::new(),
        model: String::new(),
        config: BTreeMap::new(),
        policy: EndpointPolicy {
            targets: targets
                .iter()
                .map(|t| Target {
                    endpoint: (*t).into(),
                    weight: 1,
                })
                .collect(),
            fallbacks: fallbacks.iter().map(|f| (*f).into()).collect(),
            ..EndpointPolicy::default()
        },
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn retries_then_falls_back_and_reports_what_served() {
    let (primary, backup) = (Fake::start("primary").await, Fake::start("backup").await);
    let mut r = router(&["p"], &["b"]);
    r.policy.retry = RetryPolicy {
        max_attempts: 2,
        initial_backoff_ms: 10,
        max_backoff_ms: 20,
    };
    let h = Harness::new(vec![primary.def("p"), backup.def("b"), r]).await;

    primary.script(&[Fault::Status(500), Fault::Status(503)]);
    assert_eq!(h.ask("router").await.unwrap(), "backup");
    let record = h.last();
    assert_eq!(record.endpoint, "router");
    assert_eq!(record.served.target, "b");
    assert_eq!(record.served.provider, "openai");
    assert_eq!((record.served.attempts, record.served.fallbacks), (3, 1));
    assert_eq!(record.status, 200);
    // Each upstream got the same request, with the target's model.
    let sent = primary.seen();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].1, sent[1].1);
    assert_eq!(sent[0].1["model"], "fake-model");
    assert_eq!(backup.seen().len(), 1);

    // A retry that works stays on the primary.
    primary.script(&[Fault::Status(502)]);
    assert_eq!(h.ask("router").await.unwrap(), "primary");
    let record = h.last();
    assert_eq!(
        (
            record.served.target.as_str(),
            record.served.attempts,
            record.served.fallbacks
        ),
        ("p", 2, 0)
    );

    // Client errors are final: no retry, no fallback.
    primary.script(&[Fault::Status(400)]);
    let error = h.ask("router").await.unwrap_err();
    assert_eq!(error.status, 400);
    assert_eq!(h.last().served.attempts, 1);
    assert_eq!(backup.seen().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honoured_or_skipped_when_too_long() {
    let (primary, backup) = (Fake::start("primary").await, Fake::start("backup").await);
    let mut r = router(&["p"], &["b"]);
    r.policy.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 10,
        max_backoff_ms: 1_500,
    };
    let h = Harness::new(vec![primary.def("p"), backup.def("b"), r]).await;
    primary.script(&[Fault::RateLimited(1)]);
    assert_eq!(h.ask("router").await.unwrap(), "primary");
    let seen = primary.seen();
    assert_eq!(seen.len(), 2);
    assert!(seen[1].0 - seen[0].0 >= Duration::from_millis(950));

    primary.script(&[Fault::RateLimited(10)]);
    let started = Instant::now();
    assert_eq!(h.ask("router").await.unwrap(), "backup");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(primary.seen().len(), 3);
}

#[tokio::test]
async fn attempt_timeout_falls_back_and_total_timeout_ends_the_call() {
    let (primary, backup) = (Fake::start("primary").await, Fake::start("backup").await);
    let mut r = router(&["p"], &["b"]);
    r.policy.timeouts = Timeouts {
        connect_ms: Some(500),
        attempt_ms: Some(300),
        total_ms: Some(500),
    };
    let h = Harness::new(vec![primary.def("p"), backup.def("b"), r]).await;
    primary.script(&[Fault::Hang]);
    assert_eq!(h.ask("router").await.unwrap(), "backup");
    primary.script(&[Fault::Hang]);
    backup.script(&[Fault::Hang]);
    let started = Instant::now();
    let error = h.ask("router").await.unwrap_err();
    assert_eq!(error.status, 504);
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test]
async fn breaker_skips_an_open_target_and_answers_503_when_all_are_open() {
    let (primary, backup) = (Fake::start("primary").await, Fake::start("backup").await);
    let mut r = router(&["p"], &["b"]);
    r.policy.circuit_breaker = Some(CircuitBreaker {
        failure_threshold: 1,
        cooldown_ms: 300,
    });
    let h = Harness::new(vec![primary.def("p"), backup.def("b"), r]).await;
    primary.always(Fault::Status(500));
    assert_eq!(h.ask("router").await.unwrap(), "backup");
    assert_eq!(h.ask("router").await.unwrap(), "backup");
    assert_eq!(primary.seen().len(), 1, "open: skipped");
    let record = h.last();
    assert_eq!((record.served.attempts, record.served.fallbacks), (1, 0));

    backup.always(Fault::Status(503));
    let error = h.ask("router").await.unwrap_err();
    assert_eq!(error.status, 503, "{error:?}"); // the backup's own answer, which opens it
    let error = h.ask("router").await.unwrap_err();
    assert_eq!(error.status, 503);
    assert!(
        error
            .retry_after_ms
            .is_some_and(|ms| (1..=300).contains(&ms)),
        "{error:?}"
    );
    assert_eq!(h.last().served.attempts, 0);

    // After the cool-down the probe goes through and closes the breaker.
    primary.always(Fault::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(h.ask("router").await.unwrap(), "primary");
    assert_eq!(h.ask("router").await.unwrap(), "primary");
}

#[tokio::test]
async fn streams_fall_back_before_the_first_event() {
    let (primary, backup) = (Fake::start("primary").await, Fake::start("backup").await);
    let h = Harness::new(vec![
        primary.def("p"),
        backup.def("b"),
        router(&["p"], &["b"]),
    ])
    .await;
    primary.script(&[Fault::Status(500)]);
    let request = ChatRequest {
        messages: vec![Message::user("hello")],
        ..ChatRequest::default()
    };
    let mut events = h
        .gateway
        .chat_stream(&CallContext::new(Dialect::Anthropic), "router", request)
        .await
        .unwrap();
    let mut text = String::new();
    while let Some(event) = events.next().await {
        if let StreamEvent::TextDelta { text: delta, .. } = event.unwrap() {
            text.push_str(&delta);
        }
    }
    drop(events);
    assert_eq!(text, "backup");
    let record = h.last();
    assert_eq!(
        (
            record.served.target.as_str(),
            record.served.attempts,
            record.served.fallbacks
        ),
        ("b", 2, 1)
    );
}

#[tokio::test]
async fn weighted_split_and_missing_targets() {
    let (a, b) = (Fake::start("a").await, Fake::start("b").await);
    let mut r = router(&[], &[]);
    r.policy.targets = vec![
        Target {
            endpoint: "a".into(),
            weight: 1,
        },
        Target {
            endpoint: "b".into(),
            weight: 4,
        },
        Target {
            endpoint: "gone".into(),
            weight: 100,
        },
    ];
    let mut lonely = router(&["gone"], &["also-gone"]);
    lonely.name = "lonely".into();
    let h = Harness::new(vec![a.def("a"), b.def("b"), r, lonely]).await;
    for _ in 0..100 {
        h.ask("router").await.unwrap();
    }
    let (to_a, to_b) = (a.seen().len(), b.seen().len());
    assert_eq!(to_a + to_b, 100);
    assert!((65..=95).contains(&to_b), "a={to_a} b={to_b}");
    let error = h.ask("lonely").await.unwrap_err();
    assert_eq!(error.status, 500);
    assert!(error.message.contains("none of its targets"), "{error:?}");
}

#[tokio::test]
async fn a_changed_endpoint_is_served_with_its_new_settings() {
    // Nothing the gateway keeps about an endpoint between requests may
    // outlive its definition: the next request uses the new one.
    let (first, second) = (Fake::start("first").await, Fake::start("second").await);
    let h = Harness::new(vec![first.def("e")]).await;
    assert_eq!(h.ask("e").await.unwrap(), "first");
    assert_eq!(h.ask("e").await.unwrap(), "first");

    let mut moved = second.def("e");
    moved.model = "moved-model".into();
    h.gateway.endpoints.replace_all([moved]);
    assert_eq!(h.ask("e").await.unwrap(), "second");
    assert_eq!(first.seen().len(), 2);
    let seen = second.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1["model"], "moved-model");

    // Back to the first upstream under the same name, as a new definition.
    h.gateway.endpoints.replace_all([first.def("e")]);
    assert_eq!(h.ask("e").await.unwrap(), "first");
    assert_eq!(first.seen()[2].1["model"], "fake-model");
}
