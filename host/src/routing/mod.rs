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
use portico_model::plugin::{Endpoint, HttpRequest, HttpResponse, Operation};
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ErrorKind, ProviderError,
    StreamEvent, Usage,
};

mod context;

pub use context::{
    CallContext, CallHooks, CallRecord, Caller, CallerKey, RequestId, Served, new_request_id,
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
    hooks: Vec<Arc<dyn CallHooks>>,
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
            hooks: Vec::new(),
        }
    }

    /// Keeps Responses API conversations in `store`.
    pub fn with_conversations(mut self, store: Arc<dyn Store>) -> Self {
        self.conversations = Some(store);
        self
    }

    /// Adds hooks that admit and observe every call, run in the order added.
    pub fn with_hooks(mut self, hooks: Arc<dyn CallHooks>) -> Self {
        self.hooks.push(hooks);
        self
    }

    pub fn conversations(&self) -> Option<&Arc<dyn Store>> {
        self.conversations.as_ref()
    }

    pub async fn chat(
        &self,
        ctx: &CallContext,
        name: &str,
        request: ChatRequest,
    ) -> Result<ChatResponse, ProviderError> {
        let mut served = Served::default();
        let result = match self.admit(ctx, name) {
            Ok(def) => self.dispatch_chat(ctx, &def, request, &mut served).await,
            Err(error) => Err(error),
        };
        let usage = result.as_ref().ok().map(|r| r.usage);
        self.report(ctx, name, Operation::Chat, served, &result, None, usage);
        result
    }

    pub async fn embeddings(
        &self,
        ctx: &CallContext,
        name: &str,
        request: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        let mut served = Served::default();
        let result = match self.admit(ctx, name) {
            Ok(def) => {
                self.dispatch_embeddings(ctx, &def, request, &mut served)
                    .await
            }
            Err(error) => Err(error),
        };
        let usage = result.as_ref().ok().map(|r| r.usage);
        self.report(
            ctx,
            name,
            Operation::Embeddings,
            served,
            &result,
            None,
            usage,
        );
        result
    }

    /// Starts a streamed chat. Errors before the first upstream byte (bad
    /// endpoint, upstream error status) are returned here, so the client
    /// gets a proper HTTP error instead of a broken stream. The call is
    /// reported to the hooks when the stream ends or is dropped.
    pub async fn chat_stream(
        &self,
        ctx: &CallContext,
        name: &str,
        request: ChatRequest,
    ) -> Result<EventStream, ProviderError> {
        let mut served = Served::default();
        let result = match self.admit(ctx, name) {
            Ok(def) => {
                self.dispatch_chat_stream(ctx, &def, request, &mut served)
                    .await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(events) => Ok(observe_stream(
                events,
                StreamReport {
                    hooks: self.hooks.clone(),
                    ctx: ctx.clone(),
                    endpoint: name.to_string(),
                    served,
                },
            )),
            Err(error) => {
                let result = Err(error);
                self.report(
                    ctx,
                    name,
                    Operation::ChatStream,
                    served,
                    &result,
                    None,
                    None,
                );
                result
            }
        }
    }

    /// Finds the endpoint and lets every hook admit the call.
    fn admit(&self, ctx: &CallContext, name: &str) -> Result<Arc<EndpointDef>, ProviderError> {
        let def = self.endpoints.get(name).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::NotFound,
                format!("endpoint '{name}' does not exist"),
            )
        })?;
        for hooks in &self.hooks {
            hooks.admit(ctx, &def)?;
        }
        Ok(def)
    }

    #[allow(clippy::too_many_arguments)]
    fn report<T>(
        &self,
        ctx: &CallContext,
        endpoint: &str,
        operation: Operation,
        served: Served,
        result: &Result<T, ProviderError>,
        time_to_first_token: Option<Duration>,
        usage: Option<Usage>,
    ) {
        if self.hooks.is_empty() {
            return;
        }
        let error = result.as_ref().err().cloned();
        let record = CallRecord {
            endpoint: endpoint.to_string(),
            operation,
            served,
            status: error.as_ref().map_or(200, |e| e.status),
            error,
            latency: ctx.started.elapsed(),
            time_to_first_token,
            usage,
            cancelled: false,
        };
        for hooks in &self.hooks {
            hooks.finished(ctx, &record);
        }
    }

    /// Finds the plugin serving `def`, checks the operation is supported
    /// and the configuration complete, and fills config defaults.
    fn route(&self, def: &EndpointDef, operation: Operation) -> Result<Route, ProviderError> {
        let plugin = self.registry.get(&def.provider).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Overloaded,
                format!(
                    "endpoint '{}' uses provider '{}', whose plugin is not loaded",
                    def.name, def.provider
                ),
            )
        })?;
        if !plugin.info.supports(operation) {
            return Err(ProviderError::invalid_request(format!(
                "endpoint '{}' (provider '{}') does not support {}",
                def.name,
                def.provider,
                operation_name(operation)
            )));
        }
        let endpoint = endpoint_for(def, &plugin)?;
        Ok(Route { plugin, endpoint })
    }

    /// Serves a chat from the endpoint's provider. `served` tells which
    /// target was used, also when it failed.
    async fn dispatch_chat(
        &self,
        ctx: &CallContext,
        def: &EndpointDef,
        mut request: ChatRequest,
        served: &mut Served,
    ) -> Result<ChatResponse, ProviderError> {
        served.begin(def);
        let route = self.route(def, Operation::Chat)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_chat_request(&route.endpoint, &request, false)
            .await
            .map_err(PluginError::into_provider_error)?;
        served.attempts += 1;
        let response = self.send(ctx, upstream).await?;
        let response = read_whole(response, self.timeouts.request).await?;
        let mut response = route
            .plugin
            .parse_chat_response(&route.endpoint, response)
            .await
            .map_err(PluginError::into_provider_error)?;
        if route.plugin.info.native_dialect != Some(ctx.dialect) {
            // Only a client of the provider's own dialect gets the upstream body.
            response.raw = None;
        }
        Ok(response)
    }

    async fn dispatch_embeddings(
        &self,
        ctx: &CallContext,
        def: &EndpointDef,
        mut request: EmbeddingsRequest,
        served: &mut Served,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        served.begin(def);
        let route = self.route(def, Operation::Embeddings)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_embeddings_request(&route.endpoint, &request)
            .await
            .map_err(PluginError::into_provider_error)?;
        served.attempts += 1;
        let response = self.send(ctx, upstream).await?;
        let response = read_whole(response, self.timeouts.request).await?;
        route
            .plugin
            .parse_embeddings_response(&route.endpoint, response)
            .await
            .map_err(PluginError::into_provider_error)
    }

    async fn dispatch_chat_stream(
        &self,
        ctx: &CallContext,
        def: &EndpointDef,
        mut request: ChatRequest,
        served: &mut Served,
    ) -> Result<EventStream, ProviderError> {
        served.begin(def);
        let route = self.route(def, Operation::ChatStream)?;
        request.model = route.endpoint.model.clone();
        let upstream = route
            .plugin
            .build_chat_request(&route.endpoint, &request, true)
            .await
            .map_err(PluginError::into_provider_error)?;
        served.attempts += 1;
        let response = self.send(ctx, upstream).await?;
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
        let native = route.plugin.info.native_dialect == Some(ctx.dialect);
        let events = decode_stream(response.bytes_stream(), decoder, self.timeouts.stream_idle);
        Ok(if native {
            events
        } else {
            // Raw upstream events only matter to a client of the provider's own dialect.
            Box::pin(events.filter(|item| {
                futures::future::ready(!matches!(item, Ok(StreamEvent::Raw { .. })))
            }))
        })
    }

    /// Performs the upstream request, with the call's request id.
    async fn send(
        &self,
        ctx: &CallContext,
        request: HttpRequest,
    ) -> Result<reqwest::Response, ProviderError> {
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
        builder = builder.header(REQUEST_ID_HEADER, &*ctx.request_id);
        let send = builder.body(request.body).send();
        match tokio::time::timeout(self.timeouts.request, send).await {
            Err(_) => Err(upstream_timeout()),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(error)) => Err(upstream_unreachable(&error)),
        }
    }
}

