//! Building the [`HttpRequest`]s the host sends, and URL joining.

use portico_model::plugin::HttpRequest;

/// Builder of an upstream request.
///
/// ```
/// use portico_sdk::http::RequestBuilder;
/// let request = RequestBuilder::post("https://api.example.com/v1/chat")
///     .bearer_auth("sk-test")
///     .header("x-team", "blue")
///     .json(&serde_json::json!({"model": "m"}))
///     .build();
/// assert_eq!(request.method, "POST");
/// assert_eq!(request.body, br#"{"model":"m"}"#);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestBuilder {
    request: HttpRequest,
}

impl RequestBuilder {
    /// A request with an upper-case `method`.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Self {
            request: HttpRequest {
                method: method.to_ascii_uppercase(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header (names are sent as given; HTTP treats them
    /// case-insensitively).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.request.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header when `value` is `Some` and not empty.
    pub fn header_opt(self, name: &str, value: Option<&str>) -> Self {
        match value.filter(|v| !v.is_empty()) {
            Some(value) => self.header(name, value),
            None => self,
        }
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer_auth(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// A JSON body, with `content-type: application/json`.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        // The shared writer: serde_json's output, with message text escaped
        // several bytes at a time (most of a chat body is text).
        self.request.body = portico_model::json::to_vec(body).unwrap_or_default();
        self.header("content-type", "application/json")
    }

    /// A raw body (set `content-type` yourself).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.request.body = body.into();
        self
    }

    pub fn build(self) -> HttpRequest {
        self.request
    }
}

/// Content type of server-sent-event streams.
pub const SSE: &str = "text/event-stream";
/// Content type of newline-delimited JSON streams.
pub const NDJSON: &str = "application/x-ndjson";

/// The `accept` header of a call: `stream_type` (e.g. [`SSE`]) for a
/// streaming call, JSON otherwise.
pub fn accept(stream: bool, stream_type: &'static str) -> &'static str {
    if stream {
        stream_type
    } else {
        "application/json"
    }
}

/// Joins a base URL and a path with exactly one `/` between them, whatever
/// slashes either side has: `join_url("https://x/v1/", "/chat")` is
/// `https://x/v1/chat`. An empty path yields the base without trailing
/// slashes.
pub fn join_url(base: &str, path: &str) -> String {
    let base = base.trim_end_matches('/');
    let path = path.trim_start_matches('/');
    if path.is_empty() {
        base.to_string()
    } else {
        format!("{base}/{path}")
    }
}

/// Percent-encodes a URL path segment or query value (everything but
/// unreserved characters), e.g. a model id placed in a path.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Appends query parameters (values percent-encoded) to `url`.
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    if params.is_empty() {
        return url.to_string();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_urls() {
        assert_eq!(
            join_url("https://api.openai.com/v1", "/chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            join_url("https://api.openai.com/v1//", "chat/completions"),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(join_url("https://h/", ""), "https://h");
    }

    #[test]
    fn encodes_components_and_queries() {
        assert_eq!(encode_component("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(
            with_query("https://h/p", &[("api-version", "2024-10-21")]),
            "https://h/p?api-version=2024-10-21"
        );
        assert_eq!(
            with_query("https://h/p?x=1", &[("a", "b c")]),
            "https://h/p?x=1&a=b%20c"
        );
        assert_eq!(with_query("https://h/p", &[]), "https://h/p");
    }

    #[test]
    fn builds_requests() {
        let request = RequestBuilder::new("post", "https://h")
            .header_opt("x-org", Some("acme"))
            .header_opt("x-none", None)
            .header_opt("x-empty", Some(""))
            .body(b"raw".to_vec())
            .build();
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.headers,
            vec![("x-org".to_string(), "acme".to_string())]
        );
        assert_eq!(request.body, b"raw");
    }
}
