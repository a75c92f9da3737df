//! Routing: from an endpoint name to the plugin that serves it, and the
//! upstream round trip the plugin describes.
//!
//! Client dialects turn their requests into the neutral model and call
//! [`Gateway`]; the gateway resolves the endpoint, lets the plugin build the
//! upstream request, performs it with the shared reqwest client, and lets
//! the plugin translate the answer back. Streams are decoded chunk by chunk
//! as upstream bytes arrive; dropping the returned stream (client gone)
//! drops the upstream response, which cancels the upstream request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use portico_model::plugin::{Dialect, Endpoint, HttpRequest, HttpResponse, Operation};
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ErrorKind, ProviderError,
    StreamEvent,
};

use crate::endpoints::{EndpointDef, EndpointTable};
use crate::registry::Registry;
use crate::runtime::{Plugin, PluginError, StreamDecoder};
use crate::store::Store;

/// A stream of neutral events; an `Err` item ends it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, ProviderError>> + Send>>;

/// Timeouts for upstream calls.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTimeouts {
    /// Whole non-streaming call; for streams, the wait for the response head.
    pub request: Duration,
    /// Longest silence between two chunks of a stream.
    pub stream_idle: Duration,
}

pub struct Gateway {
    pub registry: Arc<Registry>,
    pub endpoints: Arc<EndpointTable>,
    http: reqwest::Client,
    timeouts: UpstreamTimeouts,
    /// Where Responses API conversations are kept for
    /// `previous_response_id`; `None` disables storing them.
    conversations: Option<Arc<dyn Store>>,
}

/// An endpoint bound to the plugin version that will serve this request.
struct Route {
    plugin: Arc<Plugin>,
    endpoint: Endpoint,
}

impl Gateway {
    pub fn new(
        registry: Arc<Registry>,
        endpoints: Arc<EndpointTable>,
        http: reqwest::Client,
        timeouts: UpstreamTimeouts,
    ) -> Self {
        Self {
            registry,
            endpoints,
            http,
            timeouts,
            conversations: None,
        }
    }

    /// Keeps Responses API conversations in `store`.
    pub fn with_conversations(mut self, store: Arc<dyn Store>) -> Self {
        self.conversations = Some(store);
        self
    }

    pub fn conversations(&self) -> Option<&Arc<dyn Store>> {
        self.conversations.as_ref()
    }

    /// The dialect the endpoint's provider speaks natively, if any: a client
    /// of that dialect gets the upstream answer passed through unchanged.
    pub fn native_dialect(&self, name: &str) -> Option<Dialect> {
        let def = self.endpoints.get(name)?;
        self.registry.get(&def.provider)?.info.native_dialect
    }

    /// Finds the endpoint and its plugin, checks the operation is supported
    /// and the configuration complete, and fills config defaults.
    fn route(&self, name: &str, operation: Operation) -> Result<Route, ProviderError> {
        let def = self.endpoints.get(name).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("endpoint '{name}' does not exist"),
            )
        })?;
        let plugin = self.registry.get(&def.provider).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Overloaded,
                format!(
                    "endpoint '{name}' uses provider '{}', whose plugin is not loaded",
                    def.provider
                ),
            )
        })?;
        if !plugin.info.supports(operation) {
            return Err(ProviderError::invalid_request(format!(
                "endpoint '{name}' (provider '{}') does not support {}",
                def.provider,
                operation_name(operation)
            )));
        }
        let endpoint = endpoint_for(&def, &plugin)?;
        Ok(Route { plugin, endpoint })
    }

    pub async fn chat(
        &self,
        name: &str,
        mut request: ChatRequest,
    ) -> Result<ChatResponse, ProviderError> {
        let route = self.route(name, Operation::Chat)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_chat_request(&route.endpoint, &request, false)
            .await
            .map_err(PluginError::into_provider_error)?;
        let response = self.send(upstream).await?;
        let response = read_whole(response, self.timeouts.request).await?;
        route
            .plugin
            .parse_chat_response(&route.endpoint, response)
            .await
            .map_err(PluginError::into_provider_error)
    }

    pub async fn embeddings(
        &self,
        name: &str,
        mut request: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let route = self.route(name, Operation::Embeddings)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_embeddings_request(&route.endpoint, &request)
            .await
            .map_err(PluginError::into_provider_error)?;
        let response = self.send(upstream).await?;
        let response = read_whole(response, self.timeouts.request).await?;
        route
            .plugin
            .parse_embeddings_response(&route.endpoint, response)
            .await
            .map_err(PluginError::into_provider_error)
    }

    /// Starts a streamed chat. Errors before the first upstream byte (bad
    /// endpoint, upstream error status) are returned here, so the client
    /// gets a proper HTTP error instead of a broken stream.
    pub async fn chat_stream(
        &self,
        name: &str,
        mut request: ChatRequest,
    ) -> Result<EventStream, ProviderError> {
        let route = self.route(name, Operation::ChatStream)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_chat_request(&route.endpoint, &request, true)
            .await
            .map_err(PluginError::into_provider_error)?;
        let response = self.send(upstream).await?;
        if !response.status().is_success() {
            let response = read_whole(response, self.timeouts.request).await?;
            return Err(route
                .plugin
                .parse_error(&route.endpoint, response)
                .await
                .map_err(PluginError::into_provider_error)?);
        }
        let decoder = route
            .plugin
            .stream_decoder(&route.endpoint)
            .await
            .map_err(PluginError::into_provider_error)?;
        Ok(decode_stream(
            response.bytes_stream(),
            decoder,
            self.timeouts.stream_idle,
        ))
    }

    async fn send(&self, request: HttpRequest) -> Result<reqwest::Response, ProviderError> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            ProviderError::internal(format!(
                "plugin built an invalid HTTP method '{}'",
                request.method
            ))
        })?;
        let mut builder = self.http.request(method, &request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name, value);
        }
        let send = builder.body(request.body).send();
        match tokio::time::timeout(self.timeouts.request, send).await {
            Err(_) => Err(upstream_timeout()),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(upstream_unreachable(&error)),
        }
    }
}

