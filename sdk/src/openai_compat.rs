//! The OpenAI-compatible chat/embeddings flow, reusable by every provider
//! that speaks the OpenAI API (OpenAI itself, Mistral, Groq, Together,
//! Fireworks, Databricks, Azure OpenAI, vLLM…): configure what differs —
//! base URL, paths, auth header, extra headers, body quirks — and delegate
//! the [`Provider`](crate::Provider) methods to it.
//!
//! ```
//! use portico_sdk::openai_compat::{Auth, OpenAiCompat};
//! use portico_sdk::formats::openai::MaxTokensField;
//!
//! // Groq-like: standard paths, bearer key, `max_tokens` only.
//! let groq = OpenAiCompat::new()
//!     .default_base_url("https://api.groq.com/openai/v1")
//!     .max_tokens_field(MaxTokensField::MaxTokens);
//!
//! // Azure-like: deployment in the path, `api-key` header, api-version query.
//! let azure = OpenAiCompat::new()
//!     .chat_path("/openai/deployments/{model}/chat/completions")
//!     .embeddings_path("/openai/deployments/{model}/embeddings")
//!     .auth(Auth::header("api-key", "api_key"))
//!     .query_from_config("api-version", "api_version", Some("2024-10-21"));
//! # let _ = (groq, azure);
//! ```

use portico_model::formats::openai::{self, ChatBodyOptions, ChunkDecoder, MaxTokensField};
use portico_model::plugin::{Endpoint, HttpRequest, HttpResponse};
use portico_model::{ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ProviderError, StreamEvent};

use crate::config::EndpointExt;
use crate::errors;
use crate::http::{RequestBuilder, encode_component, join_url, with_query};
use crate::sse::{EventDecoder, SseEvent, SseStream};

/// How the upstream wants its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <config[key]>`.
    Bearer { key: String },
    /// `<name>: <config[key]>` (e.g. Azure's `api-key`).
    Header { name: String, key: String },
    /// No credential (local servers).
    None,
}

impl Auth {
    pub fn bearer(config_key: &str) -> Self {
        Auth::Bearer { key: config_key.to_string() }
    }

    pub fn header(header_name: &str, config_key: &str) -> Self {
        Auth::Header { name: header_name.to_string(), key: config_key.to_string() }
    }
}

/// A configured OpenAI-compatible upstream. Defaults: base URL from config
/// `base_url` (required unless [`default_base_url`](Self::default_base_url)
/// is set), `/chat/completions`, `/embeddings`, bearer auth from config
/// `api_key`, OpenAI body conventions.
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAiCompat {
    default_base_url: Option<String>,
    base_url_key: String,
    chat_path: String,
    embeddings_path: String,
    auth: Auth,
    headers: Vec<(String, String)>,
    config_headers: Vec<(String, String)>,
    query: Vec<(String, String, Option<String>)>,
    body: ChatBodyOptions,
}

impl Default for OpenAiCompat {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAiCompat {
    pub fn new() -> Self {
        Self {
            default_base_url: None,
            base_url_key: "base_url".into(),
            chat_path: "/chat/completions".into(),
            embeddings_path: "/embeddings".into(),
            auth: Auth::bearer("api_key"),
            headers: Vec::new(),
            config_headers: Vec::new(),
            query: Vec::new(),
            body: ChatBodyOptions::default(),
        }
    }

    /// Base URL used when the endpoint leaves config `base_url` unset.
    pub fn default_base_url(mut self, url: &str) -> Self {
        self.default_base_url = Some(url.to_string());
        self
    }

    /// Config key holding the base URL (default `base_url`).
    pub fn base_url_key(mut self, key: &str) -> Self {
        self.base_url_key = key.to_string();
        self
    }

    /// Chat path below the base URL; `{model}` is replaced by the
    /// (percent-encoded) model id.
    pub fn chat_path(mut self, path: &str) -> Self {
        self.chat_path = path.to_string();
        self
    }

