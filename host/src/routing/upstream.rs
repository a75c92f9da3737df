//! The HTTP clients that carry plugins' requests to the upstream providers.
//!
//! Requests go through hyper's own pooled client (hyper-util), one per
//! serving thread. reqwest, which wraps that same client, added ~6% of a
//! request's CPU in profiles of the serving threads: its redirect layer and
//! response wrapper each parse the request URL again from text (host name
//! normalization included), and its tower stack copies the header map. When
//! the environment names a proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`),
//! reqwest carries the requests instead, as it reads those variables (and
//! `NO_PROXY`) and speaks to proxies; hyper's client does not.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use portico_model::ProviderError;
use portico_model::plugin::HttpRequest;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Any error on the way to or from an upstream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream response body, whichever client read it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// Idle upstream connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// TCP keep-alive probes on upstream connections (reqwest's defaults, which
/// the gateway used before).
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);
const TCP_KEEPALIVE_RETRIES: u32 = 3;

/// Most upstream URLs kept parsed per thread.
const MAX_CACHED_URIS: usize = 1024;

/// The environment variables through which a proxy is configured.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// One thread's client for upstream requests.
#[derive(Clone, Debug)]
pub enum UpstreamClient {
    /// hyper's pooled client, straight to the upstream.
    Direct(Box<HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>>),
    /// reqwest, for the proxies the environment names.
    Proxied(reqwest::Client),
}

impl UpstreamClient {
    /// A client whose connections time out after `connect_timeout`, checking
    /// certificates against `trust`.
    fn new(
        connect_timeout: Duration,
        proxied: bool,
        trust: &TrustedRoots,
    ) -> Result<Self, BoxError> {
        if proxied {
            return Ok(Self::Proxied(proxied_client(connect_timeout, trust)?));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(TCP_KEEPALIVE));
        http.set_keepalive_interval(Some(TCP_KEEPALIVE));
        http.set_keepalive_retries(Some(TCP_KEEPALIVE_RETRIES));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(trust.tls.as_ref().clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        // The pool's connection tasks are spawned on the runtime that opens
        // them: the serving thread's own (see `UpstreamClients`).
        let client = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE)
            .pool_timer(TokioTimer::new())
            .build(https);
        Ok(Self::Direct(Box::new(client)))
    }

    /// Sends `request` (tagged with `request_id`) and returns the response
    /// head; the body is read by the caller. A request the plugin built
    /// wrong (bad URL, method or header) is a 500 and is not sent.
    pub async fn send(
        &self,
        request: HttpRequest,
        request_id: &str,
    ) -> Result<http::Response<UpstreamBody>, SendError> {
        let request = http_request(request, request_id).map_err(SendError::Invalid)?;
        match self {
            Self::Direct(client) => {
                let response = client
                    .request(request.map(Full::new))
                    .await
                    .map_err(|error| SendError::Failed(error.into()))?;
                Ok(response.map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
            Self::Proxied(client) => {
                let request = reqwest::Request::try_from(request)
                    .map_err(|error| SendError::Invalid(invalid(error)))?;
                let response = client
                    .execute(request)
                    .await
                    .map_err(|error| SendError::Failed(error.into()))?;
                Ok(http::Response::from(response)
                    .map(|body| body.map_err(BoxError::from).boxed_unsync()))
            }
        }
    }
}

/// Why an upstream request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The plugin built a request that cannot be sent.
    Invalid(ProviderError),
    /// Connecting, sending or reading the head failed.
    Failed(BoxError),
}

fn invalid(detail: impl std::fmt::Display) -> ProviderError {
    ProviderError::internal(format!(
        "the plugin built an invalid upstream request: {detail}"
    ))
}

/// The plugin's request as hyper's, with the gateway's request id. As
/// reqwest did, `accept: */*` is sent when the plugin names no `accept`.
fn http_request(
    request: HttpRequest,
    request_id: &str,
) -> Result<http::Request<Bytes>, ProviderError> {
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| invalid(format_args!("method '{}'", request.method)))?;
    let uri =
        cached_uri(&request.url).ok_or_else(|| invalid(format_args!("URL '{}'", request.url)))?;
    let mut headers = http::HeaderMap::with_capacity(request.headers.len() + 2);
    for (name, value) in &request.headers {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format_args!("header name '{name}'")))?;
        let value = http::HeaderValue::from_str(value)
            .map_err(|_| invalid(format_args!("value for header '{name}'")))?;
        headers.append(name, value);
    }
    if !headers.contains_key(http::header::ACCEPT) {
        headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("*/*"));
    }
    let request_id = http::HeaderValue::from_str(request_id).map_err(|_| invalid("request id"))?;
    headers.insert(super::REQUEST_ID_HEADER, request_id);
    let mut built = http::Request::new(Bytes::from(request.body));
    *built.method_mut() = method;
    *built.uri_mut() = uri;
    *built.headers_mut() = headers;
    Ok(built)
}

