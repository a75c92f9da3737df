//! Per-store state of a plugin instance and the version-independent host
//! services (`gateway:provider/host`) plugins call: log, clock, http-fetch
//! behind an egress allow-list, and a per-plugin cache.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use portico_model::plugin::{Endpoint, FieldKind, HttpRequest, HttpResponse, ProviderInfo};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::kv::KvCache;

/// How many `http-fetch` calls one plugin call may make; bounds the fan-out
/// a misbehaving plugin can cause per client request.
const MAX_FETCHES_PER_CALL: u32 = 16;
/// Longest plugin log line kept.
const MAX_LOG_LINE: usize = 4096;
/// How much of the plugin's stdout/stderr is kept (for fault reports).
const OUTPUT_TAIL_BYTES: usize = 4096;
/// Secrets shorter than this are not redacted (they would match everywhere).
const MIN_REDACTED_LEN: usize = 4;

/// Log level of a plugin `log` call.
#[derive(Clone, Copy, Debug)]
pub(crate) enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A host (and optionally a port) `http-fetch` may reach.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostRule {
    host: String,
    port: Option<u16>,
}

impl HostRule {
    /// An egress entry from `describe`: `host` or `host:port`.
    fn from_egress(entry: &str) -> Option<Self> {
        let url = Url::parse(&format!("http://{}", entry.trim())).ok()?;
        let host = url.host_str()?.to_ascii_lowercase();
        let plain = url.path() == "/" && url.query().is_none() && url.username().is_empty();
        plain.then_some(HostRule {
            host,
            port: url.port(),
        })
    }

    /// The origin of a `url` config value.
    fn from_url(value: &str) -> Option<Self> {
        let url = Url::parse(value.trim()).ok()?;
        Some(HostRule {
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default(),
        })
    }

    fn allows(&self, host: &str, port: Option<u16>) -> bool {
        self.host == host && (self.port.is_none() || self.port == port)
    }
}

/// What every instance of one plugin version shares.
pub(crate) struct PluginCtx {
    /// Provider id; empty while `describe` has not answered yet.
    pub(crate) id: String,
    http: reqwest::Client,
    kv: Option<Arc<KvCache>>,
    egress: Vec<HostRule>,
    /// Config fields whose values open egress (`url` kind).
    url_fields: Vec<String>,
    /// Config fields whose values are not credentials; every other value
    /// (secret kinds, keys the plugin did not declare) is redacted from logs.
    plain_fields: Vec<String>,
    fetch_timeout: Duration,
    fetch_max_bytes: usize,
}

impl PluginCtx {
    /// The context of an instance created to run `describe`: no identity,
    /// no cache, no egress.
    pub(crate) fn loading(
        http: reqwest::Client,
        fetch_timeout: Duration,
        fetch_max_bytes: usize,
    ) -> Self {
        PluginCtx {
            id: String::new(),
            http,
            kv: None,
            egress: Vec::new(),
            url_fields: Vec::new(),
            plain_fields: Vec::new(),
            fetch_timeout,
            fetch_max_bytes,
        }
    }

    /// The context of a described plugin.
    pub(crate) fn described(&self, info: &ProviderInfo, kv: Arc<KvCache>) -> Self {
        let fields_of = |pred: fn(FieldKind) -> bool| {
            info.config_fields
                .iter()
                .filter(|f| pred(f.kind))
                .map(|f| f.name.clone())
                .collect()
        };
        PluginCtx {
            id: info.id.clone(),
            http: self.http.clone(),
            kv: Some(kv),
            egress: info
                .egress_hosts
                .iter()
                .filter_map(|h| HostRule::from_egress(h))
                .collect(),
            url_fields: fields_of(|k| k == FieldKind::Url),
            plain_fields: fields_of(|k| !k.is_secret()),
            fetch_timeout: self.fetch_timeout,
            fetch_max_bytes: self.fetch_max_bytes,
        }
    }
}

/// State of the call currently running in the instance.
#[derive(Default)]
pub(crate) struct CallState {
    /// Epoch ticks of CPU time left; see `PluginRuntime::new_store`.
    pub(crate) ticks_left: u64,
    pub(crate) cpu_exceeded: bool,
    fetches_left: u32,
    /// Egress opened by the endpoint's `url` config values.
    allowed: Vec<HostRule>,
    /// Config values never to be logged.
    secrets: Vec<String>,
    /// The endpoint (and plugin context) `allowed` and `secrets` were
    /// derived from: a pooled instance serving the same endpoint again skips
    /// re-parsing its URLs on every call.
    derived_from: Option<(Endpoint, Arc<PluginCtx>)>,
}

