//! Runtime test plugin for the Portico host.
//!
//! A well-behaved "echo" provider whose behaviour is switched by the
//! endpoint config value `mode`, so one component exercises every runtime
//! path: host imports (`fetch`, `cache`, `log`), typed errors (`error`),
//! bad output (`bad-json`) and faults (`trap`, `spin`, `hog`). The version it
//! reports is the crate version, so `test-echo-v2` (same source, version
//! 2.0.0) is the "new build" in hot-swap tests.
//!
//! Written against raw wit-bindgen (not the SDK) so runtime tests do not
//! depend on the SDK.

use std::cell::RefCell;

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../../wit/deps/provider-0.1.0",
    world: "plugin",
});

use exports::gateway::provider::provider::{Guest, GuestStreamDecoder};
use gateway::provider::host::{self, LogLevel};
use gateway::provider::types::{
    Capabilities, ConfigField, Dialect, Endpoint, ErrorKind, FieldKind, HttpRequest, HttpResponse,
    ModelInfo, Operation, ProviderError, ProviderInfo,
};

const VERSION: &str = env!("CARGO_PKG_VERSION");

struct Echo;

fn config<'a>(endpoint: &'a Endpoint, key: &str) -> Option<&'a str> {
    endpoint
        .config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn mode(endpoint: &Endpoint) -> &str {
    config(endpoint, "mode").unwrap_or("echo")
}

fn error(kind: ErrorKind, status: u16, message: impl Into<String>) -> ProviderError {
    ProviderError {
        kind,
        status,
        message: message.into(),
        retry_after_ms: None,
    }
}

/// The faults a test can ask for; any operation honours them.
fn misbehave(mode: &str) {
    match mode {
        "trap" => panic!("test-echo was asked to trap"),
        "spin" => spin(),
        "hog" => hog(),
        _ => {}
    }
}

fn spin() {
    let mut x: u64 = 1;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}

fn hog() {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every block so the memory is really used.
        blocks.push(vec![0xA5; 1 << 20]);
        std::hint::black_box(&blocks);
    }
}

fn base_url(endpoint: &Endpoint) -> String {
    config(endpoint, "base_url")
        .unwrap_or("http://127.0.0.1:9")
        .trim_end_matches('/')
        .to_string()
}

/// What `build-*-request` puts in the body besides the echoed request:
/// results of host calls when the mode asks for them.
fn host_calls(endpoint: &Endpoint) -> Value {
    match mode(endpoint) {
        "fetch" => {
            let url = config(endpoint, "fetch_url")
                .map(str::to_string)
                .unwrap_or_else(|| format!("{}/token", base_url(endpoint)));
            let request = HttpRequest {
                method: "POST".into(),
                url,
                headers: vec![("x-from-plugin".into(), "test-echo".into())],
                body: b"token please".to_vec(),
            };
            match host::http_fetch(&request) {
                Ok(response) => json!({
                    "fetch": {
                        "status": response.status,
                        "headers": response.headers,
                        "body": String::from_utf8_lossy(&response.body),
                    }
                }),
                Err(message) => json!({ "fetch_error": message }),
            }
        }
        "cache" => {
            let count = host::cache_get("counter")
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            host::cache_set("counter", count.to_string().as_bytes(), 60_000);
            json!({ "counter": count })
        }
        "log" => {
            let secret = config(endpoint, "api_key").unwrap_or("");
            host::log(LogLevel::Warn, &format!("test-echo log line, key={secret}"));
            json!({ "now": host::now_unix_ms() })
        }
        _ => Value::Null,
    }
}

fn echo_request(endpoint: &Endpoint, path: &str, payload: Value) -> HttpRequest {
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-plugin-version".to_string(), VERSION.to_string()),
    ];
    if let Some(key) = config(endpoint, "api_key") {
        headers.push(("authorization".to_string(), format!("Bearer {key}")));
    }
    HttpRequest {
        method: "POST".into(),
        url: format!("{}{path}", base_url(endpoint)),
        headers,
        body: payload.to_string().into_bytes(),
    }
}