    /// Embeddings path below the base URL; `{model}` as in
    /// [`chat_path`](Self::chat_path).
    pub fn embeddings_path(mut self, path: &str) -> Self {
        self.embeddings_path = path.to_string();
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// A fixed header sent with every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A header sent when the endpoint sets config `config_key`.
    pub fn header_from_config(mut self, config_key: &str, header_name: &str) -> Self {
        self.config_headers.push((config_key.to_string(), header_name.to_string()));
        self
    }

    /// A query parameter from config `config_key`, or `default`; omitted
    /// when both are unset.
    pub fn query_from_config(mut self, param: &str, config_key: &str, default: Option<&str>) -> Self {
        self.query.push((param.to_string(), config_key.to_string(), default.map(str::to_string)));
        self
    }

    /// Which field carries the output-token limit.
    pub fn max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.body.max_tokens_field = field;
        self
    }

    /// Whether streaming calls ask for usage (`stream_options`); turn off
    /// for upstreams that reject the field.
    pub fn stream_usage(mut self, enabled: bool) -> Self {
        self.body.stream_usage = enabled;
        self
    }

    /// Whether `top_k` is forwarded (vLLM, Together, Fireworks accept it).
    pub fn top_k(mut self, enabled: bool) -> Self {
        self.body.top_k = enabled;
        self
    }

    /// The request of a chat call (`request.model` empty means the
    /// endpoint's model).
    pub fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        mut request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        if request.model.is_empty() {
            request.model = endpoint.model.clone();
        }
        let url = self.url(endpoint, &self.chat_path, &request.model)?;
        let body = openai::chat_request_body_with(&request, stream, &self.body);
        let accept = if stream { "text/event-stream" } else { "application/json" };
        Ok(self.request(endpoint, url)?.header("accept", accept).json(&body).build())
    }

    /// A complete chat response: errors for non-2xx statuses, otherwise the
    /// parsed completion.
    pub fn parse_chat_response(&self, response: &HttpResponse) -> Result<ChatResponse, ProviderError> {
        if !(200..300).contains(&response.status) {
            return Err(self.parse_error(response));
        }
        openai::parse_chat_completion(&response.body)
    }

    /// The request of an embeddings call.
    pub fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        mut request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        if request.model.is_empty() {
            request.model = endpoint.model.clone();
        }
        if request.inputs.is_empty() {
            return Err(ProviderError::invalid_request("embeddings need at least one input"));
        }
        let url = self.url(endpoint, &self.embeddings_path, &request.model)?;
        let body = openai::embeddings_request_body(&request);
        Ok(self.request(endpoint, url)?.header("accept", "application/json").json(&body).build())
    }

    /// A complete embeddings response.
    pub fn parse_embeddings_response(&self, response: &HttpResponse) -> Result<EmbeddingsResponse, ProviderError> {
        if !(200..300).contains(&response.status) {
            return Err(self.parse_error(response));
        }
        openai::parse_embeddings(&response.body)
    }

    /// An upstream error response as a typed error (OpenAI error JSON,
    /// `Retry-After` / `retry-after-ms`).
    pub fn parse_error(&self, response: &HttpResponse) -> ProviderError {
        errors::from_response(response)
    }

    /// A decoder for one streamed chat body.
    pub fn stream_decoder(&self) -> ChatStreamDecoder {
        ChatStreamDecoder::new(ChunkDecoder::new())
    }

    fn url(&self, endpoint: &Endpoint, path: &str, model: &str) -> Result<String, ProviderError> {
        let base = endpoint.base_url(&self.base_url_key, self.default_base_url.as_deref())?;
        let url = join_url(&base, &path.replace("{model}", &encode_component(model)));
        let mut params = Vec::new();
        for (param, key, default) in &self.query {
            if let Some(value) = endpoint.get(key).or(default.as_deref()) {
                params.push((param.as_str(), value));
            }
        }
        Ok(with_query(&url, &params))
    }

    fn request(&self, endpoint: &Endpoint, url: String) -> Result<RequestBuilder, ProviderError> {
        let mut builder = RequestBuilder::post(url);
        builder = match &self.auth {
            Auth::Bearer { key } => builder.bearer_auth(endpoint.require(key)?),
            Auth::Header { name, key } => builder.header(name.as_str(), endpoint.require(key)?),
            Auth::None => builder,
        };
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        for (key, name) in &self.config_headers {
            builder = builder.header_opt(name, endpoint.get(key));
        }
        Ok(builder)
    }
}

