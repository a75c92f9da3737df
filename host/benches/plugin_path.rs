//! Micro-benchmarks of the plugin path: what one chat costs in the sandbox
//! with a pooled (reused) instance, through the real provider plugins.
//!
//! `cargo bench -p portico --bench plugin_path`. Needs `plugins/*.wasm`
//! (scripts/build-plugins); without them the benchmarks are skipped.
//!
//! - `chat_round_trip/<plugin>`: build-chat-request + parse-chat-response
//!   for a ~2 KB chat (the neutral request serialized into the guest, the
//!   provider body and the neutral answer parsed back on the host).
//!   `openai` is the passthrough case; `anthropic` the translating one (an
//!   OpenAI client's request to an Anthropic endpoint).
//! - `stream_chunk/<plugin>`: one SSE event pushed through a live stream
//!   decoder and decoded into neutral events.
//! - `stream_burst/<plugin>/{one_call,call_per_event}`: 20 such events
//!   received together, fed to the decoder in one call (contract 0.2.0)
//!   or in one call each (contract 0.1.0's way).
//! - `host_json/*`: the host's own share of a round trip (serializing the
//!   neutral request, parsing the neutral answer); `call_floor/<plugin>`:
//!   parse-error on a 1-byte body, the fixed cost of one plugin call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portico::runtime::{Plugin, PluginRuntime, RuntimeConfig};
use portico_model::plugin::{Endpoint, HttpResponse};
use portico_model::{ChatRequest, ChatResponse, Message};

fn plugins_dir() -> PathBuf {
    std::env::var_os("PORTICO_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins"))
}

/// A ~2 KB conversation: a system prompt and a few turns of prose.
fn chat_2kb() -> ChatRequest {
    let prose = "The gateway routes each named endpoint to a provider plugin, \
                 which translates the neutral request into the provider's own \
                 protocol and back again. ";
    let mut request = ChatRequest {
        model: "bench-model".into(),
        system: Some("You are a concise assistant. Answer in plain English.".into()),
        messages: vec![
            Message::user(prose.repeat(4)),
            Message::assistant(prose.repeat(3)),
            Message::user(prose.repeat(4)),
            Message::assistant(prose.repeat(3)),
            Message::user("Summarize the above in one sentence."),
        ],
        ..Default::default()
    };
    request.params.max_tokens = Some(256);
    request.params.temperature = Some(0.2);
    request
}

struct Case {
    id: &'static str,
    config: &'static [(&'static str, &'static str)],
    /// A non-streaming answer in the provider's wire format.
    response: &'static str,
    /// One streamed event, as the provider sends it.
    chunk: &'static str,
}

const ANSWER: &str = "The gateway translates neutral requests to each provider's protocol through sandboxed plugins, and back.";

fn cases() -> Vec<Case> {
    vec![
        Case {
            id: "openai",
            config: &[
                ("api_key", "sk-bench-0123456789"),
                ("base_url", "http://127.0.0.1:9"),
            ],
            response: r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"bench-model","choices":[{"index":0,"message":{"role":"assistant","content":"ANSWER"},"finish_reason":"stop"}],"usage":{"prompt_tokens":420,"completion_tokens":21,"total_tokens":441}}"#,
            chunk: "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"bench-model\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"token \"},\"finish_reason\":null}]}\n\n",
        },
        Case {
            id: "anthropic",
            config: &[
                ("api_key", "sk-ant-bench-0123456789"),
                ("base_url", "http://127.0.0.1:9"),
            ],
            response: r#"{"id":"msg_bench","type":"message","role":"assistant","model":"bench-model","content":[{"type":"text","text":"ANSWER"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":420,"output_tokens":21}}"#,
            chunk: "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"token \"}}\n\n",
        },
    ]
}

