//! Portico provider plugin for Ollama's native API: Chat (plain and
//! streamed as NDJSON, with tools, inline-image vision and token counts)
//! and Embed.
//!
//! The wire translation lives in the shared model crate
//! (`formats::ollama`); this crate adds the endpoint configuration, the
//! HTTP details (URL, optional auth for proxied servers) and the catalog.

use portico_sdk::formats::ollama;
use portico_sdk::ndjson::{LineDecoder, NdjsonStream};
use portico_sdk::prelude::*;
use serde_json::Value;

/// Where a local Ollama server listens by default.
const DEFAULT_BASE_URL: &str = "http://localhost:11434";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Ollama;

impl Ollama {
    fn post(
        endpoint: &Endpoint,
        path: &str,
        accept: &str,
        body: &Value,
    ) -> Result<HttpRequest, ProviderError> {
        let base = endpoint.base_url("base_url", Some(DEFAULT_BASE_URL))?;
        let mut builder =
            http::RequestBuilder::post(http::join_url(&base, path)).header("accept", accept);
        // A plain Ollama server has no auth; a key is for a proxy in front.
        if let Some(key) = endpoint.get("api_key") {
            builder = builder.bearer_auth(key);
        }
        Ok(builder.json(body).build())
    }
}

impl Provider for Ollama {
    type StreamDecoder = NdjsonStream<OllamaLines>;

    fn new() -> Self {
        Ollama
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "ollama",
            "Ollama",
            env!("CARGO_PKG_VERSION"),
            "Local models served by Ollama (native /api/chat and /api/embed)",
        )
        .embeddings()
        .field(config::base_url(
            Some(DEFAULT_BASE_URL),
            "Address of the Ollama server (without /api).",
        ))
        .field(config::optional(
            "api_key",
            "API key",
            FieldKind::Secret,
            None,
            "Sent as a Bearer token; only for an Ollama server behind an authenticating proxy.",
        ))
        .catalog(MODELS)
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let body = ollama::chat_request_body(&request, stream)?;
        Self::post(
            endpoint,
            "/api/chat",
            http::accept(stream, http::NDJSON),
            &body,
        )
    }

    fn parse_chat_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        ollama::parse_chat_response(&response.body)
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = ollama::embed_request_body(&request);
        Self::post(endpoint, "/api/embed", "application/json", &body)
    }

    fn parse_embeddings_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        ollama::parse_embed_response(&response.body)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        ollama::parse_error(response.status, &response.headers, &response.body)
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        NdjsonStream::new(OllamaLines::default())
    }
}

/// Ollama's NDJSON stream objects to neutral stream events.
#[derive(Default)]
pub struct OllamaLines {
    decoder: ollama::ChunkDecoder,
}

impl LineDecoder for OllamaLines {
    fn decode(&mut self, line: Value) -> Result<Vec<StreamEvent>, ProviderError> {
        self.decoder.decode(&line)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.decoder.is_done() {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "Ollama stream ended before its final (done) line",
            ))
        }
    }
}

