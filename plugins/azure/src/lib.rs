//! Portico provider plugin for Azure OpenAI: chat completions (plain and
//! streamed, with tools, vision and usage) and embeddings of a deployment.
//!
//! Azure speaks the OpenAI wire format with its own addressing:
//! `{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`,
//! an `api-key` header (or an Entra ID bearer token), content-filter
//! annotations in answers and streams. All of it is configuration of the
//! SDK's OpenAI-compatible flow, which also skips Azure's leading
//! `prompt_filter_results` stream chunk.

use portico_sdk::formats::openai::MaxTokensField;
use portico_sdk::openai_compat::{Auth, ChatStreamDecoder, OpenAiCompat};
use portico_sdk::prelude::*;

/// The current GA data-plane API version.
const DEFAULT_API_VERSION: &str = "2024-10-21";

const MODELS: &str = include_str!("../models.toml");

pub struct Azure {
    api: OpenAiCompat,
}

impl Provider for Azure {
    type StreamDecoder = ChatStreamDecoder;

    fn new() -> Self {
        let api = OpenAiCompat::new()
            // `base_url` (a proxy, a private endpoint) replaces `endpoint`.
            .base_url_key("base_url")
            .fallback_base_url_key("endpoint")
            .chat_path("/openai/deployments/{deployment}/chat/completions")
            .embeddings_path("/openai/deployments/{deployment}/embeddings")
            .path_param_from_config("deployment", "deployment")
            .query_from_config("api-version", "api_version", Some(DEFAULT_API_VERSION))
            .auth(Auth::header("api-key", "api_key"))
            .auth_when("auth", "entra", Auth::bearer("api_key"))
            // Reasoning deployments (o-series, GPT-5) reject max_tokens; every
            // GA version since 2024-10-21 takes max_completion_tokens.
            .max_tokens_field(MaxTokensField::MaxCompletionTokens)
            .stream_usage(true);
        Azure { api }
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "azure",
            "Azure OpenAI",
            env!("CARGO_PKG_VERSION"),
            "Azure OpenAI deployments: chat completions and embeddings",
        )
        .embeddings()
        .native_dialect(Dialect::Openai)
        .field(config::required(
            "endpoint",
            "Endpoint",
            FieldKind::Url,
            "The resource endpoint, e.g. https://my-resource.openai.azure.com.",
        ))
        .field(config::required(
            "deployment",
            "Deployment",
            FieldKind::String,
            "The deployment name chosen when the model was deployed.",
        ))
        .field(config::optional(
            "api_version",
            "API version",
            FieldKind::String,
            Some(DEFAULT_API_VERSION),
            "The api-version query parameter (a GA or preview version).",
        ))
        .field(config::api_key(
            "A key of the resource (Keys and Endpoint), or a Microsoft Entra ID access token when Authentication is entra.",
        ))
        .field(config::choice(
            "auth",
            "Authentication",
            &["api-key", "entra"],
            "api-key sends the key as the api-key header; entra sends it as a bearer token.",
        ))
        .field(config::base_url(
            None,
            "Overrides the endpoint, e.g. to go through a proxy or an API Management gateway.",
        ))
        .catalog(MODELS)
    }

    // Chat, streaming, embeddings and errors (content-filter rejections are
    // 400s, hence invalid requests): the shared OpenAI flow.
    portico_sdk::openai_compat_methods!(api);
}

