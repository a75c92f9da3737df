//! Portico provider plugin for Groq: chat completions, plain and streamed,
//! with tools, vision (Llama 4 models) and usage. Groq has no embeddings
//! API, so the plugin does not declare the operation and the gateway
//! answers such calls with a 400.
//!
//! Groq's API is OpenAI-compatible: this crate is configuration of the
//! SDK's OpenAI flow, which also reads the usage Groq reports in
//! `x_groq.usage` on the last stream chunk.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

const DEFAULT_BASE_URL: &str = "https://api.groq.com/openai/v1";

const MODELS: &str = include_str!("../models.toml");

pub struct Groq {
    api: OpenAiCompat,
}

impl Provider for Groq {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .default_base_url(DEFAULT_BASE_URL)
            // Groq deprecated max_tokens in favour of this one.
            .max_tokens_field(MaxTokensField::MaxCompletionTokens)
            .stream_usage(true);
        Groq { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "groq",
            "Groq",
            env!("CARGO_PKG_VERSION"),
            "Groq LPU inference: chat completions (Llama, GPT-OSS, Kimi, Qwen)",
        )
        .native_dialect(Dialect::Openai)
        .field(config::api_key(
            "A Groq API key (gsk_…), from console.groq.com/keys.",
        ))
        .field(config::proxy_base_url(DEFAULT_BASE_URL))
        .catalog(MODELS)
    }

    // Chat, streaming and errors; embeddings keep the trait's "not
    // supported" default, as Groq has none.
    portico_sdk::openai_compat_methods!(api, chat);
}

portico_sdk::export_provider!(Groq);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;
    use serde_json::json;

    fn ep() -> Endpoint {
        endpoint(
            "groq-llama",
            "llama-3.3-70b-versatile",
            &[("api_key", "gsk_test"), ("base_url", DEFAULT_BASE_URL)],
        )
    }

    #[test]
    fn describes_itself_without_embeddings() {
        let info = Groq::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("groq", "Groq")
        );
        assert_eq!(
            info.operations,
            vec![Operation::Chat, Operation::ChatStream]
        );
        let fields: Vec<&str> = info.config_fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(fields, vec!["api_key", "base_url"]);
        let err = Groq::new()
            .build_embeddings_request(&ep(), EmbeddingsRequest::default())
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert!(err.message.contains("does not support embeddings"));
    }

    #[test]
    fn catalog_flags_vision_on_llama4_only() {
        let models = assert_catalog_rules(MODELS, &[]);
        assert!(models.iter().all(|m| !m.capabilities.embeddings));
        let vision: Vec<&str> = models
            .iter()
            .filter(|m| m.capabilities.vision)
            .map(|m| m.id.as_str())
            .collect();
        assert_eq!(
            vision,
            vec![
                "meta-llama/llama-4-maverick-17b-128e-instruct",
                "meta-llama/llama-4-scout-17b-16e-instruct"
            ]
        );
        assert!(models.iter().any(|m| m.id == "llama-3.1-8b-instant"));
    }

    #[test]
    fn builds_chat_request() {
        let provider = Groq::new();
        let request = ChatRequest {
            messages: vec![Message::user("hi")],
            tool_choice: Some(ToolChoice::Required),
            tools: vec![Tool {
                name: "f".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {}}),
            }],
            params: SamplingParams {
                max_tokens: Some(64),
                seed: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider.build_chat_request(&ep(), request, true).unwrap();
        assert_eq!(http.url, "https://api.groq.com/openai/v1/chat/completions");
        assert_eq!(header(&http, "authorization"), Some("Bearer gsk_test"));
        let body = json_body(&http);
        assert_eq!(body["model"], "llama-3.3-70b-versatile");
        assert_eq!(body["max_completion_tokens"], 64);
        assert_eq!(body["seed"], 1);
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn maps_groq_errors() {
        let provider = Groq::new();
        let err = portico_sdk::parse_chat(&provider,
                &ep(),
                json_response(
                    401,
                    &[],
                    r#"{"error":{"message":"Invalid API Key","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                ),
            )
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Authentication, "Invalid API Key")
        );
        let limited = json_response(
            429,
            &[("retry-after", "7")],
            r#"{"error":{"message":"Rate limit reached for model `llama-3.3-70b-versatile` in organization `org_01` service tier `on_demand` on tokens per minute (TPM): Limit 12000, Used 11800, Requested 900. Please try again in 7s.","type":"tokens","code":"rate_limit_exceeded"}}"#,
        );
        let err = provider.parse_error(&ep(), &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(7000))
        );
        let unavailable = json_response(
            503,
            &[],
            r#"{"error":{"message":"Service Unavailable","type":"internal_server_error"}}"#,
        );
        assert_eq!(
            provider.parse_error(&ep(), &unavailable).kind,
            ErrorKind::Overloaded
        );
    }

    /// Groq's stream: `x_groq` with the request id on the first chunk and
    /// with the usage on the last one (no separate usage chunk).
    const STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-bc4c2b5f\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"llama-3.3-70b-versatile\",\"system_fingerprint\":\"fp_c06d5113ec\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_01jbd6g2qdfw2adyrt2az8hz4w\"}}\n\n",
        "data: {\"id\":\"chatcmpl-bc4c2b5f\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"llama-3.3-70b-versatile\",\"system_fingerprint\":\"fp_c06d5113ec\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-bc4c2b5f\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"llama-3.3-70b-versatile\",\"system_fingerprint\":\"fp_c06d5113ec\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" wörld\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
        "data: {\"id\":\"chatcmpl-bc4c2b5f\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\"model\":\"llama-3.3-70b-versatile\",\"system_fingerprint\":\"fp_c06d5113ec\",\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}],\"x_groq\":{\"id\":\"req_01jbd6g2qdfw2adyrt2az8hz4w\",\"usage\":{\"queue_time\":0.0391495,\"prompt_tokens\":38,\"prompt_time\":0.001965,\"completion_tokens\":4,\"completion_time\":0.0033,\"total_tokens\":42,\"total_time\":0.0052}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_stream_with_x_groq_usage() {
        let provider = Groq::new();
        let endpoint = ep();
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint,
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "chatcmpl-bc4c2b5f".into(),
                    model: "llama-3.3-70b-versatile".into(),
                },
                StreamEvent::TextDelta {
                    text: "Hello".into(),
                },
                StreamEvent::TextDelta {
                    text: " wörld".into(),
                },
                StreamEvent::Finish {
                    reason: FinishReason::Stop,
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 38,
                        output_tokens: 4,
                        cached_input_tokens: None,
                    },
                },
            ],
        );
    }

    #[test]
    fn mid_stream_error() {
        let provider = Groq::new();
        let mut decoder = provider.stream_decoder(&ep());
        let err = decoder
            .push(b"data: {\"error\":{\"message\":\"Service Unavailable\",\"type\":\"internal_server_error\"}}\n\n")
            .unwrap_err();
        assert_eq!(err.message, "Service Unavailable");
    }
}
