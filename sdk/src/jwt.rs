//! JSON Web Tokens signed with RS256, and the OAuth 2.0 JWT-bearer grant
//! (RFC 7523) that Google Cloud service accounts use: sign an assertion with
//! the service account's private key, exchange it for an access token
//! through the host, and cache the token until shortly before it expires.
//!
//! ```no_run
//! use portico_sdk::jwt::{CLOUD_PLATFORM_SCOPE, ServiceAccount};
//! # fn key_file() -> &'static str { "{}" }
//! let account = ServiceAccount::from_json(key_file()).map_err(|e| e.to_string())?;
//! let token = account.access_token(CLOUD_PLATFORM_SCOPE)?; // cached by the host
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The building blocks are pure (the clock is a parameter), so they are
//! unit-tested natively; [`ServiceAccount::access_token`] adds the host's
//! clock, `http-fetch` and cache. Signing is PKCS#1 v1.5, which is
//! deterministic: no random numbers are needed inside the sandbox. (It is
//! not blinded; the signed claims are not attacker-chosen and tokens are
//! cached, so a signature is made about once an hour per key.)

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portico_model::plugin::{HttpRequest, HttpResponse};
use portico_model::{ErrorKind, ProviderError};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::{Digest, Sha256};
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use serde_json::{Map, Value, json};

use crate::errors::truncate;
use crate::host;
use crate::http::{RequestBuilder, encode_component};

/// Google's OAuth 2.0 token endpoint, the `token_uri` of service-account
/// key files.
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The scope for Google Cloud APIs (Vertex AI among them).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// `grant_type` of the JWT-bearer grant (RFC 7523).
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Lifetime of an assertion; Google accepts at most one hour.
const ASSERTION_LIFETIME_S: u64 = 3600;

/// Why a token could not be built. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the private key is not a PEM-encoded RSA key (PKCS#8 or PKCS#1)")]
    InvalidKey,
    #[error("RS256 signing failed")]
    Signing,
    #[error("not a usable service account key file: {0}")]
    InvalidServiceAccount(String),
}

impl From<JwtError> for ProviderError {
    fn from(error: JwtError) -> Self {
        match error {
            JwtError::Signing => ProviderError::internal(error.to_string()),
            _ => ProviderError::invalid_request(error.to_string()),
        }
    }
}

/// An RSA private key for RS256 signatures.
pub struct Rs256Key {
    key: RsaPrivateKey,
}

impl fmt::Debug for Rs256Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rs256Key(..)")
    }
}

impl Rs256Key {
    /// A key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`, what Google key files
    /// hold) or PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, JwtError> {
        let pem = pem.trim();
        RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map(|key| Rs256Key { key })
            .map_err(|_| JwtError::InvalidKey)
    }

    /// The RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, JwtError> {
        let digest = Sha256::digest(message);
        self.key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .map_err(|_| JwtError::Signing)
    }

    /// The DER `SubjectPublicKeyInfo` of the public half (for verifiers).
    pub fn public_key_der(&self) -> Result<Vec<u8>, JwtError> {
        use rsa::pkcs8::EncodePublicKey;
        self.key
            .to_public_key()
            .to_public_key_der()
            .map(|doc| doc.as_bytes().to_vec())
            .map_err(|_| JwtError::InvalidKey)
    }
}