portico_sdk::export_provider!(Azure);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::*;
    use serde_json::json;

    const ENDPOINT: &str = "https://my-resource.openai.azure.com";

    fn ep(extra: &[(&str, &str)]) -> Endpoint {
        let mut config = vec![
            ("endpoint", ENDPOINT),
            ("deployment", "prod-4o"),
            ("api_key", "azure-key"),
            // What the host fills in from the declared defaults.
            ("api_version", DEFAULT_API_VERSION),
            ("auth", "api-key"),
        ];
        for (k, v) in extra {
            config.retain(|(key, _)| key != k);
            config.push((k, v));
        }
        endpoint("azure-4o", "gpt-4o", &config)
    }

    #[test]
    fn describes_itself() {
        let info = Azure::new().info();
        assert_eq!(
            (info.id.as_str(), info.display_name.as_str()),
            ("azure", "Azure OpenAI")
        );
        assert_eq!(info.native_dialect, Some(Dialect::Openai));
        assert!(info.supports(Operation::Chat) && info.supports(Operation::ChatStream));
        assert!(info.supports(Operation::Embeddings));
        assert_eq!(
            fields(&info),
            vec![
                ("endpoint", FieldKind::Url, true, None),
                ("deployment", FieldKind::String, true, None),
                ("api_version", FieldKind::String, false, Some("2024-10-21")),
                ("api_key", FieldKind::Secret, true, None),
                ("auth", FieldKind::Enum, false, Some("api-key")),
                ("base_url", FieldKind::Url, false, None),
            ]
        );
    }

    #[test]
    fn catalog_is_valid() {
        let models = assert_catalog_rules(MODELS, &[]);
        for id in ["gpt-5", "gpt-4.1", "gpt-4o", "gpt-4o-mini", "o4-mini"] {
            let model = models.iter().find(|m| m.id == id).unwrap();
            assert!(
                model.capabilities.tools && model.capabilities.vision,
                "{id}"
            );
        }
        let large = models
            .iter()
            .find(|m| m.id == "text-embedding-3-large")
            .unwrap();
        assert_eq!(large.embedding_dimensions, Some(3072));
    }

    #[test]
    fn chat_request_addresses_the_deployment() {
        let provider = Azure::new();
        let request = ChatRequest {
            system: Some("Be brief.".into()),
            messages: vec![Message {
                role: Role::User,
                content: vec![
                    ContentPart::text("What is this?"),
                    ContentPart::Image {
                        source: ImageSource::Url {
                            url: "https://example.com/a.png".into(),
                        },
                    },
                ],
            }],
            params: SamplingParams {
                max_tokens: Some(100),
                seed: Some(3),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(&ep(&[]), request.clone(), true)
            .unwrap();
        assert_eq!(
            http.url,
            "https://my-resource.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(header(&http, "api-key"), Some("azure-key"));
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        let body = json_body(&http);
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(body["seed"], 3);
        assert_eq!(body["stream_options"], json!({"include_usage": true}));
        assert_eq!(
            body["messages"][1]["content"][1],
            json!({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})
        );

        // Entra ID token, preview API version, base_url override.
        let http = provider
            .build_chat_request(
                &ep(&[
                    ("auth", "entra"),
                    ("api_version", "2025-04-01-preview"),
                    ("base_url", "https://apim.example.com/aoai/"),
                ]),
                request,
                false,
            )
            .unwrap();
        assert_eq!(
            http.url,
            "https://apim.example.com/aoai/openai/deployments/prod-4o/chat/completions?api-version=2025-04-01-preview"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer azure-key"));
        assert_eq!(header(&http, "api-key"), None);
    }

    #[test]
    fn missing_settings_are_named_not_shown() {
        let provider = Azure::new();
        let no_deployment = endpoint(
            "azure-4o",
            "gpt-4o",
            &[("endpoint", ENDPOINT), ("api_key", "secret-key")],
        );
        let err = provider
            .build_chat_request(&no_deployment, ChatRequest::default(), false)
            .unwrap_err();
        assert_eq!(
            err.message,
            "endpoint 'azure-4o' is missing config 'deployment'"
        );
        let bad_endpoint = ep(&[("endpoint", "my-resource.openai.azure.com")]);
        let err = provider
            .build_chat_request(&bad_endpoint, ChatRequest::default(), false)
            .unwrap_err();
        assert!(err.message.contains("'endpoint'") && !err.message.contains("azure-key"));
    }

    #[test]
    fn parses_filtered_answer() {
        let provider = Azure::new();
        let body = r#"{
            "choices": [{
                "content_filter_results": {"hate": {"filtered": true, "severity": "high"}},
                "finish_reason": "content_filter",
                "index": 0,
                "logprobs": null,
                "message": {"content": null, "refusal": null, "role": "assistant"}
            }],
            "created": 1727000000,
            "id": "chatcmpl-AZ1",
            "model": "gpt-4o-2024-08-06",
            "object": "chat.completion",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {"hate": {"filtered": false, "severity": "safe"}}}],
            "system_fingerprint": "fp_b2ffeb16ee",
            "usage": {"completion_tokens": 5, "prompt_tokens": 12, "total_tokens": 17}
        }"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep(&[]), json_response(200, &[], body)).unwrap();
        assert_eq!(parsed.finish_reason, FinishReason::ContentFilter);
        assert_eq!(parsed.model, "gpt-4o-2024-08-06");
        assert_eq!(
            (parsed.usage.input_tokens, parsed.usage.output_tokens),
            (12, 5)
        );
    }

    #[test]
    fn maps_azure_errors() {
        let provider = Azure::new();
        let endpoint = ep(&[]);
        let filtered = json_response(
            400,
            &[],
            r#"{"error": {"message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.", "type": null, "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation", "content_filter_result": {"violence": {"filtered": true, "severity": "medium"}}}}}"#,
        );
        let err = portico_sdk::parse_chat(&provider, &endpoint, filtered).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert!(err.message.starts_with("The response was filtered"));

        let limited = json_response(
            429,
            &[("retry-after", "6"), ("retry-after-ms", "5500")],
            r#"{"error": {"code": "429", "message": "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 6 seconds."}}"#,
        );
        let err = provider.parse_error(&endpoint, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(5500))
        );

        let denied = json_response(
            401,
            &[],
            r#"{"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."}}"#,
        );
        let err = portico_sdk::parse_embeddings(&provider, &endpoint, denied).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));

        let missing = json_response(
            404,
            &[],
            r#"{"error": {"code": "DeploymentNotFound", "message": "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."}}"#,
        );
        assert_eq!(
            provider.parse_error(&endpoint, &missing).kind,
            ErrorKind::NotFound
        );
        let down = json_response(
            500,
            &[],
            r#"{"error": {"code": "InternalServerError", "message": "The service is temporarily unable to process your request."}}"#,
        );
        assert_eq!(provider.parse_error(&endpoint, &down).status, 502);
    }

    #[test]
    fn embeddings_request_and_response() {
        let provider = Azure::new();
        let request = EmbeddingsRequest {
            inputs: vec!["a".into(), "b".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        let http = provider
            .build_embeddings_request(&ep(&[("deployment", "embed-small")]), request)
            .unwrap();
        assert_eq!(
            http.url,
            "https://my-resource.openai.azure.com/openai/deployments/embed-small/embeddings?api-version=2024-10-21"
        );
        assert_eq!(header(&http, "api-key"), Some("azure-key"));
        let body = json_body(&http);
        assert_eq!(body["input"], json!(["a", "b"]));
        assert_eq!(body["dimensions"], 256);
        let upstream = r#"{"data": [{"embedding": [0.5, -1.0], "index": 1, "object": "embedding"}, {"embedding": [0.25, 2.0], "index": 0, "object": "embedding"}], "model": "text-embedding-3-small", "object": "list", "usage": {"prompt_tokens": 2, "total_tokens": 2}}"#;
        let parsed =
            portico_sdk::parse_embeddings(&provider, &ep(&[]), json_response(200, &[], upstream))
                .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.25, 2.0], vec![0.5, -1.0]]);
    }

    /// A stream as Azure sends it: the prompt-filter chunk with empty ids,
    /// content-filter annotations on every choice, an empty filter chunk
    /// after the finish, the usage chunk, `[DONE]`.
    const STREAM: &str = concat!(
        "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"jailbreak\":{\"filtered\":false,\"detected\":false},\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"content\":\"\",\"refusal\":null,\"role\":\"assistant\"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b2ffeb16ee\",\"usage\":null}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}},\"delta\":{\"content\":\"Grüezi \"},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"system_fingerprint\":\"fp_b2ffeb16ee\",\"usage\":null}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_Az\",\"type\":\"function\",\"function\":{\"name\":\"lookup\",\"arguments\":\"{\\\"q\\\":\"}}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"x\\\"}\"}}]},\"finish_reason\":null,\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n",
        "data: {\"choices\":[{\"content_filter_results\":{},\"delta\":{},\"finish_reason\":\"tool_calls\",\"index\":0,\"logprobs\":null}],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":null}\n\n",
        "data: {\"choices\":[],\"created\":1727000000,\"id\":\"chatcmpl-AZ2\",\"model\":\"gpt-4o-2024-08-06\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":9,\"prompt_tokens\":21,\"total_tokens\":30,\"prompt_tokens_details\":{\"cached_tokens\":0}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn decodes_azure_stream_split_anywhere() {
        let provider = Azure::new();
        let endpoint = ep(&[]);
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint,
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "chatcmpl-AZ2".into(),
                    model: "gpt-4o-2024-08-06".into(),
                },
                StreamEvent::TextDelta {
                    text: "Grüezi ".into(),
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_Az".into(),
                    name: "lookup".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "{\"q\":".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: "\"x\"}".into(),
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls,
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 21,
                        output_tokens: 9,
                        cached_input_tokens: Some(0),
                    },
                },
            ],
        );
    }

    #[test]
    fn stream_cut_by_the_content_filter() {
        let provider = Azure::new();
        let endpoint = ep(&[]);
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Some\"},\"finish_reason\":null,\"index\":0}],\"id\":\"c\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: {\"choices\":[{\"content_filter_results\":{\"violence\":{\"filtered\":true,\"severity\":\"high\"}},\"delta\":{},\"finish_reason\":\"content_filter\",\"index\":0}],\"id\":\"c\",\"model\":\"gpt-4o\",\"object\":\"chat.completion.chunk\"}\n\n",
            "data: [DONE]\n\n",
        );
        let events =
            decode_split_everywhere(|| provider.stream_decoder(&endpoint), stream.as_bytes())
                .unwrap();
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::ContentFilter
            })
        );
    }
}
