//! Plugin conformance check: what any provider plugin must satisfy to be
//! served by this gateway, runnable by a third-party author on their own
//! `.wasm` (`portico check-plugin <file.wasm>`).
//!
//! [`check_plugin`] loads the file in the real runtime (same sandbox, same
//! contract bindings) and runs named checks: the file loads and `describe`
//! is valid, the catalog is well-formed, requests build deterministically
//! into valid HTTP requests, upstream errors map to the right kinds, and
//! the stream decoder and response parsers survive empty and garbage input
//! without trapping. No network is needed: requests are built, not sent.
//! Give it a runtime whose HTTP client cannot leave the machine
//! ([`offline_http_client`]), since a plugin may call `http-fetch` while
//! building a request.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portico_model::plugin::{
    ConfigField, Endpoint, FieldKind, HttpRequest, HttpResponse, Operation, ProviderInfo,
};
use portico_model::{ChatRequest, EmbeddingsRequest, ErrorKind, Message, SamplingParams};

use crate::runtime::{Plugin, PluginError, PluginRuntime};

/// Name of each check, in report order.
pub const CHECK_NAMES: [&str; 9] = [
    LOADS,
    DESCRIBE,
    CATALOG,
    CHAT_REQUEST,
    CHAT_STREAM_REQUEST,
    EMBEDDINGS_REQUEST,
    ERROR_MAPPING,
    STREAM_DECODER,
    GARBAGE_INPUT,
];

const LOADS: &str = "loads";
const DESCRIBE: &str = "describe";
const CATALOG: &str = "catalog";
const CHAT_REQUEST: &str = "chat-request";
const CHAT_STREAM_REQUEST: &str = "chat-stream-request";
const EMBEDDINGS_REQUEST: &str = "embeddings-request";
const ERROR_MAPPING: &str = "error-mapping";
const STREAM_DECODER: &str = "stream-decoder";
const GARBAGE_INPUT: &str = "garbage-input";

/// Seconds the synthetic 429 asks to wait (`Retry-After`).
const RETRY_AFTER_SECONDS: u64 = 7;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    Passed,
    Failed,
    /// Not applicable to this plugin (e.g. embeddings it does not declare),
    /// or not runnable (the plugin did not load).
    Skipped,
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub status: CheckStatus,
    pub message: String,
}

impl Check {
    fn passed(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Passed,
            message: message.into(),
        }
    }

    fn failed(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Failed,
            message: message.into(),
        }
    }

    fn skipped(name: &'static str, message: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Skipped,
            message: message.into(),
        }
    }

    /// Passed, or from a list of problems (failed when there are any).
    fn from_problems(name: &'static str, ok: impl Into<String>, problems: Vec<String>) -> Self {
        if problems.is_empty() {
            Self::passed(name, ok)
        } else {
            Self::failed(name, problems.join("; "))
        }
    }
}

/// The result of [`check_plugin`] on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceReport {
    pub file: PathBuf,
    /// `id` and `version` from `describe`, when the plugin loaded.
    pub provider: Option<(String, String)>,
    pub checks: Vec<Check>,
}

impl ConformanceReport {
    /// Whether no check failed (skipped checks do not fail a plugin).
    pub fn passed(&self) -> bool {
        !self.checks.iter().any(|c| c.status == CheckStatus::Failed)
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| c.status == CheckStatus::Failed)
    }

    /// The check called `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn count(&self, status: CheckStatus) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plugin conformance of {}", self.file.display())?;
        if let Some((id, version)) = &self.provider {
            write!(f, " (provider '{id}' {version})")?;
        }
        writeln!(f)?;
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for check in &self.checks {
            let tag = match check.status {
                CheckStatus::Passed => "pass",
                CheckStatus::Failed => "FAIL",
                CheckStatus::Skipped => "skip",
            };
            let mut lines = check.message.lines();
            writeln!(
                f,
                "  [{tag}] {:<width$}  {}",
                check.name,
                lines.next().unwrap_or_default()
            )?;
            for line in lines {
                writeln!(f, "         {:<width$}  {line}", "")?;
            }
        }
        let (passed, failed, skipped) = (
            self.count(CheckStatus::Passed),
            self.count(CheckStatus::Failed),
            self.count(CheckStatus::Skipped),
        );
        // Worded so CI log scanners do not take it for a test-runner summary.
        let verdict = if self.passed() { "PASSED" } else { "FAILED" };
        write!(
            f,
            "conformance {verdict}: {passed} of {} checks passed",
            self.checks.len()
        )?;
        if failed > 0 {
            write!(f, ", {failed} failing")?;
        }
        if skipped > 0 {
            write!(f, " ({skipped} skipped)")?;
        }
        writeln!(f)
    }
}

