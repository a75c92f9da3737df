//! Portico provider plugin for the Google Gemini API
//! (`generativelanguage.googleapis.com`): `generateContent`, streamed
//! `streamGenerateContent?alt=sse` (text, thinking, function calls, images,
//! usage) and `batchEmbedContents`, authenticated with an API key.
//!
//! The wire translation is `portico_model::formats::gemini`, shared with the
//! gateway's Gemini dialect and the Vertex AI plugin; the HTTP around it is
//! `portico_sdk::gemini`. This crate is the Gemini-API-specific URLs, auth,
//! config fields and catalog.

use portico_sdk::formats::gemini as wire;
use portico_sdk::gemini::{self, GeminiStreamDecoder};
use portico_sdk::prelude::*;

/// Default API root; endpoints may point `base_url` at a proxy instead.
const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// The API version the paths use: v1beta has every current feature
/// (system instructions, tools, thinking) and is what Google's SDKs call.
const API_VERSION: &str = "v1beta";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Gemini;

impl Gemini {
    /// `{base_url}/v1beta/models/{model}`: the resource every method of a
    /// model hangs off.
    fn model_url(endpoint: &Endpoint, model: &str) -> Result<String, ProviderError> {
        let base = endpoint.base_url("base_url", Some(DEFAULT_BASE_URL))?;
        Ok(http::join_url(
            &base,
            &format!("{API_VERSION}/{}", model_resource(model)?),
        ))
    }

    fn authorize(
        endpoint: &Endpoint,
        builder: http::RequestBuilder,
    ) -> Result<HttpRequest, ProviderError> {
        Ok(builder
            .header("x-goog-api-key", endpoint.require("api_key")?)
            .build())
    }
}

/// The resource name of a model id: `gemini-2.5-flash` and
/// `models/gemini-2.5-flash` are `models/gemini-2.5-flash`; tuned models
/// (`tunedModels/…`) keep their collection. Segments are percent-encoded so
/// an id cannot escape its path.
fn model_resource(model: &str) -> Result<String, ProviderError> {
    let model = model.trim();
    let (collection, id) = match model.split_once('/') {
        Some((collection @ ("models" | "tunedModels"), id)) => (collection, id),
        _ => ("models", model),
    };
    if id.is_empty() || id.contains('/') {
        return Err(ProviderError::invalid_request(format!(
            "'{model}' is not a Gemini model id"
        )));
    }
    Ok(format!("{collection}/{}", http::encode_component(id)))
}

impl Provider for Gemini {
    type StreamDecoder = GeminiStreamDecoder;

    fn new() -> Self {
        Gemini
    }

    fn info(&self) -> ProviderInfo {
        Describe::new(
            "gemini",
            "Google Gemini",
            env!("CARGO_PKG_VERSION"),
            "Google Gemini API (Gemini 3, 2.5 and 2.0 models; embeddings)",
        )
        .embeddings()
        .native_dialect(Dialect::Gemini)
        .field(config::api_key(
            "A Gemini API key (AIza…), from aistudio.google.com/apikey.",
        ))
        .field(config::base_url(
            Some(DEFAULT_BASE_URL),
            "API root (without /v1beta); change it only to go through a proxy.",
        ))
        .catalog(MODELS)
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let url = Self::model_url(endpoint, &request.model)?;
        Self::authorize(
            endpoint,
            gemini::generate_content_request(&url, &request, stream),
        )
    }

    fn parse_chat_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        gemini::parse_chat_response(&response)
    }

    /// `countTokens` with the whole request as `generateContentRequest`, so
    /// the system instruction and tools count too.
    fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let url = Self::model_url(endpoint, &request.model)?;
        let resource = model_resource(&request.model)?;
        Self::authorize(
            endpoint,
            gemini::count_tokens_request(&url, &request, Some(&resource)),
        )
    }

    fn parse_count_tokens_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, ProviderError> {
        gemini::parse_count_tokens(&response)
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        if request.inputs.is_empty() {
            return Err(ProviderError::invalid_request(
                "embeddings need at least one input",
            ));
        }
        let resource = model_resource(&request.model)?;
        let url = format!(
            "{}:batchEmbedContents",
            Self::model_url(endpoint, &request.model)?
        );
        let body = wire::batch_embed_contents_request_body(&request, &resource);
        Self::authorize(endpoint, http::RequestBuilder::post(url).json(&body))
    }

    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let mut parsed = wire::parse_batch_embed_contents(&response.body)?;
        if parsed.model.is_empty() {
            parsed.model = endpoint.model.clone();
        }
        Ok(parsed)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        gemini::parse_error(response)
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        gemini::stream_decoder()
    }
}

