//! Portico provider plugin for Cohere's native v2 API: Chat (plain and
//! streamed as typed SSE events, with tools, vision and usage) and Embed.
//!
//! The wire translation lives in the shared model crate
//! (`formats::cohere`); this crate adds the endpoint configuration, the
//! HTTP details (URL, auth) and the catalog.

use portico_sdk::formats::cohere;
use portico_sdk::prelude::*;
use portico_sdk::sse::{EventDecoder, SseEvent, SseStream};

/// Default API root (paths below it start with `/v2`).
const DEFAULT_BASE_URL: &str = "https://api.cohere.com";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Cohere;

impl Cohere {
    fn url(endpoint: &Endpoint, path: &str) -> Result<String, ProviderError> {
        let base = endpoint.base_url("base_url", Some(DEFAULT_BASE_URL))?;
        Ok(http::join_url(&base, path))
    }

    fn post(
        endpoint: &Endpoint,
        path: &str,
        accept: &str,
        body: &serde_json::Value,
    ) -> Result<HttpRequest, ProviderError> {
        let key = endpoint.require("api_key")?;
        Ok(http::RequestBuilder::post(Self::url(endpoint, path)?)
            .bearer_auth(key)
            .header("accept", accept)
            .json(body)
            .build())
    }
}

impl Provider for Cohere {
    type StreamDecoder = SseStream<CohereEvents>;

    fn new() -> Self {
        Cohere
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "cohere",
            "Cohere",
            env!("CARGO_PKG_VERSION"),
            "Cohere v2 Chat and Embed (Command A, Command R, Embed v4/v3)",
        )
        .embeddings()
        .field(config::api_key(
            "A Cohere API key, from dashboard.cohere.com/api-keys.",
        ))
        .field(config::base_url(
            Some(DEFAULT_BASE_URL),
            "API root without /v2; change it only to go through a proxy or a private deployment.",
        ))
        .catalog(MODELS)
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let body = cohere::chat_request_body(&request, stream);
        Self::post(endpoint, "/v2/chat", http::accept(stream, http::SSE), &body)
    }

    fn parse_chat_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        cohere::parse_chat_response(&response.body)
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = cohere::embed_request_body(&request);
        Self::post(endpoint, "/v2/embed", "application/json", &body)
    }

    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let mut parsed = cohere::parse_embed_response(&response.body)?;
        // Cohere's answer does not name the model.
        parsed.model = endpoint.model.clone();
        Ok(parsed)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        cohere::parse_error(response.status, &response.headers, &response.body)
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        SseStream::new(CohereEvents::default())
    }
}

/// Cohere's typed SSE events to neutral stream events.
#[derive(Default)]
pub struct CohereEvents {
    decoder: cohere::EventDecoder,
}

impl EventDecoder for CohereEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        self.decoder.decode(&event.event, &event.data)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.decoder.is_finished() {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "Cohere stream ended before its message-end event",
            ))
        }
    }
}