fn parse_json(text: &str) -> Result<Value, ProviderError> {
    serde_json::from_str(text).map_err(|e| {
        error(
            ErrorKind::InvalidRequest,
            400,
            format!("request is not JSON: {e}"),
        )
    })
}

fn upstream_error(response: &HttpResponse) -> ProviderError {
    let kind = match response.status {
        401 => ErrorKind::Authentication,
        403 => ErrorKind::Permission,
        404 => ErrorKind::NotFound,
        429 => ErrorKind::RateLimited,
        503 | 529 => ErrorKind::Overloaded,
        s if s >= 500 => ErrorKind::Upstream,
        _ => ErrorKind::InvalidRequest,
    };
    let retry_after_ms = response
        .headers
        .iter()
        .find(|(k, _)| k == "retry-after")
        .and_then(|(_, v)| v.trim().parse::<u64>().ok())
        .map(|s| s * 1000);
    ProviderError {
        kind,
        status: response.status,
        message: String::from_utf8_lossy(&response.body).into_owned(),
        retry_after_ms,
    }
}

impl Guest for Echo {
    type StreamDecoder = Decoder;

    fn describe() -> ProviderInfo {
        let field = |name: &str, label: &str, kind: FieldKind, required: bool| ConfigField {
            name: name.into(),
            label: label.into(),
            kind,
            required,
            default_value: None,
            help: String::new(),
            options: Vec::new(),
        };
        let mut mode_field = field("mode", "Mode", FieldKind::Enum, false);
        mode_field.default_value = Some("echo".into());
        mode_field.options = [
            "echo", "fetch", "cache", "log", "error", "bad-json", "trap", "spin", "hog",
        ]
        .map(String::from)
        .to_vec();
        ProviderInfo {
            id: "test-echo".into(),
            display_name: "Test Echo".into(),
            version: VERSION.into(),
            description: "Echoes requests back; misbehaves on demand".into(),
            operations: vec![
                Operation::Chat,
                Operation::ChatStream,
                Operation::Embeddings,
            ],
            native_dialect: Some(Dialect::Openai),
            config_fields: vec![
                field("base_url", "Base URL", FieldKind::Url, true),
                field(
                    "fetch_url",
                    "Fetch URL (not an allow-listed kind)",
                    FieldKind::String,
                    false,
                ),
                field("api_key", "API key", FieldKind::Secret, false),
                mode_field,
            ],
            egress_hosts: vec!["egress.test-echo.invalid".into()],
            models: vec![ModelInfo {
                id: "echo-1".into(),
                display_name: "Echo 1".into(),
                context_window: 8192,
                max_output_tokens: 1024,
                input_price_per_mtok: 0.5,
                output_price_per_mtok: 1.5,
                capabilities: Capabilities::TOOLS | Capabilities::VISION,
                embedding_dimensions: None,
            }],
        }
    }

    fn build_chat_request(
        endpoint: Endpoint,
        request: String,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let mode = mode(&endpoint);
        misbehave(mode);
        if mode == "error" {
            let mut e = error(ErrorKind::RateLimited, 429, "test-echo: slow down");
            e.retry_after_ms = Some(1500);
            return Err(e);
        }
        let payload = json!({
            "version": VERSION,
            "endpoint": endpoint.name,
            "model": endpoint.model,
            "stream": stream,
            "request": parse_json(&request)?,
            "host": host_calls(&endpoint),
        });
        Ok(echo_request(&endpoint, "/chat", payload))
    }

    fn parse_chat_response(
        endpoint: Endpoint,
        response: HttpResponse,
    ) -> Result<String, ProviderError> {
        let mode = mode(&endpoint);
        misbehave(mode);
        if mode == "bad-json" {
            return Ok("this is {not json".into());
        }
        if response.status >= 400 {
            return Err(upstream_error(&response));
        }
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let words = text.split_whitespace().count() as u32;
        Ok(json!({
            "id": format!("test-echo-{VERSION}"),
            "model": endpoint.model,
            "content": [{ "type": "text", "text": text }],
            "finish_reason": "stop",
            "usage": { "input_tokens": words, "output_tokens": words },
        })
        .to_string())
    }