portico_sdk::export_provider!(Gemini);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::testing::{self, *};
    use serde_json::json;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("flash", "gemini-2.5-flash", pairs)
    }

    fn chat(model: &str) -> ChatRequest {
        ChatRequest {
            model: model.into(),
            messages: vec![Message::user("Hi")],
            ..Default::default()
        }
    }

    #[test]
    fn describes_itself() {
        let info = Gemini::new().info();
        assert_eq!(info.id, "gemini");
        assert_eq!(info.native_dialect, Some(Dialect::Gemini));
        for op in [
            Operation::Chat,
            Operation::ChatStream,
            Operation::Embeddings,
        ] {
            assert!(info.supports(op), "{op:?}");
        }
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
            ]
        );
        assert_eq!(
            info.config_fields[1].default_value.as_deref(),
            Some(DEFAULT_BASE_URL)
        );
        assert!(info.egress_hosts.is_empty());
    }

    #[test]
    fn catalog_is_valid_and_complete() {
        let models = assert_catalog_rules(
            MODELS,
            &[
                "gemini-2.5-pro",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
                "gemini-2.0-flash",
                "gemini-embedding-001",
            ],
        );
        for model in models.iter().filter(|m| !m.capabilities.embeddings) {
            assert!(
                model.capabilities.tools && model.capabilities.vision,
                "{}",
                model.id
            );
            assert!(model.max_output_tokens < model.context_window);
            assert!(model.output_price_per_mtok >= model.input_price_per_mtok);
        }
    }

    #[test]
    fn builds_chat_request() {
        let provider = Gemini::new();
        let ep = endpoint(&[("api_key", "AIza-test")]);
        let request = ChatRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("Be brief.".into()),
            messages: vec![
                Message::user("What is in this image?"),
                Message {
                    role: Role::User,
                    content: vec![ContentPart::Image {
                        source: ImageSource::Base64 {
                            media_type: "image/png".into(),
                            data: "iVBORw0KGgo=".into(),
                        },
                    }],
                },
            ],
            tools: vec![Tool {
                name: "lookup".into(),
                description: Some("Look something up".into()),
                parameters: json!({"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}),
            }],
            tool_choice: Some(ToolChoice::Required),
            params: SamplingParams {
                max_tokens: Some(300),
                temperature: Some(0.5),
                top_p: Some(0.9),
                stop: vec!["END".into()],
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .build_chat_request(&ep, request.clone(), false)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(
            http.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(header(&http, "x-goog-api-key"), Some("AIza-test"));
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(header(&http, "content-type"), Some("application/json"));
        assert_eq!(
            json_body(&http),
            json!({
                "contents": [{"role": "user", "parts": [
                    {"text": "What is in this image?"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                ]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
                "tools": [{"functionDeclarations": [{
                    "name": "lookup",
                    "description": "Look something up",
                    // Gemini's schema dialect: upper-case OpenAPI types.
                    "parameters": {"type": "OBJECT", "properties": {"q": {"type": "STRING"}}, "required": ["q"]},
                }]}],
                "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
                "generationConfig": {
                    "maxOutputTokens": 300, "temperature": 0.5, "topP": 0.9, "stopSequences": ["END"],
                },
            })
        );

        let proxied = endpoint(&[
            ("api_key", "AIza-test"),
            ("base_url", "http://127.0.0.1:8080/google/"),
        ]);
        let http = provider
            .build_chat_request(&proxied, chat("models/gemini-2.0-flash"), true)
            .unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:8080/google/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        // The model is in the URL only.
        assert!(json_body(&http).get("model").is_none());
    }

    #[test]
    fn model_ids_stay_in_their_path_segment() {
        assert_eq!(
            model_resource("tunedModels/my-tune").unwrap(),
            "tunedModels/my-tune"
        );
        assert_eq!(model_resource("a b?c").unwrap(), "models/a%20b%3Fc");
        for bad in ["", "models/", "../../v1/files", "models/a/b"] {
            let err = model_resource(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidRequest, "{bad}");
        }
    }

    #[test]
    fn config_problems_are_clear_and_secret_free() {
        let provider = Gemini::new();
        let err = provider
            .build_chat_request(&endpoint(&[]), chat("gemini-2.5-flash"), false)
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::InvalidRequest, 400));
        assert_eq!(err.message, "endpoint 'flash' is missing config 'api_key'");
        let bad_url = endpoint(&[("api_key", "AIza-secret"), ("base_url", "example.com")]);
        let err = provider
            .build_chat_request(&bad_url, chat("gemini-2.5-flash"), false)
            .unwrap_err();
        assert!(err.message.contains("base_url") && !err.message.contains("AIza-secret"));
    }

    #[test]
    fn counts_tokens_with_count_tokens() {
        let provider = Gemini::new();
        let ep = endpoint(&[("api_key", "AIza-test")]);
        let mut request = chat("gemini-2.5-flash");
        request.system = Some("Be brief.".into());
        let http = provider.build_count_tokens_request(&ep, request).unwrap();
        assert_eq!(
            http.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:countTokens"
        );
        assert_eq!(header(&http, "x-goog-api-key"), Some("AIza-test"));
        assert_eq!(
            json_body(&http),
            json!({"generateContentRequest": {
                "model": "models/gemini-2.5-flash",
                "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
                "systemInstruction": {"parts": [{"text": "Be brief."}]},
            }})
        );
        let counted = portico_sdk::parse_count_tokens(
            &provider,
            &ep,
            response(200, &[], r#"{"totalTokens": 7, "promptTokensDetails": []}"#),
        );
        assert_eq!(counted, Ok(7));
    }

    #[test]
    fn parses_chat_response() {
        let provider = Gemini::new();
        let ep = endpoint(&[("api_key", "k")]);
        let body = r#"{
          "candidates": [{
            "content": {"parts": [
              {"text": "Let me check.", "thoughtSignature": "c2lnMQ=="},
              {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
            ], "role": "model"},
            "finishReason": "STOP",
            "avgLogprobs": -0.12,
            "index": 0
          }],
          "usageMetadata": {"promptTokenCount": 25, "candidatesTokenCount": 12, "totalTokenCount": 57, "thoughtsTokenCount": 20,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 25}]},
          "modelVersion": "gemini-2.5-flash",
          "responseId": "mFJGaO2SBvWV"
        }"#;
        let parsed =
            portico_sdk::parse_chat(&provider, &ep, json_response(200, &[], body)).unwrap();
        assert_eq!(parsed.id, "mFJGaO2SBvWV");
        assert_eq!(parsed.model, "gemini-2.5-flash");
        assert_eq!(parsed.text(), "Let me check.");
        assert_eq!(parsed.finish_reason, FinishReason::ToolCalls);
        let calls: Vec<(&str, &str)> = parsed
            .content
            .iter()
            .filter_map(|p| match p {
                ContentPart::ToolCall {
                    name, arguments, ..
                } => Some((name.as_str(), arguments.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(calls, vec![("get_weather", r#"{"city":"Paris"}"#)]);
        assert_eq!(
            parsed.usage,
            Usage {
                input_tokens: 25,
                output_tokens: 32,
                cached_input_tokens: None
            }
        );
    }

    #[test]
    fn maps_upstream_errors() {
        let provider = Gemini::new();
        let ep = endpoint(&[("api_key", "k")]);
        let bad_key = json_response(
            400,
            &[],
            r#"{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}"#,
        );
        let err = portico_sdk::parse_chat(&provider, &ep, bad_key).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));

        let not_found = json_response(
            404,
            &[],
            r#"{"error": {"code": 404, "message": "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.", "status": "NOT_FOUND"}}"#,
        );
        assert_eq!(
            provider.parse_error(&ep, &not_found).kind,
            ErrorKind::NotFound
        );

        let limited = json_response(
            429,
            &[],
            r#"{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}]}}"#,
        );
        let err = provider.parse_error(&ep, &limited);
        assert_eq!(
            (err.kind, err.status, err.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(17_000))
        );

        let internal = json_response(
            500,
            &[],
            r#"{"error": {"code": 500, "message": "An internal error has occurred.", "status": "INTERNAL"}}"#,
        );
        let err = portico_sdk::parse_embeddings(&provider, &ep, internal).unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::Upstream, 502));

        let overloaded = json_response(
            503,
            &[],
            r#"{"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}"#,
        );
        assert_eq!(
            provider.parse_error(&ep, &overloaded).kind,
            ErrorKind::Overloaded
        );
        let garbage = json_response(200, &[], "<html>proxy login</html>");
        assert_eq!(
            portico_sdk::parse_chat(&provider, &ep, garbage)
                .unwrap_err()
                .kind,
            ErrorKind::Upstream
        );
    }

    #[test]
    fn embeddings_round_trip() {
        let provider = Gemini::new();
        let ep = endpoint(&[("api_key", "AIza-test")]);
        let request = EmbeddingsRequest {
            model: "gemini-embedding-001".into(),
            inputs: vec!["first".into(), "second".into()],
            dimensions: Some(768),
            input_type: Some("search_query".into()),
            ..Default::default()
        };
        let http = provider.build_embeddings_request(&ep, request).unwrap();
        assert_eq!(
            http.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
        );
        assert_eq!(header(&http, "x-goog-api-key"), Some("AIza-test"));
        assert_eq!(
            json_body(&http),
            json!({"requests": [
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "first"}]},
                 "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 768},
                {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "second"}]},
                 "taskType": "RETRIEVAL_QUERY", "outputDimensionality": 768},
            ]})
        );
        let empty = EmbeddingsRequest {
            model: "gemini-embedding-001".into(),
            ..Default::default()
        };
        assert!(provider.build_embeddings_request(&ep, empty).is_err());

        let parsed = portico_sdk::parse_embeddings(
            &provider,
            &ep,
            json_response(
                200,
                &[],
                r#"{"embeddings": [{"values": [0.25, -0.5]}, {"values": [1, 0]}]}"#,
            ),
        )
        .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.25, -0.5], vec![1.0, 0.0]]);
        assert_eq!(parsed.model, "gemini-2.5-flash");
    }

    /// A recorded-shape stream: thinking, text, a function call and the
    /// final chunk with usage, CRLF-framed as Google sends it.
    const STREAM: &str = concat!(
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Thinking about \u{201c}Paris\u{201d}\",\"thought\": true}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12,\"totalTokenCount\": 12},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-42\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Checking\"}],\"role\": \"model\"},\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12,\"candidatesTokenCount\": 1,\"totalTokenCount\": 13},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-42\"}\r\n\r\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": {\"name\": \"get_weather\",\"args\": {\"city\": \"Paris\"}}}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}],\"usageMetadata\": {\"promptTokenCount\": 12,\"candidatesTokenCount\": 9,\"totalTokenCount\": 21},\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"r-42\"}\r\n\r\n",
    );

    #[test]
    fn decodes_streams_split_at_every_byte() {
        let provider = Gemini::new();
        assert_stream_decodes_at_every_split(
            &provider,
            &endpoint(&[]),
            STREAM.as_bytes(),
            &[
                StreamEvent::Start {
                    id: "r-42".into(),
                    model: "gemini-2.5-flash".into(),
                },
                StreamEvent::ThinkingDelta {
                    text: "Thinking about \u{201c}Paris\u{201d}".into(),
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 12,
                        output_tokens: 0,
                        cached_input_tokens: None,
                    },
                },
                StreamEvent::TextDelta {
                    text: "Checking".into(),
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 12,
                        output_tokens: 1,
                        cached_input_tokens: None,
                    },
                },
                StreamEvent::ToolCallStart {
                    index: 0,
                    id: "call_r-42_0".into(),
                    name: "get_weather".into(),
                },
                StreamEvent::ToolCallDelta {
                    index: 0,
                    arguments: r#"{"city":"Paris"}"#.into(),
                },
                StreamEvent::Usage {
                    usage: Usage {
                        input_tokens: 12,
                        output_tokens: 9,
                        cached_input_tokens: None,
                    },
                },
                StreamEvent::Finish {
                    reason: FinishReason::ToolCalls,
                },
            ],
        );
    }

    #[test]
    fn stream_errors() {
        let mut decoder = Gemini::new().stream_decoder(&endpoint(&[]));
        let first = STREAM.split_inclusive("\r\n\r\n").next().unwrap();
        assert!(!decoder.push(first.as_bytes()).unwrap().is_empty());
        let err = decoder.finish().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);

        let mut decoder = Gemini::new().stream_decoder(&endpoint(&[]));
        let err = decoder
            .push(b"data: {\"error\": {\"code\": 429, \"message\": \"Resource has been exhausted (e.g. check quota).\", \"status\": \"RESOURCE_EXHAUSTED\"}}\r\n\r\n")
            .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, 429));
    }
}
