//! Portico provider plugin for Databricks Model Serving: chat completions
//! (plain and streamed, with tools, vision and usage) and embeddings of a
//! serving endpoint, whether a Foundation Model API, an external model or a
//! custom chat/embeddings endpoint.
//!
//! Databricks speaks the OpenAI chat and embeddings formats at
//! `{workspace}/serving-endpoints/{endpoint}/invocations`: the serving
//! endpoint (the Portico endpoint's `model`) is in the path, so bodies carry
//! no `model`. Authentication is a bearer token (a personal access token or
//! a service principal's OAuth token).

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{Auth, ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;
use serde_json::Value;

const MODELS: &str = include_str!("../models.toml");

const INVOCATIONS: &str = "/serving-endpoints/{model}/invocations";

pub struct Databricks {
    api: OpenAiCompat,
}

impl Provider for Databricks {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            .base_url_key("base_url")
            .fallback_base_url_key("workspace_url")
            .chat_path(INVOCATIONS)
            .embeddings_path(INVOCATIONS)
            .auth(Auth::bearer("token"))
            .model_in_body(false)
            .max_tokens_field(MaxTokensField::MaxTokens)
            // Serving endpoints report usage on their chunks unasked, and
            // custom ones may reject fields they do not know.
            .stream_usage(false)
            .embeddings_body_hook(embeddings_body);
        Databricks { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "databricks",
            "Databricks",
            env!("CARGO_PKG_VERSION"),
            "Databricks Model Serving endpoints: chat completions and embeddings (Foundation Model APIs, external and custom models)",
        )
        .embeddings()
        .native_dialect(Dialect::Openai)
        .field(config::required(
            "workspace_url",
            "Workspace URL",
            FieldKind::Url,
            "The workspace root, e.g. https://adb-1234567890123456.7.azuredatabricks.net or https://dbc-a1b2c3d4-e5f6.cloud.databricks.com.",
        ))
        .field(config::required(
            "token",
            "Access token",
            FieldKind::Secret,
            "A personal access token (dapi…) or a service principal's OAuth token with Can Query on the serving endpoint.",
        ))
        .field(config::base_url(
            None,
            "Overrides the workspace URL, e.g. to go through a proxy.",
        ))
        .catalog(MODELS)
    }

    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Databricks);