/// A compact JWS `header.claims.signature` with header
/// `{"alg":"RS256","typ":"JWT"}` (plus `kid` when given).
pub fn encode_rs256(key: &Rs256Key, kid: Option<&str>, claims: &Value) -> Result<String, JwtError> {
    let mut header = Map::new();
    header.insert("alg".into(), json!("RS256"));
    header.insert("typ".into(), json!("JWT"));
    if let Some(kid) = kid.filter(|k| !k.is_empty()) {
        header.insert("kid".into(), json!(kid));
    }
    let mut token = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(Value::Object(header).to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}

/// An access token from a token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub access_token: String,
    /// Seconds the token stays valid from when it was issued.
    pub expires_in: u64,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("access_token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

impl AccessToken {
    /// How long to cache the token: its lifetime minus a margin (a tenth,
    /// between 30 s and 5 min) so a cached token never expires in flight.
    pub fn cache_ttl_ms(&self) -> u64 {
        let margin = (self.expires_in / 10).clamp(30, 300);
        self.expires_in.saturating_sub(margin).saturating_mul(1000)
    }
}

/// The fields of a Google service-account key file (the JSON downloaded
/// from IAM) needed for the JWT-bearer grant.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    pub client_email: String,
    pub private_key_id: String,
    /// PEM; never log it.
    pub private_key: String,
    pub token_uri: String,
    pub project_id: String,
}

impl fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .field("private_key", &"[redacted]")
            .field("token_uri", &self.token_uri)
            .field("project_id", &self.project_id)
            .finish()
    }
}

