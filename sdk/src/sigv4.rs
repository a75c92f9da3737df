//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) request signing, for
//! providers behind AWS APIs (Bedrock, SageMaker, …).
//!
//! ```
//! use portico_sdk::http::RequestBuilder;
//! use portico_sdk::sigv4::{Credentials, Signer};
//!
//! let mut request = RequestBuilder::post(
//!     "https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.nova-lite-v1%3A0/converse",
//! )
//! .json(&serde_json::json!({"messages": []}))
//! .build();
//! let credentials = Credentials::new("AKIDEXAMPLE", "secret", None);
//! // The time is a parameter so signing is testable; plugins pass
//! // `portico_sdk::host::now_unix_ms()`.
//! Signer::new(&credentials, "us-east-1", "bedrock")
//!     .sign(&mut request, 1_440_938_160_000)
//!     .unwrap();
//! let authorization = &request.headers.iter().find(|(k, _)| k == "authorization").unwrap().1;
//! assert!(authorization.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request"));
//! ```
//!
//! What is signed: the method, the URL path (URI-encoded once more, as every
//! service but S3 expects: a path already holding `%3A` is canonicalized as
//! `%253A`), the sorted query, every header of the request plus `host`
//! (derived from the URL, as the host's HTTP client sends it, and not added
//! to the request: HTTP/2 carries it as `:authority`), and the SHA-256 of
//! the body.

use hmac::{Hmac, Mac};
use portico_model::ProviderError;
use portico_model::plugin::HttpRequest;
use sha2::{Digest, Sha256};

/// The signing algorithm name, as it appears in the string to sign.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// Headers never signed: the HTTP client sets or rewrites them on the way
/// out, so a signature over them would not match what the service sees.
const UNSIGNED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-length",
    "expect",
    "transfer-encoding",
    "user-agent",
    "accept-encoding",
    "x-amzn-trace-id",
];

/// AWS credentials. `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Temporary credentials (STS) come with a session token, sent as
    /// `x-amz-security-token`.
    pub session_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key_id: &str, secret_access_key: &str, session_token: Option<&str>) -> Self {
        Self {
            access_key_id: access_key_id.to_string(),
            secret_access_key: secret_access_key.to_string(),
            session_token: session_token.filter(|t| !t.is_empty()).map(str::to_string),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Signs requests for one service in one region.
#[derive(Debug, Clone)]
pub struct Signer<'a> {
    credentials: &'a Credentials,
    region: &'a str,
    service: &'a str,
    content_sha256_header: bool,
}

impl<'a> Signer<'a> {
    /// A signer for `service` (e.g. `bedrock`) in `region` (e.g. `us-east-1`).
    /// It adds `x-amz-content-sha256` by default.
    pub fn new(credentials: &'a Credentials, region: &'a str, service: &'a str) -> Self {
        Self {
            credentials,
            region,
            service,
            content_sha256_header: true,
        }
    }

    /// Whether to send (and sign) the body hash as `x-amz-content-sha256`.
    /// Only S3 requires it; other services accept it.
    #[must_use]
    pub fn content_sha256_header(mut self, enabled: bool) -> Self {
        self.content_sha256_header = enabled;
        self
    }

    /// Signs `request` in place as of `now_unix_ms`: adds `x-amz-date`,
    /// `x-amz-content-sha256` (unless disabled), `x-amz-security-token`
    /// (with temporary credentials) and `authorization`. Sign last: any
    /// header or body change afterwards invalidates the signature.
    pub fn sign(&self, request: &mut HttpRequest, now_unix_ms: u64) -> Result<(), ProviderError> {
        let parts = signature_parts(self, request, now_unix_ms)?;
        request.headers.retain(|(name, _)| {
            !matches!(
                name.to_ascii_lowercase().as_str(),
                "authorization" | "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
            )
        });
        request
            .headers
            .push(("x-amz-date".into(), parts.amz_date.clone()));
        if self.content_sha256_header {
            request
                .headers
                .push(("x-amz-content-sha256".into(), parts.payload_hash.clone()));
        }
        if let Some(token) = &self.credentials.session_token {
            request
                .headers
                .push(("x-amz-security-token".into(), token.clone()));
        }
        request
            .headers
            .push(("authorization".into(), parts.authorization));
        Ok(())
    }

    /// The canonical request `sign` would sign (for debugging a signature
    /// mismatch; it contains no secret).
    pub fn canonical_request(
        &self,
        request: &HttpRequest,
        now_unix_ms: u64,
    ) -> Result<String, ProviderError> {
        Ok(signature_parts(self, request, now_unix_ms)?.canonical_request)
    }
}

struct SignatureParts {
    amz_date: String,
    payload_hash: String,
    canonical_request: String,
    authorization: String,
}

fn signature_parts(
    signer: &Signer<'_>,
    request: &HttpRequest,
    now_unix_ms: u64,
) -> Result<SignatureParts, ProviderError> {
    if signer.region.is_empty() || signer.service.is_empty() {
        return Err(ProviderError::invalid_request(
            "AWS signing needs a region and a service",
        ));
    }
    let url = SplitUrl::parse(&request.url)?;
    let amz_date = amz_date(now_unix_ms);
    let date = &amz_date[..8];
    let payload_hash = hex(&Sha256::digest(&request.body));

    // Headers as they will be sent (the signing headers replace any
    // existing ones), plus `host`.
    let mut headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), canonical_header_value(value)))
        .filter(|(name, _)| {
            !UNSIGNED_HEADERS.contains(&name.as_str())
                && !matches!(
                    name.as_str(),
                    "host" | "x-amz-date" | "x-amz-content-sha256" | "x-amz-security-token"
                )
        })
        .collect();
    headers.push(("host".into(), url.host_header.clone()));
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if signer.content_sha256_header {
        headers.push(("x-amz-content-sha256".into(), payload_hash.clone()));
    }
    if let Some(token) = &signer.credentials.session_token {
        headers.push(("x-amz-security-token".into(), token.clone()));
    }
    // Stable sort keeps repeated headers in request order before joining.
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut signed_headers: Vec<&str> = Vec::new();
    for (name, value) in &headers {
        if signed_headers.last() == Some(&name.as_str()) {
            canonical_headers.pop(); // the previous line's '\n'
            canonical_headers.push(',');
        } else {
            signed_headers.push(name);
            canonical_headers.push_str(name);
            canonical_headers.push(':');
        }
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed_headers = signed_headers.join(";");

    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        request.method.to_ascii_uppercase(),
        canonical_uri(&url.path),
        canonical_query(&url.query),
    );
    let scope = format!("{date}/{}/{}/aws4_request", signer.region, signer.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    );
    let key = signing_key(
        &signer.credentials.secret_access_key,
        date,
        signer.region,
        signer.service,
    );
    let signature = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        signer.credentials.access_key_id
    );
    Ok(SignatureParts {
        amz_date,
        payload_hash,
        canonical_request,
        authorization,
    })
}

