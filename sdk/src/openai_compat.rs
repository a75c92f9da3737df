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
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ProviderError, StreamEvent,
};
use serde_json::{Map, Value};

use crate::config::EndpointExt;
use crate::errors;
use crate::http::{self, RequestBuilder, encode_component, join_url, with_query};
use crate::sse::{EventDecoder, SseEvent, SseStream};

/// How the upstream wants its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <config[key]>`.
    Bearer { key: String },
    /// `Authorization: Bearer <config[key]>` when the key is set, nothing
    /// otherwise (self-hosted servers with optional keys).
    BearerIfSet { key: String },
    /// `<name>: <config[key]>` (e.g. Azure's `api-key`).
    Header { name: String, key: String },
    /// No credential (local servers).
    None,
}

impl Auth {
    pub fn bearer(config_key: &str) -> Self {
        Auth::Bearer {
            key: config_key.to_string(),
        }
    }

    pub fn bearer_if_set(config_key: &str) -> Self {
        Auth::BearerIfSet {
            key: config_key.to_string(),
        }
    }

    pub fn header(header_name: &str, config_key: &str) -> Self {
        Auth::Header {
            name: header_name.to_string(),
            key: config_key.to_string(),
        }
    }
}

/// An adjustment of a request body built by [`OpenAiCompat`], for upstreams
/// that deviate from the OpenAI body in ways no option covers (renamed
/// fields, other enum values). It runs last, on the complete body.
pub type BodyHook = fn(&mut Value);

/// A configured OpenAI-compatible upstream. Defaults: base URL from config
/// `base_url` (required unless [`default_base_url`](Self::default_base_url)
/// is set), `/chat/completions`, `/embeddings`, bearer auth from config
/// `api_key`, OpenAI body conventions.
#[derive(Debug, Clone)]
#[must_use]
pub struct OpenAiCompat {
    default_base_url: Option<String>,
    base_url_key: String,
    fallback_base_url_key: Option<String>,
    chat_path: String,
    embeddings_path: String,
    /// `{name}` placeholders of the paths filled from config keys.
    path_params: Vec<(String, String)>,
    auth: Auth,
    /// (config key, value, auth) overriding `auth` when the key has the value.
    auth_choices: Vec<(String, String, Auth)>,
    headers: Vec<(String, String)>,
    config_headers: Vec<(String, String)>,
    query: Vec<(String, String, Option<String>)>,
    body: ChatBodyOptions,
    model_in_body: bool,
    chat_body_hook: Option<BodyHook>,
    embeddings_body_hook: Option<BodyHook>,
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
            fallback_base_url_key: None,
            chat_path: "/chat/completions".into(),
            embeddings_path: "/embeddings".into(),
            path_params: Vec::new(),
            auth: Auth::bearer("api_key"),
            auth_choices: Vec::new(),
            headers: Vec::new(),
            config_headers: Vec::new(),
            query: Vec::new(),
            body: ChatBodyOptions::default(),
            model_in_body: true,
            chat_body_hook: None,
            embeddings_body_hook: None,
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

