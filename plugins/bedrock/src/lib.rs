//! Portico provider plugin for Amazon Bedrock: chat and streamed chat
//! through the Converse API (`/model/{modelId}/converse` and
//! `/converse-stream`, whose answer is an AWS binary event stream), and
//! embeddings through InvokeModel (Amazon Titan, Cohere Embed). Requests are
//! signed with AWS Signature Version 4.
//!
//! The Converse translation is `portico_model::formats::bedrock`; SigV4 and
//! the event-stream framing are the SDK's `sigv4` and `eventstream`.

use portico_sdk::eventstream::{EventStream, Message as StreamMessage, MessageHandler};
use portico_sdk::formats::bedrock::{self, ConverseStreamDecoder};
use portico_sdk::prelude::*;
use portico_sdk::sigv4::{Credentials, Signer};

/// The SigV4 service name of the Bedrock runtime.
const SERVICE: &str = "bedrock";

const DEFAULT_REGION: &str = "us-east-1";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Bedrock {
    models: Vec<ModelInfo>,
}

/// The endpoint's region: `region`, else the default; only the characters
/// region names use, since it goes into a host name.
fn region(endpoint: &Endpoint) -> Result<&str, ProviderError> {
    let region = endpoint.get_or("region", DEFAULT_REGION).trim();
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ProviderError::invalid_request(format!(
            "config 'region' of endpoint '{}' must be an AWS region such as us-east-1",
            endpoint.name
        )));
    }
    Ok(region)
}

/// `base_url`, else the regional runtime endpoint.
fn base_url(endpoint: &Endpoint) -> Result<String, ProviderError> {
    if endpoint.get("base_url").is_some() {
        return endpoint.base_url("base_url", None);
    }
    Ok(format!(
        "https://bedrock-runtime.{}.amazonaws.com",
        region(endpoint)?
    ))
}

/// `{base}/model/{modelId}/{action}`, the model id as one path segment:
/// `:` (versions) and `/` (ARNs) percent-encoded.
fn model_url(endpoint: &Endpoint, model: &str, action: &str) -> Result<String, ProviderError> {
    let path = format!("/model/{}/{action}", http::encode_component(model));
    Ok(http::join_url(&base_url(endpoint)?, &path))
}

/// Signs `request` with the endpoint's credentials as of `now_ms`.
fn sign(endpoint: &Endpoint, request: &mut HttpRequest, now_ms: u64) -> Result<(), ProviderError> {
    let credentials = Credentials::new(
        endpoint.require("aws_access_key_id")?,
        endpoint.require("aws_secret_access_key")?,
        endpoint.get("aws_session_token"),
    );
    Signer::new(&credentials, region(endpoint)?, SERVICE).sign(request, now_ms)
}

impl Bedrock {
    /// The signed Converse (or ConverseStream) request, as of `now_ms`.
    fn converse_request(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        stream: bool,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        let body = bedrock::converse_request_body(request)?;
        let (action, accept) = if stream {
            ("converse-stream", "application/vnd.amazon.eventstream")
        } else {
            ("converse", "application/json")
        };
        let post = post(endpoint, model_of(endpoint, &request.model), action, accept)?;
        signed(endpoint, post.json(&body), now_ms)
    }

    /// The signed CountTokens request, as of `now_ms`.
    fn count_tokens_request(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        let body = bedrock::count_tokens_request_body(request)?;
        let post = post(
            endpoint,
            model_of(endpoint, &request.model),
            "count-tokens",
            "application/json",
        )?;
        signed(endpoint, post.json(&body), now_ms)
    }

    /// The signed InvokeModel embeddings request, as of `now_ms`.
    fn embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: &EmbeddingsRequest,
        now_ms: u64,
    ) -> Result<HttpRequest, ProviderError> {
        let model = model_of(endpoint, &request.model);
        let body = bedrock::embeddings_request_body(model, request)?;
        let post = post(endpoint, model, "invoke", "application/json")?;
        signed(endpoint, post.json(&body), now_ms)
    }
}

/// The request's model, or the endpoint's when it names none.
fn model_of<'a>(endpoint: &'a Endpoint, requested: &'a str) -> &'a str {
    if requested.is_empty() {
        &endpoint.model
    } else {
        requested
    }
}

/// A POST to `action` of `model`, accepting `accept`; add the body.
fn post(
    endpoint: &Endpoint,
    model: &str,
    action: &str,
    accept: &str,
) -> Result<http::RequestBuilder, ProviderError> {
    Ok(http::RequestBuilder::post(model_url(endpoint, model, action)?).header("accept", accept))
}

