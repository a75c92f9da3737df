//! Per-call overhead measurement, not a pass/fail benchmark. Run with
//! `cargo test --release -p portico --test runtime_bench -- --ignored --nocapture`.

use std::path::Path;
use std::time::Instant;

use portico::runtime::{PluginRuntime, RuntimeConfig};
use portico_model::plugin::{Endpoint, HttpResponse};
use portico_model::{ChatRequest, Message};

#[tokio::test]
#[ignore = "measurement; run explicitly in release mode"]
async fn per_call_overhead() {
    let dir = std::env::var_os("PORTICO_TEST_PLUGINS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-plugins"));
    let path = dir.join("test-echo.wasm");
    assert!(
        path.is_file(),
        "test plugin {} is missing: run scripts/build-plugins",
        path.display()
    );
    let runtime = PluginRuntime::new(RuntimeConfig::default(), reqwest::Client::new()).unwrap();
    let start = Instant::now();
    let plugin = runtime.load_file(&path).await.unwrap();
    println!("load: {:?}", start.elapsed());
    let endpoint = Endpoint {
        name: "e".into(),
        model: "echo-1".into(),
        config: [(
            "base_url".to_string(),
            "https://api.example.com".to_string(),
        )]
        .into(),
    };
    let request = ChatRequest {
        model: "echo-1".into(),
        messages: vec![Message::user("x".repeat(2000))],
        ..Default::default()
    };
    let response = HttpResponse {
        status: 200,
        headers: vec![],
        body: "y".repeat(2000).into_bytes(),
    };
    let n = 2000;
    for round in 0..2 {
        let start = Instant::now();
        for _ in 0..n {
            plugin
                .build_chat_request(&endpoint, &request, false)
                .await
                .unwrap();
            plugin
                .parse_chat_response(&endpoint, response.clone())
                .await
                .unwrap();
        }
        println!(
            "round {round}: build+parse {:?} per call pair",
            start.elapsed() / n
        );
    }
    let tiny = HttpResponse {
        status: 500,
        headers: vec![],
        body: b"x".to_vec(),
    };
    let start = Instant::now();
    for _ in 0..n {
        plugin.parse_error(&endpoint, tiny.clone()).await.unwrap();
    }
    println!(
        "parse-error (minimal work): {:?} per call",
        start.elapsed() / n
    );
    let start = Instant::now();
    for _ in 0..200 {
        let mut d = plugin.stream_decoder(&endpoint).await.unwrap();
        d.push(b"a\nb\n").await.unwrap();
        d.finish().await.unwrap();
    }
    println!(
        "stream decoder new+push+finish: {:?}",
        start.elapsed() / 200
    );
}
