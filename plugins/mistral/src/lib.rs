//! Portico provider plugin for Mistral AI (La Plateforme): chat completions
//! (plain and streamed, with tools, vision and usage) and embeddings.
//!
//! Mistral's API is OpenAI-shaped; the SDK's OpenAI-compatible flow does
//! the work, and [`adjust_chat_body`] / [`adjust_embeddings_body`] fix the
//! few fields Mistral names or constrains differently.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;
use serde_json::Value;

const DEFAULT_BASE_URL: &str = "https://api.mistral.ai/v1";

const MODELS: &str = include_str!("../models.toml");

pub struct Mistral {
    api: OpenAiCompat,
}

impl Provider for Mistral {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .default_base_url(DEFAULT_BASE_URL)
            .max_tokens_field(MaxTokensField::MaxTokens)
            // Mistral puts usage on the last chunk by itself and its
            // schema has no stream_options.
            .stream_usage(false)
            // Mistral rejects fields it does not know.
            .reasoning_effort(false)
            .chat_body_hook(adjust_chat_body)
            .embeddings_body_hook(adjust_embeddings_body);
        Mistral { api }
    }

    fn info(&self) -> ProviderInfo {
        // No native dialect: OpenAI-like but not OpenAI, fields only OpenAI
        // knows are rejected, so the gateway must not pass requests through.
        Describe::new(
            "mistral",
            "Mistral AI",
            env!("CARGO_PKG_VERSION"),
            "Mistral AI chat completions and embeddings (Mistral Medium, Large, Small, Magistral, Codestral)",
        )
        .embeddings()
        .field(config::api_key(
            "A Mistral API key, from console.mistral.ai/api-keys.",
        ))
        .field(config::proxy_base_url(DEFAULT_BASE_URL))
        .catalog(MODELS)
    }

    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Mistral);

/// Where Mistral's chat body differs from OpenAI's in ways that fail a
/// request (Mistral validates bodies strictly):
/// - the seed is `random_seed`;
/// - "call some tool" is tool_choice `"any"` (OpenAI's `"required"`);
/// - tool call ids must be exactly 9 ASCII letters or digits. Ids Mistral
///   made are; ids made elsewhere (a conversation begun on another model:
///   `call_…`, `toolu_…`) are replaced by a stable 9-character digest, the
///   same for a call and for its result.
pub fn adjust_chat_body(body: &mut Value) {
    let Some(body) = body.as_object_mut() else {
        return;
    };
    if let Some(seed) = body.remove("seed") {
        body.insert("random_seed".into(), seed);
    }
    if body.get("tool_choice").and_then(Value::as_str) == Some("required") {
        body.insert("tool_choice".into(), "any".into());
    }
    let Some(messages) = body.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for message in messages {
        if let Some(calls) = message.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for call in calls {
                if let Some(id) = call.get_mut("id") {
                    fix_tool_call_id(id);
                }
            }
        }
        if let Some(id) = message.get_mut("tool_call_id") {
            fix_tool_call_id(id);
        }
    }
}

/// Mistral names the embeddings size `output_dimension`.
pub fn adjust_embeddings_body(body: &mut Value) {
    if let Some(body) = body.as_object_mut()
        && let Some(dimensions) = body.remove("dimensions")
    {
        body.insert("output_dimension".into(), dimensions);
    }
}

fn fix_tool_call_id(id: &mut Value) {
    if let Some(text) = id.as_str() {
        *id = Value::String(mistral_tool_call_id(text));
    }
}

