//! Portico provider plugin for the Anthropic Messages API
//! (`POST /v1/messages`): chat, streamed chat (SSE), tools, vision,
//! extended thinking and prompt-cache usage.
//!
//! The wire format (both directions of the Messages API) is
//! `portico_model::formats::anthropic`, and the `max_tokens` default and
//! stream decoder are `portico_sdk::anthropic` (shared with Claude on
//! Vertex AI); this crate is the Anthropic-specific configuration: URL,
//! auth headers and the catalog.

use portico_sdk::anthropic as claude;
use portico_sdk::formats::anthropic::{self, API_VERSION};
use portico_sdk::prelude::*;

/// Default API root; endpoints may point `base_url` at a proxy instead.
const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Anthropic {
    models: Vec<ModelInfo>,
}

impl Provider for Anthropic {
    type StreamDecoder = claude::MessagesStreamDecoder;

    fn new() -> Self {
        Anthropic {
            models: catalog::load(MODELS),
        }
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            models: self.models.clone(),
            ..Describe::new(
                "anthropic",
                "Anthropic",
                env!("CARGO_PKG_VERSION"),
                "Anthropic Messages API (Claude Opus, Sonnet, Haiku)",
            )
            .native_dialect(Dialect::Anthropic)
            .field(config::api_key(
                "An Anthropic API key (sk-ant-…), from console.anthropic.com.",
            ))
            .field(config::base_url(
                Some(DEFAULT_BASE_URL),
                "API root (without /v1); change it only to go through a proxy.",
            ))
            .field(config::optional(
                "max_tokens",
                "Default max tokens",
                FieldKind::String,
                None,
                "max_tokens sent when the client sets none (Anthropic requires it); defaults to the model's maximum output.",
            ))
            .build()
        }
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        mut request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        if request.model.is_empty() {
            request.model = endpoint.model.clone();
        }
        let max_tokens = claude::default_max_tokens(endpoint, &self.models, &request.model)?;
        let body = anthropic::messages_body(&request, stream, max_tokens);
        Ok(api_request(endpoint, "/v1/messages", &request)?
            .header("accept", http::accept(stream, http::SSE))
            .json(&body)
            .build())
    }

    fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        mut request: ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        if request.model.is_empty() {
            request.model = endpoint.model.clone();
        }
        let body = anthropic::count_tokens_request_body(&request);
        Ok(
            api_request(endpoint, "/v1/messages/count_tokens", &request)?
                .header("accept", "application/json")
                .json(&body)
                .build(),
        )
    }

    fn parse_count_tokens_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, ProviderError> {
        anthropic::parse_count_tokens(&response.body)
    }

    fn parse_chat_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        anthropic::parse_message(&response.body)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        anthropic::parse_error(response.status, &response.headers, &response.body)
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        claude::stream_decoder()
    }
}

/// A POST to `path` of the Messages API for `request`, authenticated, with
/// the client's betas.
fn api_request(
    endpoint: &Endpoint,
    path: &str,
    request: &ChatRequest,
) -> Result<http::RequestBuilder, ProviderError> {
    let base = endpoint.base_url("base_url", Some(DEFAULT_BASE_URL))?;
    // Accept a base URL given with the version (".../v1") as well.
    let base = base.strip_suffix("/v1").unwrap_or(&base);
    let builder = http::RequestBuilder::post(http::join_url(base, path))
        .header("x-api-key", endpoint.require("api_key")?)
        .header("anthropic-version", API_VERSION);
    Ok(claude::with_betas(builder, request))
}