/// An HTTP client for a conformance runtime: every request goes to a
/// closed local port, so plugin `http-fetch` calls fail fast and nothing
/// leaves the machine.
pub fn offline_http_client() -> reqwest::Client {
    reqwest::Proxy::all("http://127.0.0.1:9")
        .and_then(|proxy| reqwest::Client::builder().proxy(proxy).build())
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Loads `path` in `runtime` and runs every check on it. Never panics on
/// a bad plugin: every problem is a failed check.
pub async fn check_plugin(runtime: &Arc<PluginRuntime>, path: &Path) -> ConformanceReport {
    let mut report = ConformanceReport {
        file: path.to_path_buf(),
        provider: None,
        checks: Vec::new(),
    };
    let plugin = match runtime.load_file(path).await {
        Ok(plugin) => plugin,
        Err(error) => {
            report.checks.push(Check::failed(LOADS, error.to_string()));
            for name in &CHECK_NAMES[1..] {
                report
                    .checks
                    .push(Check::skipped(name, "not run: the plugin did not load"));
            }
            return report;
        }
    };
    let info = &plugin.info;
    report.provider = Some((info.id.clone(), info.version.clone()));
    report.checks.push(Check::passed(
        LOADS,
        format!(
            "'{}' {} implements contract {}",
            info.id, info.version, plugin.wit_version
        ),
    ));
    report.checks.push(check_describe(info));
    report.checks.push(check_catalog(info));

    let chat_endpoint = sample_endpoint(info, false);
    let chat = sample_chat_request(&chat_endpoint.model);
    report.checks.push(if info.supports(Operation::Chat) {
        check_build(
            &plugin,
            CHAT_REQUEST,
            Build::Chat(&chat, false),
            &chat_endpoint,
        )
        .await
    } else {
        Check::skipped(CHAT_REQUEST, "the plugin does not declare chat")
    });
    report.checks.push(if info.supports(Operation::ChatStream) {
        check_build(
            &plugin,
            CHAT_STREAM_REQUEST,
            Build::Chat(&chat, true),
            &chat_endpoint,
        )
        .await
    } else {
        Check::skipped(
            CHAT_STREAM_REQUEST,
            "the plugin does not declare chat_stream",
        )
    });
    let embed_endpoint = sample_endpoint(info, true);
    report.checks.push(if info.supports(Operation::Embeddings) {
        let request = EmbeddingsRequest {
            model: embed_endpoint.model.clone(),
            // One input: some APIs (Bedrock Titan) embed one per request.
            inputs: vec!["hello conformance".into()],
            ..Default::default()
        };
        check_build(
            &plugin,
            EMBEDDINGS_REQUEST,
            Build::Embeddings(&request),
            &embed_endpoint,
        )
        .await
    } else {
        Check::skipped(EMBEDDINGS_REQUEST, "the plugin does not declare embeddings")
    });
    report
        .checks
        .push(check_error_mapping(&plugin, &chat_endpoint).await);
    report.checks.push(if info.supports(Operation::ChatStream) {
        check_stream_decoder(&plugin, &chat_endpoint).await
    } else {
        Check::skipped(STREAM_DECODER, "the plugin does not declare chat_stream")
    });
    report
        .checks
        .push(check_garbage_input(&plugin, &chat_endpoint, &embed_endpoint).await);
    report
}

// ---------------------------------------------------------------- describe

fn check_describe(info: &ProviderInfo) -> Check {
    let mut problems = Vec::new();
    if !is_provider_id(&info.id) {
        problems.push(format!(
            "id '{}' must be non-empty lowercase a-z, 0-9 and '-'",
            info.id
        ));
    }
    if !is_semver(&info.version) {
        problems.push(format!(
            "version '{}' is not a semantic version (MAJOR.MINOR.PATCH)",
            info.version
        ));
    }
    if info.display_name.trim().is_empty() {
        problems.push("display name is empty".into());
    }
    if info.operations.is_empty() {
        problems.push("no operations declared".into());
    }
    let mut operations = HashSet::new();
    for operation in &info.operations {
        if !operations.insert(operation) {
            problems.push(format!("operation {operation:?} listed twice"));
        }
    }
    let mut names = HashSet::new();
    for field in &info.config_fields {
        problems.extend(field_problems(field));
        if !names.insert(field.name.as_str()) {
            problems.push(format!("config field '{}' declared twice", field.name));
        }
    }
    Check::from_problems(
        DESCRIBE,
        format!(
            "{} operation(s), {} config field(s)",
            info.operations.len(),
            info.config_fields.len()
        ),
        problems,
    )
}

fn field_problems(field: &ConfigField) -> Vec<String> {
    let name = &field.name;
    let mut problems = Vec::new();
    if !is_snake_case(name) {
        problems.push(format!("config field name '{name}' is not snake_case"));
    }
    if field.label.trim().is_empty() {
        problems.push(format!("config field '{name}' has an empty label"));
    }
    match field.kind {
        FieldKind::Enum if field.options.is_empty() => {
            problems.push(format!("enum config field '{name}' has no options"));
        }
        FieldKind::Enum => {
            if let Some(default) = &field.default_value
                && !field.options.contains(default)
            {
                problems.push(format!(
                    "default '{default}' of enum config field '{name}' is not one of its options"
                ));
            }
        }
        FieldKind::Url => {
            if let Some(default) = &field.default_value
                && let Err(why) = check_url(default)
            {
                problems.push(format!(
                    "default '{default}' of url config field '{name}' {why}"
                ));
            }
        }
        FieldKind::String | FieldKind::Secret | FieldKind::SecretJson => {}
    }
    problems
}

fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `snake_case`: lowercase words of a-z / 0-9 joined by single
/// underscores, starting with a letter.
fn is_snake_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.split('_').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Semantic Versioning 2.0.0: `MAJOR.MINOR.PATCH`, optional `-pre.release`
/// and `+build` identifiers.
fn is_semver(version: &str) -> bool {
    let (rest, build) = match version.split_once('+') {
        Some((rest, build)) => (rest, Some(build)),
        None => (version, None),
    };
    let (core, pre) = match rest.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (rest, None),
    };
    let numeric = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'))
    };
    let identifier =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| numeric(p))
        && pre.is_none_or(|pre| {
            pre.split('.').all(|id| {
                identifier(id) && (!id.bytes().all(|b| b.is_ascii_digit()) || numeric(id))
            })
        })
        && build.is_none_or(|build| build.split('.').all(identifier))
}

