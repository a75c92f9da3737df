//! Portico provider plugin for Fireworks AI: chat completions (plain and
//! streamed, with tools, vision and usage) and embeddings, for serverless
//! models (`accounts/fireworks/models/…`) and dedicated deployments.
//!
//! Fireworks' inference API is OpenAI-compatible; this crate is
//! configuration of the SDK's OpenAI flow, the config fields and the
//! catalog.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

const DEFAULT_BASE_URL: &str = "https://api.fireworks.ai/inference/v1";

const MODELS: &str = include_str!("../models.toml");

pub struct Fireworks {
    api: OpenAiCompat,
}

impl Provider for Fireworks {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .default_base_url(DEFAULT_BASE_URL)
            .max_tokens_field(MaxTokensField::MaxTokens)
            // Fireworks sends usage with the last chunk unasked.
            .stream_usage(false)
            .top_k(true);
        Fireworks { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "fireworks",
            "Fireworks AI",
            env!("CARGO_PKG_VERSION"),
            "Fireworks AI: chat completions and embeddings of open models (Llama, DeepSeek, Qwen, Kimi, GPT-OSS)",
        )
        .embeddings()
        .native_dialect(Dialect::Openai)
        .field(config::api_key(
            "A Fireworks API key (fw_…), from fireworks.ai/account/api-keys.",
        ))
        .field(config::proxy_base_url(DEFAULT_BASE_URL))
        .catalog(MODELS)
    }

    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Fireworks);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;
    use serde_json::json;

    const LLAMA: &str = "accounts/fireworks/models/llama-v3p1-70b-instruct";

    fn ep(model: &str) -> Endpoint {
        endpoint(
            "fireworks",
            model,
            &[("api_key", "fw_test"), ("base_url", DEFAULT_BASE_URL)],
        )
    }

    #[test]
    fn describes_itself() {
        let info = Fireworks::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("fireworks", "Fireworks AI")
        );
        assert!(info.supports(Operation::Embeddings));
        let fields: Vec<(&str, bool)> = info
            .config_fields
            .iter()
            .map(|f| (f.name.as_str(), f.required))
            .collect();
        assert_eq!(fields, vec![("api_key", true), ("base_url", false)]);
    }

    #[test]
    fn catalog_is_valid() {
        let models = assert_catalog_rules(MODELS, &[]);
        for model in models.iter().filter(|m| !m.capabilities.embeddings) {
            assert!(
                model.id.starts_with("accounts/fireworks/models/"),
                "{}",
                model.id
            );
        }
        assert!(models.iter().any(|m| m.id == LLAMA));
        let nomic = models
            .iter()
            .find(|m| m.id == "nomic-ai/nomic-embed-text-v1.5")
            .unwrap();
        assert_eq!(nomic.embedding_dimensions, Some(768));
    }

    #[test]
    fn builds_chat_request_with_resource_name_model() {
        let provider = Fireworks::new();
        let request = ChatRequest {
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("Describe"),
                    ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                    },
                ],
            }],
            params: SamplingParams {
                max_tokens: Some(256),
                top_k: Some(50),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(&ep(LLAMA), request, false)
            .unwrap();
        assert_eq!(
            http.url,
            "https://api.fireworks.ai/inference/v1/chat/completions"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer fw_test"));
        let body = json_body(&http);
        assert_eq!(body["model"], LLAMA);
        assert_eq!(body["max_tokens"], 256);
        assert_eq!(body["top_k"], 50);
        assert_eq!(
            body["messages"][0]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
        );
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = Fireworks::new();
        let endpoint = ep("nomic-ai/nomic-embed-text-v1.5");
        let http = provider
            .build_embeddings_request(
                &endpoint,
                EmbeddingsRequest {
                    inputs: vec!["search_query: spiders".into()],
                    dimensions: Some(128),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(http.url, "https://api.fireworks.ai/inference/v1/embeddings");
        let body = json_body(&http);
        assert_eq!(body["dimensions"], 128);
        let upstream = r#"{"data": [{"index": 0, "embedding": [0.125, 0.5], "object": "embedding"}], "model": "nomic-ai/nomic-embed-text-v1.5", "object": "list", "usage": {"prompt_tokens": 5, "total_tokens": 5}}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &endpoint, json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.125, 0.5]]);
        assert_eq!(parsed.usage.input_tokens, 5);
    }

    #[test]
    fn maps_fireworks_errors() {
        let provider = Fireworks::new();
        let err = portico_sdk::parse_chat(&provider,
                &ep(LLAMA),
                json_response(
                    401,
                    &[],
                    r#"{"error": {"object": "error", "type": "invalid_request_error", "message": "The API key you provided is invalid."}}"#,
                ),
            )
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (
                ErrorKind::Authentication,
                "The API key you provided is invalid."
            )
        );
        let err = provider.parse_error(
            &ep(LLAMA),
            &json_response(
                404,
                &[],
                r#"{"error": {"object": "error", "type": "invalid_request_error", "message": "Model not found, inaccessible, and/or not deployed"}}"#,
            ),
        );
        assert_eq!(err.kind, ErrorKind::NotFound);
        let err = provider.parse_error(
            &ep(LLAMA),
            &json_response(429, &[("retry-after", "1")], r#"{"error": {"object": "error", "type": "rate_limit_error", "message": "Request rate limit exceeded"}}"#),
        );
        assert_eq!(err.retry_after_ms, Some(1000));
    }

    /// Fireworks' stream: a tool call streamed in pieces, finish and usage
    /// on the last chunk.
    const STREAM: &str = concat!(
        "data: {\"id\":\"6c1e0f5d\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"accounts/fireworks/models/llama-v3p1-70b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"6c1e0f5d\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"accounts/fireworks/models/llama-v3p1-70b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_fw1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"6c1e0f5d\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"accounts/fireworks/models/llama-v3p1-70b-instruct\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Tōkyō\\\"}\"}}]},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data: {\"id\":\"6c1e0f5d\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"accounts/fireworks/models/llama-v3p1-70b-instruct\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}],\"usage\":{\"prompt_tokens\":210,\"total_tokens\":232,\"completion_tokens\":22}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_stream_split_anywhere() {
        let provider = Fireworks::new();
        let endpoint = ep(LLAMA);
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint,
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "6c1e0f5d".into(),
                    model: LLAMA.into(),
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_fw1".into(),
                    name: "get_weather".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"city\": \"Tōkyō\"}".into(),
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls,
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 210,
                        output_tokens: 22,
                        cached_input_tokens: None,
                    },
                },
            ],
        );
    }
}