    /// Config key whose URL is the base when config
    /// [`base_url_key`](Self::base_url_key) is unset (e.g. Azure's
    /// `endpoint`, which an optional `base_url` overrides); it is then
    /// required unless [`default_base_url`](Self::default_base_url) is set.
    pub fn fallback_base_url_key(mut self, key: &str) -> Self {
        self.fallback_base_url_key = Some(key.to_string());
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

    /// Fills `{name}` in the paths with the (percent-encoded) value of
    /// config `config_key`, which is then required (e.g. Azure's
    /// `{deployment}`).
    pub fn path_param_from_config(mut self, name: &str, config_key: &str) -> Self {
        self.path_params
            .push((name.to_string(), config_key.to_string()));
        self
    }

    pub fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Uses `auth` instead of the default when config `config_key` equals
    /// `value` (ASCII case-insensitive), e.g. Azure's Entra ID bearer
    /// tokens instead of `api-key`.
    pub fn auth_when(mut self, config_key: &str, value: &str, auth: Auth) -> Self {
        self.auth_choices
            .push((config_key.to_string(), value.to_string(), auth));
        self
    }

    /// A fixed header sent with every request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A header sent when the endpoint sets config `config_key`.
    pub fn header_from_config(mut self, config_key: &str, header_name: &str) -> Self {
        self.config_headers
            .push((config_key.to_string(), header_name.to_string()));
        self
    }

    /// A query parameter from config `config_key`, or `default`; omitted
    /// when both are unset.
    pub fn query_from_config(
        mut self,
        param: &str,
        config_key: &str,
        default: Option<&str>,
    ) -> Self {
        self.query.push((
            param.to_string(),
            config_key.to_string(),
            default.map(str::to_string),
        ));
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

    /// Whether a client's reasoning request is sent as `reasoning_effort`
    /// (default `true`); off for upstreams that reject the field.
    pub fn reasoning_effort(mut self, enabled: bool) -> Self {
        self.body.reasoning_effort = enabled;
        self
    }

    /// Whether request bodies carry `model` (default `true`); off for
    /// upstreams that address the model by URL and reject the field.
    pub fn model_in_body(mut self, enabled: bool) -> Self {
        self.model_in_body = enabled;
        self
    }

    /// A final adjustment of every chat body (see [`BodyHook`]).
    pub fn chat_body_hook(mut self, hook: BodyHook) -> Self {
        self.chat_body_hook = Some(hook);
        self
    }

    /// A final adjustment of every embeddings body (see [`BodyHook`]).
    pub fn embeddings_body_hook(mut self, hook: BodyHook) -> Self {
        self.embeddings_body_hook = Some(hook);
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
        let mut body = openai::chat_body(&request, stream, &self.body);
        if !self.model_in_body {
            body.remove("model");
        }
        let builder = self
            .request(endpoint, url)?
            .header("accept", http::accept(stream, http::SSE));
        // The typed body is written as is; only a hook needs it as a `Value`.
        Ok(match self.chat_body_hook {
            Some(hook) => {
                let mut body = body.to_value();
                hook(&mut body);
                builder.json(&body)
            }
            None => builder.json(&body),
        }
        .build())
    }

    /// A complete successful chat response (the export bridge sends
    /// non-2xx ones to [`parse_error`](Self::parse_error)).
    pub fn parse_chat_response(
        &self,
        response: &HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
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
            return Err(ProviderError::invalid_request(
                "embeddings need at least one input",
            ));
        }
        let url = self.url(endpoint, &self.embeddings_path, &request.model)?;
        let mut body = openai::embeddings_request_body(&request);
        self.finish_body(&mut body, self.embeddings_body_hook);
        Ok(self
            .request(endpoint, url)?
            .header("accept", "application/json")
            .json(&body)
            .build())
    }

    /// A complete successful embeddings response.
    pub fn parse_embeddings_response(
        &self,
        response: &HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
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

    fn finish_body(&self, body: &mut Value, hook: Option<BodyHook>) {
        if !self.model_in_body
            && let Some(object) = body.as_object_mut()
        {
            object.remove("model");
        }
        if let Some(hook) = hook {
            hook(body);
        }
    }

    fn url(&self, endpoint: &Endpoint, path: &str, model: &str) -> Result<String, ProviderError> {
        let key = match &self.fallback_base_url_key {
            Some(fallback) if endpoint.get(&self.base_url_key).is_none() => fallback,
            _ => &self.base_url_key,
        };
        let base = endpoint.base_url(key, self.default_base_url.as_deref())?;
        let mut path = path.replace("{model}", &encode_component(model));
        for (name, key) in &self.path_params {
            let placeholder = format!("{{{name}}}");
            if path.contains(&placeholder) {
                path = path.replace(&placeholder, &encode_component(endpoint.require(key)?));
            }
        }
        let url = join_url(&base, &path);
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
        let auth = self
            .auth_choices
            .iter()
            .find(|(key, value, _)| {
                endpoint
                    .get(key)
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case(value))
            })
            .map_or(&self.auth, |(_, _, auth)| auth);
        builder = match auth {
            Auth::Bearer { key } => builder.bearer_auth(endpoint.require(key)?),
            Auth::BearerIfSet { key } => match endpoint.get(key) {
                Some(token) => builder.bearer_auth(token),
                None => builder,
            },
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

/// Implements every [`Provider`](crate::Provider) method except `new` and
/// `info` by delegating to the [`OpenAiCompat`] in field `$field`; use it
/// inside `impl Provider for …`, which must set
/// `type StreamDecoder = ChatStreamDecoder;`. `openai_compat_methods!(api,
/// chat)` leaves out the embeddings methods, for upstreams without them
/// (the trait's "not supported" defaults stay).
///
/// ```
/// use portico_sdk::openai_compat::{ChatStreamDecoder, OpenAiCompat};
/// use portico_sdk::prelude::*;
///
/// struct Local {
///     api: OpenAiCompat,
/// }
///
/// impl Provider for Local {
///     type StreamDecoder = ChatStreamDecoder;
///
///     fn new() -> Self {
///         Local { api: OpenAiCompat::new().default_base_url("http://localhost:8000/v1") }
///     }
///
///     fn info(&self) -> ProviderInfo {
///         # unimplemented!()
///         // ...
///     }
///
///     portico_sdk::openai_compat_methods!(api);
/// }
/// ```
#[macro_export]
macro_rules! openai_compat_methods {
    ($field:ident) => {
        $crate::openai_compat_methods!($field, chat);

        fn build_embeddings_request(
            &self,
            endpoint: &$crate::model::plugin::Endpoint,
            request: $crate::model::EmbeddingsRequest,
        ) -> ::std::result::Result<$crate::model::plugin::HttpRequest, $crate::model::ProviderError>
        {
            self.$field.build_embeddings_request(endpoint, request)
        }

        fn parse_embeddings_response(
            &self,
            _endpoint: &$crate::model::plugin::Endpoint,
            response: $crate::model::plugin::HttpResponse,
        ) -> ::std::result::Result<$crate::model::EmbeddingsResponse, $crate::model::ProviderError>
        {
            self.$field.parse_embeddings_response(&response)
        }
    };
    ($field:ident, chat) => {
        fn build_chat_request(
            &self,
            endpoint: &$crate::model::plugin::Endpoint,
            request: $crate::model::ChatRequest,
            stream: bool,
        ) -> ::std::result::Result<$crate::model::plugin::HttpRequest, $crate::model::ProviderError>
        {
            self.$field.build_chat_request(endpoint, request, stream)
        }

        fn parse_chat_response(
            &self,
            _endpoint: &$crate::model::plugin::Endpoint,
            response: $crate::model::plugin::HttpResponse,
        ) -> ::std::result::Result<$crate::model::ChatResponse, $crate::model::ProviderError> {
            self.$field.parse_chat_response(&response)
        }

        fn parse_error(
            &self,
            _endpoint: &$crate::model::plugin::Endpoint,
            response: &$crate::model::plugin::HttpResponse,
        ) -> $crate::model::ProviderError {
            self.$field.parse_error(response)
        }

        fn stream_decoder(
            &self,
            _endpoint: &$crate::model::plugin::Endpoint,
        ) -> Self::StreamDecoder {
            self.$field.stream_decoder()
        }
    };
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
        let data = event.data.trim();
        // Most chunks read through typed views; the rest are parsed once
        // as a `Value`, adjusted, and decoded from it.
        if let Some(events) = self.decode_typed(data) {
            return Ok(events);
        }
        // `[DONE]`, blank data and unreadable chunks take the decoder's own
        // path (the last one to its error).
        let Ok(Value::Object(mut chunk)) = serde_json::from_str::<Value>(data) else {
            return ChunkDecoder::decode(self, data);
        };
        if normalize_chunk(&mut chunk) {
            ChunkDecoder::decode_chunk(self, &Value::Object(chunk))
        } else {
            Ok(Vec::new())
        }
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.is_done() || self.is_finished() {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "upstream stream ended before the answer was complete",
            ))
        }
    }
}

/// Provider extensions of the chunk format that the OpenAI decoder would
/// misread; `false` means the chunk is to be skipped.
/// - Azure OpenAI opens with a chunk of `prompt_filter_results`, empty
///   `choices` and empty `id`/`model`; it carries no answer, and decoding
///   it would start the stream with an empty id, so it is skipped.
/// - Groq reports usage in `x_groq.usage` of the last chunk; it becomes
///   the chunk's `usage` unless that is already set.
fn normalize_chunk(chunk: &mut Map<String, Value>) -> bool {
    let has_usage = chunk.get("usage").is_some_and(Value::is_object);
    if chunk.contains_key("prompt_filter_results")
        && !has_usage
        && chunk
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(|choices| choices.is_empty())
    {
        return false;
    }
    if !has_usage
        && let Some(usage) = chunk
            .get_mut("x_groq")
            .and_then(|x| x.get_mut("usage"))
            .filter(|u| u.is_object())
            .map(Value::take)
    {
        chunk.insert("usage".into(), usage);
    }
    true
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
            config: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
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
        let ep = endpoint(&[
            ("api_key", "k"),
            ("base_url", "https://r.openai.azure.com/"),
        ]);
        let request = ChatRequest {
            messages: vec![Message::user("hi")],
            params: portico_model::SamplingParams {
                max_tokens: Some(5),
                ..Default::default()
            },
            ..Default::default()
        };
        let http = azure.build_chat_request(&ep, request, true).unwrap();
        assert_eq!(
            http.url,
            "https://r.openai.azure.com/openai/deployments/my-model/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(header(&http, "api-key"), Some("k"));
        assert_eq!(header(&http, "authorization"), None);
        assert_eq!(header(&http, "x-fixed"), Some("1"));
        assert_eq!(header(&http, "accept"), Some("text/event-stream"));
        let body: serde_json::Value = serde_json::from_slice(&http.body).unwrap();
        assert_eq!(body["max_tokens"], 5);
        assert_eq!(body["model"], "my-model");
        assert!(body.get("stream_options").is_none());

        // base_url is required without a default.
        let err = azure
            .build_chat_request(
                &endpoint(&[("api_key", "k")]),
                ChatRequest::default(),
                false,
            )
            .unwrap_err();
        assert_eq!(err.message, "endpoint 'ep' is missing config 'base_url'");
    }

    #[test]
    fn config_driven_url_auth_and_body_options() {
        fn rename_seed(body: &mut Value) {
            if let Some(seed) = body.as_object_mut().and_then(|b| b.remove("seed")) {
                body["random_seed"] = seed;
            }
        }
        let compat = OpenAiCompat::new()
            .base_url_key("base_url")
            .fallback_base_url_key("endpoint")
            .chat_path("/openai/deployments/{deployment}/chat/completions")
            .embeddings_path("/serving-endpoints/{model}/invocations")
            .path_param_from_config("deployment", "deployment")
            .auth(Auth::header("api-key", "api_key"))
            .auth_when("auth", "entra", Auth::bearer("api_key"))
            .model_in_body(false)
            .chat_body_hook(rename_seed)
            .embeddings_body_hook(|body| {
                if let Some(body) = body.as_object_mut() {
                    body.remove("encoding_format");
                }
            });
        let request = ChatRequest {
            messages: vec![Message::user("hi")],
            params: portico_model::SamplingParams {
                seed: Some(7),
                ..Default::default()
            },
            ..Default::default()
        };
        let ep = endpoint(&[
            ("api_key", "k"),
            ("endpoint", "https://r.openai.azure.com"),
            ("deployment", "my dep"),
        ]);
        let http = compat
            .build_chat_request(&ep, request.clone(), false)
            .unwrap();
        assert_eq!(
            http.url,
            "https://r.openai.azure.com/openai/deployments/my%20dep/chat/completions"
        );
        assert_eq!(header(&http, "api-key"), Some("k"));
        let body: Value = serde_json::from_slice(&http.body).unwrap();
        assert!(body.get("model").is_none());
        assert!(body.get("seed").is_none());
        assert_eq!(body["random_seed"], 7);

        // base_url wins over the fallback key; the auth choice switches
        // the credential header.
        let ep = endpoint(&[
            ("api_key", "tok"),
            ("endpoint", "https://r.openai.azure.com"),
            ("base_url", "http://127.0.0.1:9/proxy/"),
            ("deployment", "d"),
            ("auth", "Entra"),
        ]);
        let http = compat
            .build_chat_request(&ep, request.clone(), true)
            .unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:9/proxy/openai/deployments/d/chat/completions"
        );
        assert_eq!(header(&http, "authorization"), Some("Bearer tok"));
        assert_eq!(header(&http, "api-key"), None);

        let embeddings = EmbeddingsRequest {
            inputs: vec!["a".into()],
            ..Default::default()
        };
        let http = compat.build_embeddings_request(&ep, embeddings).unwrap();
        assert_eq!(
            http.url,
            "http://127.0.0.1:9/proxy/serving-endpoints/my-model/invocations"
        );
        let body: Value = serde_json::from_slice(&http.body).unwrap();
        assert_eq!(body, serde_json::json!({"input": ["a"]}));

        // Missing pieces are named, never shown.
        let err = compat
            .build_chat_request(&endpoint(&[("api_key", "k")]), request.clone(), false)
            .unwrap_err();
        assert_eq!(err.message, "endpoint 'ep' is missing config 'endpoint'");
        let err = compat
            .build_chat_request(
                &endpoint(&[("api_key", "k"), ("endpoint", "https://r.example")]),
                request,
                false,
            )
            .unwrap_err();
        assert_eq!(err.message, "endpoint 'ep' is missing config 'deployment'");
    }

