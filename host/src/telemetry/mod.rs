//! Observability: every call through `/gateway` is logged (batched, off
//! the request path, without message contents), counted in Prometheus
//! metrics (`GET /metrics`) and priced from the serving plugin's model
//! catalog; the usage API aggregates the log.
//!
//! - [`request_id`]: the `x-request-id` middleware and the per-request span;
//! - [`request_log`]: the batched writer into the store;
//! - [`metrics`]: the Prometheus recorder and the gateway metrics;
//! - [`usage`]: `/api/v1/usage` and `/api/v1/requests`;
//! - [`logging`]: `tracing` set-up, with optional OpenTelemetry export.
//!
//! [`Telemetry`] is the [`CallHooks`] the gateway reports every call to.

pub mod logging;
pub mod metrics;
pub mod request_id;
pub mod request_log;
pub mod usage;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use portico_model::Usage;
use portico_model::plugin::Operation;

use crate::endpoints::{EndpointDef, EndpointTable};
use crate::registry::Registry;
use crate::routing::{CallContext, CallHooks, CallRecord};
use crate::store::{RequestLogEntry, Store, unix_ms};
use crate::tasks::AbortOnDrop;

pub use request_log::RequestLog;

/// Longest error message kept in the log: upstream messages can be long,
/// and the log is for operators, not a copy of the traffic.
const MAX_ERROR_MESSAGE: usize = 500;
/// Longest endpoint name kept for a call that named an unknown endpoint.
const MAX_ENDPOINT_NAME: usize = 200;

/// The cost of `usage` at the catalog prices (USD per million tokens).
pub fn cost_usd(usage: &Usage, input_price_per_mtok: f64, output_price_per_mtok: f64) -> f64 {
    f64::from(usage.input_tokens) * input_price_per_mtok / 1e6
        + f64::from(usage.output_tokens) * output_price_per_mtok / 1e6
}

/// The telemetry of one gateway: the call hooks, the request log writer
/// and the metrics.
pub struct Telemetry {
    registry: Arc<Registry>,
    endpoints: Arc<EndpointTable>,
    store: Arc<dyn Store>,
    log: RequestLog,
    metrics: metrics::GatewayMetrics,
    /// Requests the request-id middleware is serving, by request id, and
    /// whether the gateway saw them (admitted or reported a call). Those
    /// it did not see (unknown route, bad body, refused by a middleware)
    /// are logged by the middleware itself.
    in_flight: Mutex<HashMap<Arc<str>, bool>>,
}

