//! An OpenAI-compatible provider: a self-hosted vLLM server.
use portico_sdk::openai_compat::{Auth, ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

pub struct Vllm {
    api: OpenAiCompat,
}

impl Provider for Vllm {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        // No default base URL, so `base_url` is required; the key is optional.
        let api = OpenAiCompat::new()
            .auth(Auth::bearer_if_set("api_key"))
            .top_k(true);
        Vllm { api }
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: "vllm".into(),
            display_name: "vLLM".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A self-hosted vLLM server".into(),
            operations: vec![
                Operation::Chat,
                Operation::ChatStream,
                Operation::Embeddings,
            ],
            native_dialect: Some(Dialect::Openai),
            config_fields: vec![
                config::required(
                    "base_url",
                    "Base URL",
                    FieldKind::Url,
                    "e.g. http://gpu:8000/v1",
                ),
                config::optional(
                    "api_key",
                    "API key",
                    FieldKind::Secret,
                    None,
                    "vLLM --api-key",
                ),
            ],
            egress_hosts: Vec::new(),
            models: Vec::new(), // whatever the server hosts
        }
    }

    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Vllm);