    #[test]
    fn provider_chunk_extensions_are_normalized() {
        let compat = OpenAiCompat::new();
        let stream = concat!(
            // Azure: the prompt-filter chunk comes first, with empty ids.
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}]}\n\n",
            "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":null}],\"x_groq\":{\"id\":\"req_1\"}}\n\n",
            // Groq: usage inside x_groq of the last chunk.
            "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"content_filter\"}],\"x_groq\":{\"id\":\"req_1\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4,\"queue_time\":0.01}}}\n\n",
            "data: [DONE]\n\n",
        );
        let mut decoder = compat.stream_decoder();
        let mut events = decoder.push(stream.as_bytes()).unwrap();
        events.extend(decoder.finish().unwrap());
        assert_eq!(
            events,
            vec![
                StreamEvent::Start {
                    id: "c1".into(),
                    model: "m".into()
                },
                StreamEvent::TextDelta { text: "hi".into() },
                StreamEvent::Finish {
                    reason: FinishReason::ContentFilter
                },
                StreamEvent::Usage {
                    usage: portico_model::Usage {
                        input_tokens: 3,
                        output_tokens: 1,
                        cached_input_tokens: None
                    }
                },
            ]
        );

        // A top-level usage wins over x_groq's.
        let mut decoder = compat.stream_decoder();
        let events = decoder
            .push(b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2},\"x_groq\":{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}}\n\n")
            .unwrap();
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Usage {
                usage: portico_model::Usage {
                    input_tokens: 9,
                    output_tokens: 2,
                    cached_input_tokens: None
                }
            })
        );
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
        decoder
            .push(
                b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            )
            .unwrap();
        assert_eq!(decoder.finish().unwrap(), vec![]);

        let mut decoder = compat.stream_decoder();
        let err = decoder
            .push(b"event: error\ndata: {\"message\": \"boom\"}\n\n")
            .unwrap_err();
        assert_eq!(err.message, "boom");

        let mut decoder = compat.stream_decoder();
        let events = decoder
            .push(b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}]}")
            .unwrap();
        assert!(events.is_empty());
        let events = decoder.finish().unwrap();
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: FinishReason::Length
            })
        );
    }

    struct Compat {
        api: OpenAiCompat,
    }

    impl crate::Provider for Compat {
        type StreamDecoder = ChatStreamDecoder;

        fn new() -> Self {
            Compat {
                api: OpenAiCompat::new(),
            }
        }

        fn info(&self) -> portico_model::plugin::ProviderInfo {
            crate::describe::Describe::new("compat", "Compat", "0", "").build()
        }

        crate::openai_compat_methods!(api);
    }

    #[test]
    fn non_success_statuses_are_errors() {
        use crate::Provider as _;
        let compat = Compat::new();
        let ep = endpoint(&[]);
        let response = HttpResponse {
            status: 302,
            headers: vec![],
            body: b"moved".to_vec(),
        };
        assert_eq!(
            crate::parse_chat(&compat, &ep, response)
                .unwrap_err()
                .status,
            502
        );
        let response = HttpResponse {
            status: 400,
            headers: vec![],
            body: br#"{"error":{"message":"bad"}}"#.to_vec(),
        };
        let err = crate::parse_embeddings(&compat, &ep, response).unwrap_err();
        assert_eq!(
            (err.kind, err.message.as_str()),
            (ErrorKind::InvalidRequest, "bad")
        );
        let ok = HttpResponse {
            status: 200,
            headers: vec![],
            body: br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.5]}],"model":"m"}"#.to_vec(),
        };
        let parsed = crate::parse_embeddings(&compat, &ep, ok).unwrap();
        assert_eq!(parsed.embeddings, vec![vec![0.5]]);
    }
}