portico_sdk::export_provider!(Anthropic);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{self, *};
    use serde_json::json;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("claude", "claude-sonnet-4-5-20250929", pairs)
    }

    fn chat(messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "claude-sonnet-4-5-20250929".into(),
            messages,
            ..Default::default()
        }
    }

    #[test]
    fn catalog_and_info() {
        let models = assert_catalog_rules(MODELS, &[]);
        assert!(models.len() >= 5);
        assert!(
            models
                .iter()
                .all(|m| m.max_output_tokens > 0 && m.capabilities.tools)
        );
        let info = Anthropic::new().info();
        assert_eq!(info.id, "anthropic");
        assert_eq!(info.native_dialect, Some(Dialect::Anthropic));
        assert_eq!(
            info.operations,
            vec![Operation::Chat, Operation::ChatStream]
        );
        let api_key = &info.config_fields[0];
        assert_eq!(
            (api_key.name.as_str(), api_key.kind, api_key.required),
            ("api_key", FieldKind::Secret, true)
        );
        let base_url = &info.config_fields[1];
        assert_eq!(
            (base_url.name.as_str(), base_url.kind, base_url.required),
            ("base_url", FieldKind::Url, false)
        );
        assert_eq!(base_url.default_value.as_deref(), Some(DEFAULT_BASE_URL));
    }

    #[test]
    fn builds_messages_request() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "sk-ant-test")]);
        let mut request = chat(vec![
            Message::user("Hello"),
            Message::assistant("Hi"),
            Message::user("Bye"),
        ]);
        request.system = Some("Be brief.".into());
        request.params.temperature = Some(0.2);
        request.params.stop = vec!["END".into()];
        let http = provider.build_chat_request(&ep, request, false).unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(header(&http, "x-api-key"), Some("sk-ant-test"));
        assert_eq!(header(&http, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&http, "content-type"), Some("application/json"));
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(
            json_body(&http),
            json!({
                "model": "claude-sonnet-4-5-20250929",
                "max_tokens": 64000,
                "system": "Be brief.",
                "messages": [
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": "Hi"},
                    {"role": "user", "content": "Bye"},
                ],
                "temperature": 0.2,
                "stop_sequences": ["END"],
            })
        );
    }

    #[test]
    fn counts_tokens_with_count_tokens() {
        let provider = Anthropic::new();
        let ep = endpoint(&[
            ("api_key", "sk-ant-test"),
            ("base_url", "https://proxy.example/v1"),
        ]);
        let mut request = chat(vec![Message::user("Hello there")]);
        request.system = Some("Be brief.".into());
        request.params.max_tokens = Some(10);
        let http = provider.build_count_tokens_request(&ep, request).unwrap();
        assert_eq!(http.url, "https://proxy.example/v1/messages/count_tokens");
        assert_eq!(header(&http, "x-api-key"), Some("sk-ant-test"));
        assert_eq!(header(&http, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(
            json_body(&http),
            json!({
                "model": "claude-sonnet-4-5-20250929",
                "system": "Be brief.",
                "messages": [{"role": "user", "content": "Hello there"}],
            })
        );
        let counted = portico_sdk::parse_count_tokens(
            &provider,
            &ep,
            response(200, &[], r#"{"input_tokens": 12}"#),
        );
        assert_eq!(counted, Ok(12));
        let refused = portico_sdk::parse_count_tokens(
            &provider,
            &ep,
            response(
                429,
                &[("retry-after", "3")],
                r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
            ),
        )
        .unwrap_err();
        assert_eq!((refused.status, refused.retry_after_ms), (429, Some(3000)));
    }

    #[test]
    fn client_betas_go_in_the_anthropic_beta_header() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "k")]);
        let mut request = chat(vec![Message::user("x")]);
        request.extra_dialect = Some("anthropic".into());
        request
            .extra
            .insert("context_management".into(), json!({"edits": []}));
        anthropic::set_betas(
            &mut request,
            ["context-management-2025-06-27,interleaved-thinking-2025-05-14"],
        )
        .unwrap();
        for http in [
            provider
                .build_chat_request(&ep, request.clone(), false)
                .unwrap(),
            provider
                .build_count_tokens_request(&ep, request.clone())
                .unwrap(),
        ] {
            assert_eq!(
                header(&http, "anthropic-beta"),
                Some("context-management-2025-06-27,interleaved-thinking-2025-05-14")
            );
            let body = json_body(&http);
            assert!(body.get("anthropic_beta").is_none(), "{body}");
            assert_eq!(body["context_management"], json!({"edits": []}));
        }
        // Without betas, no header.
        let http = provider
            .build_chat_request(&ep, chat(vec![Message::user("x")]), false)
            .unwrap();
        assert_eq!(header(&http, "anthropic-beta"), None);
    }

    #[test]
    fn max_tokens_defaults_and_stream_flag() {
        let provider = Anthropic::new();
        let max_tokens = |ep: &Endpoint, model: &str, given: Option<u32>| {
            let mut request = chat(vec![Message::user("x")]);
            request.model = model.into();
            request.params.max_tokens = given;
            let http = provider.build_chat_request(ep, request, true).unwrap();
            assert_eq!(json_body(&http)["stream"], json!(true));
            assert_eq!(header(&http, "accept"), Some("text/event-stream"));
            json_body(&http)["max_tokens"].clone()
        };
        let plain = endpoint(&[("api_key", "k")]);
        assert_eq!(
            max_tokens(&plain, "claude-3-haiku-20240307", None),
            json!(4096)
        );
        assert_eq!(
            max_tokens(&plain, "claude-3-5-haiku-20241022", None),
            json!(8192)
        );
        assert_eq!(
            max_tokens(&plain, "claude-future-model", None),
            json!(claude::FALLBACK_MAX_TOKENS)
        );
        assert_eq!(
            max_tokens(&plain, "claude-3-haiku-20240307", Some(12)),
            json!(12)
        );
        let configured = endpoint(&[("api_key", "k"), ("max_tokens", " 1000 ")]);
        assert_eq!(
            max_tokens(&configured, "claude-3-haiku-20240307", None),
            json!(1000)
        );
        assert_eq!(
            max_tokens(&configured, "claude-3-haiku-20240307", Some(7)),
            json!(7)
        );

        let bad = endpoint(&[("api_key", "k"), ("max_tokens", "lots")]);
        let err = provider
            .build_chat_request(&bad, chat(vec![Message::user("x")]), false)
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("'max_tokens'"), "{}", err.message);
    }

    #[test]
    fn base_url_override_and_missing_key() {
        let provider = Anthropic::new();
        for (base, url) in [
            (
                "http://127.0.0.1:9999/",
                "http://127.0.0.1:9999/v1/messages",
            ),
            (
                "https://proxy.example.com/anthropic/v1",
                "https://proxy.example.com/anthropic/v1/messages",
            ),
        ] {
            let ep = endpoint(&[("api_key", "k"), ("base_url", base)]);
            let http = provider
                .build_chat_request(&ep, chat(vec![Message::user("x")]), false)
                .unwrap();
            assert_eq!(http.url, url);
        }
        let err = provider
            .build_chat_request(&endpoint(&[]), chat(vec![Message::user("x")]), false)
            .unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("'api_key'"));
    }

    #[test]
    fn tools_results_and_images_in_anthropic_shape() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "k")]);
        let mut request = chat(vec![
            Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("Weather here?"),
                    ContentPart::Image {
                        source: ImageSource::from_url("data:image/png;base64,iVBORw0KGgo="),
                    },
                ],
            },
            Message {
                role: Role::Assistant,
                content: vec![ContentPart::ToolCall {
                    id: "toolu_1".into(),
                    name: "get_weather".into(),
                    arguments: r#"{"city":"Paris"}"#.into(),
                }],
            },
            Message {
                role: Role::Tool,
                content: vec![ContentPart::ToolResult {
                    tool_call_id: "toolu_1".into(),
                    name: None,
                    content: "18C".into(),
                    is_error: false,
                }],
            },
        ]);
        request.tools = vec![Tool {
            name: "get_weather".into(),
            description: Some("Weather".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }];
        request.tool_choice = Some(ToolChoice::Required);
        let sent = json_body(&provider.build_chat_request(&ep, request, false).unwrap());
        assert_eq!(
            sent["messages"],
            json!([
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                ]},
            ])
        );
        assert_eq!(
            sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(sent["tool_choice"], json!({"type": "any"}));
    }

    #[test]
    fn parses_messages_answers() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "k")]);
        let upstream = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",
            "model":"claude-sonnet-4-5-20250929",
            "content":[{"type":"text","text":"Let me check."},
                       {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Paris"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":20,"cache_read_input_tokens":100,"cache_creation_input_tokens":0,"output_tokens":30}}"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], upstream)).unwrap();
        assert_eq!(parsed.id, "msg_01XFDUDYJgAACzvnptvVoYEL");
        assert_eq!(parsed.text(), "Let me check.");
        assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            parsed.content[1],
            ContentPart::ToolCall {
                id: "toolu_01A".into(),
                name: "get_weather".into(),
                arguments: r#"{"city":"Paris"}"#.into()
            }
        );
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 120,
                output_tokens: 30,
                cached_input_tokens: Some(100)
            }
        );
    }

    #[test]
    fn maps_errors() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "sk-ant-secret")]);
        let mut limited = json_response(
            429,
            &[],
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}"#,
        );
        limited.headers.push(("retry-after".into(), "17".into()));
        let err = portico_sdk::parse_chat(&provider, &ep, limited).unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(17_000))
        );
        let overloaded = json_response(
            529,
            &[],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let err = provider.parse_error(&ep, &overloaded);
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Overloaded, "Overloaded")
        );
        let err = provider.parse_error(
            &ep,
            &json_response(401, &[], r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#),
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        assert!(!err.message.contains("secret"));
        let err = provider.parse_error(
            &ep,
            &json_response(404, &[], r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#),
        );
        assert_eq!((err.kind, err.status), (ErrorKind::NotFound, 404));
        let err = provider.parse_error(&ep, &json_response(500, &[], "<html>oops</html>"));
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));
        // A 200 that is not a message is an upstream failure.
        let err = portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], "not json"))
            .unwrap_err();
        assert_eq!(err.status, 502);
    }

    /// A real-shaped Messages stream: text with multi-byte characters, a
    /// ping, a tool call with streamed input, usage, message_stop.
    const STREAM: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Grüezi 👋\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Zürich\\\"}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":40}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn expected_stream_events() -> Vec<StreamEvent> {
        let usage = |output_tokens| StreamEvent::Usage {
            usage: Usage {
                input_tokens: 25,
                output_tokens,
                cached_input_tokens: None,
            },
        };
        vec![
            StreamEvent::Start {
                id: "msg_1".into(),
                model: "claude-sonnet-4-5-20250929".into(),
            },
            usage(1),
            StreamEvent::TextDelta {
                text: "Grüezi 👋".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "toolu_01".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\": ".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "\"Zürich\"}".into(),
            },
            usage(40),
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
        ]
    }

    #[test]
    fn decodes_stream_split_at_every_byte_boundary() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "k")]);
        assert_stream_decodes_at_every_split(
            &provider,
            &ep,
            STREAM.as_bytes(),
            &expected_stream_events(),
        );
    }

    #[test]
    fn unnamed_events_and_truncation() {
        let provider = Anthropic::new();
        let ep = endpoint(&[("api_key", "k")]);
        // Without `event:` lines the data's type decides, message_stop included.
        let unnamed: String = STREAM
            .lines()
            .filter(|line| !line.starts_with("event:"))
            .map(|line| format!("{line}\n"))
            .collect();
        let mut decoder = provider.stream_decoder(&ep);
        let mut events = decoder.push(unnamed.as_bytes()).unwrap();
        events.extend(decoder.finish().unwrap());
        assert_eq!(events, expected_stream_events());

        // Cut before message_stop: an error, not a silently short answer.
        let cut = STREAM.find("event: message_stop").unwrap();
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&STREAM.as_bytes()[..cut]).unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);
    }

    #[test]
    fn mid_stream_error_event() {
        let provider = Anthropic::new();
        let mut decoder = provider.stream_decoder(&endpoint(&[("api_key", "k")]));
        let err = decoder
            .push(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Overloaded, "Overloaded")
        );
    }
}