/// The endpoint as the plugin sees it: declared defaults filled in, and a
/// clear error when a required field is missing (a server-side
/// misconfiguration, so 500 rather than the client's fault).
fn endpoint_for(def: &EndpointDef, plugin: &Plugin) -> Result<Endpoint, ProviderError> {
    let mut config = def.config.clone();
    for field in &plugin.info.config_fields {
        let present = config.get(&field.name).is_some_and(|v| !v.is_empty());
        if present {
            continue;
        }
        match (&field.default_value, field.required) {
            (Some(default), _) => {
                config.insert(field.name.clone(), default.clone());
            }
            (None, true) => {
                return Err(ProviderError::internal(format!(
                    "endpoint '{}' is misconfigured: required setting '{}' ({}) is missing",
                    def.name, field.name, field.label
                )));
            }
            (None, false) => {}
        }
    }
    Ok(Endpoint {
        name: def.name.clone(),
        model: def.model.clone(),
        config,
    })
}

fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "chat",
        Operation::ChatStream => "streaming chat",
        Operation::Embeddings => "embeddings",
    }
}

fn upstream_timeout() -> ProviderError {
    ProviderError {
        kind: ErrorKind::Upstream,
        status: 504,
        message: "the upstream provider did not answer in time".into(),
        retry_after_ms: None,
    }
}

fn upstream_unreachable(error: &reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return upstream_timeout();
    }
    // reqwest's Display omits the cause chain (connection refused, DNS...).
    let mut message = format!("the upstream provider could not be reached: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    ProviderError::bad_upstream(message)
}

/// Reads a whole upstream response within the remaining time budget.
async fn read_whole(
    response: reqwest::Response,
    limit: Duration,
) -> Result<HttpResponse, ProviderError> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = match tokio::time::timeout(limit, response.bytes()).await {
        Err(_) => return Err(upstream_timeout()),
        Ok(Err(error)) => return Err(upstream_unreachable(&error)),
        Ok(Ok(body)) => body.to_vec(),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Feeds upstream chunks to the plugin's decoder as they arrive and yields
/// its events. Ends after the decoder's `finish`, or at the first error.
fn decode_stream(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    decoder: StreamDecoder,
    idle: Duration,
) -> EventStream {
    struct State<B> {
        body: Pin<Box<B>>,
        decoder: StreamDecoder,
        pending: VecDeque<StreamEvent>,
        done: bool,
    }
    let state = State {
        body: Box::pin(body),
        decoder,
        pending: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok(event), state));
            }
            if state.done {
                return None;
            }
            let next = match tokio::time::timeout(idle, state.body.next()).await {
                Err(_) => Err(ProviderError {
                    status: 504,
                    ..ProviderError::bad_upstream("the upstream stream stalled")
                }),
                Ok(Some(Ok(chunk))) => state
                    .decoder
                    .push(&chunk)
                    .await
                    .map_err(PluginError::into_provider_error),
                Ok(Some(Err(error))) => Err(ProviderError::bad_upstream(format!(
                    "the upstream stream broke: {error}"
                ))),
                Ok(None) => {
                    state.done = true;
                    state
                        .decoder
                        .finish()
                        .await
                        .map_err(PluginError::into_provider_error)
                }
            };
            match next {
                Ok(events) => state.pending.extend(events),
                Err(error) => {
                    state.done = true;
                    state.pending.clear();
                    return Some((Err(error), state));
                }
            }
        }
    });
    Box::pin(stream)
}