impl Served {
    /// Starts an attempt on `def` (the endpoint itself or a target).
    fn begin(&mut self, def: &EndpointDef) {
        self.target = def.name.clone();
        self.provider = def.provider.clone();
        self.model = def.model.clone();
    }
}

/// The header carrying the request id to clients and upstreams.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

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

/// Reports a streamed call to the hooks once: when the stream ends, fails,
/// or is dropped by a client that went away.
struct StreamReport {
    hooks: Vec<Arc<dyn CallHooks>>,
    ctx: CallContext,
    endpoint: String,
    served: Served,
}

fn observe_stream(events: EventStream, report: StreamReport) -> EventStream {
    if report.hooks.is_empty() {
        return events;
    }
    Box::pin(ObservedStream {
        events,
        report: Some(report),
        first_token: None,
        usage: None,
        error: None,
    })
}

struct ObservedStream {
    events: EventStream,
    /// Taken when reported.
    report: Option<StreamReport>,
    first_token: Option<Duration>,
    usage: Option<Usage>,
    error: Option<ProviderError>,
}

impl ObservedStream {
    fn finish(&mut self, cancelled: bool) {
        let Some(report) = self.report.take() else {
            return;
        };
        let error = self.error.take();
        let record = CallRecord {
            endpoint: report.endpoint,
            operation: Operation::ChatStream,
            served: report.served,
            status: error.as_ref().map_or(200, |e| e.status),
            error,
            latency: report.ctx.started.elapsed(),
            time_to_first_token: self.first_token,
            usage: self.usage.take(),
            cancelled,
        };
        for hooks in &report.hooks {
            hooks.finished(&report.ctx, &record);
        }
    }
}

impl Stream for ObservedStream {
    type Item = Result<StreamEvent, ProviderError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let next = this.events.as_mut().poll_next(cx);
        match &next {
            std::task::Poll::Ready(Some(Ok(event))) => match event {
                StreamEvent::TextDelta { .. }
                | StreamEvent::ThinkingDelta { .. }
                | StreamEvent::ToolCallStart { .. }
                | StreamEvent::ToolCallDelta { .. } => {
                    if this.first_token.is_none() {
                        if let Some(report) = &this.report {
                            this.first_token = Some(report.ctx.started.elapsed());
                        }
                    }
                }
                StreamEvent::Usage { usage } => {
                    // Providers may report usage in parts (input first,
                    // output at the end): keep the largest of each.
                    let total = this.usage.get_or_insert_with(Usage::default);
                    total.input_tokens = total.input_tokens.max(usage.input_tokens);
                    total.output_tokens = total.output_tokens.max(usage.output_tokens);
                    if usage.cached_input_tokens.is_some() {
                        total.cached_input_tokens = usage.cached_input_tokens;
                    }
                }
                _ => {}
            },
            std::task::Poll::Ready(Some(Err(error))) => {
                this.error = Some(error.clone());
            }
            std::task::Poll::Ready(None) => this.finish(false),
            std::task::Poll::Pending => {}
        }
        next
    }
}

impl Drop for ObservedStream {
    fn drop(&mut self) {
        let cancelled = self.report.is_some() && self.error.is_none();
        self.finish(cancelled);
    }
}