fn endpoint(case: &Case) -> Endpoint {
    Endpoint {
        name: "bench".into(),
        model: "bench-model".into(),
        config: case
            .config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn load(
    rt: &tokio::runtime::Runtime,
    runtime: &Arc<PluginRuntime>,
    id: &str,
) -> Option<Arc<Plugin>> {
    let path = plugins_dir().join(format!("{id}.wasm"));
    if !path.is_file() {
        eprintln!(
            "skipping {id}: {} not found (run scripts/build-plugins)",
            path.display()
        );
        return None;
    }
    match rt.block_on(runtime.load_file(&path)) {
        Ok(plugin) => Some(plugin),
        Err(error) => {
            eprintln!("skipping {id}: cannot load {}: {error}", path.display());
            None
        }
    }
}

fn plugin_path(c: &mut Criterion) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("skipping: no tokio runtime: {error}");
            return;
        }
    };
    let runtime = {
        let _guard = rt.enter();
        match PluginRuntime::new(RuntimeConfig::default(), reqwest::Client::new()) {
            Ok(runtime) => runtime,
            Err(error) => {
                eprintln!("skipping: cannot create the plugin runtime: {error:#}");
                return;
            }
        }
    };
    let request = chat_2kb();
    let request_bytes = serde_json::to_vec(&request).map(|v| v.len()).unwrap_or(0);
    eprintln!("neutral chat request: {request_bytes} bytes of JSON");

    c.bench_function("host_json/serialize_chat_request", |b| {
        b.iter(|| {
            portico_model::json::to_string(&request)
                .map(|s| s.len())
                .unwrap_or(0)
        })
    });

    for case in cases() {
        let Some(plugin) = load(&rt, &runtime, case.id) else {
            continue;
        };
        let endpoint = endpoint(&case);
        let response = HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: case.response.replace("ANSWER", ANSWER).into_bytes(),
        };
        // Fail loudly (not in the timed loop) if the plugin rejects the case.
        let parsed = match rt.block_on(async {
            plugin
                .build_chat_request(&endpoint, &request, false)
                .await?;
            plugin
                .parse_chat_response(&endpoint, response.clone())
                .await
        }) {
            Ok(parsed) => parsed,
            Err(error) => {
                eprintln!("skipping {}: plugin call failed: {error}", case.id);
                continue;
            }
        };

        // Where the round trip's time goes: the host's share of the JSON
        // crossing the boundary, and the cheapest possible plugin call.
        let mut group = c.benchmark_group("host_json");
        let neutral = serde_json::to_string(&parsed).unwrap_or_default();
        group.bench_function(format!("parse_chat_response/{}", case.id), |b| {
            b.iter(|| serde_json::from_str::<ChatResponse>(&neutral).is_ok())
        });
        group.finish();
        let tiny = HttpResponse {
            status: 500,
            headers: vec![],
            body: b"x".to_vec(),
        };
        c.bench_function(&format!("call_floor/{}", case.id), |b| {
            b.iter(|| {
                rt.block_on(plugin.parse_error(&endpoint, tiny.clone()))
                    .is_ok()
            })
        });

        let mut group = c.benchmark_group("chat_round_trip");
        group.throughput(Throughput::Elements(1));
        group.bench_function(case.id, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let built = plugin.build_chat_request(&endpoint, &request, false).await;
                    let parsed = plugin
                        .parse_chat_response(&endpoint, response.clone())
                        .await;
                    (built.is_ok(), parsed.is_ok())
                })
            })
        });
        group.finish();

        let mut group = c.benchmark_group("stream_chunk");
        group.throughput(Throughput::Elements(1));
        let decoder = rt.block_on(plugin.stream_decoder(&endpoint));
        let mut decoder = match decoder {
            Ok(decoder) => decoder,
            Err(error) => {
                eprintln!("skipping stream {}: {error}", case.id);
                continue;
            }
        };
        let chunk = case.chunk.as_bytes();
        match rt.block_on(decoder.push(chunk)) {
            Ok(events) if !events.is_empty() => {}
            other => {
                eprintln!("skipping stream {}: chunk decoded to {other:?}", case.id);
                continue;
            }
        }
        group.bench_function(case.id, |b| {
            b.iter(|| {
                rt.block_on(decoder.push(chunk))
                    .map(|e| e.len())
                    .unwrap_or(0)
            })
        });
        group.finish();

        // A burst of BURST events already received together, as the
        // gateway gathers them: fed in one call (contract 0.2.0) against
        // one call per event (what a 0.1.0 decoder needs).
        let burst = vec![chunk; BURST];
        let mut group = c.benchmark_group("stream_burst");
        group.throughput(Throughput::Elements(BURST as u64));
        group.bench_function(format!("{}/one_call", case.id), |b| {
            b.iter(|| rt.block_on(decoder.feed(&burst)).events.len())
        });
        group.bench_function(format!("{}/call_per_event", case.id), |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut events = 0;
                    for chunk in &burst {
                        events += decoder.push(chunk).await.map(|e| e.len()).unwrap_or(0);
                    }
                    events
                })
            })
        });
        group.finish();
    }
}

/// Events in a `stream_burst`: the benchmark's streamed answer's content.
const BURST: usize = 20;

criterion_group!(benches, plugin_path);
criterion_main!(benches);