/// `Ok` for an absolute http(s) URL with a host, else why not.
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("has scheme '{}', not http(s)", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    Ok(())
}

// ----------------------------------------------------------------- catalog

fn check_catalog(info: &ProviderInfo) -> Check {
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    let mut embedding_models = 0;
    for model in &info.models {
        let id = &model.id;
        if id.trim().is_empty() {
            problems.push("a model has an empty id".into());
        } else if !ids.insert(id.as_str()) {
            problems.push(format!("model '{id}' listed twice"));
        }
        if model.context_window == 0 {
            problems.push(format!("model '{id}': context window must be positive"));
        }
        for (what, price) in [
            ("input", model.input_price_per_mtok),
            ("output", model.output_price_per_mtok),
        ] {
            if !price.is_finite() || price < 0.0 {
                problems.push(format!(
                    "model '{id}': {what} price {price} must be a non-negative number"
                ));
            }
        }
        if model.capabilities.embeddings {
            embedding_models += 1;
            if model.embedding_dimensions.is_none_or(|d| d == 0) {
                problems.push(format!(
                    "embedding model '{id}' needs positive embedding_dimensions"
                ));
            }
        }
    }
    if embedding_models > 0 && !info.supports(Operation::Embeddings) {
        problems.push(format!(
            "the catalog lists {embedding_models} embedding model(s) but the plugin does not declare the embeddings operation"
        ));
    }
    Check::from_problems(
        CATALOG,
        format!(
            "{} model(s), {embedding_models} for embeddings",
            info.models.len()
        ),
        problems,
    )
}