    fn build_embeddings_request(
        endpoint: Endpoint,
        request: String,
    ) -> Result<HttpRequest, ProviderError> {
        misbehave(mode(&endpoint));
        let payload = json!({ "version": VERSION, "request": parse_json(&request)? });
        Ok(echo_request(&endpoint, "/embeddings", payload))
    }

    fn parse_embeddings_response(
        endpoint: Endpoint,
        response: HttpResponse,
    ) -> Result<String, ProviderError> {
        let mode = mode(&endpoint);
        misbehave(mode);
        if mode == "bad-json" {
            return Ok("[]".into());
        }
        if response.status >= 400 {
            return Err(upstream_error(&response));
        }
        // The upstream body is a JSON list of strings; each becomes
        // [length, 1.0].
        let inputs: Vec<String> = serde_json::from_slice(&response.body)
            .map_err(|e| error(ErrorKind::Upstream, 502, format!("bad upstream body: {e}")))?;
        let embeddings: Vec<Vec<f32>> = inputs.iter().map(|s| vec![s.len() as f32, 1.0]).collect();
        Ok(json!({
            "model": endpoint.model,
            "embeddings": embeddings,
            "usage": { "input_tokens": inputs.len(), "output_tokens": 0 },
        })
        .to_string())
    }

    fn parse_error(endpoint: Endpoint, response: HttpResponse) -> ProviderError {
        misbehave(mode(&endpoint));
        upstream_error(&response)
    }
}

/// Splits the body into lines; each non-empty line becomes a text delta.
/// Lines `TRAP` and `SPIN` fault, to test faults in the middle of a stream.
pub struct Decoder {
    model: String,
    state: RefCell<DecoderState>,
}

#[derive(Default)]
struct DecoderState {
    started: bool,
    buffer: Vec<u8>,
}

impl Decoder {
    fn start(&self, state: &mut DecoderState, events: &mut Vec<String>) {
        if !state.started {
            state.started = true;
            events.push(json!({ "type": "start", "id": format!("test-echo-{VERSION}"), "model": self.model }).to_string());
        }
    }
}

impl GuestStreamDecoder for Decoder {
    fn new(endpoint: Endpoint) -> Self {
        misbehave(mode(&endpoint));
        Decoder {
            model: endpoint.model,
            state: RefCell::new(DecoderState::default()),
        }
    }

    fn push(&self, chunk: Vec<u8>) -> Result<Vec<String>, ProviderError> {
        let mut state = self.state.borrow_mut();
        let mut events = Vec::new();
        self.start(&mut state, &mut events);
        state.buffer.extend_from_slice(&chunk);
        while let Some(pos) = state.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = state.buffer.drain(..=pos).collect();
            let line = String::from_utf8(line[..pos].to_vec())
                .map_err(|_| error(ErrorKind::Upstream, 502, "stream line is not UTF-8"))?;
            match line.as_str() {
                "" => {}
                "TRAP" => panic!("test-echo stream asked to trap"),
                // A 0.1.0 decoder's error comes alone: the events of this
                // call are dropped with it.
                "ERROR" => return Err(error(ErrorKind::Upstream, 502, "upstream stream error")),
                "SPIN" => spin(),
                _ => events.push(json!({ "type": "text_delta", "text": line }).to_string()),
            }
        }
        Ok(events)
    }

    fn finish(&self) -> Result<Vec<String>, ProviderError> {
        let mut state = self.state.borrow_mut();
        let mut events = Vec::new();
        self.start(&mut state, &mut events);
        if !state.buffer.is_empty() {
            return Err(error(ErrorKind::Upstream, 502, "stream ended mid-line"));
        }
        events.push(json!({ "type": "finish", "reason": "stop" }).to_string());
        Ok(events)
    }
}

export!(Echo);