impl Telemetry {
    /// Starts the request log writer on the current Tokio runtime.
    pub fn start(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        endpoints: Arc<EndpointTable>,
    ) -> Arc<Self> {
        let log = RequestLog::spawn(store.clone(), request_log::WriterOptions::default());
        Arc::new(Telemetry {
            registry,
            endpoints,
            store,
            log,
            metrics: metrics::GatewayMetrics::install(),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &metrics::GatewayMetrics {
        &self.metrics
    }

    /// The usage API routes, to merge under `/api/v1` (behind the admin
    /// token).
    pub fn api_router<S>(self: &Arc<Self>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        usage::router(self.clone())
    }

    /// Adds `GET /metrics` and the request-id middleware to the app.
    pub fn wrap(self: &Arc<Self>, router: Router) -> Router {
        crate::server::around(
            router.merge(metrics::router(self.clone())),
            axum::middleware::from_fn_with_state(self.clone(), request_id::middleware),
        )
    }

    /// Writes what is still queued and stops the writer.
    pub async fn close(&self) {
        self.log.close().await;
    }

    /// Writes what is queued now (for tests and shutdown).
    pub async fn flush(&self) {
        self.log.flush().await;
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, bool>> {
        self.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn begin_request(&self, id: &Arc<str>) {
        self.in_flight().insert(id.clone(), false);
    }

    /// Ends a request; true if the gateway saw (and so logged) it.
    pub(crate) fn end_request(&self, id: &Arc<str>) -> bool {
        self.in_flight().remove(id).unwrap_or(false)
    }

    fn mark_seen(&self, id: &Arc<str>) {
        if let Some(seen) = self.in_flight().get_mut(id) {
            *seen = true;
        }
    }

    /// Logs and counts a request that ended before reaching the gateway.
    pub(crate) fn record_unrouted(&self, entry: RequestLogEntry) {
        self.metrics.observe(&entry, "");
        self.log.submit(entry);
    }

    /// The log entry of a finished call.
    pub fn entry(&self, ctx: &CallContext, record: &CallRecord) -> RequestLogEntry {
        let def = self.endpoints.get(&record.endpoint);
        let (provider, model) = if record.served.provider.is_empty() {
            def.as_deref()
                .map(|d: &EndpointDef| (d.provider.clone(), d.model.clone()))
                .unwrap_or_default()
        } else {
            (record.served.provider.clone(), record.served.model.clone())
        };
        let cost = record.usage.as_ref().and_then(|usage| {
            self.price(&provider, &model)
                .map(|(i, o)| cost_usd(usage, i, o))
        });
        let error_kind = record.error.as_ref().map(|e| {
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{:?}", e.kind))
        });
        RequestLogEntry {
            request_id: ctx.request_id.to_string(),
            at_ms: unix_ms(ctx.received_at),
            endpoint: truncate(&record.endpoint, MAX_ENDPOINT_NAME),
            provider,
            model,
            operation: operation_str(record.operation).to_string(),
            dialect: ctx.dialect.as_str().to_string(),
            key_id: ctx.key.as_ref().map(|k| k.id.clone()),
            key_prefix: ctx.key.as_ref().map(|k| k.prefix.clone()),
            status: record.status,
            error_kind,
            error_message: record
                .error
                .as_ref()
                .map(|e| truncate(&e.message, MAX_ERROR_MESSAGE)),
            latency_ms: millis(record.latency),
            ttft_ms: record.time_to_first_token.map(millis),
            input_tokens: record.usage.map(|u| u64::from(u.input_tokens)),
            output_tokens: record.usage.map(|u| u64::from(u.output_tokens)),
            cached_input_tokens: record
                .usage
                .and_then(|u| u.cached_input_tokens.map(u64::from)),
            cost_usd: cost,
            attempts: record.served.attempts,
            fallbacks: record.served.fallbacks,
            cancelled: record.cancelled,
        }
    }

    /// The catalog prices (input, output per million tokens) of `model`
    /// in `provider`'s plugin; `None` when the model is not in the catalog.
    pub fn price(&self, provider: &str, model: &str) -> Option<(f64, f64)> {
        let plugin = self.registry.get(provider)?;
        let info = plugin.info.model(model)?;
        Some((info.input_price_per_mtok, info.output_price_per_mtok))
    }
}

impl CallHooks for Telemetry {
    fn admit(
        &self,
        ctx: &CallContext,
        _endpoint: &EndpointDef,
    ) -> Result<(), portico_model::ProviderError> {
        self.mark_seen(&ctx.request_id);
        Ok(())
    }

    fn finished(&self, ctx: &CallContext, record: &CallRecord) {
        self.mark_seen(&ctx.request_id);
        let entry = self.entry(ctx, record);
        // Unknown endpoint names are client input: keep them out of the
        // metric labels so a typo loop cannot grow the series without end.
        let label = if self.endpoints.get(&record.endpoint).is_some() {
            entry.endpoint.as_str()
        } else {
            ""
        };
        self.metrics.observe(&entry, label);
        tracing::info!(
            request_id = %entry.request_id,
            endpoint = %entry.endpoint,
            provider = %entry.provider,
            model = %entry.model,
            status = entry.status,
            latency_ms = entry.latency_ms,
            input_tokens = entry.input_tokens,
            output_tokens = entry.output_tokens,
            cancelled = entry.cancelled,
            "gateway call"
        );
        self.log.submit(entry);
    }
}

pub(crate) fn operation_str(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "chat",
        Operation::ChatStream => "chat_stream",
        Operation::Embeddings => "embeddings",
        Operation::CountTokens => "count_tokens",
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Deletes request log entries older than `retention`, at start and then
/// hourly. The returned handle stops it when dropped.
pub fn prune_periodically(store: Arc<dyn Store>, retention: Duration) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let Some(cutoff) = SystemTime::now().checked_sub(retention) else {
                continue;
            };
            match store.prune_request_log(cutoff).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "pruned expired request log entries"),
                Err(error) => tracing::warn!(%error, "could not prune the request log"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_tokens_times_price_per_million() {
        let usage = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            cached_input_tokens: None,
        };
        let cost = cost_usd(&usage, 2.5, 10.0);
        assert!((cost - (1_000.0 * 2.5 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
        assert_eq!(cost_usd(&Usage::default(), 2.5, 10.0), 0.0);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hi", 5), "hi");
    }
}