impl ServiceAccount {
    /// Reads a key file. Fields are picked one by one (rather than with a
    /// typed deserializer) so no error message can quote a value.
    pub fn from_json(text: &str) -> Result<Self, JwtError> {
        let invalid = |why: &str| JwtError::InvalidServiceAccount(why.to_string());
        let value: Value =
            serde_json::from_str(text.trim()).map_err(|_| invalid("it is not valid JSON"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| invalid("it is not a JSON object"))?;
        let field = |name: &str| obj.get(name).and_then(Value::as_str).map(str::trim);
        if let Some(kind) = field("type")
            && kind != "service_account"
        {
            return Err(JwtError::InvalidServiceAccount(format!(
                "its type is '{}', expected 'service_account'",
                truncate(kind, 40)
            )));
        }
        let required = |name: &str| {
            field(name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .ok_or_else(|| JwtError::InvalidServiceAccount(format!("'{name}' is missing")))
        };
        let account = ServiceAccount {
            client_email: required("client_email")?,
            private_key: required("private_key")?,
            private_key_id: field("private_key_id").unwrap_or_default().to_string(),
            token_uri: field("token_uri")
                .filter(|v| !v.is_empty())
                .unwrap_or(GOOGLE_TOKEN_URI)
                .to_string(),
            project_id: field("project_id").unwrap_or_default().to_string(),
        };
        check_token_uri(&account.token_uri)?;
        Ok(account)
    }

    /// The signed assertion for `scope`, issued at `now_unix_s`.
    pub fn assertion(&self, scope: &str, now_unix_s: u64) -> Result<String, JwtError> {
        let key = Rs256Key::from_pem(&self.private_key)?;
        let claims = json!({
            "iss": self.client_email,
            "scope": scope,
            "aud": self.token_uri,
            "iat": now_unix_s,
            "exp": now_unix_s + ASSERTION_LIFETIME_S,
        });
        encode_rs256(&key, Some(&self.private_key_id), &claims)
    }

    /// The token request: a form POST of the JWT-bearer grant to
    /// `token_uri`.
    pub fn token_request(&self, assertion: &str) -> HttpRequest {
        let body = format!(
            "grant_type={}&assertion={}",
            encode_component(JWT_BEARER_GRANT),
            encode_component(assertion)
        );
        RequestBuilder::post(self.token_uri.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .build()
    }

    /// The host-cache key of this account's tokens for `scope`. The key
    /// material only enters through a SHA-256 digest: a token is reused by
    /// endpoints holding the same key, and the cache never sees the key.
    pub fn cache_key(&self, scope: &str) -> String {
        let mut hasher = Sha256::new();
        for part in [
            &self.client_email,
            &self.token_uri,
            scope,
            &self.private_key_id,
            &self.private_key,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        let digest = hasher.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("oauth-token:{hex}")
    }

    /// An access token for `scope`: the cached one while it is fresh, else
    /// a new one from `token_uri` (through the host's `http-fetch`, which
    /// must allow that host), cached for its lifetime minus a margin.
    pub fn access_token(&self, scope: &str) -> Result<String, ProviderError> {
        let key = self.cache_key(scope);
        if let Some(token) = host::cache_get(&key)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .filter(|t| !t.is_empty())
        {
            return Ok(token);
        }
        let assertion = self.assertion(scope, host::now_unix_ms() / 1000)?;
        let response = host::http_fetch(&self.token_request(&assertion)).map_err(|e| {
            ProviderError::bad_upstream(format!(
                "cannot reach the service account token endpoint: {e}"
            ))
        })?;
        let token = parse_token_response(&response)?;
        host::cache_set(&key, token.access_token.as_bytes(), token.cache_ttl_ms());
        host::log(
            host::Level::Debug,
            &format!(
                "obtained an OAuth access token for a service account (valid {} s)",
                token.expires_in
            ),
        );
        Ok(token.access_token)
    }

    /// Drops the cached token for `scope`, e.g. after the API rejected it
    /// as expired or revoked, so the next call fetches a new one.
    pub fn forget_token(&self, scope: &str) {
        host::cache_set(&self.cache_key(scope), &[], 0);
    }
}

/// The token endpoint must use https, except on loopback (local tests):
/// the assertion is a credential.
fn check_token_uri(uri: &str) -> Result<(), JwtError> {
    let lower = uri.to_ascii_lowercase();
    let host_of = |rest: &str| -> String {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_string(),
            None => authority.split(':').next().unwrap_or_default().to_string(),
        }
    };
    let ok = if let Some(rest) = lower.strip_prefix("https://") {
        !host_of(rest).is_empty()
    } else if let Some(rest) = lower.strip_prefix("http://") {
        matches!(host_of(rest).as_str(), "127.0.0.1" | "localhost" | "::1")
    } else {
        false
    };
    if ok && !uri.contains(char::is_whitespace) {
        Ok(())
    } else {
        Err(JwtError::InvalidServiceAccount(
            "'token_uri' must be an https URL".into(),
        ))
    }
}

/// A token endpoint's answer: the token, or a typed error (`invalid_grant`
/// and friends are authentication failures).
pub fn parse_token_response(response: &HttpResponse) -> Result<AccessToken, ProviderError> {
    let body: Option<Value> = serde_json::from_slice(&response.body).ok();
    let text = |key: &str| {
        body.as_ref()
            .and_then(|b| b.get(key))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if !(200..300).contains(&response.status) {
        let error = text("error");
        let description = text("error_description");
        let detail = match (error, description) {
            ("", "") => truncate(String::from_utf8_lossy(&response.body).trim(), 200),
            (e, "") => e.to_string(),
            ("", d) => d.to_string(),
            (e, d) => format!("{e}: {d}"),
        };
        let kind = match error {
            "invalid_grant" | "invalid_client" | "unauthorized_client" | "invalid_scope" => {
                ErrorKind::Authentication
            }
            "access_denied" => ErrorKind::Permission,
            _ => ErrorKind::from_status(response.status),
        };
        let message = if detail.is_empty() {
            format!(
                "service account token exchange failed (HTTP {})",
                response.status
            )
        } else {
            format!(
                "service account token exchange failed (HTTP {}): {detail}",
                response.status
            )
        };
        return Err(ProviderError::upstream_with_kind(
            kind,
            kind.default_status(),
            message,
            crate::errors::retry_after_ms(&response.headers),
        ));
    }
    let Some(body) = body.as_ref() else {
        return Err(ProviderError::bad_upstream(
            "the token endpoint answered unreadable JSON",
        ));
    };
    let access_token = text("access_token");
    if access_token.is_empty() {
        return Err(ProviderError::bad_upstream(
            "the token endpoint answered without an access_token",
        ));
    }
    let token_type = text("token_type");
    if !token_type.is_empty() && !token_type.eq_ignore_ascii_case("bearer") {
        return Err(ProviderError::bad_upstream(format!(
            "the token endpoint issued a '{}' token, expected Bearer",
            truncate(token_type, 40)
        )));
    }
    // Some endpoints send expires_in as a string; without it, assume the
    // usual hour.
    let expires_in = match body.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(ASSERTION_LIFETIME_S);
    Ok(AccessToken {
        access_token: access_token.to_string(),
        expires_in,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::RsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;

    // A throwaway 2048-bit key made for these tests with
    // `openssl genpkey -algorithm RSA`; it protects nothing.
    const TEST_KEY_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDDPu3fhV5USvrD
Qb9kE/i+0obHMNGrV/EUy5+yG6PzUPIrQ9/Unj6hbMkNuOnzXP11YRlBrH0Wuf6t
Yv5gST8RtUbJObfylw6HE93jYjL4+W6cGhmeWIj5IK4S5pAp5yvPLolB7AVqTDN1
b84URlkqo+21XKmqOXpzcW62XReE/5Kk4mhE7aftHPgpvd9HGdnCij13BdaD2Pbj
oX+SZjw8D6kIjkvElI7q2ox+fBWB8azjl8fmapXdCjstenNMwS6B4/vt3qg/Z9YR
W0DIt6wgVVmFcd2/PSU3MRq9MX8dgPiwZ8Ddp1JZhcwEwMiUYRG0IZ567FHwqynm
slZB1yYbAgMBAAECggEAAbDQT4Cwpes2S62MkjnIDCL3js8B6clrqYHv4pNxsoAv
cKd4TzeFlFFEVm2U/Qn/md4a4WI0fRdkOK0kRcIsnSMkN0bcLGoZcpr972OgzF4g
kpJ5SVE78mhRiZFcizhYvUUKZDs+esKpKWmr76oCSKe9vbXNNE+mG0zOqB6bPwgR
ph5yySBRFHRZw+i5UimPFyiQquA5omv/aNMp8jqSf+8FqUgRJpOVVn/aVnbG7cAj
3MJYizI7QeBS5P1/1UcwBWmzQT1mzK3T8MzwA8kt8wVAzYblK+nl+IV3J62MYHUu
YFQaLmmQUyzKUCQQYTO+1DJEhvtorNqix1nbE8l91QKBgQDj3iabkxKjTUZE6xuI
CMQ7cw/oATY6m0Tv9VQJDTWqhLFilsSpnjgSLgQyB7PedPzG/+tNtKq4o4WGCBe4
9JoorjdFI749ZyW6eRlTBLkXnkIPQZGN+buFjCjQHt4WxhKaIK+iIuKbKgcbjDRt
6moreaGBwXooAUCcaUDS5R05DwKBgQDbWb+tTz5klivb88GWrK7SikbC4P74UWZQ
/dUfR9TkfZ4QLORHaevAI9PyHd0DnNOw7i5CA2MvDQxd8RsVHbm4pKkHkFCq3WNv
cRERTURlDV/U2jqq+u4qawE4SMAZK6XuAduG7Wgh/SUmsMQOTskZOq6zR5JYuyx3
ZFi8IvRKNQKBgBBj6E8EczC/3DAU4TQVvVexXRGJFMd+Z6UC9np4MsYDKWc4BQlW
Uh4spSycFToJHC2MNvat6iHB0VbkuiAZqAUJEvysJ4DvLG2PTF0GV/H09jd2teuK
bQycGktuDPeCY9AmTbvR2o7ipQQ8P4EwfVaHNzDII+tAu88EWx9QT5vNAoGAUp3f
H/u02FXndxS8WW/4+Lu0IzpzTjv6eY7hcsKvYNAfdKAz6uHuNZRJA+xTjkTHRuCu
85YrCVG00r05Ih7sEKuULpEgkPqJtTO05ftgQ19iNN1tM3EHu1pKP1THZbOW76or
cQqCKisajxQNBAaQn7wGiOfwKxN0kBNviIzxzfECgYEAoGlCVsi6I8KnB+BRx1og
Y3/Y5VW54IikPCWebRyGjm/UKHLShmjgfx90IUJ927qlbZJJBDVCX9seFEr2hX6X
GLXfxrAYLBaKf1wsRJwNVW4kvvjo7WXjVCiI4twv9j3qERPu6FvgW2socGcS/SYB
e49lhmK6SVhupAOQqHc6LIk=
-----END PRIVATE KEY-----
";

    /// `openssl dgst -sha256 -sign key.pem` of the signing input
    /// `base64url({"alg":"RS256","kid":"k1","typ":"JWT"}).base64url({"hello":"world"})`,
    /// base64url-encoded: an independent implementation's answer.
    const OPENSSL_SIGNATURE: &str = "Kvw276cfBs6kYI_FyZhxEsI_MpOrcrLKr8ivD06I164xhO0WljaDHiGieJXjr7dRWTGSzSnISbN08ExCQgGD6hHW3vjS2DSk9lt6nTn7o2289P5xjIAPNKHboAoIOwZgvknsNdCl8jsLYFSlUk3k5sogpq_OmJKj-ivNn39ZhxFm3aiD2NZcJWFD0pfssYmfPoTvbfCvSEXHG2GdOFw2Dv0V4I9e4MMcvFXwAgwaRJmzRDy0NMqmuUTtNVemRx7gTb_yTuzNBVGT2lgzMp3vJLAIBuxltOpCfSNj9ro-Xw8V7uUKWu6b5glMNA4gBlNM7sSi1ri75CcPxfc0TduOEQ";

    fn key_file(extra: &[(&str, &str)]) -> String {
        let mut obj = json!({
            "type": "service_account",
            "project_id": "acme-prod",
            "private_key_id": "0123abcd",
            "private_key": TEST_KEY_PKCS8,
            "client_email": "gateway@acme-prod.iam.gserviceaccount.com",
            "client_id": "1234567890",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": "https://oauth2.googleapis.com/token",
            "universe_domain": "googleapis.com",
        });
        for (k, v) in extra {
            obj[*k] = json!(v);
        }
        obj.to_string()
    }

    fn decode_part(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn rs256_matches_openssl() {
        let key = Rs256Key::from_pem(TEST_KEY_PKCS8).unwrap();
        let token = encode_rs256(&key, Some("k1"), &json!({"hello": "world"})).unwrap();
        let (input, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            input,
            "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIiwidHlwIjoiSldUIn0.eyJoZWxsbyI6IndvcmxkIn0"
        );
        assert_eq!(signature, OPENSSL_SIGNATURE);
        assert_eq!(format!("{key:?}"), "Rs256Key(..)");
        // Without a kid the header has none.
        let token = encode_rs256(&key, None, &json!({})).unwrap();
        assert_eq!(
            decode_part(token.split('.').next().unwrap()),
            json!({"alg": "RS256", "typ": "JWT"})
        );
    }

    #[test]
    fn pkcs1_keys_and_bad_keys() {
        // The same key as PKCS#1, re-encoded here from the parsed PKCS#8.
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let pkcs8 = RsaPrivateKey::from_pkcs8_pem(TEST_KEY_PKCS8).unwrap();
        let pkcs1 = pkcs8.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let a = Rs256Key::from_pem(&pkcs1).unwrap().sign(b"m").unwrap();
        let b = Rs256Key::from_pem(TEST_KEY_PKCS8)
            .unwrap()
            .sign(b"m")
            .unwrap();
        assert_eq!(a, b);

        assert_eq!(
            Rs256Key::from_pem("not a key").unwrap_err(),
            JwtError::InvalidKey
        );
        let truncated = &TEST_KEY_PKCS8[..400];
        assert_eq!(
            Rs256Key::from_pem(truncated).unwrap_err(),
            JwtError::InvalidKey
        );
    }

    #[test]
    fn service_account_assertion() {
        let account = ServiceAccount::from_json(&key_file(&[])).unwrap();
        assert_eq!(
            account.client_email,
            "gateway@acme-prod.iam.gserviceaccount.com"
        );
        assert_eq!(account.project_id, "acme-prod");
        let debug = format!("{account:?}");
        assert!(!debug.contains("MIIE") && debug.contains("[redacted]"));

        let now = 1_750_000_000;
        let jwt = account.assertion(CLOUD_PLATFORM_SCOPE, now).unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            decode_part(parts[0]),
            json!({"alg": "RS256", "typ": "JWT", "kid": "0123abcd"})
        );
        assert_eq!(
            decode_part(parts[1]),
            json!({
                "iss": "gateway@acme-prod.iam.gserviceaccount.com",
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "aud": "https://oauth2.googleapis.com/token",
                "iat": now,
                "exp": now + 3600,
            })
        );
        // Deterministic, and verifiable with the public key alone.
        assert_eq!(jwt, account.assertion(CLOUD_PLATFORM_SCOPE, now).unwrap());
        let key = Rs256Key::from_pem(TEST_KEY_PKCS8).unwrap();
        let public = RsaPublicKey::from_public_key_der(&key.public_key_der().unwrap()).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        public
            .verify(
                Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(signed.as_bytes()),
                &signature,
            )
            .unwrap();
        assert!(
            public
                .verify(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(b"tampered"),
                    &signature
                )
                .is_err()
        );
    }

    #[test]
    fn service_account_file_problems() {
        let err = |text: &str| ServiceAccount::from_json(text).unwrap_err().to_string();
        assert_eq!(
            err("{oops"),
            "not a usable service account key file: it is not valid JSON"
        );
        assert!(err("[1]").contains("not a JSON object"));
        let no_email = json!({"type": "service_account", "private_key": TEST_KEY_PKCS8});
        assert!(err(&no_email.to_string()).ends_with("'client_email' is missing"));
        let user =
            json!({"type": "authorized_user", "client_id": "x", "refresh_token": "secret-refresh"});
        let message = err(&user.to_string());
        assert!(message.contains("'authorized_user'") && !message.contains("secret-refresh"));
        assert!(err(&key_file(&[("token_uri", "http://evil.example/token")])).contains("https"));
        assert!(err(&key_file(&[("token_uri", "ftp://x")])).contains("https"));

        // A key that is not a key fails at signing time, without quoting it.
        let broken = ServiceAccount::from_json(&key_file(&[(
            "private_key",
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n",
        )]))
        .unwrap();
        let error: ProviderError = broken.assertion("s", 0).unwrap_err().into();
        assert_eq!((error.kind, error.status), (ErrorKind::InvalidRequest, 400));
        assert!(!error.message.contains("c2VjcmV0"));

        // Defaults and loopback token endpoints (tests, local emulators).
        let minimal = json!({"client_email": "a@b", "private_key": TEST_KEY_PKCS8});
        let account = ServiceAccount::from_json(&minimal.to_string()).unwrap();
        assert_eq!(account.token_uri, GOOGLE_TOKEN_URI);
        for local in [
            "http://127.0.0.1:8080/token",
            "http://localhost/token",
            "http://[::1]:9/t",
        ] {
            assert!(ServiceAccount::from_json(&key_file(&[("token_uri", local)])).is_ok());
        }
    }

    #[test]
    fn token_request_is_a_form_post() {
        let account =
            ServiceAccount::from_json(&key_file(&[("token_uri", "http://127.0.0.1:9/token")]))
                .unwrap();
        let request = account.token_request("aaa.bbb.c-_c");
        assert_eq!(request.method, "POST");
        assert_eq!(request.url, "http://127.0.0.1:9/token");
        assert!(request.headers.contains(&(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string()
        )));
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.c-_c"
        );
    }

    #[test]
    fn cache_keys() {
        let account = ServiceAccount::from_json(&key_file(&[])).unwrap();
        let key = account.cache_key(CLOUD_PLATFORM_SCOPE);
        assert!(key.starts_with("oauth-token:") && key.len() == "oauth-token:".len() + 64);
        assert!(!key.contains("MIIE") && !key.contains("gateway@"));
        assert_eq!(key, account.cache_key(CLOUD_PLATFORM_SCOPE));
        assert_ne!(key, account.cache_key("other-scope"));
        let other = ServiceAccount::from_json(&key_file(&[("client_email", "x@y")])).unwrap();
        assert_ne!(key, other.cache_key(CLOUD_PLATFORM_SCOPE));
    }

    fn response(status: u16, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn token_responses() {
        let token = parse_token_response(&response(
            200,
            r#"{"access_token":"ya29.c.abc","expires_in":3599,"token_type":"Bearer"}"#,
        ))
        .unwrap();
        assert_eq!(token.access_token, "ya29.c.abc");
        assert_eq!(token.expires_in, 3599);
        assert_eq!(token.cache_ttl_ms(), 3_299_000);
        assert!(!format!("{token:?}").contains("ya29"));
        let short = AccessToken {
            access_token: "t".into(),
            expires_in: 100,
        };
        assert_eq!(short.cache_ttl_ms(), 70_000);
        let expired = AccessToken {
            access_token: "t".into(),
            expires_in: 0,
        };
        assert_eq!(expired.cache_ttl_ms(), 0);
        let string_expiry =
            parse_token_response(&response(200, r#"{"access_token":"t","expires_in":"60"}"#))
                .unwrap();
        assert_eq!(string_expiry.expires_in, 60);

        let grant = parse_token_response(&response(
            400,
            r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
        ))
        .unwrap_err();
        assert_eq!((grant.kind, grant.status), (ErrorKind::Authentication, 401));
        assert_eq!(
            grant.message,
            "service account token exchange failed (HTTP 400): invalid_grant: Invalid JWT Signature."
        );
        let mut limited = response(429, r#"{"error":"rate_limit_exceeded"}"#);
        limited.headers.push(("retry-after".into(), "3".into()));
        let limited = parse_token_response(&limited).unwrap_err();
        assert_eq!(
            (limited.kind, limited.status, limited.retry_after_ms),
            (ErrorKind::RateLimited, 429, Some(3000))
        );
        let down = parse_token_response(&response(503, "")).unwrap_err();
        assert_eq!(down.kind, ErrorKind::Overloaded);
        assert_eq!(
            down.message,
            "service account token exchange failed (HTTP 503)"
        );
        let broken = parse_token_response(&response(500, "<html>oops</html>")).unwrap_err();
        assert_eq!((broken.kind, broken.status), (ErrorKind::Upstream, 502));
        assert!(broken.message.ends_with("<html>oops</html>"));

        for bad in [
            "<html>",
            r#"{"expires_in":3600}"#,
            r#"{"access_token":"t","token_type":"MAC"}"#,
        ] {
            assert_eq!(
                parse_token_response(&response(200, bad)).unwrap_err().kind,
                ErrorKind::Upstream,
                "{bad}"
            );
        }
    }

    #[test]
    fn access_token_uses_the_cache_before_the_network() {
        // Natively http_fetch fails, so a hit proves the cache is consulted
        // first and a miss surfaces the fetch error as a 502.
        let account = ServiceAccount::from_json(&key_file(&[])).unwrap();
        let err = account.access_token("scope-a").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Upstream);
        assert!(
            err.message
                .starts_with("cannot reach the service account token endpoint")
        );
        host::cache_set(&account.cache_key("scope-a"), b"cached-token", 60_000);
        assert_eq!(account.access_token("scope-a").unwrap(), "cached-token");
        account.forget_token("scope-a");
        assert!(account.access_token("scope-a").is_err());
    }
}