/// Stream decoder of OpenAI-compatible chat streams: SSE framing plus
/// [`ChunkDecoder`].
pub type ChatStreamDecoder = SseStream<ChunkDecoder>;

impl EventDecoder for ChunkDecoder {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        if event.event == "error" {
            // Some compatible servers name error events; their data is an
            // OpenAI error document or plain text.
            let message = errors::error_message(event.data.as_bytes())
                .unwrap_or_else(|| "upstream stream reported an error".to_string());
            return Err(ProviderError::bad_upstream(message));
        }
        ChunkDecoder::decode(self, &event.data)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.is_done() || self.is_finished() {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream("upstream stream ended before the answer was complete"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamDecoder;
    use portico_model::{ErrorKind, FinishReason, Message};

    fn endpoint(pairs: &[(&str, &str)]) -> Endpoint {
        Endpoint {
            name: "ep".into(),
            model: "my-model".into(),
            config: pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    #[test]
    fn azure_style_configuration() {
        let azure = OpenAiCompat::new()
            .chat_path("/openai/deployments/{model}/chat/completions")
            .auth(Auth::header("api-key", "api_key"))
            .query_from_config("api-version", "api_version", Some("2024-10-21"))
            .header("x-fixed", "1")
            .max_tokens_field(MaxTokensField::MaxTokens)
            .stream_usage(false);
        let ep = endpoint(&[("api_key", "k"), ("base_url", "https://r.openai.azure.com/")]);
        let request = ChatRequest {
            messages: vec![Message::user("hi")],
            params: portico_model::SamplingParams { max_tokens: Some(5), ..Default::default() },
            ..Default::default()
        };
        let http = azure.build_chat_request(&ep, request, true).unwrap();
        assert_eq!(http.url, "https://r.openai.azure.com/openai/deployments/my-model/chat/completions?api-version=2024-10-21");
        assert_eq!(header(&http, "api-key"), Some("k"));
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(header(&http, "x-fixed"), Some("1"));
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        let body: serde_json::Value = serde_json::from_slice(&http.body).unwrap();
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["model"], "my-model");
        assert!(body.get("stream_options").is_none());

        // base_url is required without a default.
        let err = azure.build_chat_request(&endpoint(&[("api_key", "k")]), ChatRequest::default(), false).unwrap_err();
        assert_eq!(err.message, "endpoint 'ep' is missing config 'base_url'");
    }

    #[test]
    fn stream_must_complete() {
        let compat = OpenAiCompat::new();
        let mut decoder = compat.stream_decoder();
        let events = decoder.push(b"data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n").unwrap();
        assert_eq!(events.len(), 2);
        let err = decoder.finish().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);

        let mut decoder = compat.stream_decoder();
        decoder.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n").unwrap();
        assert_eq!(decoder.finish().unwrap(), vec![]);

        let mut decoder = compat.stream_decoder();
        let err = decoder.push(b"event: error\ndata: {\"message\": \"boom\"}\n\n").unwrap_err();
        assert_eq!(err.message, "boom");

        let mut decoder = compat.stream_decoder();
        let events = decoder.push(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}").unwrap();
        assert!(events.is_empty());
        let events = decoder.finish().unwrap();
        assert_eq!(events.last(), Some(&StreamEvent::Finish { reason: FinishReason::Length }));
    }

    #[test]
    fn non_success_statuses_are_errors() {
        let compat = OpenAiCompat::new();
        let response = HttpResponse { status: 302, headers: vec![], body: b"moved".to_vec() };
        assert_eq!(compat.parse_chat_response(&response).unwrap_err().status, 502);
        let response = HttpResponse { status: 400, headers: vec![], body: br#"{"error":{"message":"bad"}}"#.to_vec() };
        let err = compat.parse_embeddings_response(&response).unwrap_err();
        assert_eq!((err.kind, err.message.as_str()), (ErrorKind::InvalidRequest, "bad"));
    }
}
