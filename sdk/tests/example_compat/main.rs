//! The README's OpenAI-compatible plugin, compiled and exercised natively.

mod plugin;

use plugin::Vllm;
use portico_sdk::prelude::*;

#[path = "../common/readme.rs"]
mod readme;

#[test]
fn readme_shows_this_example() {
    readme::assert_block_matches("example_compat/plugin.rs", include_str!("plugin.rs"));
}

#[test]
fn optional_key_and_required_base_url() {
    let vllm = Vllm::new();
    let request = ChatRequest {
        messages: vec![Message::user("hi")],
        params: SamplingParams {
            top_k: Some(20),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut endpoint = Endpoint {
        name: "local".into(),
        model: "Qwen/Qwen3-8B".into(),
        config: [("base_url".to_string(), "http://gpu:8000/v1".to_string())].into(),
    };
    let http = vllm
        .build_chat_request(&endpoint, request.clone(), true)
        .unwrap();
    assert_eq!(http.url, "http://gpu:8000/v1/chat/completions");
    assert!(!http.headers.iter().any(|(k, _)| k == "authorization"));
    let body: serde_json::Value = serde_json::from_slice(&http.body).unwrap();
    assert_eq!(
        (body["model"].as_str(), body["top_k"].as_u64()),
        (Some("Qwen/Qwen3-8B"), Some(20))
    );

    endpoint.config.insert("api_key".into(), "secret".into());
    let http = vllm
        .build_chat_request(&endpoint, request.clone(), false)
        .unwrap();
    assert!(
        http.headers
            .contains(&("authorization".to_string(), "Bearer secret".to_string()))
    );

    endpoint.config.remove("base_url");
    let err = vllm
        .build_chat_request(&endpoint, request, false)
        .unwrap_err();
    assert_eq!(err.message, "endpoint 'local' is missing config 'base_url'");

    let error = HttpResponse {
        status: 503,
        headers: vec![],
        body: b"loading".to_vec(),
    };
    assert_eq!(
        vllm.parse_error(&endpoint, &error).kind,
        ErrorKind::Overloaded
    );
}