/// The derived key: `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region),
/// service), "aws4_request")`.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never fails.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// `YYYYMMDD'T'HHMMSS'Z'` (UTC) of a Unix time in milliseconds.
pub fn amz_date(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Trimmed, with runs of spaces collapsed to one, as SigV4 requires.
fn canonical_header_value(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The path as sent, each segment URI-encoded once more (`%` becomes
/// `%25`), `/` kept. Empty is `/`.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_string();
    }
    path.split('/')
        .map(uri_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// Query parameters decoded, re-encoded the SigV4 way and sorted.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                uri_encode(&percent_decode(name)),
                uri_encode(&percent_decode(value)),
            )
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-._~` as `%XX`
/// (upper-case hex).
pub fn uri_encode(value: &str) -> String {
    crate::http::encode_component(value)
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_digit = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The parts of an absolute URL that signing needs.
struct SplitUrl {
    /// `host` or `host:port` when the port is not the scheme's default.
    host_header: String,
    path: String,
    query: String,
}

impl SplitUrl {
    fn parse(url: &str) -> Result<Self, ProviderError> {
        let invalid = || {
            ProviderError::invalid_request("cannot sign a request without an absolute http(s) URL")
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "https" => "443",
            "http" => "80",
            _ => return Err(invalid()),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(authority_end);
        // Userinfo is never sent to the host.
        let authority = authority.rsplit('@').next().unwrap_or_default();
        if authority.is_empty() {
            return Err(invalid());
        }
        // `host:port`, the port dropped when it is the scheme's default
        // (an IPv6 literal's colons are inside brackets, never a port).
        let host_header = match authority.rsplit_once(':') {
            Some((host, port))
                if port.bytes().all(|b| b.is_ascii_digit())
                    && (port.is_empty() || port == default_port) =>
            {
                host
            }
            _ => authority,
        }
        .to_ascii_lowercase();
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Ok(Self {
            host_header,
            path: path.to_string(),
            query: query.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::RequestBuilder;

    /// The credentials and clock of AWS's SigV4 test suite.
    fn suite_credentials() -> Credentials {
        Credentials::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            None,
        )
    }

    /// 2015-08-30T12:36:00Z
    const SUITE_TIME_MS: u64 = 1_440_938_160_000;

    fn header(request: &HttpRequest, name: &str) -> Option<String> {
        request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    fn authorization(request: &HttpRequest) -> &str {
        request
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    fn suite_sign(method: &str, url: &str) -> String {
        let credentials = suite_credentials();
        let mut request = RequestBuilder::new(method, url).build();
        Signer::new(&credentials, "us-east-1", "service")
            .content_sha256_header(false)
            .sign(&mut request, SUITE_TIME_MS)
            .unwrap();
        authorization(&request).to_string()
    }

    #[test]
    fn aws_test_suite_vectors() {
        let prefix = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=";
        for (method, url, signature) in [
            // get-vanilla
            (
                "GET",
                "https://example.amazonaws.com/",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            // get-vanilla-query-order-key-case: the query is sorted.
            (
                "GET",
                "https://example.amazonaws.com/?Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            // post-vanilla: an empty body hashes as the empty string.
            (
                "POST",
                "https://example.amazonaws.com/",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            assert_eq!(
                suite_sign(method, url),
                format!("{prefix}{signature}"),
                "{method} {url}"
            );
        }
        // An explicit default port is not part of the host.
        assert_eq!(
            suite_sign("GET", "https://example.amazonaws.com:443/"),
            suite_sign("GET", "https://example.amazonaws.com/")
        );
    }

    #[test]
    fn s3_documentation_example_with_extra_header() {
        // "GET Object" of the S3 SigV4 documentation: a signed Range header
        // and the x-amz-content-sha256 header.
        let credentials = Credentials::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
        );
        let mut request = RequestBuilder::get("https://examplebucket.s3.amazonaws.com/test.txt")
            .header("Range", "bytes=0-9")
            .build();
        // 2013-05-24T00:00:00Z
        Signer::new(&credentials, "us-east-1", "s3")
            .sign(&mut request, 1_369_353_600_000)
            .unwrap();
        assert_eq!(
            authorization(&request),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn bedrock_paths_are_encoded_twice_and_tokens_signed() {
        let credentials = Credentials::new("AKID", "SECRET", Some("SESSION/TOKEN=="));
        let url = "https://bedrock-runtime.us-west-2.amazonaws.com/model/anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse";
        let mut request = RequestBuilder::post(url)
            .header("Content-Type", "application/json")
            .header("accept", "  application/json  ")
            .header("user-agent", "changes-on-the-way")
            .body(b"{}".to_vec())
            .build();
        let signer = Signer::new(&credentials, "us-west-2", "bedrock");
        let time = 1_700_000_000_000; // 2023-11-14T22:13:20Z
        let canonical = signer.canonical_request(&request, time).unwrap();
        assert_eq!(
            canonical,
            "POST\n\
             /model/anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse\n\
             \n\
             accept:application/json\n\
             content-type:application/json\n\
             host:bedrock-runtime.us-west-2.amazonaws.com\n\
             x-amz-content-sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\n\
             x-amz-date:20231114T221320Z\n\
             x-amz-security-token:SESSION/TOKEN==\n\
             \n\
             accept;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n\
             44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        signer.sign(&mut request, time).unwrap();
        assert_eq!(
            header(&request, "x-amz-date").as_deref(),
            Some("20231114T221320Z")
        );
        assert_eq!(
            header(&request, "x-amz-security-token").as_deref(),
            Some("SESSION/TOKEN==")
        );
        assert_eq!(header(&request, "host"), None, "host is derived, not added");
        let auth = header(&request, "authorization").unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKID/20231114/us-west-2/bedrock/aws4_request, SignedHeaders=accept;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="
        ));
        // Signing again replaces the signing headers instead of adding more.
        signer.sign(&mut request, time).unwrap();
        assert_eq!(
            request
                .headers
                .iter()
                .filter(|(k, _)| k == "authorization")
                .count(),
            1
        );
        assert_eq!(header(&request, "authorization").unwrap(), auth);
    }

    #[test]
    fn ports_queries_and_repeated_headers() {
        let url = SplitUrl::parse("http://127.0.0.1:8080/a%3Ab/c?x=1%202&a=%7e").unwrap();
        assert_eq!(url.host_header, "127.0.0.1:8080");
        assert_eq!(canonical_uri(&url.path), "/a%253Ab/c");
        assert_eq!(canonical_query(&url.query), "a=~&x=1%202");
        assert_eq!(
            SplitUrl::parse("http://Example.com:80")
                .unwrap()
                .host_header,
            "example.com"
        );
        assert_eq!(canonical_uri(""), "/");
        assert!(SplitUrl::parse("example.com/x").is_err());
        assert!(SplitUrl::parse("ftp://example.com/x").is_err());

        let credentials = suite_credentials();
        let mut request = RequestBuilder::get("https://example.amazonaws.com/")
            .header("My-Header1", "value2")
            .header("my-header1", "value1")
            .build();
        let canonical = Signer::new(&credentials, "us-east-1", "service")
            .content_sha256_header(false)
            .canonical_request(&request, SUITE_TIME_MS)
            .unwrap();
        assert!(
            canonical.contains("\nmy-header1:value2,value1\n"),
            "{canonical}"
        );
        let err = Signer::new(&credentials, "", "service")
            .sign(&mut request, SUITE_TIME_MS)
            .unwrap_err();
        assert_eq!(err.status, 400);
    }

    #[test]
    fn dates_and_hex() {
        assert_eq!(amz_date(0), "19700101T000000Z");
        assert_eq!(amz_date(SUITE_TIME_MS), "20150830T123600Z");
        assert_eq!(amz_date(951_782_400_000), "20000229T000000Z");
        assert_eq!(amz_date(4_102_444_799_999), "20991231T235959Z");
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
        // The signing key of AWS's documentation example.
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "iam",
        );
        assert_eq!(
            hex(&key),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let credentials = Credentials::new("AKIDSECRET", "VERYSECRET", Some("TOKENSECRET"));
        let shown = format!("{credentials:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
    }
}