/// Caps an instance's linear memories (and tables) and remembers whether
/// the cap was hit, so the resulting trap is reported as a memory fault.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exceeded: bool,
    /// Largest memory size granted so far.
    pub(crate) peak: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        MemoryLimiter {
            limit,
            exceeded: false,
            peak: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        if maximum.is_some_and(|m| desired > m) {
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any
        // real plugin and keeps a runaway guest from eating host memory.
        Ok(desired <= 1_000_000 && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// The `T` of every plugin `Store<T>`.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) ctx: Arc<PluginCtx>,
    pub(crate) call: CallState,
    pub(crate) output: OutputTail,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    pub(crate) fn new(ctx: Arc<PluginCtx>, memory_limit: usize) -> Self {
        let output = OutputTail::default();
        // Locked down: no preopened dirs, env, args or stdin; no sockets
        // (the host performs all network I/O through `http-fetch`). Output
        // is kept in a small tail buffer for fault reports.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            ctx,
            call: CallState::default(),
            output,
        }
    }

    /// Resets the per-call state before a call on behalf of `endpoint`.
    pub(crate) fn begin_call(&mut self, endpoint: Option<&Endpoint>, ticks: u64) {
        self.reset_budget(ticks);
        let Some(endpoint) = endpoint else {
            self.call.allowed.clear();
            self.call.secrets.clear();
            self.call.derived_from = None;
            return;
        };
        if let Some((last, ctx)) = &self.call.derived_from
            && last == endpoint
            && Arc::ptr_eq(ctx, &self.ctx)
        {
            return;
        }
        self.call.allowed.clear();
        self.call.secrets.clear();
        for name in &self.ctx.url_fields {
            if let Some(rule) = endpoint.get(name).and_then(HostRule::from_url) {
                self.call.allowed.push(rule);
            }
        }
        for (key, value) in &endpoint.config {
            if !self.ctx.plain_fields.contains(key) && value.len() >= MIN_REDACTED_LEN {
                self.call.secrets.push(value.clone());
            }
        }
        self.call.derived_from = Some((endpoint.clone(), self.ctx.clone()));
    }

    /// A fresh budget for the next call on behalf of the same endpoint
    /// (stream decoder calls).
    pub(crate) fn reset_budget(&mut self, ticks: u64) {
        self.call.ticks_left = ticks;
        self.call.cpu_exceeded = false;
        self.call.fetches_left = MAX_FETCHES_PER_CALL;
        self.limiter.exceeded = false;
        self.output.clear();
    }

    /// Removes the current endpoint's secrets from text about to be logged.
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in &self.call.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), "[redacted]");
            }
        }
        text
    }

    pub(crate) fn log(&mut self, level: LogLevel, message: &str) {
        let mut message = self.redact(message);
        truncate_utf8(&mut message, MAX_LOG_LINE);
        let plugin = self.ctx.id.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "portico::plugin", plugin, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "portico::plugin", plugin, "{message}"),
            LogLevel::Info => tracing::info!(target: "portico::plugin", plugin, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "portico::plugin", plugin, "{message}"),
            LogLevel::Error => tracing::error!(target: "portico::plugin", plugin, "{message}"),
        }
    }

    pub(crate) fn cache_get(&mut self, key: &str) -> Option<Vec<u8>> {
        self.ctx.kv.as_ref()?.get(key)
    }

    pub(crate) fn cache_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u64) {
        if let Some(kv) = &self.ctx.kv {
            kv.set(key, value, ttl_ms);
        }
    }

    fn allowed(&self, host: &str, port: Option<u16>) -> bool {
        self.call
            .allowed
            .iter()
            .chain(&self.ctx.egress)
            .any(|rule| rule.allows(host, port))
    }

    /// Performs a plugin's HTTP request with the shared client, if its host
    /// is allowed. Errors are messages for the plugin (never secrets).
    pub(crate) async fn http_fetch(
        &mut self,
        request: HttpRequest,
    ) -> Result<HttpResponse, String> {
        let url = Url::parse(&request.url).map_err(|e| format!("invalid url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("unsupported url scheme: {}", url.scheme()));
        }
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        if !self.allowed(&host, url.port_or_known_default()) {
            tracing::warn!(plugin = %self.ctx.id, host = %host, "plugin http-fetch refused: host not allowed");
            return Err(format!("host not allowed: {host}"));
        }
        if self.call.fetches_left == 0 {
            return Err(format!(
                "too many http-fetch calls (at most {MAX_FETCHES_PER_CALL} per call)"
            ));
        }
        self.call.fetches_left -= 1;

        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| format!("invalid method: {}", request.method))?;
        let mut headers = HeaderMap::with_capacity(request.headers.len());
        for (name, value) in &request.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("invalid header name: {name}"))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| format!("invalid value for header {name}"))?;
            headers.append(name, value);
        }
        let send = self
            .ctx
            .http
            .request(method, url)
            .headers(headers)
            .body(request.body)
            .timeout(self.ctx.fetch_timeout)
            .send();
        let mut response = send.await.map_err(|e| self.fetch_error(e))?;
        // The shared client may follow redirects; never hand the plugin a
        // body from a host it could not have asked for directly.
        let final_url = response.url();
        let final_host = final_url
            .host_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !self.allowed(&final_host, final_url.port_or_known_default()) {
            return Err(format!(
                "redirected to a host that is not allowed: {final_host}"
            ));
        }
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let max = self.ctx.fetch_max_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > max as u64)
        {
            return Err(format!("response body exceeds {max} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.fetch_error(e))? {
            if body.len() + chunk.len() > max {
                return Err(format!("response body exceeds {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    fn fetch_error(&self, error: reqwest::Error) -> String {
        if error.is_timeout() {
            return format!(
                "http-fetch timed out after {} ms",
                self.ctx.fetch_timeout.as_millis()
            );
        }
        let what = if error.is_connect() {
            "connection failed"
        } else if error.is_body() || error.is_decode() {
            "reading the response failed"
        } else {
            "request failed"
        };
        // reqwest's message names the URL, which a plugin may have filled
        // with a credential; redact before it reaches logs via the plugin.
        self.redact(&format!("http-fetch {what}: {}", error.without_url()))
    }
}

/// Whether an `egress-hosts` entry is a plain `host` or `host:port`.
pub(crate) fn valid_egress_host(entry: &str) -> bool {
    HostRule::from_egress(entry).is_some()
}

fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
}

/// The last few KiB a plugin wrote to stdout/stderr; shown in fault logs
/// (a Rust panic message lands here).
#[derive(Clone, Default)]
pub(crate) struct OutputTail(Arc<Mutex<VecDeque<u8>>>);

impl OutputTail {
    fn clear(&self) {
        if let Ok(mut buf) = self.0.lock() {
            buf.clear();
        }
    }

    fn write(&self, bytes: &[u8]) {
        if let Ok(mut buf) = self.0.lock() {
            let bytes = &bytes[bytes.len().saturating_sub(OUTPUT_TAIL_BYTES)..];
            let overflow = (buf.len() + bytes.len()).saturating_sub(OUTPUT_TAIL_BYTES);
            let overflow = overflow.min(buf.len());
            buf.drain(..overflow);
            buf.extend(bytes);
        }
    }

    /// The buffered output, lossily decoded.
    pub(crate) fn text(&self) -> String {
        match self.0.lock() {
            Ok(buf) => {
                let (a, b) = buf.as_slices();
                let mut all = a.to_vec();
                all.extend_from_slice(b);
                String::from_utf8_lossy(&all).trim().to_string()
            }
            Err(_) => String::new(),
        }
    }
}

impl IsTerminal for OutputTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputTail {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for OutputTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn egress_rules() {
        let rule = HostRule::from_egress("oauth2.googleapis.com").unwrap();
        assert!(rule.allows("oauth2.googleapis.com", Some(443)));
        assert!(rule.allows("oauth2.googleapis.com", Some(8080)));
        assert!(!rule.allows("googleapis.com", Some(443)));
        let rule = HostRule::from_egress("Example.com:8443").unwrap();
        assert!(rule.allows("example.com", Some(8443)));
        assert!(!rule.allows("example.com", Some(443)));
        assert!(HostRule::from_egress("example.com/path").is_none());
    }

    #[test]
    fn url_rules_pin_the_port() {
        let rule = HostRule::from_url("https://API.openai.com/v1").unwrap();
        assert!(rule.allows("api.openai.com", Some(443)));
        assert!(!rule.allows("api.openai.com", Some(80)));
        let rule = HostRule::from_url("http://127.0.0.1:8080").unwrap();
        assert!(rule.allows("127.0.0.1", Some(8080)));
        assert!(!rule.allows("127.0.0.1", Some(8081)));
        assert!(HostRule::from_url("not a url").is_none());
    }

    #[test]
    fn output_tail_keeps_the_end() {
        let tail = OutputTail::default();
        tail.write(&vec![b'a'; OUTPUT_TAIL_BYTES]);
        tail.write(b"panicked at the end");
        let text = tail.text();
        assert_eq!(text.len(), OUTPUT_TAIL_BYTES);
        assert!(text.ends_with("panicked at the end"));
        tail.clear();
        assert_eq!(tail.text(), "");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "héllo".to_string();
        truncate_utf8(&mut s, 2);
        assert_eq!(s, "h…");
    }
}