thread_local! {
    static PARSED_URIS: RefCell<HashMap<String, http::Uri>> = RefCell::new(HashMap::new());
}

/// `text` as an absolute http(s) URI, from a per-thread cache: plugins
/// build the same few URLs over and over, and parsing one (host name
/// normalization included) costs more than the rest of building the
/// request. Parsed as a WHATWG URL first, as browsers and reqwest do, so
/// what a plugin may write (spaces, non-ASCII host names) is encoded the
/// same way. `None` if it is not a valid http(s) URL.
fn cached_uri(text: &str) -> Option<http::Uri> {
    PARSED_URIS.with_borrow_mut(|uris| {
        if let Some(uri) = uris.get(text) {
            return Some(uri.clone());
        }
        let url = reqwest::Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return None;
        }
        let uri = http::Uri::from_str(url.as_str()).ok()?;
        if uris.len() >= MAX_CACHED_URIS {
            uris.clear();
        }
        uris.insert(text.to_string(), uri.clone());
        Some(uri)
    })
}

/// Whether the environment names a proxy for outgoing requests.
pub fn proxy_in_environment() -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

/// A reqwest client: for proxied upstream calls and plugins' `http-fetch`.
fn proxied_client(
    connect_timeout: Duration,
    trust: &TrustedRoots,
) -> reqwest::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder();
    // reqwest's `rustls-tls` starts from the same Mozilla roots.
    for certificate in &trust.extra {
        builder = builder.add_root_certificate(reqwest::Certificate::from_der(certificate)?);
    }
    builder
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
        // A redirect would carry provider credentials to a host the
        // endpoint did not name (and past the plugins' egress allow-list):
        // the upstream's 3xx goes to the plugin as an answer instead.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Whether `error` (or one of its causes) is a timeout.
pub fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(error) = error.downcast_ref::<reqwest::Error>()
            && error.is_timeout()
        {
            return true;
        }
        if let Some(error) = error.downcast_ref::<std::io::Error>()
            && error.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        cause = error.source();
    }
    false
}

/// `error` and its causes, as one line (hyper's and reqwest's messages
/// leave the cause, such as "connection refused", to the chain).
pub fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    message
}

/// Upstream clients, one per serving thread (and per connect timeout, set
/// per client). A pooled connection's I/O is driven by the runtime that
/// opened it: with one runtime per serving thread, a request that reused
/// another thread's connection would wait for that thread to wake up, which
/// costs more than the request's own work at moderate load. So each thread
/// pools its own upstream connections, as nginx workers do.
#[derive(Clone, Debug)]
pub struct UpstreamClients {
    /// Tells this set's clients apart in the thread-local cache.
    id: u64,
    connect_timeout: Duration,
    /// Whether requests go through the environment's proxy (reqwest).
    proxied: bool,
    /// What upstream certificates are checked against.
    trust: TrustedRoots,
    /// One reqwest client for all threads: plugins' `http-fetch`.
    shared: reqwest::Client,
}