/// `builder`'s request, signed as of `now_ms`.
fn signed(
    endpoint: &Endpoint,
    builder: http::RequestBuilder,
    now_ms: u64,
) -> Result<HttpRequest, ProviderError> {
    let mut http = builder.build();
    sign(endpoint, &mut http, now_ms)?;
    Ok(http)
}

impl Provider for Bedrock {
    type StreamDecoder = EventStream<ConverseEvents>;

    fn new() -> Self {
        Bedrock {
            models: catalog::load(MODELS),
        }
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            models: self.models.clone(),
            ..Describe::new(
                "bedrock",
                "Amazon Bedrock",
                env!("CARGO_PKG_VERSION"),
                "Amazon Bedrock Converse (Claude, Nova, Llama, Mistral…) and Titan / Cohere embeddings",
            )
            .embeddings()
            .field(config::required(
                "aws_access_key_id",
                "AWS access key ID",
                FieldKind::Secret,
                "Access key of an IAM identity allowed bedrock:InvokeModel / InvokeModelWithResponseStream.",
            ))
            .field(config::required(
                "aws_secret_access_key",
                "AWS secret access key",
                FieldKind::Secret,
                "The secret of that access key.",
            ))
            .field(config::optional(
                "aws_session_token",
                "AWS session token",
                FieldKind::Secret,
                None,
                "Only for temporary (STS) credentials.",
            ))
            .field(config::required_default(
                "region",
                "Region",
                FieldKind::String,
                DEFAULT_REGION,
                "AWS region of the Bedrock runtime, e.g. us-east-1, eu-central-1.",
            ))
            .field(config::base_url(
                None,
                "Defaults to https://bedrock-runtime.<region>.amazonaws.com; set it for a VPC endpoint or a proxy.",
            ))
            .build()
        }
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        self.converse_request(endpoint, &request, stream, host::now_unix_ms())
    }

    fn parse_chat_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        let mut parsed = bedrock::parse_converse(&response.body)?;
        // Converse answers do not name the model; it is the endpoint's.
        parsed.model = endpoint.model.clone();
        Ok(parsed)
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        self.embeddings_request(endpoint, &request, host::now_unix_ms())
    }

    /// CountTokens with the Converse form of the request (the models that
    /// can count are Claude's; others answer a ValidationException).
    fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
    ) -> Result<HttpRequest, ProviderError> {
        self.count_tokens_request(endpoint, &request, host::now_unix_ms())
    }

    fn parse_count_tokens_response(
        &self,
        _endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, ProviderError> {
        bedrock::parse_count_tokens(&response.body)
    }

    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        bedrock::parse_embeddings(&endpoint.model, &response.headers, &response.body)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        bedrock::parse_error(response.status, &response.headers, &response.body)
    }

    fn stream_decoder(&self, endpoint: &Endpoint) -> Self::StreamDecoder {
        EventStream::new(ConverseEvents {
            decoder: ConverseStreamDecoder::new(endpoint.model.clone()),
        })
    }
}

/// The messages of a ConverseStream answer to neutral events: events go to
/// the shared Converse decoder, exceptions and errors become typed errors.
#[derive(Debug)]
pub struct ConverseEvents {
    decoder: ConverseStreamDecoder,
}

impl MessageHandler for ConverseEvents {
    fn decode(&mut self, message: &StreamMessage) -> Result<Vec<StreamEvent>, ProviderError> {
        match message.message_type() {
            "event" => {
                let event_type = message.event_type().ok_or_else(|| {
                    ProviderError::bad_upstream("Bedrock stream event without :event-type")
                })?;
                self.decoder.decode(event_type, &message.payload)
            }
            "exception" => Err(bedrock::exception_error(
                message.exception_type().unwrap_or("unknownException"),
                &message.payload,
            )),
            // The event-stream protocol's own errors carry code and message
            // in headers.
            "error" => {
                let mut error = bedrock::exception_error(
                    message.header_str(":error-code").unwrap_or("unknownError"),
                    &message.payload,
                );
                if let Some(text) = message.header_str(":error-message") {
                    error.message = text.to_string();
                }
                Err(error)
            }
            // Message types added later carry nothing we know how to use.
            _ => Ok(Vec::new()),
        }
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        self.decoder.end()?;
        Ok(Vec::new())
    }
}

portico_sdk::export_provider!(Bedrock);

#[cfg(test)]
mod tests {
    use super::*;
    use portico_sdk::eventstream::HeaderValue;
    use portico_sdk::testing::{self, *};
    use serde_json::{Value, json};

