//! Open-loop load at a fixed rate: request `i` is started at `start + i/rate`
//! whatever earlier requests are doing (wrk cannot hold a rate), so latency
//! percentiles describe a moderately loaded hop, not a saturated one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub body: Bytes,
    pub headers: Vec<(String, String)>,
}

/// One completed request.
#[derive(Clone, Copy, Debug)]
struct Sample {
    /// Request sent to the end of the response body.
    total: Duration,
    /// Request sent to the first body bytes.
    first_byte: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub sent: usize,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub p50_us: f64,
    pub p99_us: f64,
    pub ttfb_p50_us: f64,
    pub ttfb_p99_us: f64,
    pub achieved_rps: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

async fn one(client: &HttpClient, target: &Target) -> Result<Sample, String> {
    let mut request = Request::post(&target.url).header("content-type", "application/json");
    for (name, value) in &target.headers {
        request = request.header(name, value);
    }
    let request = request
        .body(Full::new(target.body.clone()))
        .map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let mut body = response.into_body();
    let mut first_byte = None;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref()
            && !data.is_empty()
        {
            first_byte.get_or_insert_with(|| sent.elapsed());
            if !status.is_success() && text.len() < 512 {
                text.extend_from_slice(data);
            }
        }
    }
    let total = sent.elapsed();
    if !status.is_success() {
        return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&text)));
    }
    Ok(Sample {
        total,
        first_byte: first_byte.unwrap_or(total),
    })
}

/// The recorded requests of one or more fixed-rate runs.
#[derive(Debug, Default)]
pub struct Samples {
    results: Vec<Result<Sample, String>>,
    elapsed: Duration,
}

impl Samples {
    /// Adds another run's requests (runs of one hop in several rounds).
    pub fn extend(&mut self, other: Samples) {
        self.results.extend(other.results);
        self.elapsed += other.elapsed;
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary {
            sent: self.results.len(),
            ..Summary::default()
        };
        let mut totals = Vec::new();
        let mut firsts = Vec::new();
        for sample in &self.results {
            match sample {
                Ok(s) => {
                    totals.push(s.total.as_secs_f64() * 1e6);
                    firsts.push(s.first_byte.as_secs_f64() * 1e6);
                }
                Err(e) => {
                    summary.errors += 1;
                    summary.first_error.get_or_insert_with(|| e.clone());
                }
            }
        }
        totals.sort_by(f64::total_cmp);
        firsts.sort_by(f64::total_cmp);
        summary.ok = totals.len();
        summary.p50_us = percentile(&totals, 50.0);
        summary.p99_us = percentile(&totals, 99.0);
        summary.ttfb_p50_us = percentile(&firsts, 50.0);
        summary.ttfb_p99_us = percentile(&firsts, 99.0);
        summary.achieved_rps = summary.ok as f64 / self.elapsed.as_secs_f64().max(1e-9);
        summary
    }
}

/// Sends `rate` requests per second for `warmup` (not recorded) then for
/// `duration`, and returns the recorded ones.
pub async fn fixed_rate(
    target: Target,
    rate: f64,
    warmup: Duration,
    duration: Duration,
) -> Samples {
    let client = client();
    let target = Arc::new(target);
    let samples: Arc<Mutex<Vec<Result<Sample, String>>>> = Arc::default();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let warmup_n = (warmup.as_secs_f64() * rate).round() as u64;
    let total_n = warmup_n + (duration.as_secs_f64() * rate).round() as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total_n as usize);
    let mut measured_start = start;
    for i in 0..total_n {
        let at = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        if i == warmup_n {
            measured_start = Instant::now();
        }
        let (client, target, samples) = (client.clone(), target.clone(), samples.clone());
        let record = i >= warmup_n;
        tasks.push(tokio::spawn(async move {
            let result = one(&client, &target).await;
            if record && let Ok(mut samples) = samples.lock() {
                samples.push(result);
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let elapsed = measured_start.elapsed();
    let results = std::mem::take(&mut *samples.lock().unwrap_or_else(|e| e.into_inner()));
    Samples { results, elapsed }
}

/// One request, for checks: the status and body text.
pub async fn fetch(url: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let client = client();
    let request = match body {
        Some(body) => Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string()))),
        None => Request::get(url).body(Full::new(Bytes::new())),
    }
    .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "timed out".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
