//! Portico provider plugin for Cohere's native v2 API: Chat (plain and
//! streamed as typed SSE events, with tools, vision and usage) and Embed.
//!
//! The wire translation lives in the shared model crate
//! (`formats::cohere`); this crate adds the endpoint configuration, the
//! HTTP details (URL, auth) and the catalog.

use portico_sdk::formats::cohere;
use portico_sdk::prelude::*;
use portico_sdk::sse::{EventDecoder, SseEvent, SseStream};

/// Default API root (paths below it start with `/v2`).
const DEFAULT_BASE_URL: &str = "https://api.cohere.com";

/// The model catalog, kept as data so it is easy to update.
const MODELS: &str = include_str!("../models.toml");

pub struct Cohere;

impl Cohere {
    fn url(endpoint: &Endpoint, path: &str) -> Result<String, ProviderError> {
        let base = endpoint.base_url("base_url", Some(DEFAULT_BASE_URL))?;
        Ok(http::join_url(&base, path))
    }

    fn post(
        endpoint: &Endpoint,
        path: &str,
        accept: &str,
        body: &serde_json::Value,
    ) -> Result<HttpRequest, ProviderError> {
        let key = endpoint.require("api_key")?;
        Ok(http::RequestBuilder::post(Self::url(endpoint, path)?)
            .bearer_auth(key)
            .header("accept", accept)
            .json(body)
            .build())
    }
}

impl Provider for Cohere {
    type StreamDecoder = SseStream<CohereEvents>;

    fn new() -> Self {
        Cohere
    }

    fn info(&self) -> ProviderInfo {
        ProviderInfo {
            id: "cohere".into(),
            display_name: "Cohere".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Cohere v2 Chat and Embed (Command A, Command R, Embed v4/v3)".into(),
            operations: vec![
                Operation::Chat,
                Operation::ChatStream,
                Operation::Embeddings,
            ],
            native_dialect: None,
            config_fields: vec![
                config::required(
                    "api_key",
                    "API key",
                    FieldKind::Secret,
                    "A Cohere API key, from dashboard.cohere.com/api-keys.",
                ),
                config::optional(
                    "base_url",
                    "Base URL",
                    FieldKind::Url,
                    Some(DEFAULT_BASE_URL),
                    "API root without /v2; change it only to go through a proxy or a private deployment.",
                ),
            ],
            // No host.http_fetch calls: the plugin needs no egress.
            egress_hosts: Vec::new(),
            models: catalog::load(MODELS),
        }
    }

    fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, ProviderError> {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let body = cohere::chat_request_body(&request, stream);
        Self::post(endpoint, "/v2/chat", accept, &body)
    }

    fn parse_chat_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, ProviderError> {
        if response.status >= 300 {
            return Err(self.parse_error(endpoint, &response));
        }
        cohere::parse_chat_response(&response.body)
    }

    fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: EmbeddingsRequest,
    ) -> Result<HttpRequest, ProviderError> {
        let body = cohere::embed_request_body(&request);
        Self::post(endpoint, "/v2/embed", "application/json", &body)
    }

    fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        if response.status >= 300 {
            return Err(self.parse_error(endpoint, &response));
        }
        let mut parsed = cohere::parse_embed_response(&response.body)?;
        // Cohere's answer does not name the model.
        parsed.model = endpoint.model.clone();
        Ok(parsed)
    }

    fn parse_error(&self, _endpoint: &Endpoint, response: &HttpResponse) -> ProviderError {
        cohere::parse_error(response.status, &response.headers, &response.body)
    }

    fn stream_decoder(&self, _endpoint: &Endpoint) -> Self::StreamDecoder {
        SseStream::new(CohereEvents::default())
    }
}

/// Cohere's typed SSE events to neutral stream events.
#[derive(Default)]
pub struct CohereEvents {
    decoder: cohere::EventDecoder,
}

impl EventDecoder for CohereEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ProviderError> {
        self.decoder.decode(&event.event, &event.data)
    }

    fn end(&mut self) -> Result<Vec<StreamEvent>, ProviderError> {
        if self.decoder.is_finished() {
            Ok(Vec::new())
        } else {
            Err(ProviderError::bad_upstream(
                "Cohere stream ended before its message-end event",
            ))
        }
    }
}

portico_sdk::export_provider!(Cohere);