    const MODEL: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";
    /// 2024-11-14T22:13:20Z
    const NOW_MS: u64 = 1_731_622_400_000;

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        testing::endpoint("claude-on-aws", MODEL, pairs)
    }

    fn credentials() -> Vec<(&'static str, &'static str)> {
        vec![
            ("aws_access_key_id", "AKIDEXAMPLE"),
            (
                "aws_secret_access_key",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
        ]
    }

    #[test]
    fn catalog_and_info() {
        let models = assert_catalog_rules(MODELS, &[]);
        assert!(models.iter().any(|m| m.capabilities.embeddings));
        assert!(models.iter().any(|m| m.id.contains(':')));
        let info = Bedrock::new().info();
        assert_eq!(info.id, "bedrock");
        assert_eq!(
            fields(&info),
            vec![
                ("aws_access_key_id", FieldKind::Secret, true, None),
                ("aws_secret_access_key", FieldKind::Secret, true, None),
                ("aws_session_token", FieldKind::Secret, false, None),
                ("region", FieldKind::String, true, Some("us-east-1")),
                ("base_url", FieldKind::Url, false, None),
            ]
        );
        assert!(info.supports(Operation::Embeddings));
    }

    #[test]
    fn converse_request_is_signed_with_the_encoded_model_path() {
        let provider = Bedrock::new();
        let ep = endpoint(&credentials());
        let mut request = ChatRequest {
            model: MODEL.into(),
            system: Some("Be brief.".into()),
            messages: vec![Message::user("Hello")],
            ..Default::default()
        };
        request.params.max_tokens = Some(100);
        let http = provider
            .converse_request(&ep, &request, false, NOW_MS)
            .unwrap();
        assert_eq!(http.method, "POST");
        assert_eq!(
            http.url,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );
        assert_eq!(
            json_body(&http),
            json!({
                "messages": [{"role": "user", "content": [{"text": "Hello"}]}],
                "system": [{"text": "Be brief."}],
                "inferenceConfig": {"maxTokens": 100},
            })
        );
        assert_eq!(header(&http, "x-amz-date"), Some("20241114T221320Z"));
        assert_eq!(header(&http, "x-amz-security-token"), None);
        // Computed independently with Python's hashlib/hmac from the same
        // request (canonical path /model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse).
        assert_eq!(
            header(&http, "authorization"),
            Some(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20241114/us-east-1/bedrock/aws4_request, \
                 SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date, \
                 Signature=4afa337b422ac6289777abb8b25081239adbcb7607b30fcd2e44f3fc30e22fbf"
            )
        );
    }

    #[test]
    fn stream_requests_regions_tokens_and_base_urls() {
        let provider = Bedrock::new();
        let mut pairs = credentials();
        pairs.extend([
            ("region", "eu-central-1"),
            ("aws_session_token", "FwoGZXIvYXdzEXAMPLE"),
        ]);
        let request = ChatRequest {
            messages: vec![Message::user("Hi")],
            ..Default::default()
        };
        let http = provider
            .converse_request(&endpoint(&pairs), &request, true, NOW_MS)
            .unwrap();
        assert_eq!(
            http.url,
            "https://bedrock-runtime.eu-central-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse-stream"
        );
        assert_eq!(
            header(&http, "accept"),
            Some("application/vnd.amazon.eventstream")
        );
        assert_eq!(
            header(&http, "x-amz-security-token"),
            Some("FwoGZXIvYXdzEXAMPLE")
        );
        let auth = header(&http, "authorization").unwrap();
        assert!(
            auth.contains("/20241114/eu-central-1/bedrock/aws4_request"),
            "{auth}"
        );
        assert!(auth.contains(";x-amz-security-token,"), "{auth}");

        pairs.push(("base_url", "http://127.0.0.1:8080/bedrock/"));
        let http = provider
            .converse_request(&endpoint(&pairs), &request, false, NOW_MS)
            .unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:8080/bedrock/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"
        );

        // ARNs keep their slashes inside the one path segment.
        let mut arn = request.clone();
        arn.model =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0"
                .into();
        let http = provider
            .converse_request(&endpoint(&credentials()), &arn, false, NOW_MS)
            .unwrap();
        assert!(
            http.url.ends_with("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.amazon.nova-lite-v1%3A0/converse"),
            "{}",
            http.url
        );

        let bad_region = endpoint(&[
            ("aws_access_key_id", "A"),
            ("aws_secret_access_key", "S"),
            ("region", "us-east-1.evil.com/"),
        ]);
        let err = provider
            .converse_request(&bad_region, &request, false, NOW_MS)
            .unwrap_err();
        assert_eq!(err.status, 400);
        let err = provider
            .converse_request(
                &endpoint(&[("aws_access_key_id", "AKIDVISIBLESECRET")]),
                &request,
                false,
                NOW_MS,
            )
            .unwrap_err();
        assert!(
            err.message.contains("'aws_secret_access_key'"),
            "{}",
            err.message
        );
        assert!(
            !err.message.contains("AKIDVISIBLESECRET"),
            "{}",
            err.message
        );
    }

    #[test]
    fn counts_tokens_with_count_tokens() {
        let provider = Bedrock::new();
        let request = ChatRequest {
            system: Some("Be brief.".into()),
            messages: vec![Message::user("Hi")],
            params: SamplingParams {
                max_tokens: Some(50),
                temperature: Some(0.3),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = provider
            .count_tokens_request(&endpoint(&credentials()), &request, NOW_MS)
            .unwrap();
        assert_eq!(
            http.url,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/count-tokens"
        );
        assert!(header(&http, "authorization").is_some_and(|a| a.starts_with("AWS4-HMAC-SHA256 ")));
        assert_eq!(
            json_body(&http),
            json!({"input": {"converse": {
                "messages": [{"role": "user", "content": [{"text": "Hi"}]}],
                "system": [{"text": "Be brief."}],
            }}})
        );
        let ep = endpoint(&credentials());
        assert_eq!(
            portico_sdk::parse_count_tokens(
                &provider,
                &ep,
                response(200, &[], r#"{"inputTokens": 8}"#)
            ),
            Ok(8)
        );
    }

    #[test]
    fn parses_converse_answers_and_errors() {
        let provider = Bedrock::new();
        let ep = endpoint(&credentials());
        let answer = r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello!"}]}},
            "stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":3,"totalTokens":15},
            "metrics":{"latencyMs":321}}"#;
        let parsed = portico_sdk::parse_chat(&provider, &ep, response(200, &[], answer)).unwrap();
        assert_eq!(parsed.text(), "Hello!");
        assert_eq!(parsed.model, MODEL);
        assert_eq!(parsed.finish_reason, FinishReason::Stop);
        assert_eq!(parsed.usage.total(), 15);

        let err = portico_sdk::parse_chat(
            &provider,
            &ep,
            response(
                429,
                &[(
                    "x-amzn-errortype",
                    "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
                )],
                r#"{"message":"Too many requests, please wait before trying again."}"#,
            ),
        )
        .unwrap_err();
        assert_eq!((err.kind, err.status), (ErrorKind::RateLimited, 429));
        let err = provider.parse_error(
            &ep,
            &response(
                403,
                &[("x-amzn-errortype", "InvalidSignatureException")],
                r#"{"message":"The request signature we calculated does not match the signature you provided."}"#,
            ),
        );
        assert_eq!((err.kind, err.status), (ErrorKind::Authentication, 401));
        let err = provider.parse_error(
            &ep,
            &response(
                404,
                &[("x-amzn-errortype", "ResourceNotFoundException")],
                r#"{"message":"Could not resolve the foundation model from the provided model identifier."}"#,
            ),
        );
        assert_eq!((err.kind, err.status), (ErrorKind::NotFound, 404));
    }

    #[test]
    fn titan_embeddings() {
        let provider = Bedrock::new();
        let ep = Endpoint {
            model: "amazon.titan-embed-text-v2:0".into(),
            ..endpoint(&credentials())
        };
        let request = EmbeddingsRequest {
            inputs: vec!["hello world".into()],
            dimensions: Some(256),
            ..Default::default()
        };
        let http = provider.embeddings_request(&ep, &request, NOW_MS).unwrap();
        assert_eq!(
            http.url,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke"
        );
        assert_eq!(
            json_body(&http),
            json!({"inputText": "hello world", "dimensions": 256})
        );
        assert!(header(&http, "authorization").is_some());

        let parsed = portico_sdk::parse_embeddings(
            &provider,
            &ep,
            response(
                200,
                &[],
                r#"{"embedding":[0.25,-0.5],"inputTextTokenCount":2}"#,
            ),
        )
        .unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.25f32, -0.5]]);
        assert_eq!(parsed.usage.input_tokens, 2);

        let two = EmbeddingsRequest {
            inputs: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        let err = provider.embeddings_request(&ep, &two, NOW_MS).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(
            err.message.contains("one input per request"),
            "{}",
            err.message
        );
    }

    // --- streams -----------------------------------------------------------------

    fn event(event_type: &str, payload: Value) -> StreamMessage {
        StreamMessage::new(payload.to_string().into_bytes())
            .with_str_header(":event-type", event_type)
            .with_str_header(":content-type", "application/json")
            .with_str_header(":message-type", "event")
    }

    fn stream_bytes(messages: &[StreamMessage]) -> Vec<u8> {
        messages.iter().flat_map(|m| m.encode().unwrap()).collect()
    }

    fn recorded_stream() -> Vec<StreamMessage> {
        vec![
            event(
                "messageStart",
                json!({"p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU", "role": "assistant"}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 0, "delta": {"text": "Grüezi 👋"}, "p": "abcdefghij"}),
            ),
            event(
                "contentBlockStop",
                json!({"contentBlockIndex": 0, "p": "abcdefghijklm"}),
            ),
            event(
                "contentBlockStart",
                json!({"contentBlockIndex": 1, "p": "abc",
                "start": {"toolUse": {"name": "get_weather", "toolUseId": "tooluse_Z3gaxUNBQ1mSwhYgFdVv2w"}}}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\":"}}, "p": "abcd"}),
            ),
            event(
                "contentBlockDelta",
                json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": " \"Zürich\"}"}}, "p": "ab"}),
            ),
            event(
                "contentBlockStop",
                json!({"contentBlockIndex": 1, "p": "abcdefgh"}),
            ),
            event(
                "messageStop",
                json!({"p": "abcdefghijklmnopq", "stopReason": "tool_use"}),
            ),
            event(
                "metadata",
                json!({"metrics": {"latencyMs": 1117}, "p": "abcdefghijkl",
                "usage": {"inputTokens": 412, "outputTokens": 65, "totalTokens": 477}}),
            ),
        ]
    }

    fn expected_events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: String::new(),
                model: MODEL.into(),
            },
            StreamEvent::TextDelta {
                text: "Grüezi 👋".into(),
            },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "tooluse_Z3gaxUNBQ1mSwhYgFdVv2w".into(),
                name: "get_weather".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"city\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: " \"Zürich\"}".into(),
            },
            StreamEvent::Finish {
                reason: FinishReason::ToolCalls,
            },
            StreamEvent::Usage {
                usage: Usage {
                    input_tokens: 412,
                    output_tokens: 65,
                    cached_input_tokens: None,
                },
            },
        ]
    }

    #[test]
    fn decodes_stream_split_at_every_byte_boundary() {
        let provider = Bedrock::new();
        let ep = endpoint(&credentials());
        assert_stream_decodes_at_every_split(
            &provider,
            &ep,
            &stream_bytes(&recorded_stream()),
            &expected_events(),
        );
    }

    #[test]
    fn stream_exceptions_truncation_and_corruption() {
        let provider = Bedrock::new();
        let ep = endpoint(&credentials());
        let mut messages = recorded_stream();
        messages.truncate(3);
        messages.push(
            StreamMessage::new(
                br#"{"message":"Too many tokens, please wait before trying again."}"#.to_vec(),
            )
            .with_str_header(":exception-type", "throttlingException")
            .with_str_header(":content-type", "application/json")
            .with_str_header(":message-type", "exception"),
        );
        let mut decoder = provider.stream_decoder(&ep);
        let err = decoder.push(&stream_bytes(&messages)).unwrap_err();
        assert_eq!(
            (err.kind, err.status, err.message.as_str()),
            (
                ErrorKind::RateLimited,
                429,
                "Too many tokens, please wait before trying again."
            )
        );

        let protocol_error = StreamMessage::new(Vec::new())
            .with_str_header(":message-type", "error")
            .with_str_header(":error-code", "InternalFailure")
            .with_str_header(":error-message", "An internal error occurred")
            .with_header(":date", HeaderValue::Timestamp(0));
        let err = provider
            .stream_decoder(&ep)
            .push(&stream_bytes(&[protocol_error]))
            .unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::Upstream, "An internal error occurred")
        );

        // Whole messages but no messageStop: incomplete.
        let mut decoder = provider.stream_decoder(&ep);
        decoder
            .push(&stream_bytes(&recorded_stream()[..4]))
            .unwrap();
        assert_eq!(decoder.finish().unwrap_err().kind, ErrorKind::Upstream);

        // Cut inside a message.
        let bytes = stream_bytes(&recorded_stream());
        let mut decoder = provider.stream_decoder(&ep);
        decoder.push(&bytes[..bytes.len() - 3]).unwrap();
        let err = decoder.finish().unwrap_err();
        assert!(err.message.contains("inside a message"), "{}", err.message);

        // A corrupt byte.
        let mut corrupt = bytes.clone();
        corrupt[40] ^= 0x20;
        let err = provider.stream_decoder(&ep).push(&corrupt).unwrap_err();
        assert!(err.message.contains("checksum"), "{}", err.message);
    }
}
