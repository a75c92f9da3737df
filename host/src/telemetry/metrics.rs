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

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ::metrics::{Counter, Histogram};
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

/// The handles of one (endpoint, provider, status) series set. Looking a
/// metric up by name and labels (a key built from owned label strings,
/// hashed, then found in the recorder's registry) cost ~1.5% of a request
/// when done for every metric of every request; a handle records directly.
/// Registered on first use, so a series appears only once it has a value.
struct RouteMetrics {
    endpoint: String,
    provider: String,
    status: u16,
    requests: Counter,
    errors: Option<Counter>,
    duration: Option<Histogram>,
    time_to_first_token: Option<Histogram>,
    input_tokens: Option<Counter>,
    output_tokens: Option<Counter>,
}

impl RouteMetrics {
    fn new(endpoint: &str, provider: &str, status: u16) -> Self {
        RouteMetrics {
            requests: ::metrics::counter!(
                "portico_requests_total",
                &status_labels(endpoint, provider, status)
            ),
            endpoint: endpoint.to_string(),
            provider: provider.to_string(),
            status,
            errors: None,
            duration: None,
            time_to_first_token: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    // The getters destructure `self` so that the labels are built only when
    // a handle is registered, not on every request.
    fn errors(&mut self) -> &Counter {
        let Self {
            errors,
            endpoint,
            provider,
            status,
            ..
        } = self;
        errors.get_or_insert_with(|| {
            ::metrics::counter!(
                "portico_request_errors_total",
                &status_labels(endpoint, provider, *status)
            )
        })
    }

    fn duration(&mut self) -> &Histogram {
        let Self {
            duration,
            endpoint,
            provider,
            ..
        } = self;
        duration.get_or_insert_with(|| {
            ::metrics::histogram!(
                "portico_request_duration_seconds",
                &route_labels(endpoint, provider)
            )
        })
    }

    fn time_to_first_token(&mut self) -> &Histogram {
        let Self {
            time_to_first_token,
            endpoint,
            provider,
            ..
        } = self;
        time_to_first_token.get_or_insert_with(|| {
            ::metrics::histogram!(
                "portico_time_to_first_token_seconds",
                &route_labels(endpoint, provider)
            )
        })
    }

    fn tokens(&mut self, direction: &'static str) -> &Counter {
        let Self {
            input_tokens,
            output_tokens,
            endpoint,
            provider,
            ..
        } = self;
        let slot = if direction == "input" {
            input_tokens
        } else {
            output_tokens
        };
        slot.get_or_insert_with(|| {
            let [endpoint, provider] = route_labels(endpoint, provider);
            ::metrics::counter!(
                "portico_tokens_total",
                &[endpoint, provider, ("direction", direction.to_string())]
            )
        })
    }
}

fn status_labels(endpoint: &str, provider: &str, status: u16) -> [(&'static str, String); 3] {
    [
        ("endpoint", endpoint.to_string()),
        ("provider", provider.to_string()),
        ("status", status.to_string()),
    ]
}

fn route_labels(endpoint: &str, provider: &str) -> [(&'static str, String); 2] {
    [
        ("endpoint", endpoint.to_string()),
        ("provider", provider.to_string()),
    ]
}

/// Most endpoint labels whose handles a thread keeps (endpoints come from
/// the operator's table, so this is a safety bound, not a working limit).
const MAX_CACHED_ENDPOINTS: usize = 4096;

thread_local! {
    /// This thread's handles by endpoint label, then (provider, status).
    static ROUTE_METRICS: RefCell<HashMap<String, Vec<RouteMetrics>>> =
        RefCell::new(HashMap::new());
}

/// Runs `record` on the handles of (endpoint, provider, status), from this
/// thread's cache. Handles stay valid for the process: the recorder is
/// installed once and never replaced.
fn with_route_metrics(
    endpoint: &str,
    provider: &str,
    status: u16,
    record: impl FnOnce(&mut RouteMetrics),
) {
    ROUTE_METRICS.with_borrow_mut(|routes| {
        if !routes.contains_key(endpoint) {
            if routes.len() >= MAX_CACHED_ENDPOINTS {
                routes.clear();
            }
            routes.insert(endpoint.to_string(), Vec::new());
        }
        let Some(series) = routes.get_mut(endpoint) else {
            return;
        };
        let index = match series
            .iter()
            .position(|route| route.status == status && route.provider == provider)
        {
            Some(index) => index,
            None => {
                series.push(RouteMetrics::new(endpoint, provider, status));
                series.len() - 1
            }
        };
        record(&mut series[index]);
    });
}

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
        with_route_metrics(endpoint, &entry.provider, entry.status, |route| {
            route.requests.increment(1);
            if entry.status >= 400 {
                route.errors().increment(1);
            }
            route.duration().record(entry.latency_ms as f64 / 1000.0);
            if let Some(ttft) = entry.ttft_ms {
                route.time_to_first_token().record(ttft as f64 / 1000.0);
            }
            if let Some(tokens) = entry.input_tokens.filter(|t| *t > 0) {
                route.tokens("input").increment(tokens);
            }
            if let Some(tokens) = entry.output_tokens.filter(|t| *t > 0) {
                route.tokens("output").increment(tokens);
            }
        });
        if let Some(cost) = entry.cost_usd {
            let mut totals = self.0.cost.lock().unwrap_or_else(PoisonError::into_inner);
            *totals
                .entry((endpoint.to_string(), entry.provider.clone()))
                .or_insert(0.0) += cost;
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