// ----------------------------------------------------------- request build

/// The endpoint a check calls the plugin with: every declared default, a
/// placeholder for each required field without one (optional fields
/// without a default stay unset, as the host leaves them), and the first
/// catalog model of the right kind.
fn sample_endpoint(info: &ProviderInfo, embeddings: bool) -> Endpoint {
    let mut config = BTreeMap::new();
    for field in &info.config_fields {
        let value = match (&field.default_value, field.required) {
            (Some(default), _) => default.clone(),
            (None, true) => placeholder(field),
            (None, false) => continue,
        };
        config.insert(field.name.clone(), value);
    }
    let model = info
        .models
        .iter()
        .find(|m| m.capabilities.embeddings == embeddings)
        .map(|m| m.id.clone())
        .unwrap_or_else(|| {
            if embeddings {
                "conformance-embedding-model".into()
            } else {
                "conformance-model".into()
            }
        });
    Endpoint {
        name: "conformance".into(),
        model,
        config,
    }
}

fn placeholder(field: &ConfigField) -> String {
    match field.kind {
        // `.invalid` never resolves (RFC 2606).
        FieldKind::Url => "https://conformance.invalid".into(),
        FieldKind::Secret => "conformance-secret-value".into(),
        FieldKind::SecretJson => "{}".into(),
        FieldKind::Enum => field.options.first().cloned().unwrap_or_default(),
        FieldKind::String => "conformance".into(),
    }
}

fn sample_chat_request(model: &str) -> ChatRequest {
    ChatRequest {
        model: model.to_string(),
        system: Some("You are a conformance check. Answer briefly.".into()),
        messages: vec![
            Message::user("Hello!"),
            Message::assistant("Hi! How can I help?"),
            Message::user("Say something short."),
        ],
        params: SamplingParams {
            max_tokens: Some(64),
            temperature: Some(0.5),
            stop: vec!["END".into()],
            ..Default::default()
        },
        ..Default::default()
    }
}

