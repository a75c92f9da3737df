//! Routing: from an endpoint name to the plugin that serves it, and the
//! upstream round trip the plugin describes.
//!
//! Client dialects turn their requests into the neutral model and call
//! [`Gateway`]; the gateway resolves the endpoint, lets the plugin build the
//! upstream request, performs it with this thread's upstream client, and lets
//! the plugin translate the answer back. Streams are decoded chunk by chunk
//! as upstream bytes arrive; dropping the returned stream (client gone)
//! drops the upstream response, which cancels the upstream request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use http_body_util::BodyExt;
use portico_model::plugin::{Endpoint, HttpRequest, HttpResponse, Operation};
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, ErrorKind, ProviderError,
    StreamEvent, Usage,
};

mod context;
pub mod resilience;
pub mod upstream;

pub use context::{
    CallContext, CallHooks, CallRecord, Caller, CallerKey, RequestId, Served, new_request_id,
    unknown_endpoint,
};

use upstream::{BoxError, UpstreamBody};
pub use upstream::{UpstreamClient, UpstreamClients, UpstreamTrust};

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
    http: UpstreamClients,
    timeouts: UpstreamTimeouts,
    /// Where Responses API conversations are kept for
    /// `previous_response_id`; `None` disables storing them.
    conversations: Option<Arc<dyn Store>>,
    hooks: Vec<Arc<dyn CallHooks>>,
    /// Circuit breakers by target endpoint name.
    breakers: resilience::Breakers,
    /// Where work that must outlive a request runs (the runtime the gateway
    /// was built on, which outlives the serving threads' runtimes).
    background: Option<tokio::runtime::Handle>,
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
        http: UpstreamClients,
        timeouts: UpstreamTimeouts,
    ) -> Self {
        Self {
            registry,
            endpoints,
            http,
            timeouts,
            conversations: None,
            hooks: Vec::new(),
            breakers: resilience::Breakers::default(),
            background: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// Runs `task` to completion even if the serving thread that started
    /// it stops first (at shutdown, a serving runtime drops its tasks).
    pub fn spawn_background<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match &self.background {
            Some(handle) => drop(handle.spawn(task)),
            None => drop(tokio::spawn(task)),
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

    /// Counts the input tokens of `request` with the provider's own counter
    /// (no model runs). Served like a chat: the endpoint's targets, retries
    /// and fallbacks apply.
    pub async fn count_tokens(
        &self,
        ctx: &CallContext,
        name: &str,
        request: ChatRequest,
    ) -> Result<u64, ProviderError> {
        let mut served = Served::default();
        let result = match self.admit(ctx, name) {
            Ok(def) => match self
                .resilient(ctx, &def, &mut Call::CountTokens(request), &mut served)
                .await
            {
                Ok(Answer::Tokens(count)) => Ok(count),
                Ok(_) => Err(ProviderError::internal(
                    "routing produced the wrong answer kind",
                )),
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        };
        self.report(
            ctx,
            name,
            Operation::CountTokens,
            served,
            &result,
            None,
            None,
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
        let def = self
            .endpoints
            .get(name)
            .ok_or_else(|| unknown_endpoint(name))?;
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
        // A plugin answers for itself whether it can count tokens.
        if operation != Operation::CountTokens && !plugin.info.supports(operation) {
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

    /// Serves a chat through the endpoint's targets (see [`Self::resilient`]).
    /// `served` tells which target was used, also when it failed.
    async fn dispatch_chat(
        &self,
        ctx: &CallContext,
        def: &Arc<EndpointDef>,
        request: ChatRequest,
        served: &mut Served,
    ) -> Result<ChatResponse, ProviderError> {
        match self
            .resilient(ctx, def, &mut Call::Chat(request), served)
            .await?
        {
            Answer::Chat(response) => Ok(response),
            _ => Err(ProviderError::internal(
                "routing produced the wrong answer kind",
            )),
        }
    }

    async fn dispatch_embeddings(
        &self,
        ctx: &CallContext,
        def: &Arc<EndpointDef>,
        request: EmbeddingsRequest,
        served: &mut Served,
    ) -> Result<EmbeddingsResponse, ProviderError> {
        match self
            .resilient(ctx, def, &mut Call::Embeddings(request), served)
            .await?
        {
            Answer::Embeddings(response) => Ok(response),
            _ => Err(ProviderError::internal(
                "routing produced the wrong answer kind",
            )),
        }
    }

    /// A stream is returned once its first event has arrived: until then a
    /// failing target may be retried or fall back, after it never (the
    /// client has started receiving).
    async fn dispatch_chat_stream(
        &self,
        ctx: &CallContext,
        def: &Arc<EndpointDef>,
        request: ChatRequest,
        served: &mut Served,
    ) -> Result<EventStream, ProviderError> {
        match self
            .resilient(ctx, def, &mut Call::ChatStream(request), served)
            .await?
        {
            Answer::Stream(events) => Ok(events),
            _ => Err(ProviderError::internal(
                "routing produced the wrong answer kind",
            )),
        }
    }

    /// The targets of a call in the order to try them: one primary picked
    /// by weight among those whose breaker is not open, then the fallbacks.
    /// Missing or unusable references are skipped (they may have been
    /// deleted since the policy was written).
    fn plan(
        &self,
        def: &Arc<EndpointDef>,
        now: Instant,
    ) -> Result<Vec<Arc<EndpointDef>>, ProviderError> {
        let policy = &def.policy;
        let resolve = |name: &str| -> Option<Arc<EndpointDef>> {
            let found = if name == def.name {
                Some(def.clone())
            } else {
                self.endpoints.get(name)
            };
            match found {
                Some(target) if !target.provider.is_empty() => Some(target),
                _ => {
                    tracing::warn!(endpoint = %def.name, target = %name, "target skipped: no such plain endpoint");
                    None
                }
            }
        };
        let primaries: Vec<(Arc<EndpointDef>, u32)> = if policy.targets.is_empty() {
            resolve(&def.name).into_iter().map(|d| (d, 1)).collect()
        } else {
            policy
                .targets
                .iter()
                .filter_map(|t| resolve(&t.endpoint).map(|d| (d, t.weight)))
                .collect()
        };
        let healthy = |target: &EndpointDef| {
            policy
                .circuit_breaker
                .as_ref()
                .is_none_or(|config| self.breakers.open_for(&target.name, config, now).is_none())
        };
        let weights: Vec<u32> = primaries
            .iter()
            .map(|(d, w)| if healthy(d) { *w } else { 0 })
            .collect();
        let mut plan = Vec::new();
        match resilience::pick_weighted(&weights, resilience::random_unit()) {
            Some(i) => plan.push(primaries[i].0.clone()),
            // All open: still listed, so the answer says when to come back.
            None => plan.extend(
                primaries
                    .iter()
                    .filter(|(_, w)| *w > 0)
                    .map(|(d, _)| d.clone()),
            ),
        }
        for name in &policy.fallbacks {
            if let Some(target) = resolve(name)
                && !plan.iter().any(|p| p.name == target.name)
            {
                plan.push(target);
            }
        }
        if plan.is_empty() {
            return Err(ProviderError::internal(format!(
                "endpoint '{}' is misconfigured: none of its targets ({}) exists",
                def.name,
                policy.referenced().join(", ")
            )));
        }
        Ok(plan)
    }

    /// Tries the planned targets in order. Each is retried on retryable
    /// failures (429, 5xx, timeouts, unreachable) up to the policy's
    /// attempts, with backoff or the upstream's `Retry-After`; then the next
    /// target is tried. A non-retryable failure is answered at once. The
    /// endpoint's total timeout bounds the whole.
    async fn resilient(
        &self,
        ctx: &CallContext,
        def: &Arc<EndpointDef>,
        call: &mut Call,
        served: &mut Served,
    ) -> Result<Answer, ProviderError> {
        let policy = &def.policy;
        let deadline = policy
            .timeouts
            .total_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        let client = self.http.get(policy.timeouts.connect_ms);
        let attempt_limit = policy
            .timeouts
            .attempt_ms
            .map_or(self.timeouts.request, Duration::from_millis);
        let plan = self.plan(def, Instant::now())?;
        let breaker = policy.circuit_breaker;
        let mut last_error: Option<ProviderError> = None;
        let mut open_for: Option<Duration> = None;
        let mut tried = 0u32;
        'targets: for target in plan {
            if let Some(config) = &breaker
                && let resilience::Admission::Open(left) =
                    self.breakers.admit(&target.name, config, Instant::now())
            {
                open_for = Some(open_for.map_or(left, |o| o.min(left)));
                continue;
            }
            if tried > 0 {
                served.fallbacks += 1;
                metrics::counter!(
                    "portico_upstream_fallbacks_total",
                    "endpoint" => def.name.clone(),
                    "target" => target.name.clone()
                )
                .increment(1);
            }
            tried += 1;
            let mut attempts = 0u32;
            loop {
                attempts += 1;
                let budget = match deadline {
                    Some(deadline) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(total_timeout(&def.name));
                        }
                        attempt_limit.min(left)
                    }
                    None => attempt_limit,
                };
                let error = match self
                    .attempt(ctx, &target, call, &client, budget, served)
                    .await
                {
                    Ok(answer) => {
                        if breaker.is_some() {
                            self.breakers.success(&target.name);
                        }
                        return Ok(answer);
                    }
                    Err(failure) => failure,
                };
                if !resilience::is_retryable(&error.error) {
                    if breaker.is_some() && error.sent {
                        // It answered: alive, the request was the problem.
                        self.breakers.success(&target.name);
                    }
                    return Err(error.error);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(total_timeout(&def.name));
                }
                tracing::debug!(endpoint = %def.name, target = %target.name, attempt = attempts, error = %error.error, "upstream attempt failed");
                let mut opened = false;
                if let Some(config) = &breaker {
                    opened = self.breakers.failure(&target.name, config, Instant::now());
                    if opened {
                        tracing::warn!(target = %target.name, cooldown_ms = config.cooldown_ms, "circuit breaker opened");
                        metrics::counter!(
                            "portico_circuit_breaker_open_total",
                            "target" => target.name.clone()
                        )
                        .increment(1);
                    }
                }
                let step = if error.sent && !opened {
                    resilience::next_step(
                        &policy.retry,
                        attempts,
                        &error.error,
                        resilience::random_unit(),
                    )
                } else {
                    resilience::NextStep::MoveOn
                };
                last_error = Some(error.error);
                let wait = match step {
                    resilience::NextStep::MoveOn => continue 'targets,
                    resilience::NextStep::RetryAfter(wait) => wait,
                };
                if deadline.is_some_and(|d| Instant::now() + wait >= d) {
                    continue 'targets; // no time to wait for this one
                }
                metrics::counter!(
                    "portico_upstream_retries_total",
                    "endpoint" => def.name.clone(),
                    "target" => target.name.clone()
                )
                .increment(1);
                tokio::time::sleep(wait).await;
            }
        }
        if let Some(error) = last_error {
            return Err(error);
        }
        let left = open_for.unwrap_or_default();
        Err(ProviderError {
            retry_after_ms: Some(u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1)),
            ..ProviderError::new(
                ErrorKind::Overloaded,
                format!(
                    "endpoint '{}' is temporarily unavailable: every target failed recently",
                    def.name
                ),
            )
        })
    }

    /// One attempt on one target, bounded by `budget`: the whole answer,
    /// or a stream's first event.
    async fn attempt(
        &self,
        ctx: &CallContext,
        target: &EndpointDef,
        call: &mut Call,
        client: &UpstreamClient,
        budget: Duration,
        served: &mut Served,
    ) -> Result<Answer, Failed> {
        served.begin(target);
        let route = self
            .route(target, call.operation())
            .map_err(Failed::unsent)?;
        // Before anything reaches the upstream: once it has, the answer is
        // read whatever the load (see `Plugin::reserve`). Waiting for a
        // place spends the attempt's budget like any other wait.
        let reserving = Instant::now();
        let slot = route
            .plugin
            .reserve(budget)
            .await
            .map_err(|busy| Failed::unsent(busy.into_provider_error()))?;
        let budget = budget.saturating_sub(reserving.elapsed());
        // The target's model stands in for the client's while the request
        // is built (put back after: a fallback target has its own), which
        // spares a deep copy of the messages per attempt.
        let client_model = std::mem::replace(call.model_mut(), route.endpoint.model.clone());
        let stream = matches!(call, Call::ChatStream(_));
        let built = match &*call {
            Call::Chat(request) | Call::ChatStream(request) => {
                route
                    .plugin
                    .build_chat_request(&route.endpoint, request, stream)
                    .await
            }
            Call::Embeddings(request) => {
                route
                    .plugin
                    .build_embeddings_request(&route.endpoint, request)
                    .await
            }
            Call::CountTokens(request) => {
                route
                    .plugin
                    .build_count_tokens_request(&route.endpoint, request)
                    .await
            }
        };
        *call.model_mut() = client_model;
        let upstream = built.map_err(|e| Failed::unsent(e.into_provider_error()))?;
        let call = &*call;
        served.attempts += 1;
        let exchange = async {
            let response = self.send(ctx, client, upstream, budget).await?;
            match call {
                Call::Chat(_) => {
                    let response = read_whole(response, budget).await?;
                    let mut response = route
                        .plugin
                        .parse_chat_response(&route.endpoint, response)
                        .await
                        .map_err(PluginError::into_provider_error)?;
                    if route.plugin.info.native_dialect != Some(ctx.dialect) {
                        // Only a client of the provider's own dialect gets the upstream body.
                        response.raw = None;
                    }
                    Ok(Answer::Chat(response))
                }
                Call::Embeddings(_) => {
                    let response = read_whole(response, budget).await?;
                    route
                        .plugin
                        .parse_embeddings_response(&route.endpoint, response)
                        .await
                        .map(Answer::Embeddings)
                        .map_err(PluginError::into_provider_error)
                }
                Call::CountTokens(_) => {
                    let response = read_whole(response, budget).await?;
                    route
                        .plugin
                        .parse_count_tokens_response(&route.endpoint, response)
                        .await
                        .map(Answer::Tokens)
                        .map_err(PluginError::into_provider_error)
                }
                Call::ChatStream(_) => {
                    if !response.status().is_success() {
                        let response = read_whole(response, budget).await?;
                        return Err(route
                            .plugin
                            .parse_error(&route.endpoint, response)
                            .await
                            .map_err(PluginError::into_provider_error)?);
                    }
                    let mut decoder = route
                        .plugin
                        .stream_decoder(&route.endpoint)
                        .await
                        .map_err(PluginError::into_provider_error)?;
                    decoder.hold(slot);
                    let native = route.plugin.info.native_dialect == Some(ctx.dialect);
                    let events = decode_stream(
                        response.into_body().into_data_stream(),
                        decoder,
                        self.timeouts.stream_idle,
                    );
                    let mut events: EventStream = if native {
                        events
                    } else {
                        // Raw upstream events only matter to a client of the provider's own dialect.
                        Box::pin(events.filter(|item| {
                            futures::future::ready(!matches!(item, Ok(StreamEvent::Raw { .. })))
                        }))
                    };
                    // Nothing has reached the client yet: a failure up to
                    // the first event may still be retried elsewhere.
                    match events.next().await {
                        Some(Ok(first)) => Ok(Answer::Stream(Box::pin(
                            futures::stream::once(futures::future::ready(Ok(first))).chain(events),
                        ))),
                        Some(Err(error)) => Err(error),
                        None => Ok(Answer::Stream(events)),
                    }
                }
            }
        };
        match tokio::time::timeout(budget, exchange).await {
            Err(_) => Err(Failed::sent(upstream_timeout())),
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(error)) => Err(Failed::sent(error)),
        }
    }

    /// Performs the upstream request, with the call's request id.
    async fn send(
        &self,
        ctx: &CallContext,
        client: &UpstreamClient,
        request: HttpRequest,
        limit: Duration,
    ) -> Result<http::Response<UpstreamBody>, ProviderError> {
        match tokio::time::timeout(limit, client.send(request, &ctx.request_id)).await {
            Err(_) => Err(upstream_timeout()),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(upstream::SendError::Invalid(error))) => Err(error),
            Ok(Err(upstream::SendError::Failed(error))) => Err(upstream::unreachable(&*error)),
        }
    }
}

