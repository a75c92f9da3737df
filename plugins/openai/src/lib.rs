//! Portico provider plugin for the OpenAI API: Chat Completions (plain and
//! streamed, with tools, vision and usage) and Embeddings.
//!
//! All the wire-format work is the SDK's OpenAI-compatible flow; this crate
//! is the OpenAI-specific configuration, config fields and catalog.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

/// Default API root; endpoints may point `base_url` at a proxy instead.
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct OpenAi {
    api: OpenAiCompat,
}

impl Provider for OpenAi {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .default_base_url(DEFAULT_BASE_URL)
            .header_from_config("organization", "OpenAI-Organization")
            .header_from_config("project", "OpenAI-Project")
            // Every current OpenAI model accepts max_completion_tokens;
            // reasoning models reject max_tokens.
            .max_tokens_field(MaxTokensField::MaxCompletionTokens)
            .stream_usage(true);
        OpenAi { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "openai",
            "OpenAI",
            env!("CARGO_PKG_VERSION"),
            "OpenAI Chat Completions and Embeddings (GPT-5, GPT-4.1, GPT-4o, o-series)",
        )
        .embeddings()
        .native_dialect(Dialect::Openai)
        .field(config::api_key(
            "An OpenAI API key (sk-…), from platform.openai.com/api-keys.",
        ))
        .field(config::base_url(
            Some(DEFAULT_BASE_URL),
            "API root; change it only to go through a proxy or an OpenAI-compatible gateway.",
        ))
        .field(config::optional(
            "organization",
            "Organization ID",
            FieldKind::String,
            None,
            "Sent as OpenAI-Organization, for keys that belong to several organizations.",
        ))
        .field(config::optional(
            "project",
            "Project ID",
            FieldKind::String,
            None,
            "Sent as OpenAI-Project, to bill usage to a specific project.",
        ))
        .catalog(MODELS)
    }

    // Chat, streaming, embeddings and errors: the shared OpenAI flow.
    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(OpenAi);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{self, *};
    use serde_json::json;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("gpt", "gpt-4o-mini", pairs)
    }

    #[test]
    fn describes_itself() {
        let info = OpenAi::new().info();
        assert_eq!(info.id, "openai");
        assert_eq!(info.display_name, "OpenAI");
        assert_eq!(info.native_dialect, Some(Dialect::Openai));
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
                ("base_url", FieldKind::Url, false),
                ("organization", FieldKind::String, false),
                ("project", FieldKind::String, false),
            ]
        );
        assert_eq!(
            info.config_fields[1].default_value.as_deref(),
            Some(DEFAULT_BASE_URL)
        );
    }

    #[test]
    fn catalog_is_valid_and_complete() {
        let models = assert_catalog_rules(
            MODELS,
            &[
                "gpt-5",
                "gpt-5-mini",
                "gpt-4.1",
                "gpt-4.1-mini",
                "gpt-4.1-nano",
                "gpt-4o",
                "gpt-4o-mini",
                "o3",
                "o4-mini",
                "text-embedding-3-small",
                "text-embedding-3-large",
            ],
        );
        let small = models
            .iter()
            .find(|m| m.id == "text-embedding-3-small")
            .unwrap();
        assert_eq!(small.embedding_dimensions, Some(1536));
        let large = models
            .iter()
            .find(|m| m.id == "text-embedding-3-large")
            .unwrap();
        assert_eq!(large.embedding_dimensions, Some(3072));
        for model in models.iter().filter(|m| !m.capabilities.embeddings) {
            assert!(model.capabilities.tools, "{}", model.id);
            assert!(
                model.max_output_tokens < model.context_window,
                "{}",
                model.id
            );
            assert!(
                model.output_price_per_mtok >= model.input_price_per_mtok,
                "{}",
                model.id
            );
        }
    }

    #[test]
    fn builds_chat_request() {
        let provider = OpenAi::new();
        let ep = endpoint(&[
            ("api_key", "sk-test"),
            ("organization", "org-1"),
            ("project", ""),
        ]);
        let request = ChatRequest {
            system: Some("Be brief.".into()),
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("What is in this image?"),
                    ContentPart::Image {
                        source: ImageSource::Url {
                            url: "https://example.com/a.png".into(),
                        },
                    },
                ],
            }],
            tools: vec![Tool {
                name: "lookup".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}}),
            }],
            params: SamplingParams {
                max_tokens: Some(300),
                temperature: Some(0.0),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(&ep, request.clone(), false)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(http.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(header(&http, "authorization"), Some("Bearer sk-test"));
        assert_eq!(header(&http, "content-type"), Some("application/json"));
        assert_eq!(header(&http, "accept"), Some("application/json"));
        assert_eq!(header(&http, "openai-organization"), Some("org-1"));
        assert_eq!(header(&http, "openai-project"), None);
        assert_eq!(
            json_body(&http),
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ]},
                ],
                "tools": [{"type": "function", "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                }}],
                "max_completion_tokens": 300,
                "temperature": 0.0,
            })
        );

        let proxied = endpoint(&[
            ("api_key", "sk-test"),
            ("base_url", "https://proxy.internal/openai/v1/"),
        ]);
        let mut request = request;
        request.model = "gpt-4.1".into();
        let http = provider
            .build_chat_request(&proxied, request, true)
            .unwrap();
        assert_eq!(
            http.url,
            "https://proxy.internal/openai/v1/chat/completions"
        );
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        let body = json_body(&http);
        assert_eq!(body["model"], "gpt-4.1");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn config_problems_are_clear_and_secret_free() {
        let provider = OpenAi::new();
        let err = provider
            .build_chat_request(&endpoint(&[]), ChatRequest::default(), false)
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert_eq!(err.message, "endpoint 'gpt' is missing config 'api_key'");
        let bad_url = endpoint(&[("api_key", "sk-secret"), ("base_url", "api.openai.com")]);
        let err = provider
            .build_chat_request(&bad_url, ChatRequest::default(), false)
            .unwrap_err();
        assert!(err.message.contains("base_url") && !err.message.contains("sk-secret"));
    }

    #[test]
    fn parses_chat_response() {
        let provider = OpenAi::new();
        let ep = endpoint(&[("api_key", "k")]);
        let body = r#"{
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4o-mini-2024-07-18",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I assist you today?", "refusal": null, "annotations": []},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": {
                "prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}
            },
            "service_tier": "default"
        }"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], body)).unwrap();
        assert_eq!(parsed.id, "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT");
        assert_eq!(parsed.model, "gpt-4o-mini-2024-07-18");
        assert_eq!(parsed.text(), "Hello! How can I assist you today?");
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 19,
                output_tokens: 10,
                cached_input_tokens: Some(0)
            }
        );
        assert_eq!(
            parsed
                .raw
                .and_then(|r| r.parse())
                .map(|r| r["service_tier"].clone()),
            Some(json!("default"))
        );
    }

    #[test]
    fn maps_upstream_errors() {
        let provider = OpenAi::new();
        let ep = endpoint(&[("api_key", "k")]);
        let unauthorized = json_response(
            401,
            &[],
            r#"{"error": {"message": "Incorrect API key provided: sk-abc***xyz.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#,
        );
        let err = portico_sdk::parse_chat(&provider, &ep, unauthorized).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        assert!(err.message.starts_with("Incorrect API key provided"));

        let not_found = json_response(
            404,
            &[],
            r#"{"error": {"message": "The model `gpt-9` does not exist or you do not have access to it.", "type": "invalid_request_error", "param": null, "code": "model_not_found"}}"#,
        );
        assert_eq!(
            portico_sdk::parse_chat(&provider, &ep, not_found)
                .unwrap_err()
                .kind,
            ErrorKind::NotFound
        );

        let mut limited = json_response(
            429,
            &[],
            r#"{"error": {"message": "Rate limit reached for gpt-4o-mini", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#,
        );
        limited.headers.push(("retry-after".into(), "3".into()));
        limited
            .headers
            .push(("retry-after-ms".into(), "2500".into()));
        let err = provider.parse_error(&ep, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(2500))
        );

        let unavailable = HttpResponse {
            status: 503,
            headers: vec![],
            body: b"upstream connect error".to_vec(),
        };
        let err = provider.parse_error(&ep, &unavailable);
        assert_eq!((err.kind, err.status), (ErrorKind::Overloaded, 503));
        assert_eq!(
            err.message,
            "upstream returned HTTP 503: upstream connect error"
        );

        let broken = json_response(
            500,
            &[],
            r#"{"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}"#,
        );
        let err = portico_sdk::parse_embeddings(&provider, &ep, broken).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));

        let garbage = json_response(200, &[], "<html>proxy login</html>");
        assert_eq!(
            portico_sdk::parse_chat(&provider, &ep, garbage)
                .unwrap_err()
                .status,
            502
        );
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = OpenAi::new();
        let mut ep = endpoint(&[("api_key", "sk-e"), ("project", "proj_1")]);
        ep.model = "text-embedding-3-small".into();
        let request = EmbeddingsRequest {
            inputs: vec!["hello".into(), "world".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        let http = provider.build_embeddings_request(&ep, request).unwrap();
        assert_eq!(http.url, "https://api.openai.com/v1/embeddings");
        assert_eq!(header(&http, "authorization"), Some("Bearer sk-e"));
        assert_eq!(header(&http, "openai-project"), Some("proj_1"));
        assert_eq!(
            json_body(&http),
            json!({"model": "text-embedding-3-small", "input": ["hello", "world"], "encoding_format": "float", "dimensions": 256})
        );
        let upstream = r#"{"object": "list", "data": [
            {"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292]},
            {"object": "embedding", "index": 1, "embedding": [-0.0028842222, 0.011136869]}
        ], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 2, "total_tokens": 2}}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &ep, json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(
            parsed.embeddings,
            vec![
                vec![0.0023064255f32, -0.009327292],
                vec![-0.0028842222, 0.011136869]
            ]
        );
        assert_eq!(parsed.usage.input_tokens, 2);
    }

    /// A real-shaped OpenAI stream: role chunk, text with multi-byte
    /// characters, two parallel tool calls, finish, usage chunk, [DONE].
    const STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_1\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Héllo 👋\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive comment\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_A\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Zürich\\\"}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_B\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":40,\"total_tokens\":120,\"prompt_tokens_details\":{\"cached_tokens\":64}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn expected_stream_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: "chatcmpl-1".into(),
                model: "gpt-4o-mini-2024-07-18".into(),
            },
            StreamEvent::TextDelta {
                text: "Héllo 👋".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "call_A".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\": \"Zürich\"}".into(),
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "call_B".into(),
                name: "get_time".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 1,
                arguments: "{}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 80,
                    output_tokens: 40,
                    cached_input_tokens: Some(64),
                },
            },
        ]
    }

    #[test]
    fn decodes_stream_split_at_every_byte_boundary() {
        let provider = OpenAi::new();
        let ep = endpoint(&[("api_key", "k")]);
        assert_stream_decodes_at_every_split(
            &provider,
            &ep,
            STREAM.as_bytes(),
            &expected_stream_events(),
        );
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let provider = OpenAi::new();
        let ep = endpoint(&[("api_key", "k")]);
        // Cut after the tool-call chunks, before finish_reason and [DONE].
        let cut = STREAM
            .find("\"finish_reason\":\"tool_calls\"")
            .and_then(|i| STREAM[..i].rfind("data:"))
            .unwrap();
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&STREAM.as_bytes()[..cut]).unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);
    }

    #[test]
    fn mid_stream_error_event() {
        let provider = OpenAi::new();
        let mut decoder = provider.stream_decoder(&endpoint(&[("api_key", "k")]));
        let err = decoder
            .push(b"data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n")
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Upstream, "The server had an error")
        );
    }
}
