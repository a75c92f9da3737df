//! Contract 0.3.0, as the repository's SDK-built plugins implement it: a
//! stream decoder fed several upstream chunks in one call returns the events
//! decoded before an upstream error together with that error (since 0.2.0),
//! and token counts are built and read by the plugins that can count (since
//! 0.3.0). (Plugins of contract 0.1.0 are covered by the runtime tests,
//! through test-echo.) Uses the built plugins (run scripts/build-plugins
//! first).

mod support;

use std::sync::Arc;

use portico::conformance::offline_http_client;
use portico::runtime::{Plugin, PluginError, PluginRuntime, RuntimeConfig};
use portico_model::plugin::Endpoint;
use portico_model::{ErrorKind, StreamEvent};

async fn load(id: &str) -> Arc<Plugin> {
    let config = RuntimeConfig {
        cache_dir: Some(support::plugin_cache("contract")),
        ..RuntimeConfig::default()
    };
    let runtime = PluginRuntime::new(config, offline_http_client()).expect("runtime");
    let plugin = runtime
        .load_file(&support::provider_plugin(id))
        .await
        .unwrap_or_else(|e| panic!("load {id}: {e}"));
    assert_eq!(plugin.wit_version, "0.3.0", "{id} is built with the SDK");
    plugin
}

fn endpoint() -> Endpoint {
    Endpoint {
        name: "contract".into(),
        model: "contract-model".into(),
        config: [
            ("api_key".into(), "sk-contract-0123456789".into()),
            ("base_url".into(), "http://127.0.0.1:9".into()),
        ]
        .into(),
    }
}

fn texts(events: &[StreamEvent]) -> Vec<&str> {
    StreamEvent::text_deltas(events).collect()
}

/// Feeds `chunks` in one call and checks that the text before the error
/// and the error itself both come back.
async fn events_then_error(id: &str, chunks: &[&str], status: u16, message: &str) {
    let plugin = load(id).await;
    let mut decoder = plugin.stream_decoder(&endpoint()).await.expect("decoder");
    let decoded = decoder.feed(chunks).await;
    assert_eq!(texts(&decoded.events), ["Hel", "lo"], "{id}: {decoded:?}");
    match decoded.error {
        Some(PluginError::Provider(error)) => {
            assert_eq!(error.status, status, "{id}: {error:?}");
            assert!(error.message.contains(message), "{id}: {}", error.message);
        }
        other => panic!("{id}: expected the upstream's error, got {other:?}"),
    }
}

#[tokio::test]
async fn openai_stream_keeps_events_decoded_with_an_error() {
    // The error event shares the last chunk with a content event.
    events_then_error(
        "openai",
        &[
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n",
            "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":null}]}\n\n\
             data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n",
        ],
        502,
        "The server had an error",
    )
    .await;
}

#[tokio::test]
async fn anthropic_stream_keeps_events_decoded_with_an_error() {
    events_then_error(
        "anthropic",
        &[
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
             event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n\
             event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ],
        529,
        "Overloaded",
    )
    .await;
}

#[tokio::test]
async fn ollama_ndjson_stream_keeps_events_before_a_line_that_is_not_json() {
    let plugin = load("ollama").await;
    let mut decoder = plugin.stream_decoder(&endpoint()).await.expect("decoder");
    let decoded = decoder
        .feed(&[
            "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"done\":false}\n",
            "{\"model\":\"m\",\"created_at\":\"2026-01-01T00:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n<html>bad gateway</html>\n",
        ])
        .await;
    assert_eq!(texts(&decoded.events), ["Hel", "lo"], "{decoded:?}");
    match decoded.error {
        Some(PluginError::Provider(error)) => {
            assert_eq!(error.kind, ErrorKind::Upstream, "{error:?}");
            assert!(
                error.message.contains("not valid JSON"),
                "{}",
                error.message
            );
        }
        other => panic!("expected a bad-upstream error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stream_fed_in_one_call_decodes_like_one_chunk_at_a_time() {
    let plugin = load("openai").await;
    let body = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\n\n\
                data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
                data: [DONE]\n\n";
    let (head, tail) = body.split_at(70);

    let mut together = plugin.stream_decoder(&endpoint()).await.expect("decoder");
    let mut fed = together.feed(&[head, tail]).await;
    assert!(fed.error.is_none(), "{fed:?}");
    let end = together.end().await;
    assert!(end.error.is_none(), "{end:?}");
    fed.events.extend(end.events);

    let mut apart = plugin.stream_decoder(&endpoint()).await.expect("decoder");
    let mut pushed = apart.push(head.as_bytes()).await.expect("push");
    pushed.extend(apart.push(tail.as_bytes()).await.expect("push"));
    pushed.extend(apart.finish().await.expect("finish"));

    assert_eq!(fed.events, pushed);
    assert_eq!(texts(&fed.events), ["Hel", "lo"]);
}

#[tokio::test]
async fn token_counts_go_through_the_plugins_that_can_count() {
    let request = portico_model::ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![portico_model::Message::user("How many")],
        ..Default::default()
    };
    let anthropic = load("anthropic").await;
    let built = anthropic
        .build_count_tokens_request(&endpoint(), &request)
        .await
        .expect("anthropic counts");
    assert_eq!(built.url, "http://127.0.0.1:9/v1/messages/count_tokens");
    let body: serde_json::Value = serde_json::from_slice(&built.body).expect("JSON body");
    assert!(body.get("max_tokens").is_none(), "{body}");
    let ok = |body: &str| portico_model::plugin::HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    };
    let counted = anthropic
        .parse_count_tokens_response(&endpoint(), ok(r#"{"input_tokens": 9}"#))
        .await
        .expect("count");
    assert_eq!(counted, 9);
    let error = portico_model::plugin::HttpResponse {
        status: 529,
        ..ok(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
    };
    match anthropic
        .parse_count_tokens_response(&endpoint(), error)
        .await
    {
        Err(PluginError::Provider(error)) => assert_eq!(error.kind, ErrorKind::Overloaded),
        other => panic!("expected the upstream's error, got {other:?}"),
    }

    // OpenAI's API has no token counter: the plugin says so.
    let openai = load("openai").await;
    match openai
        .build_count_tokens_request(&endpoint(), &request)
        .await
    {
        Err(PluginError::Provider(error)) => {
            assert_eq!(error.kind, ErrorKind::InvalidRequest);
            assert!(
                error.message.contains("does not support token counting"),
                "{}",
                error.message
            );
        }
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}