/// Serving endpoints take `{"input": [...]}` (plus `dimensions` where the
/// model has it); floats are what they answer anyway, and custom endpoints
/// reject an `encoding_format` they do not know.
fn embeddings_body(body: &mut Value) {
    if let Some(body) = body.as_object_mut() {
        body.remove("encoding_format");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;
    use serde_json::json;

    const WORKSPACE: &str = "https://adb-1234567890123456.7.azuredatabricks.net";

    fn ep(model: &str, extra: &[(&str, &str)]) -> Endpoint {
        let mut config = vec![("workspace_url", WORKSPACE), ("token", "dapi-test")];
        config.extend_from_slice(extra);
        endpoint("dbx", model, &config)
    }

    #[test]
    fn describes_itself() {
        let info = Databricks::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("databricks", "Databricks")
        );
        assert_eq!(info.native_dialect, Some(Dialect::Openai));
        let fields: Vec<(&str, FieldKind, bool)> = info
            .config_fields
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.required))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("workspace_url", FieldKind::Url, true),
                ("token", FieldKind::Secret, true),
                ("base_url", FieldKind::Url, false),
            ]
        );
    }

    #[test]
    fn catalog_is_valid() {
        let models = assert_catalog_rules(MODELS, &[]);
        assert!(models.iter().all(|m| m.id.starts_with("databricks-")));
        assert!(
            models
                .iter()
                .any(|m| m.id == "databricks-meta-llama-3-3-70b-instruct")
        );
        let gte = models
            .iter()
            .find(|m| m.id == "databricks-gte-large-en")
            .unwrap();
        assert_eq!(gte.embedding_dimensions, Some(1024));
    }

    #[test]
    fn chat_goes_to_the_serving_endpoint() {
        let provider = Databricks::new();
        let request = ChatRequest {
            system: Some("Answer in French.".into()),
            messages: vec![Message::user("Hello")],
            params: SamplingParams {
                max_tokens: Some(50),
                temperature: Some(0.1),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(
                &ep("databricks-meta-llama-3-3-70b-instruct", &[]),
                request.clone(),
                true,
            )
            .unwrap();
        assert_eq!(
            http.url,
            "https://adb-1234567890123456.7.azuredatabricks.net/serving-endpoints/databricks-meta-llama-3-3-70b-instruct/invocations"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer dapi-test"));
        assert_eq!(
            json_body(&http),
            json!({
                "messages": [
                    {"role": "system", "content": "Answer in French."},
                    {"role": "user", "content": "Hello"},
                ],
                "max_tokens": 50,
                "temperature": 0.1,
                "stream": true,
            })
        );

        // base_url overrides the workspace; endpoint names are encoded.
        let http = provider
            .build_chat_request(
                &ep("my endpoint", &[("base_url", "http://127.0.0.1:8080/dbx/")]),
                request,
                false,
            )
            .unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:8080/dbx/serving-endpoints/my%20endpoint/invocations"
        );
        let err = provider
            .build_chat_request(
                &endpoint("dbx", "m", &[("workspace_url", WORKSPACE)]),
                ChatRequest::default(),
                false,
            )
            .unwrap_err();
        assert_eq!(err.message, "endpoint 'dbx' is missing config 'token'");
    }

    #[test]
    fn embeddings_body_is_just_the_input() {
        let provider = Databricks::new();
        let endpoint = ep("databricks-gte-large-en", &[]);
        let http = provider
            .build_embeddings_request(
                &endpoint,
                EmbeddingsRequest {
                    inputs: vec!["a".into(), "b".into()],
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            http.url,
            format!("{WORKSPACE}/serving-endpoints/databricks-gte-large-en/invocations")
        );
        assert_eq!(json_body(&http), json!({"input": ["a", "b"]}));
        let upstream = r#"{"id": "0b3e6e9c", "object": "list", "model": "gte-large-en-v1.5", "data": [{"index": 0, "object": "embedding", "embedding": [0.5, 0.25]}, {"index": 1, "object": "embedding", "embedding": [-0.5, 1.0]}], "usage": {"prompt_tokens": 4, "total_tokens": 4}}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &endpoint, json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5, 0.25], vec![-0.5, 1.0]]);
        assert_eq!(parsed.usage.input_tokens, 4);
    }

    #[test]
    fn maps_databricks_errors() {
        let provider = Databricks::new();
        let endpoint = ep("databricks-meta-llama-3-3-70b-instruct", &[]);
        let err = portico_sdk::parse_chat(&provider,
                &endpoint,
                json_response(
                    401,
                    &[],
                    r#"{"error_code": "401", "message": "Credential was not sent or was of an unsupported type for this API. [ReqId: 2b9d1c]"}"#,
                ),
            )
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Authentication);
        assert!(err.message.starts_with("Credential was not sent"));
        let err = provider.parse_error(
            &endpoint,
            &json_response(
                404,
                &[],
                r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "The given endpoint does not exist, please retry after checking the specified model and version deployment exists."}"#,
            ),
        );
        assert_eq!(err.kind, ErrorKind::NotFound);
        let err = provider.parse_error(
            &endpoint,
            &json_response(
                429,
                &[("Retry-After", "3")],
                r#"{"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "REQUEST_LIMIT_EXCEEDED: Exceeded workspace rate limit for databricks-meta-llama-3-3-70b-instruct."}"#,
            ),
        );
        assert_eq!(
            (err.kind, err.retry_after_ms),
            (ErrorKind::RateLimited, Some(3000))
        );
    }

    /// A Foundation Model API stream: usage (cumulative) on every chunk, no
    /// `[DONE]` needed once the finish reason came.
    const STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl_7d4c\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"meta-llama-3.3-70b-instruct-121024\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Bon\"},\"finish_reason\":null,\"logprobs\":null}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":1,\"total_tokens\":20}}\n\n",
        "data: {\"id\":\"chatcmpl_7d4c\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"meta-llama-3.3-70b-instruct-121024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"jour\"},\"finish_reason\":null,\"logprobs\":null}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":2,\"total_tokens\":21}}\n\n",
        "data: {\"id\":\"chatcmpl_7d4c\",\"object\":\"chat.completion.chunk\",\"created\":1730000000,\"model\":\"meta-llama-3.3-70b-instruct-121024\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\",\"logprobs\":null}],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":3,\"total_tokens\":22}}\n\n",
    );

    #[test]
    fn decodes_stream_split_anywhere() {
        let provider = Databricks::new();
        let endpoint = ep("databricks-meta-llama-3-3-70b-instruct", &[]);
        let events =
            decode_split_everywhere(|| provider.stream_decoder(&endpoint), STREAM.as_bytes())
                .unwrap();
        let usage = |output_tokens| StreamEvent::Usage {
            usage: Usage {
                input_tokens: 19,
                output_tokens,
                cached_input_tokens: None,
            },
        };
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "chatcmpl_7d4c".into(),
                    model: "meta-llama-3.3-70b-instruct-121024".into()
                },
                StreamEvent::TextDelta { text: "Bon".into() },
                usage(1),
                StreamEvent::TextDelta {
                    text: "jour".into()
                },
                usage(2),
                StreamEvent::Finish {
                    reason: FinishReason::Stop
                },
                usage(3),
            ]
        );
    }
}