thread_local! {
    /// This thread's clients, by (set id, connect timeout in ms).
    /// Shared by reference: a hyper client is a few hundred bytes and
    /// several reference counts to clone.
    static THREAD_CLIENTS: RefCell<HashMap<(u64, u64), Arc<UpstreamClient>>> =
        RefCell::new(HashMap::new());
}

impl UpstreamClients {
    /// Clients that go straight to upstreams, or through the environment's
    /// proxy if it names one, and trust the certificates `trust` vouches for.
    pub fn new(connect_timeout: Duration, trust: &UpstreamTrust) -> Result<Self, BoxError> {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let trust = TrustedRoots::new(trust)?;
        Ok(Self {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            connect_timeout,
            proxied: proxy_in_environment(),
            shared: proxied_client(connect_timeout, &trust)?,
            trust,
        })
    }

    /// Whether upstream requests go through the environment's proxy.
    pub fn proxied(&self) -> bool {
        self.proxied
    }

    /// The reqwest client shared by all threads, for calls off the serving
    /// path (plugins' `http-fetch`).
    pub fn shared(&self) -> reqwest::Client {
        self.shared.clone()
    }

    /// This thread's client for `connect_ms` (the default timeout if `None`).
    pub fn get(&self, connect_ms: Option<u64>) -> Arc<UpstreamClient> {
        let timeout = connect_ms.map_or(self.connect_timeout, Duration::from_millis);
        let key = (self.id, timeout.as_millis() as u64);
        THREAD_CLIENTS.with_borrow_mut(|clients| {
            if let Some(client) = clients.get(&key) {
                return client.clone();
            }
            match UpstreamClient::new(timeout, self.proxied, &self.trust) {
                Ok(client) => {
                    let client = Arc::new(client);
                    clients.insert(key, client.clone());
                    client
                }
                Err(error) => {
                    tracing::error!(%error, "cannot build an HTTP client; using the shared one");
                    Arc::new(UpstreamClient::Proxied(self.shared.clone()))
                }
            }
        })
    }
}

/// The error for an upstream request that got no response.
pub fn unreachable(error: &(dyn std::error::Error + 'static)) -> ProviderError {
    if is_timeout(error) {
        return super::upstream_timeout();
    }
    ProviderError::bad_upstream(format!(
        "the upstream provider could not be reached: {}",
        describe(error)
    ))
}

/// The certificate authorities upstream certificates are checked against,
/// beyond Mozilla's public roots (`webpki-roots`, what reqwest's
/// `rustls-tls` trusts): a private CA, or the one a TLS-inspecting proxy
/// signs with. Read once at start, so a bad file stops the start rather
/// than failing requests.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTrust {
    extra: Vec<CertificateDer<'static>>,
}

/// Why an upstream CA file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    // The I/O error is in the message, not the error chain: it would be
    // printed twice.
    #[error("cannot read the upstream CA file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("the upstream CA file {path} holds no certificate (PEM \"BEGIN CERTIFICATE\" blocks)")]
    Empty { path: String },
    #[error("cannot use certificate {number} of the upstream CA file {path}: {reason}")]
    Unusable {
        path: String,
        number: usize,
        reason: String,
    },
}

impl UpstreamTrust {
    /// Mozilla's roots and the CA certificates of the PEM file at `path`.
    pub fn with_ca_file(path: &Path) -> Result<Self, CaFileError> {
        let shown = || path.display().to_string();
        let pem = std::fs::read(path).map_err(|error| CaFileError::Read {
            path: shown(),
            error,
        })?;
        let mut extra = Vec::new();
        for (index, certificate) in CertificateDer::pem_slice_iter(&pem).enumerate() {
            let unusable = |reason: String| CaFileError::Unusable {
                path: shown(),
                number: index + 1,
                reason,
            };
            let certificate = certificate.map_err(|error| unusable(error.to_string()))?;
            // Checked as a trust anchor now, so that a broken certificate
            // is reported here rather than silently skipped.
            rustls::RootCertStore::empty()
                .add(certificate.clone())
                .map_err(|error| {
                    // rustls words these as a peer's certificate problem.
                    let detail = match error {
                        rustls::Error::InvalidCertificate(problem) => format!("{problem:?}"),
                        other => other.to_string(),
                    };
                    unusable(format!("not a usable X.509 certificate ({detail})"))
                })?;
            extra.push(certificate);
        }
        if extra.is_empty() {
            return Err(CaFileError::Empty { path: shown() });
        }
        Ok(Self { extra })
    }