portico_sdk::export_provider!(Ollama);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{self, *};
    use serde_json::json;

    /// What Ollama itself answers with.
    const OLLAMA_JSON: &[(&str, &str)] = &[("content-type", "application/json; charset=utf-8")];

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("local", "llama3.2", pairs)
    }

    fn chat(text: &str) -> ChatRequest {
        ChatRequest {
            model: "llama3.2".into(),
            messages: vec![Message::user(text)],
            params: SamplingParams {
                max_tokens: Some(32),
                temperature: Some(0.0),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn describes_itself() {
        let info = Ollama::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("ollama", "Ollama")
        );
        assert!(info.supports(Operation::Chat) && info.supports(Operation::ChatStream));
        assert!(info.supports(Operation::Embeddings));
        assert_eq!(
            fields(&info),
            vec![
                ("base_url", FieldKind::Url, false, Some(DEFAULT_BASE_URL)),
                ("api_key", FieldKind::Secret, false, None),
            ]
        );
    }

    #[test]
    fn catalog_is_valid() {
        let models = assert_catalog_rules(
            MODELS,
            &["llama3.2", "qwen3", "gpt-oss", "gemma3", "nomic-embed-text"],
        );
        for model in &models {
            assert_eq!(model.input_price_per_mtok, 0.0, "{}", model.id);
            assert_eq!(model.output_price_per_mtok, 0.0, "{}", model.id);
        }
    }

    #[test]
    fn builds_chat_requests() {
        let provider = Ollama::new();
        let http = provider
            .build_chat_request(&endpoint(&[]), chat("Hi"), false)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.url, "http://localhost:11434/api/chat");
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(header(&http, "content-type"), Some("application/json"));
        assert_eq!(header(&http, "accept"), Some("application/json"));
        assert_eq!(
            json_body(&http),
            json!({
                "model": "llama3.2",
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": false,
                "options": {"temperature": 0.0, "num_predict": 32},
            })
        );

        let proxied = endpoint(&[
            ("base_url", "https://gpu.internal/ollama/"),
            ("api_key", "tok"),
        ]);
        let http = provider
            .build_chat_request(&proxied, chat("Hi"), true)
            .unwrap();
        assert_eq!(http.url, "https://gpu.internal/ollama/api/chat");
        assert_eq!(header(&http, "authorization"), Some("Bearer tok"));
        assert_eq!(header(&http, "accept"), Some("application/x-ndjson"));
        assert_eq!(json_body(&http)["stream"], true);
    }

    #[test]
    fn image_urls_and_bad_config_are_clear_400s() {
        let provider = Ollama::new();
        let mut request = chat("What is this?");
        request.messages[0].content.push(ContentPart::Image {
            source: ImageSource::Url {
                url: "https://example.com/cat.jpg".into(),
            },
        });
        let err = provider
            .build_chat_request(&endpoint(&[]), request, false)
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert!(
            err.message.contains("Ollama needs inline images"),
            "{}",
            err.message
        );

        let bad = endpoint(&[("base_url", "localhost:11434"), ("api_key", "secret-tok")]);
        let err = provider
            .build_embeddings_request(&bad, EmbeddingsRequest::default())
            .unwrap_err();
        assert!(err.message.contains("base_url") && !err.message.contains("secret-tok"));
    }

    #[test]
    fn parses_chat_responses_and_errors() {
        let provider = Ollama::new();
        let ep = endpoint(&[]);
        let ok = response(
            200,
            OLLAMA_JSON,
            r#"{"model":"llama3.2","created_at":"2025-06-01T10:00:00.000000Z","message":{"role":"assistant","content":"Hello!"},
               "done_reason":"stop","done":true,"total_duration":5191566416,"load_duration":2154458,
               "prompt_eval_count":26,"prompt_eval_duration":383809000,"eval_count":3,"eval_duration":4799921000}"#,
        );
        let parsed = portico_sdk::parse_chat(&provider, &ep, ok).unwrap();
        assert_eq!(parsed.text(), "Hello!");
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (26, 3)
        );
        let err = portico_sdk::parse_chat(
            &provider,
            &ep,
            response(
                404,
                OLLAMA_JSON,
                r#"{"error":"model \"llama9\" not found, try pulling it first"}"#,
            ),
        )
        .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::NotFound, 404));
        assert!(err.message.contains("try pulling it first"));
        let mut limited = response(429, OLLAMA_JSON, r#"{"error":"too many requests"}"#);
        limited.headers.push(("retry-after".into(), "2".into()));
        let err = provider.parse_error(&ep, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(2000))
        );
        let err = provider.parse_error(
            &ep,
            &response(500, OLLAMA_JSON, r#"{"error":"runner crashed"}"#),
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        let err =
            portico_sdk::parse_embeddings(&provider, &ep, response(200, OLLAMA_JSON, "not json"))
                .unwrap_err();
        assert_eq!(err.status, 502);
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = Ollama::new();
        let mut ep = endpoint(&[]);
        ep.model = "nomic-embed-text".into();
        let request = EmbeddingsRequest {
            model: "nomic-embed-text".into(),
            inputs: vec!["hello".into(), "world".into()],
            ..Default::default()
        };
        let http = provider.build_embeddings_request(&ep, request).unwrap();
        assert_eq!(http.url, "http://localhost:11434/api/embed");
        assert_eq!(
            json_body(&http),
            json!({"model": "nomic-embed-text", "input": ["hello", "world"]})
        );
        let parsed = portico_sdk::parse_embeddings(&provider,
                &ep,
                response(
                    200,
                    OLLAMA_JSON,
                    r#"{"model":"nomic-embed-text","embeddings":[[0.5,-0.25],[1,0]],"total_duration":1,"load_duration":1,"prompt_eval_count":2}"#,
                ),
            )
            .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5, -0.25], vec![1.0, 0.0]]);
        assert_eq!(parsed.usage.input_tokens, 2);
    }

    /// A real-shaped Ollama stream: text with multi-byte characters, a tool
    /// call line, the final line with counts (CRLF on one line, too).
    const STREAM: &str = concat!(
        "{\"model\":\"qwen3\",\"created_at\":\"2025-06-01T10:00:00.1Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Héllo\"},\"done\":false}\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-06-01T10:00:00.2Z\",\"message\":{\"role\":\"assistant\",\"content\":\" 👋\"},\"done\":false}\r\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-06-01T10:00:00.3Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Zürich\"}}}]},\"done\":false}\n",
        "{\"model\":\"qwen3\",\"created_at\":\"2025-06-01T10:00:00.4Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":1,\"load_duration\":1,\"prompt_eval_count\":31,\"prompt_eval_duration\":1,\"eval_count\":12,\"eval_duration\":1}\n",
    );

    /// Events with the synthesized tool-call id replaced by `ID`.
    fn normalized(events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        events
            .into_iter()
            .map(|event| match event {
                StreamEvent::ToolCallStart { index, id, name } => {
                    assert!(id.starts_with("call_") && id.len() > 10, "{id}");
                    StreamEvent::ToolCallStart {
                        index,
                        id: "ID".into(),
                        name,
                    }
                }
                other => other,
            })
            .collect()
    }

    fn expected_stream_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: String::new(),
                model: "qwen3".into(),
            },
            StreamEvent::TextDelta {
                text: "Héllo".into(),
            },
            StreamEvent::TextDelta {
                text: " 👋".into()
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "ID".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":\"Zürich\"}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 31,
                    output_tokens: 12,
                    cached_input_tokens: None,
                },
            },
        ]
    }

    #[test]
    fn decodes_stream_split_at_every_byte_boundary() {
        let provider = Ollama::new();
        let ep = endpoint(&[]);
        let events = decode_split_everywhere_normalized(
            || provider.stream_decoder(&ep),
            STREAM.as_bytes(),
            normalized,
        )
        .unwrap();
        assert_eq!(events, expected_stream_events());
    }

    #[test]
    fn truncated_empty_and_failed_streams_are_errors() {
        let provider = Ollama::new();
        let ep = endpoint(&[]);
        let cut = STREAM.rfind("{\"model\"").unwrap();
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&STREAM.as_bytes()[..cut]).unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);
        let mut decoder = provider.stream_decoder(&ep);
        assert_eq!(decoder.finish().unwrap_err().status, 502);
        let mut decoder = provider.stream_decoder(&ep);
        let err = decoder
            .push(b"{\"error\":\"model requires more system memory\"}\n")
            .unwrap_err();
        assert!(err.message.contains("more system memory"));
    }
}