portico_sdk::export_provider!(Cohere);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{self, *};
    use serde_json::json;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("cmd", "command-a-03-2025", pairs)
    }

    fn chat(text: &str) -> ChatRequest {
        ChatRequest {
            model: "command-a-03-2025".into(),
            system: Some("Be brief.".into()),
            messages: vec![Message::user(text)],
            params: SamplingParams {
                max_tokens: Some(20),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn describes_itself() {
        let info = Cohere::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("cohere", "Cohere")
        );
        assert!(info.supports(Operation::Chat) && info.supports(Operation::ChatStream));
        assert!(info.supports(Operation::Embeddings));
        let fields: Vec<(&str, FieldKind, bool)> = info
            .config_fields
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.required))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("api_key", FieldKind::Secret, true),
                ("base_url", FieldKind::Url, false)
            ]
        );
        assert_eq!(
            info.config_fields[1].default_value.as_deref(),
            Some(DEFAULT_BASE_URL)
        );
    }

    #[test]
    fn catalog_is_valid() {
        let models = assert_catalog_rules(
            MODELS,
            &[
                "command-a-03-2025",
                "command-r-plus-08-2024",
                "command-r-08-2024",
                "command-r7b-12-2024",
                "embed-v4.0",
                "embed-english-v3.0",
            ],
        );
        // Chat models leave room for input.
        for model in models.iter().filter(|m| !m.capabilities.embeddings) {
            assert!(
                model.max_output_tokens < model.context_window,
                "{}",
                model.id
            );
        }
    }

    #[test]
    fn builds_chat_requests() {
        let provider = Cohere::new();
        let http = provider
            .build_chat_request(&endpoint(&[("api_key", "co-key")]), chat("Hi"), false)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.url, "https://api.cohere.com/v2/chat");
        assert_eq!(header(&http, "authorization"), Some("Bearer co-key"));
        assert_eq!(header(&http, "content-type"), Some("application/json"));
        assert_eq!(header(&http, "accept"), Some("application/json"));
        assert_eq!(
            json_body(&http),
            json!({
                "model": "command-a-03-2025",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                ],
                "max_tokens": 20,
            })
        );

        let proxied = endpoint(&[
            ("api_key", "k"),
            ("base_url", "http://proxy.local:8080/cohere/"),
        ]);
        let http = provider
            .build_chat_request(&proxied, chat("Hi"), true)
            .unwrap();
        assert_eq!(http.url, "http://proxy.local:8080/cohere/v2/chat");
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        assert_eq!(json_body(&http)["stream"], true);
    }

    #[test]
    fn config_problems_are_clear_and_secret_free() {
        let provider = Cohere::new();
        let err = provider
            .build_chat_request(&endpoint(&[]), chat("x"), false)
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert_eq!(err.message, "endpoint 'cmd' is missing config 'api_key'");
        let bad = endpoint(&[("api_key", "co-secret"), ("base_url", "api.cohere.com")]);
        let err = provider
            .build_embeddings_request(&bad, EmbeddingsRequest::default())
            .unwrap_err();
        assert!(err.message.contains("base_url") && !err.message.contains("co-secret"));
    }

    #[test]
    fn parses_chat_responses_and_errors() {
        let provider = Cohere::new();
        let ep = endpoint(&[("api_key", "k")]);
        let ok = json_response(
            200,
            &[],
            r#"{"id":"5a50480a","finish_reason":"COMPLETE","message":{"role":"assistant",
                "content":[{"type":"text","text":"Hello there"}]},
                "usage":{"billed_units":{"input_tokens":4,"output_tokens":2},"tokens":{"input_tokens":70,"output_tokens":2}}}"#,
        );
        let parsed = portico_sdk::parse_chat(&provider, &ep, ok).unwrap();
        assert_eq!(parsed.text(), "Hello there");
        assert_eq!(parsed.usage.input_tokens, 4);

        let unauthorized = json_response(401, &[], r#"{"id":"e1","message":"invalid api token"}"#);
        let err = portico_sdk::parse_chat(&provider, &ep, unauthorized).unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (ErrorKind::Authentication, 401, "invalid api token")
        );
        let mut limited = json_response(429, &[], r#"{"message":"trial key limit"}"#);
        limited.headers.push(("retry-after".into(), "3".into()));
        let err = provider.parse_error(&ep, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(3000))
        );
        let err = provider.parse_error(&ep, &json_response(503, &[], "upstream overloaded"));
        assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, 503));
        let err = portico_sdk::parse_embeddings(
            &provider,
            &ep,
            json_response(500, &[], r#"{"message":"oops"}"#),
        )
        .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        assert_eq!(
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], "<html>"))
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = Cohere::new();
        let mut ep = endpoint(&[("api_key", "k")]);
        ep.model = "embed-v4.0".into();
        let request = EmbeddingsRequest {
            model: "embed-v4.0".into(),
            inputs: vec!["hello".into(), "world".into()],
            input_type: Some("search_query".into()),
            ..Default::default()
        };
        let http = provider.build_embeddings_request(&ep, request).unwrap();
        assert_eq!(http.url, "https://api.cohere.com/v2/embed");
        assert_eq!(header(&http, "authorization"), Some("Bearer k"));
        assert_eq!(
            json_body(&http),
            json!({"model": "embed-v4.0", "texts": ["hello", "world"],
                   "input_type": "search_query", "embedding_types": ["float"]})
        );
        let parsed = portico_sdk::parse_embeddings(
            &provider,
            &ep,
            json_response(
                200,
                &[],
                r#"{"id":"x","embeddings":{"float":[[0.25,-0.5],[1,2]]},"texts":["hello","world"],
                        "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":2}},
                        "response_type":"embeddings_by_type"}"#,
            ),
        )
        .unwrap();
        assert_eq!(parsed.model, "embed-v4.0");
        assert_eq!(parsed.embeddings, vec![vec![0.25, -0.5], vec![1.0, 2.0]]);
        assert_eq!(parsed.usage.input_tokens, 2);
    }

    /// A real-shaped Cohere v2 stream: tool plan, a tool call with streamed
    /// arguments, text with multi-byte characters, message-end with usage.
    const STREAM: &str = concat!(
        "event: message-start\ndata: {\"id\":\"29f14a5a-11de-4cae-9800-25e4747408ea\",\"type\":\"message-start\",\"delta\":{\"message\":{\"role\":\"assistant\",\"content\":[],\"tool_plan\":\"\",\"tool_calls\":[],\"citations\":[]}}}\n\n",
        "event: tool-plan-delta\ndata: {\"type\":\"tool-plan-delta\",\"delta\":{\"message\":{\"tool_plan\":\"I will check.\"}}}\n\n",
        "event: tool-call-start\ndata: {\"type\":\"tool-call-start\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"id\":\"get_weather_nsz5zm3w56q3\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}}}}\n\n",
        "event: tool-call-delta\ndata: {\"type\":\"tool-call-delta\",\"index\":0,\"delta\":{\"message\":{\"tool_calls\":{\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Zürich\\\"}\"}}}}}\n\n",
        "event: tool-call-end\ndata: {\"type\":\"tool-call-end\",\"index\":0}\n\n",
        "event: content-start\ndata: {\"type\":\"content-start\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"type\":\"text\",\"text\":\"\"}}}}\n\n",
        "event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\"Héllo 👋\"}}}}\n\n",
        "event: content-end\ndata: {\"type\":\"content-end\",\"index\":0}\n\n",
        "event: message-end\ndata: {\"type\":\"message-end\",\"delta\":{\"finish_reason\":\"TOOL_CALL\",\"usage\":{\"billed_units\":{\"input_tokens\":37,\"output_tokens\":21},\"tokens\":{\"input_tokens\":1200,\"output_tokens\":60}}}}\n\n",
    );

    fn expected_stream_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: "29f14a5a-11de-4cae-9800-25e4747408ea".into(),
                model: String::new(),
            },
            StreamEvent::ThinkingDelta {
                text: "I will check.".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "get_weather_nsz5zm3w56q3".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\": \"Zürich\"}".into(),
            },
            StreamEvent::TextDelta {
                text: "Héllo 👋".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 37,
                    output_tokens: 21,
                    cached_input_tokens: None,
                },
            },
        ]
    }

    #[test]
    fn decodes_stream_split_at_every_byte_boundary() {
        let provider = Cohere::new();
        let ep = endpoint(&[("api_key", "k")]);
        assert_stream_decodes_at_every_split(
            &provider,
            &ep,
            STREAM.as_bytes(),
            &expected_stream_events(),
        );
    }

    #[test]
    fn truncated_or_empty_stream_is_an_error() {
        let provider = Cohere::new();
        let ep = endpoint(&[("api_key", "k")]);
        let cut = STREAM.find("event: message-end").unwrap();
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&STREAM.as_bytes()[..cut]).unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);
        let mut decoder = provider.stream_decoder(&ep);
        assert_eq!(decoder.finish().unwrap_err().status, 502);
    }
}