/// What a call asks of a target.
enum Call {
    Chat(ChatRequest),
    ChatStream(ChatRequest),
    Embeddings(EmbeddingsRequest),
    CountTokens(ChatRequest),
}

impl Call {
    fn operation(&self) -> Operation {
        match self {
            Call::Chat(_) => Operation::Chat,
            Call::ChatStream(_) => Operation::ChatStream,
            Call::Embeddings(_) => Operation::Embeddings,
            Call::CountTokens(_) => Operation::CountTokens,
        }
    }

    /// The model the request names.
    fn model_mut(&mut self) -> &mut String {
        match self {
            Call::Chat(request) | Call::ChatStream(request) | Call::CountTokens(request) => {
                &mut request.model
            }
            Call::Embeddings(request) => &mut request.model,
        }
    }
}

/// A target's answer to a [`Call`].
enum Answer {
    Chat(ChatResponse),
    Stream(EventStream),
    Embeddings(EmbeddingsResponse),
    /// Input tokens counted.
    Tokens(u64),
}

/// A failed attempt; `sent` tells whether the request went upstream (a
/// target that cannot even build it is not retried).
struct Failed {
    error: ProviderError,
    sent: bool,
}

impl Failed {
    fn sent(error: ProviderError) -> Self {
        Failed { error, sent: true }
    }