    /// How many certificate authorities it adds to the public roots.
    pub fn extra_authorities(&self) -> usize {
        self.extra.len()
    }
}

/// An `UpstreamTrust` made into the TLS settings every client starts from.
#[derive(Clone, Debug)]
struct TrustedRoots {
    /// For hyper's clients: built once, copied per client.
    tls: Arc<rustls::ClientConfig>,
    /// For reqwest, which builds its own settings from its roots.
    extra: Vec<CertificateDer<'static>>,
}

impl TrustedRoots {
    fn new(trust: &UpstreamTrust) -> Result<Self, BoxError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for certificate in &trust.extra {
            roots.add(certificate.clone())?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            tls: Arc::new(tls),
            extra: trust.extra.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_parsed_as_urls_first() {
        let uri = cached_uri("https://Example.COM/v1/models/a b:generate?alt=sse").unwrap();
        assert_eq!(
            uri.to_string(),
            "https://example.com/v1/models/a%20b:generate?alt=sse"
        );
        assert!(cached_uri("ftp://example.com/file").is_none());
        assert!(cached_uri("not a url").is_none());
        // Served from the cache the second time, equal.
        assert_eq!(
            cached_uri("https://Example.COM/v1/models/a b:generate?alt=sse"),
            Some(uri)
        );
    }

    #[test]
    fn a_request_gets_the_request_id_and_a_default_accept() {
        let request = HttpRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:9/v1/chat".into(),
            headers: vec![("authorization".into(), "Bearer k".into())],
            body: b"{}".to_vec(),
        };
        let built = http_request(request, "req-1").unwrap();
        assert_eq!(built.method(), http::Method::POST);
        assert_eq!(built.headers()["accept"], "*/*");
        assert_eq!(built.headers()[super::super::REQUEST_ID_HEADER], "req-1");
        assert_eq!(built.headers()["authorization"], "Bearer k");
        assert_eq!(built.body().as_ref(), b"{}");

        let streaming = HttpRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:9/v1/chat".into(),
            headers: vec![("accept".into(), "text/event-stream".into())],
            body: Vec::new(),
        };
        let built = http_request(streaming, "req-2").unwrap();
        assert_eq!(built.headers().get_all("accept").iter().count(), 1);
        assert_eq!(built.headers()["accept"], "text/event-stream");
    }

    #[test]
    fn a_badly_built_request_is_a_gateway_error_not_sent() {
        for (method, url, header) in [
            ("PO ST", "http://127.0.0.1:9/", "x-ok"),
            ("POST", "::not a url", "x-ok"),
            ("POST", "http://127.0.0.1:9/", "bad header"),
        ] {
            let request = HttpRequest {
                method: method.into(),
                url: url.into(),
                headers: vec![(header.into(), "v".into())],
                body: Vec::new(),
            };
            let error = http_request(request, "req").unwrap_err();
            assert_eq!(error.status, 500, "{error:?}");
            assert!(
                error.message.contains("invalid upstream request"),
                "{error:?}"
            );
        }
    }

    #[test]
    fn timeouts_are_found_among_the_causes() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("tcp connect error")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let timed_out = Outer(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "connect timeout",
        ));
        assert!(is_timeout(&timed_out));
        assert_eq!(unreachable(&timed_out).status, 504);
        let refused = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert!(!is_timeout(&refused));
        let error = unreachable(&refused);
        assert_eq!(error.status, 502);
        assert!(
            error
                .message
                .ends_with("could not be reached: tcp connect error: Connection refused"),
            "{error:?}"
        );
    }
}
