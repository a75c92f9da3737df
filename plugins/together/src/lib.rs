//! Portico provider plugin for Together AI: chat completions (plain and
//! streamed, with tools, vision and usage) and embeddings of Together's
//! serverless open models.
//!
//! Together's API is OpenAI-compatible; this crate is configuration of the
//! SDK's OpenAI flow, the config fields and the catalog.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

const DEFAULT_BASE_URL: &str = "https://api.together.xyz/v1";

const MODELS: &str = include_str!("../models.toml");

pub struct Together {
    api: OpenAiCompat,
}

impl Provider for Together {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .default_base_url(DEFAULT_BASE_URL)
            .max_tokens_field(MaxTokensField::MaxTokens)
            // Together sends usage with the last chunk unasked.
            .stream_usage(false)
            .top_k(true);
        Together { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "together",
            "Together AI",
            env!("CARGO_PKG_VERSION"),
            "Together AI serverless models: chat completions and embeddings (Llama, DeepSeek, Qwen, Kimi, GPT-OSS)",
        )
        .embeddings()
        .native_dialect(Dialect::Openai)
        .field(config::api_key(
            "A Together API key, from api.together.ai/settings/api-keys.",
        ))
        .field(config::proxy_base_url(DEFAULT_BASE_URL))
        .catalog(MODELS)
    }

    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Together);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;

    fn ep(model: &str) -> Endpoint {
        endpoint(
            "together",
            model,
            &[("api_key", "tg-test"), ("base_url", DEFAULT_BASE_URL)],
        )
    }

    #[test]
    fn describes_itself() {
        let info = Together::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("together", "Together AI")
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
        assert!(
            models
                .iter()
                .any(|m| m.id == "meta-llama/Llama-3.3-70B-Instruct-Turbo" && m.capabilities.tools)
        );
        assert!(
            models
                .iter()
                .any(|m| m.capabilities.vision && m.id.contains("Llama-4"))
        );
        let bge = models
            .iter()
            .find(|m| m.id == "BAAI/bge-large-en-v1.5")
            .unwrap();
        assert_eq!(bge.embedding_dimensions, Some(1024));
    }

    #[test]
    fn builds_chat_request() {
        let provider = Together::new();
        let request = ChatRequest {
            messages: vec![Message::user("hi")],
            params: SamplingParams {
                max_tokens: Some(128),
                top_k: Some(40),
                temperature: Some(0.7),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(
                &ep("meta-llama/Llama-3.3-70B-Instruct-Turbo"),
                request,
                true,
            )
            .unwrap();
        assert_eq!(http.url, "https://api.together.xyz/v1/chat/completions");
        assert_eq!(header(&http, "authorization"), Some("Bearer tg-test"));
        let body = json_body(&http);
        assert_eq!(body["model"], "meta-llama/Llama-3.3-70B-Instruct-Turbo");
        assert_eq!(body["max_tokens"], 128);
        assert!(body.get("max_completion_tokens").is_none());
        assert_eq!(body["top_k"], 40);
        assert_eq!(body["stream"], true);
        assert!(body.get("stream_options").is_none());
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = Together::new();
        let endpoint = ep("BAAI/bge-large-en-v1.5");
        let http = provider
            .build_embeddings_request(
                &endpoint,
                EmbeddingsRequest {
                    inputs: vec!["Our solar system orbits the Milky Way galaxy".into()],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(http.url, "https://api.together.xyz/v1/embeddings");
        assert_eq!(json_body(&http)["model"], "BAAI/bge-large-en-v1.5");
        let upstream = r#"{"object": "list", "data": [{"object": "embedding", "embedding": [0.25, -0.5], "index": 0}], "model": "BAAI/bge-large-en-v1.5", "request_id": "8b5f1c"}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &endpoint, json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.25, -0.5]]);
    }

    #[test]
    fn maps_together_errors() {
        let provider = Together::new();
        let endpoint = ep("meta-llama/Llama-3.3-70B-Instruct-Turbo");
        let err = portico_sdk::parse_chat(&provider,
                &endpoint,
                json_response(
                    401,
                    &[],
                    r#"{"id": "8b5f1c", "error": {"message": "Invalid API key provided. You can find your API key at https://api.together.xyz/settings/api-keys.", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}"#,
                ),
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Authentication);
        assert!(err.message.starts_with("Invalid API key provided"));
        let err = provider.parse_error(
            &endpoint,
            &json_response(
                429,
                &[("retry-after", "2")],
                r#"{"id": "8b5f1d", "error": {"message": "You have been rate limited.", "type": "model_rate_limit", "param": null, "code": null}}"#,
            ),
        );
        assert_eq!(
            (err.kind, err.retry_after_ms),
            (ErrorKind::RateLimited, Some(2000))
        );
    }

    /// Together's stream: extra `token_id` / `text` fields, usage on the
    /// finish chunk.
    const STREAM: &str = concat!(
        "data: {\"id\":\"oBUtQrM-62bZhn\",\"object\":\"chat.completion.chunk\",\"created\":1758039001,\"model\":\"meta-llama/Llama-3.3-70B-Instruct-Turbo\",\"choices\":[{\"index\":0,\"text\":\"Sol\",\"logprobs\":null,\"finish_reason\":null,\"seed\":null,\"delta\":{\"token_id\":49912,\"role\":\"assistant\",\"content\":\"Sol\",\"tool_calls\":null}}],\"usage\":null}\n\n",
        "data: {\"id\":\"oBUtQrM-62bZhn\",\"object\":\"chat.completion.chunk\",\"created\":1758039001,\"model\":\"meta-llama/Llama-3.3-70B-Instruct-Turbo\",\"choices\":[{\"index\":0,\"text\":\".\",\"logprobs\":null,\"finish_reason\":null,\"seed\":null,\"delta\":{\"token_id\":13,\"role\":\"assistant\",\"content\":\".\",\"tool_calls\":null}}],\"usage\":null}\n\n",
        "data: {\"id\":\"oBUtQrM-62bZhn\",\"object\":\"chat.completion.chunk\",\"created\":1758039001,\"model\":\"meta-llama/Llama-3.3-70B-Instruct-Turbo\",\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,\"finish_reason\":\"stop\",\"seed\":7104931522404564000,\"delta\":{\"token_id\":128009,\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":null}}],\"usage\":{\"prompt_tokens\":45,\"completion_tokens\":2,\"total_tokens\":47,\"cached_tokens\":0}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_stream_split_anywhere() {
        let provider = Together::new();
        let endpoint = ep("meta-llama/Llama-3.3-70B-Instruct-Turbo");
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint,
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "oBUtQrM-62bZhn".into(),
                    model: "meta-llama/Llama-3.3-70B-Instruct-Turbo".into(),
                },
                StreamEvent::TextDelta { text: "Sol".into() },
                StreamEvent::TextDelta { text: ".".into() },
                StreamEvent::Finish {
                    reason: FinishReason::Stop,
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 45,
                        output_tokens: 2,
                        cached_input_tokens: None,
                    },
                },
            ],
        );
    }
}