/// `id` itself when Mistral accepts it, else 9 base-62 digits of its
/// FNV-1a hash (deterministic, so a call and its result still match).
pub fn mistral_tool_call_id(id: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let digit = ALPHABET[(hash % 62) as usize] as char;
            hash /= 62;
            digit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;
    use serde_json::json;

    fn ep() -> Endpoint {
        endpoint(
            "mistral-small",
            "mistral-small-latest",
            &[("api_key", "mk-test"), ("base_url", DEFAULT_BASE_URL)],
        )
    }

    #[test]
    fn describes_itself() {
        let info = Mistral::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("mistral", "Mistral AI")
        );
        assert!(info.supports(Operation::Embeddings) && info.supports(Operation::ChatStream));
        let fields: Vec<(&str, bool)> = info
            .config_fields
            .iter()
            .map(|f| (f.name.as_str(), f.required))
            .collect();
        assert_eq!(fields, vec![("api_key", true), ("base_url", false)]);
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
                "mistral-medium-latest",
                "mistral-large-latest",
                "mistral-small-latest",
                "codestral-latest",
            ],
        );
        let embed = models.iter().find(|m| m.id == "mistral-embed").unwrap();
        assert_eq!(embed.embedding_dimensions, Some(1024));
        assert!(
            models
                .iter()
                .filter(|m| m.capabilities.vision)
                .any(|m| m.id == "mistral-medium-latest")
        );
    }

    #[test]
    fn chat_body_uses_mistral_names() {
        let provider = Mistral::new();
        let request = ChatRequest {
            system: Some("Be brief.".into()),
            messages: vec![
                Message::user("Weather in Paris?"),
                Message {
                    role: Role::Assistant,
                    content: vec![
                        // From another provider, and one Mistral made.
                        ContentPart::ToolCall {
                            id: "call_9f8e7d6c5b4a".into(),
                            name: "weather".into(),
                            arguments: "{\"city\":\"Paris\"}".into(),
                        },
                        ContentPart::ToolCall {
                            id: "D681PevKs".into(),
                            name: "weather".into(),
                            arguments: "{\"city\":\"Lyon\"}".into(),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    content: vec![
                        ContentPart::ToolResult {
                            tool_call_id: "call_9f8e7d6c5b4a".into(),
                            name: None,
                            content: "18C".into(),
                            is_error: false,
                        },
                        ContentPart::ToolResult {
                            tool_call_id: "D681PevKs".into(),
                            name: None,
                            content: "20C".into(),
                            is_error: false,
                        },
                    ],
                },
            ],
            tools: vec![Tool {
                name: "weather".into(),
                description: Some("Weather of a city".into()),
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            tool_choice: Some(ToolChoice::Required),
            params: SamplingParams {
                max_tokens: Some(200),
                seed: Some(42),
                temperature: Some(0.3),
                stop: vec!["END".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider.build_chat_request(&ep(), request, true).unwrap();
        assert_eq!(http.url, "https://api.mistral.ai/v1/chat/completions");
        assert_eq!(header(&http, "authorization"), Some("Bearer mk-test"));
        let body = json_body(&http);
        assert_eq!(body["random_seed"], 42);
        assert!(body.get("seed").is_none());
        assert_eq!(body["max_tokens"], 200);
        assert!(body.get("max_completion_tokens").is_none());
        assert_eq!(body["tool_choice"], "any");
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["stop"], json!(["END"]));

        let mapped = mistral_tool_call_id("call_9f8e7d6c5b4a");
        assert_eq!(mapped.len(), 9);
        assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric()));
        let messages = body["messages"].as_array().unwrap();
        let call_ids: Vec<&str> = messages[2]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap())
            .collect();
        assert_eq!(call_ids, vec![mapped.as_str(), "D681PevKs"]);
        assert_eq!(messages[3]["role"], "tool");
        assert_eq!(messages[3]["tool_call_id"], mapped.as_str());
        assert_eq!(messages[4]["tool_call_id"], "D681PevKs");
    }

    #[test]
    fn tool_call_ids_are_stable_and_valid() {
        assert_eq!(mistral_tool_call_id("abcDEF123"), "abcDEF123");
        for id in [
            "",
            "call_1",
            "toolu_01A09q90qw90lq917835lq9",
            "abc-EF123",
            "ünïcödé",
        ] {
            let mapped = mistral_tool_call_id(id);
            assert_eq!(mapped, mistral_tool_call_id(id));
            assert_eq!(mapped.len(), 9, "{id}");
            assert!(mapped.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        assert_ne!(
            mistral_tool_call_id("call_1"),
            mistral_tool_call_id("call_2")
        );
    }

    #[test]
    fn embeddings_request_and_response() {
        let provider = Mistral::new();
        let mut endpoint = ep();
        endpoint.model = "codestral-embed".into();
        let request = EmbeddingsRequest {
            inputs: vec!["fn main() {}".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        let http = provider
            .build_embeddings_request(&endpoint, request)
            .unwrap();
        assert_eq!(http.url, "https://api.mistral.ai/v1/embeddings");
        assert_eq!(
            json_body(&http),
            json!({"model": "codestral-embed", "input": ["fn main() {}"], "encoding_format": "float", "output_dimension": 256})
        );
        let upstream = r#"{"id": "emb-1", "object": "list", "data": [{"object": "embedding", "embedding": [-0.015625, 0.0703125], "index": 0}], "model": "codestral-embed", "usage": {"prompt_tokens": 6, "total_tokens": 6, "completion_tokens": 0}}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &endpoint, json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![-0.015625f32, 0.0703125]]);
        assert_eq!(parsed.usage.input_tokens, 6);
    }

    #[test]
    fn parses_tool_call_answer() {
        let provider = Mistral::new();
        let body = r#"{"id": "cmpl-e5cc70bb28c444948073e77776eb30ef", "object": "chat.completion", "created": 1702256327, "model": "mistral-small-latest",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "", "prefix": false,
                "tool_calls": [{"id": "D681PevKs", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}, "index": 0}]},
                "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 90, "total_tokens": 112, "completion_tokens": 22}}"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep(), json_response(200, &[], body)).unwrap();
        assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
        assert_eq!(
            parsed.content,
            vec![ContentPart::ToolCall {
                id: "D681PevKs".into(),
                name: "weather".into(),
                arguments: "{\"city\": \"Paris\"}".into(),
            }]
        );
        assert_eq!(parsed.usage.output_tokens, 22);
    }

    #[test]
    fn maps_mistral_errors() {
        let provider = Mistral::new();
        let unauthorized = json_response(
            401,
            &[],
            r#"{"message": "Unauthorized", "request_id": "3f1c0d2e"}"#,
        );
        let err = portico_sdk::parse_chat(&provider, &ep(), unauthorized).unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (ErrorKind::Authentication, 401, "Unauthorized")
        );
        let invalid = json_response(
            422,
            &[],
            r#"{"object": "error", "message": {"detail": [{"type": "extra_forbidden", "loc": ["body", "seed"], "msg": "Extra inputs are not permitted", "input": 1}]}, "type": "invalid_request_error", "param": null, "code": null}"#,
        );
        let err = provider.parse_error(&ep(), &invalid);
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 422));
        assert!(err.message.contains("Extra inputs are not permitted"));
        let limited = json_response(
            429,
            &[("Retry-After", "4")],
            r#"{"message": "Requests rate limit exceeded"}"#,
        );
        let err = provider.parse_error(&ep(), &limited);
        assert_eq!(
            (err.kind, err.retry_after_ms),
            (ErrorKind::RateLimited, Some(4000))
        );
    }

    /// Mistral's stream: role chunk, text, a whole tool call in one delta,
    /// finish and usage on the same last chunk, `[DONE]`.
    const STREAM: &str = concat!(
        "data: {\"id\":\"b1\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"b1\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Je vérifie…\"},\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"b1\",\"object\":\"chat.completion.chunk\",\"created\":1702256327,\"model\":\"mistral-small-latest\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\",\"tool_calls\":[{\"id\":\"D681PevKs\",\"function\":{\"name\":\"weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"},\"index\":0}]},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":90,\"total_tokens\":112,\"completion_tokens\":22}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_stream_split_anywhere() {
        let provider = Mistral::new();
        let endpoint = ep();
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint,
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "b1".into(),
                    model: "mistral-small-latest".into(),
                },
                StreamEvent::TextDelta {
                    text: "Je vérifie…".into(),
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "D681PevKs".into(),
                    name: "weather".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\": \"Paris\"}".into(),
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls,
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 90,
                        output_tokens: 22,
                        cached_input_tokens: None,
                    },
                },
            ],
        );
    }
}
