//! Prometheus metrics. The `metrics` facade is the one API every module
//! counts through (routing counts retries and fallbacks, the registry plugin
//! loads); this module installs the Prometheus recorder once per process
//! and renders it on `GET /metrics` (no listener of its own).
//!
//! Gateway metrics, labelled by endpoint, provider and status:
//! `portico_requests_total`, `portico_request_errors_total`,
//! `portico_request_duration_seconds` and
//! `portico_time_to_first_token_seconds` (histograms),
//! `portico_tokens_total{direction=input|output}`, `portico_cost_usd_total`.
//! The cost counter is fractional, which the facade's integer counters
//! cannot hold, so it is kept here and appended to the rendered text.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::Telemetry;
use crate::store::RequestLogEntry;

const DURATION_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
const TTFT_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Cost so far by (endpoint, provider).
type CostTotals = Mutex<BTreeMap<(String, String), f64>>;

struct Shared {
    /// `None` when another recorder was installed first (embedding
    /// applications, tests): the facade's metrics then go there.
    handle: Option<PrometheusHandle>,
    cost: CostTotals,
}

/// Drains recorded histogram samples into their buckets every few seconds.
/// The recorder buffers every sample until upkeep runs; without this, a
/// gateway nobody scrapes would keep every latency it ever measured.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("portico-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                handle.run_upkeep();
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "metrics upkeep thread not started; histograms drain only when /metrics is read");
    }
}

const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide metrics: recorder handle and the cost counter.
#[derive(Clone)]
pub struct GatewayMetrics(Arc<Shared>);

impl GatewayMetrics {
    /// Installs the Prometheus recorder as the global one, once per process.
    pub fn install() -> Self {
        static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
        GatewayMetrics(
            SHARED
                .get_or_init(|| {
                    let handle = PrometheusBuilder::new()
                        .set_buckets_for_metric(
                            Matcher::Full("portico_request_duration_seconds".into()),
                            DURATION_BUCKETS,
                        )
                        .and_then(|b| {
                            b.set_buckets_for_metric(
                                Matcher::Full("portico_time_to_first_token_seconds".into()),
                                TTFT_BUCKETS,
                            )
                        })
                        .and_then(|b| b.install_recorder())
                        .map_err(|error| {
                            tracing::warn!(%error, "Prometheus recorder not installed; /metrics shows only the cost counter");
                        })
                        .ok();
                    if let Some(handle) = &handle {
                        describe();
                        spawn_upkeep(handle.clone());
                    }
                    Arc::new(Shared {
                        handle,
                        cost: Mutex::new(BTreeMap::new()),
                    })
                })
                .clone(),
        )
    }

    /// Counts one finished request. `endpoint` is the metric label (empty
    /// for requests that named no known endpoint).
    pub fn observe(&self, entry: &RequestLogEntry, endpoint: &str) {
        let endpoint = endpoint.to_string();
        let provider = entry.provider.clone();
        let status = entry.status.to_string();
        let labels = [
            ("endpoint", endpoint.clone()),
            ("provider", provider.clone()),
            ("status", status),
        ];
        ::metrics::counter!("portico_requests_total", &labels).increment(1);
        if entry.status >= 400 {
            ::metrics::counter!("portico_request_errors_total", &labels).increment(1);
        }
        let route = [
            ("endpoint", endpoint.clone()),
            ("provider", provider.clone()),
        ];
        ::metrics::histogram!("portico_request_duration_seconds", &route)
            .record(entry.latency_ms as f64 / 1000.0);
        if let Some(ttft) = entry.ttft_ms {
            ::metrics::histogram!("portico_time_to_first_token_seconds", &route)
                .record(ttft as f64 / 1000.0);
        }
        for (direction, tokens) in [
            ("input", entry.input_tokens),
            ("output", entry.output_tokens),
        ] {
            if let Some(tokens) = tokens.filter(|t| *t > 0) {
                let labels = [
                    ("endpoint", endpoint.clone()),
                    ("provider", provider.clone()),
                    ("direction", direction.to_string()),
                ];
                ::metrics::counter!("portico_tokens_total", &labels).increment(tokens);
            }
        }
        if let Some(cost) = entry.cost_usd {
            let mut totals = self.0.cost.lock().unwrap_or_else(PoisonError::into_inner);
            *totals.entry((endpoint, provider)).or_insert(0.0) += cost;
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = match &self.0.handle {
            Some(handle) => {
                handle.run_upkeep();
                handle.render()
            }
            None => String::new(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let totals = self.0.cost.lock().unwrap_or_else(PoisonError::into_inner);
        text.push_str(
            "# HELP portico_cost_usd_total Cost of the calls at the plugin catalog prices, in USD.\n\
             # TYPE portico_cost_usd_total counter\n",
        );
        for ((endpoint, provider), cost) in totals.iter() {
            let _ = writeln!(
                text,
                "portico_cost_usd_total{{endpoint=\"{}\",provider=\"{}\"}} {cost}",
                escape(endpoint),
                escape(provider)
            );
        }
        text
    }
}

fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        "portico_requests_total",
        "Requests through /gateway, by endpoint, provider and status."
    );
    describe_counter!(
        "portico_request_errors_total",
        "Requests through /gateway that ended with an error status (>= 400)."
    );
    describe_histogram!(
        "portico_request_duration_seconds",
        Unit::Seconds,
        "Time from receiving a request to its last byte."
    );
    describe_histogram!(
        "portico_time_to_first_token_seconds",
        Unit::Seconds,
        "For streams: time from receiving a request to the first content event."
    );
    describe_counter!(
        "portico_tokens_total",
        "Tokens reported by the upstreams, by direction (input or output)."
    );
    describe_counter!(
        "portico_request_log_dropped_total",
        "Request log entries dropped because the writer could not keep up."
    );
    describe_counter!(
        "portico_plugin_busy_total",
        "Requests refused (503) because their provider plugin stayed at --plugin-max-concurrency requests in flight."
    );
}

/// Label values in the text format escape backslash, quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /metrics`.
pub fn router(telemetry: Arc<Telemetry>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(telemetry)
}

async fn render(State(telemetry): State<Arc<Telemetry>>) -> Response {
    let mut response = telemetry.metrics().render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