    fn unsent(error: ProviderError) -> Self {
        Failed { error, sent: false }
    }
}

fn total_timeout(endpoint: &str) -> ProviderError {
    ProviderError {
        message: format!(
            "the upstream providers of endpoint '{endpoint}' did not answer within its total timeout"
        ),
        ..upstream_timeout()
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
        Operation::CountTokens => "token counting",
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

/// Reads a whole upstream response within the remaining time budget.
async fn read_whole(
    response: http::Response<UpstreamBody>,
    limit: Duration,
) -> Result<HttpResponse, ProviderError> {
    let (head, body) = response.into_parts();
    let status = head.status.as_u16();
    let headers = head
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body = match tokio::time::timeout(limit, body.collect()).await {
        Err(_) => return Err(upstream_timeout()),
        Ok(Err(error)) => return Err(upstream::unreachable(&*error)),
        Ok(Ok(body)) => Vec::from(body.to_bytes()),
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Feeds upstream chunks to the plugin's decoder as they arrive and yields
/// its events. Ends after the decoder's `finish`, or at the first error.
fn decode_stream<B>(body: B, decoder: StreamDecoder, idle: Duration) -> EventStream
where
    B: Stream<Item = Result<Bytes, BoxError>> + Send + 'static,
{
    struct State<B: Stream> {
        body: Gathering<B>,
        decoder: StreamDecoder,
        pending: VecDeque<StreamEvent>,
        /// The error that ends the stream, once the events before it are out.
        failed: Option<ProviderError>,
        done: bool,
    }
    let state = State {
        body: Gathering::new(body),
        decoder,
        pending: VecDeque::new(),
        failed: None,
        done: false,
    };
    let stream = futures::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.pending.pop_front() {
                return Some((Ok(event), state));
            }
            if let Some(error) = state.failed.take() {
                return Some((Err(error), state));
            }
            if state.done {
                return None;
            }
            let next = match tokio::time::timeout(idle, state.body.next()).await {
                Err(_) => Err(ProviderError {
                    status: 504,
                    ..ProviderError::bad_upstream("the upstream stream stalled")
                }),
                // Every chunk already received in one go; the events
                // decoded before an upstream error still come out ahead of
                // it (see `StreamDecoder::feed`).
                Ok(Some(Ok(chunks))) => Ok(state.decoder.feed(&chunks).await),
                Ok(Some(Err(error))) => Err(ProviderError::bad_upstream(format!(
                    "the upstream stream broke: {error}"
                ))),
                Ok(None) => {
                    state.done = true;
                    Ok(state.decoder.end().await)
                }
            };
            let error = match next {
                Ok(decoded) => {
                    state.pending.extend(decoded.events);
                    decoded.error.map(PluginError::into_provider_error)
                }
                Err(error) => Some(error),
            };
            if let Some(error) = error {
                state.done = true;
                state.failed = Some(error);
            }
        }
    });
    Box::pin(stream)
}

/// Most body bytes gathered at once.
const MAX_GATHERED_BYTES: usize = 64 << 10;

/// An upstream body read as the chunks already received, together. hyper
/// hands over one HTTP chunk per poll, and the connection task that decodes
/// the next one from what it already read runs on this thread (see
/// [`UpstreamClients`]), so yielding once lets it deliver. A burst of
/// upstream events then goes to the client in one write instead of one
/// each; nothing waits for bytes not yet received.
struct Gathering<B: Stream> {
    body: Pin<Box<B>>,
    /// The end of the body or an error met while gathering, returned next.
    held: Option<Option<B::Item>>,
}

impl<B, E> Gathering<B>
where
    B: Stream<Item = Result<Bytes, E>>,
{
    fn new(body: B) -> Self {
        Gathering {
            body: Box::pin(body),
            held: None,
        }
    }

    /// The next chunks (at least one, and those already received after
    /// it), an error or the end; cancel-safe while waiting for the first.
    async fn next(&mut self) -> Option<Result<Vec<Bytes>, E>> {
        if let Some(item) = self.held.take() {
            return item.map(|chunk| chunk.map(|chunk| vec![chunk]));
        }
        let first = match self.body.next().await? {
            Ok(first) => first,
            Err(error) => return Some(Err(error)),
        };
        let mut size = first.len();
        let mut chunks = vec![first];
        let mut yielded = false;
        while size < MAX_GATHERED_BYTES {
            match self.body.next().now_or_never() {
                Some(Some(Ok(more))) => {
                    size += more.len();
                    chunks.push(more);
                    yielded = false;
                }
                Some(end_or_error) => {
                    self.held = Some(end_or_error);
                    break;
                }
                None if yielded => break,
                None => {
                    tokio::task::yield_now().await;
                    yielded = true;
                }
            }
        }
        Some(Ok(chunks))
    }
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
                    if this.first_token.is_none()
                        && let Some(report) = &this.report
                    {
                        this.first_token = Some(report.ctx.started.elapsed());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        items: Vec<Result<&'static str, &'static str>>,
    ) -> Gathering<impl Stream<Item = Result<Bytes, &'static str>>> {
        Gathering::new(futures::stream::iter(
            items
                .into_iter()
                .map(|item| item.map(|text| Bytes::from_static(text.as_bytes()))),
        ))
    }

    #[tokio::test]
    async fn gathers_chunks_already_received() {
        let mut body = chunks(vec![
            Ok("data: 1\n\n"),
            Ok("data: 2\n\n"),
            Ok("data: 3\n\n"),
        ]);
        assert_eq!(
            body.next().await,
            Some(Ok(vec![
                Bytes::from_static(b"data: 1\n\n"),
                Bytes::from_static(b"data: 2\n\n"),
                Bytes::from_static(b"data: 3\n\n")
            ]))
        );
        assert_eq!(body.next().await, None);
    }

    #[tokio::test]
    async fn an_error_after_data_comes_next() {
        let mut body = chunks(vec![Ok("a"), Ok("b"), Err("broken"), Ok("never")]);
        assert_eq!(
            body.next().await,
            Some(Ok(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]))
        );
        assert_eq!(body.next().await, Some(Err("broken")));
    }

    #[tokio::test]
    async fn does_not_wait_for_chunks_not_yet_received() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, ()>>();
        let mut body = Gathering::new(receiver);
        sender
            .unbounded_send(Ok(Bytes::from_static(b"first")))
            .unwrap();
        let later = sender.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            later
                .unbounded_send(Ok(Bytes::from_static(b"second")))
                .unwrap();
        });
        drop(sender);
        assert_eq!(
            body.next().await,
            Some(Ok(vec![Bytes::from_static(b"first")]))
        );
        assert_eq!(
            body.next().await,
            Some(Ok(vec![Bytes::from_static(b"second")]))
        );
        assert_eq!(body.next().await, None);
    }

    #[tokio::test]
    async fn gathers_at_most_a_bounded_amount() {
        let big = Bytes::from(vec![b'x'; 40 << 10]);
        let mut body = Gathering::new(futures::stream::iter(
            std::iter::repeat_n(big, 4).map(Ok::<_, ()>),
        ));
        let mut sizes = Vec::new();
        while let Some(Ok(chunks)) = body.next().await {
            sizes.push(chunks.iter().map(Bytes::len).sum::<usize>());
        }
        assert_eq!(sizes, vec![80 << 10, 80 << 10]);
    }
}