#[derive(Clone, Copy)]
enum Build<'a> {
    Chat(&'a ChatRequest, bool),
    Embeddings(&'a EmbeddingsRequest),
}

async fn build(
    plugin: &Plugin,
    what: Build<'_>,
    endpoint: &Endpoint,
) -> Result<HttpRequest, PluginError> {
    match what {
        Build::Chat(request, stream) => plugin.build_chat_request(endpoint, request, stream).await,
        Build::Embeddings(request) => plugin.build_embeddings_request(endpoint, request).await,
    }
}

/// Builds the request twice (identical results required), and checks it
/// is something the host can send.
async fn check_build(
    plugin: &Plugin,
    name: &'static str,
    what: Build<'_>,
    endpoint: &Endpoint,
) -> Check {
    let first = match build(plugin, what, endpoint).await {
        Ok(request) => request,
        Err(PluginError::Provider(error)) if !plugin.info.egress_hosts.is_empty() => {
            // Plugins with side calls (e.g. an OAuth token exchange) cannot
            // build a request offline from placeholder credentials.
            return Check::skipped(
                name,
                format!(
                    "the plugin declares egress hosts and could not build a request offline with placeholder config: {}",
                    error.message
                ),
            );
        }
        Err(error) => return Check::failed(name, format!("building failed: {error}")),
    };
    let mut second = build(plugin, what, endpoint).await;
    if second.as_ref().is_ok_and(|second| *second != first) {
        // Request signing with a seconds-resolution timestamp may straddle
        // a second boundary once; twice in a row it cannot.
        let again = build(plugin, what, endpoint).await;
        second = build(plugin, what, endpoint).await;
        if let (Ok(again), Ok(last)) = (&again, &second)
            && again != last
        {
            return Check::failed(
                name,
                format!(
                    "not deterministic: two builds from the same input differ ({})",
                    difference(again, last)
                ),
            );
        }
    }
    let request = match second {
        Ok(request) => request,
        Err(error) => {
            return Check::failed(
                name,
                format!("building succeeded once, then failed: {error}"),
            );
        }
    };
    let problems = request_problems(&request);
    Check::from_problems(
        name,
        format!(
            "{} {} ({} header(s), {} byte body), deterministic",
            request.method,
            request.url,
            request.headers.len(),
            request.body.len()
        ),
        problems,
    )
}

fn difference(a: &HttpRequest, b: &HttpRequest) -> String {
    let mut parts = Vec::new();
    if a.method != b.method {
        parts.push("method");
    }
    if a.url != b.url {
        parts.push("url");
    }
    if a.headers != b.headers {
        parts.push("headers");
    }
    if a.body != b.body {
        parts.push("body");
    }
    parts.join(", ")
}

fn request_problems(request: &HttpRequest) -> Vec<String> {
    let mut problems = Vec::new();
    if request.method.is_empty()
        || !request.method.bytes().all(|b| b.is_ascii_uppercase())
        || reqwest::Method::from_bytes(request.method.as_bytes()).is_err()
    {
        problems.push(format!(
            "method '{}' is not an upper-case HTTP method",
            request.method
        ));
    }
    if let Err(why) = check_url(&request.url) {
        problems.push(format!("url '{}' {why}", request.url));
    }
    for (name, value) in &request.headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problems.push(format!("invalid header name '{name}'"));
        }
        if reqwest::header::HeaderValue::from_str(value).is_err() {
            // The value may be a secret: name the header only.
            problems.push(format!("invalid value of header '{name}'"));
        }
    }
    problems
}

// ------------------------------------------------------------ error mapping

fn synthetic_error(status: u16, extra_headers: &[(&str, &str)]) -> HttpResponse {
    let (kind, message) = if status == 429 {
        (
            "rate_limit_error",
            "Rate limit reached, please retry later.",
        )
    } else {
        ("api_error", "The server had an internal error.")
    };
    // One body that most providers' parsers understand: OpenAI/Anthropic
    // style `error` object with Google-style code/status, plus a top-level
    // message (Cohere, Ollama-like servers).
    let body = serde_json::json!({
        "type": "error",
        "error": {
            "message": message,
            "type": kind,
            "code": status,
            "status": if status == 429 { "RESOURCE_EXHAUSTED" } else { "INTERNAL" },
        },
        "message": message,
    });
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(
        extra_headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    HttpResponse {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

async fn check_error_mapping(plugin: &Plugin, endpoint: &Endpoint) -> Check {
    let mut problems = Vec::new();
    let retry_after = RETRY_AFTER_SECONDS.to_string();
    let limited = synthetic_error(429, &[("retry-after", &retry_after)]);
    let mut summary = Vec::new();
    match plugin.parse_error(endpoint, limited).await {
        Ok(error) => {
            if error.kind != ErrorKind::RateLimited || error.status != 429 {
                problems.push(format!(
                    "a 429 mapped to {:?}/{} instead of RateLimited/429",
                    error.kind, error.status
                ));
            }
            if error.retry_after_ms != Some(RETRY_AFTER_SECONDS * 1000) {
                problems.push(format!(
                    "a 429 with retry-after: {RETRY_AFTER_SECONDS} gave retry_after_ms {:?} instead of {}",
                    error.retry_after_ms,
                    RETRY_AFTER_SECONDS * 1000
                ));
            }
            summary.push(format!("429 -> {:?}/{}", error.kind, error.status));
        }
        Err(error) => problems.push(format!("parse_error on a 429 failed: {error}")),
    }
    match plugin
        .parse_error(endpoint, synthetic_error(500, &[]))
        .await
    {
        Ok(error) => {
            if !(500..=599).contains(&error.status) {
                problems.push(format!(
                    "a 500 mapped to status {} instead of 502 (or another 5xx)",
                    error.status
                ));
            }
            summary.push(format!("500 -> {:?}/{}", error.kind, error.status));
        }
        Err(error) => problems.push(format!("parse_error on a 500 failed: {error}")),
    }
    Check::from_problems(ERROR_MAPPING, summary.join(", "), problems)
}

// ------------------------------------------------------- stream and garbage

async fn check_stream_decoder(plugin: &Arc<Plugin>, endpoint: &Endpoint) -> Check {
    let mut decoder = match plugin.stream_decoder(endpoint).await {
        Ok(decoder) => decoder,
        Err(error) => {
            return Check::failed(
                STREAM_DECODER,
                format!("creating a decoder failed: {error}"),
            );
        }
    };
    match decoder.finish().await {
        Ok(events) => Check::passed(
            STREAM_DECODER,
            format!(
                "an empty body finishes with {} event(s), no fault",
                events.len()
            ),
        ),
        Err(PluginError::Provider(error)) => Check::passed(
            STREAM_DECODER,
            format!(
                "an empty body finishes with a typed error ({:?}/{}), no fault",
                error.kind, error.status
            ),
        ),
        Err(fault) => Check::failed(
            STREAM_DECODER,
            format!("finish on an empty body faulted: {fault}"),
        ),
    }
}

/// Upstream input is untrusted: unreadable answers must be typed errors,
/// never traps.
async fn check_garbage_input(
    plugin: &Arc<Plugin>,
    chat_endpoint: &Endpoint,
    embed_endpoint: &Endpoint,
) -> Check {
    let garbage = || HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: b"<html>\x00\xff not json {\"unterminated".to_vec(),
    };
    let mut problems = Vec::new();
    let info = &plugin.info;
    if info.supports(Operation::Chat) {
        match plugin.parse_chat_response(chat_endpoint, garbage()).await {
            Err(PluginError::Fault { message, .. }) => {
                problems.push(format!("parse_chat_response faulted on garbage: {message}"));
            }
            Ok(_) => problems.push("parse_chat_response accepted garbage as an answer".into()),
            Err(PluginError::Provider(_)) => {}
        }
    }
    if info.supports(Operation::Embeddings) {
        match plugin
            .parse_embeddings_response(embed_endpoint, garbage())
            .await
        {
            Err(PluginError::Fault { message, .. }) => {
                problems.push(format!(
                    "parse_embeddings_response faulted on garbage: {message}"
                ));
            }
            Ok(_) => {
                problems.push("parse_embeddings_response accepted garbage as an answer".into())
            }
            Err(PluginError::Provider(_)) => {}
        }
    }
    if info.supports(Operation::ChatStream) {
        match plugin.stream_decoder(chat_endpoint).await {
            Ok(mut decoder) => {
                let pushed = decoder.push(&garbage().body).await;
                let result = match pushed {
                    Ok(_) => decoder.finish().await.map(|_| ()),
                    Err(error) => Err(error),
                };
                if let Err(PluginError::Fault { message, .. }) = result {
                    problems.push(format!("the stream decoder faulted on garbage: {message}"));
                }
            }
            Err(error) => problems.push(format!("creating a decoder failed: {error}")),
        }
    }
    Check::from_problems(
        GARBAGE_INPUT,
        "unreadable upstream bodies give typed errors, no fault",
        problems,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_model::plugin::{Capabilities, ModelInfo};

    fn field(name: &str, kind: FieldKind, default: Option<&str>) -> ConfigField {
        ConfigField {
            name: name.into(),
            label: "Label".into(),
            kind,
            required: default.is_none(),
            default_value: default.map(Into::into),
            help: String::new(),
            options: Vec::new(),
        }
    }

    fn model(id: &str, embeddings: bool) -> ModelInfo {
        ModelInfo {
            id: id.into(),
            display_name: id.into(),
            context_window: 1000,
            max_output_tokens: if embeddings { 0 } else { 100 },
            input_price_per_mtok: 1.0,
            output_price_per_mtok: 2.0,
            capabilities: Capabilities {
                embeddings,
                ..Default::default()
            },
            embedding_dimensions: embeddings.then_some(8),
        }
    }

    fn good_info() -> ProviderInfo {
        ProviderInfo {
            id: "acme-ai".into(),
            display_name: "Acme".into(),
            version: "1.2.3-beta.1+build.5".into(),
            description: String::new(),
            operations: vec![Operation::Chat, Operation::Embeddings],
            native_dialect: None,
            config_fields: vec![
                field("api_key", FieldKind::Secret, None),
                field("base_url", FieldKind::Url, Some("https://api.acme.ai/v1")),
                ConfigField {
                    options: vec!["us".into(), "eu".into()],
                    ..field("region", FieldKind::Enum, Some("eu"))
                },
            ],
            egress_hosts: Vec::new(),
            models: vec![model("acme-1", false), model("acme-embed", true)],
        }
    }

    #[test]
    fn validators() {
        for ok in [
            "0.1.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0+20130313144700",
            "1.0.0-rc.1+build.1",
        ] {
            assert!(is_semver(ok), "{ok}");
        }
        for bad in [
            "", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3-01", "1.2.3+", "v1.2.3", "1.2.x",
        ] {
            assert!(!is_semver(bad), "{bad}");
        }
        for ok in ["api_key", "base_url", "region", "v2_token"] {
            assert!(is_snake_case(ok), "{ok}");
        }
        for bad in [
            "", "ApiKey", "api-key", "_key", "key_", "api__key", "2fa", "apiKey",
        ] {
            assert!(!is_snake_case(bad), "{bad}");
        }
        assert!(is_provider_id("openai") && is_provider_id("azure-openai2"));
        assert!(!is_provider_id("") && !is_provider_id("Open_AI") && !is_provider_id("a.b"));
        assert!(
            check_url("https://api.x.com/v1").is_ok()
                && check_url("http://localhost:11434").is_ok()
        );
        assert!(check_url("api.x.com").is_err());
        assert!(check_url("ftp://x.com").is_err());
    }

    #[test]
    fn describe_and_catalog_pass_for_a_good_plugin() {
        let info = good_info();
        assert_eq!(check_describe(&info).status, CheckStatus::Passed);
        assert_eq!(check_catalog(&info).status, CheckStatus::Passed);
    }

    #[test]
    fn describe_problems_are_all_reported() {
        let mut info = good_info();
        info.id = "Acme_AI".into();
        info.version = "1.0".into();
        info.display_name = " ".into();
        info.operations.clear();
        info.config_fields = vec![
            field("apiKey", FieldKind::Secret, None),
            field("apiKey", FieldKind::Secret, None),
            field("mode", FieldKind::Enum, None),
            field("base_url", FieldKind::Url, Some("api.acme.ai")),
        ];
        let check = check_describe(&info);
        assert_eq!(check.status, CheckStatus::Failed);
        for needle in [
            "id 'Acme_AI'",
            "version '1.0'",
            "display name is empty",
            "no operations",
            "'apiKey' is not snake_case",
            "'apiKey' declared twice",
            "enum config field 'mode' has no options",
            "default 'api.acme.ai' of url config field 'base_url'",
        ] {
            assert!(
                check.message.contains(needle),
                "{needle} missing from: {}",
                check.message
            );
        }
    }

    #[test]
    fn catalog_problems_are_all_reported() {
        let mut info = good_info();
        info.operations = vec![Operation::Chat];
        let mut broken = model("acme-1", false);
        broken.context_window = 0;
        broken.output_price_per_mtok = -1.0;
        let mut no_dims = model("acme-embed-2", true);
        no_dims.embedding_dimensions = None;
        info.models.push(broken);
        info.models.push(no_dims);
        let check = check_catalog(&info);
        assert_eq!(check.status, CheckStatus::Failed);
        for needle in [
            "model 'acme-1' listed twice",
            "context window must be positive",
            "output price -1 must be a non-negative number",
            "embedding model 'acme-embed-2' needs positive embedding_dimensions",
            "does not declare the embeddings operation",
        ] {
            assert!(
                check.message.contains(needle),
                "{needle} missing from: {}",
                check.message
            );
        }
    }

    #[test]
    fn sample_endpoints_use_defaults_and_placeholders() {
        let mut info = good_info();
        info.config_fields.push(ConfigField {
            required: false,
            ..field("organization", FieldKind::String, None)
        });
        let chat = sample_endpoint(&info, false);
        assert_eq!(chat.model, "acme-1");
        assert_eq!(
            chat.config,
            BTreeMap::from([
                (
                    "api_key".to_string(),
                    "conformance-secret-value".to_string()
                ),
                ("base_url".to_string(), "https://api.acme.ai/v1".to_string()),
                ("region".to_string(), "eu".to_string()),
            ])
        );
        assert_eq!(sample_endpoint(&info, true).model, "acme-embed");
        info.models.clear();
        assert_eq!(
            sample_endpoint(&info, true).model,
            "conformance-embedding-model"
        );
    }

    #[test]
    fn request_validation() {
        let good = HttpRequest {
            method: "POST".into(),
            url: "https://api.acme.ai/v1/chat".into(),
            headers: vec![("authorization".into(), "Bearer k".into())],
            body: b"{}".to_vec(),
        };
        assert!(request_problems(&good).is_empty());
        let bad = HttpRequest {
            method: "post".into(),
            url: "/v1/chat".into(),
            headers: vec![
                ("bad header".into(), "x".into()),
                ("x-key".into(), "sec\nret".into()),
            ],
            body: Vec::new(),
        };
        let problems = request_problems(&bad).join("; ");
        assert!(problems.contains("method 'post'"), "{problems}");
        assert!(problems.contains("url '/v1/chat'"), "{problems}");
        assert!(
            problems.contains("invalid header name 'bad header'"),
            "{problems}"
        );
        assert!(
            problems.contains("invalid value of header 'x-key'") && !problems.contains("sec"),
            "{problems}"
        );
    }

    #[test]
    fn report_display() {
        let report = ConformanceReport {
            file: PathBuf::from("plugins/acme.wasm"),
            provider: Some(("acme".into(), "1.0.0".into())),
            checks: vec![
                Check::passed(LOADS, "ok"),
                Check::failed(DESCRIBE, "first line\nsecond line"),
                Check::skipped(EMBEDDINGS_REQUEST, "not declared"),
            ],
        };
        assert!(!report.passed());
        assert_eq!(report.failures().count(), 1);
        let text = report.to_string();
        assert_eq!(
            text,
            "Plugin conformance of plugins/acme.wasm (provider 'acme' 1.0.0)\n\
             \x20 [pass] loads               ok\n\
             \x20 [FAIL] describe            first line\n\
             \x20        \x20                   second line\n\
             \x20 [skip] embeddings-request  not declared\n\
             conformance FAILED: 1 of 3 checks passed, 1 failing (1 skipped)\n"
        );
    }
}
