//! Helpers shared by the wire formats (and re-exported by the plugin SDK):
//! upstream error messages, `Retry-After`, base64 float vectors, ids.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::Value;

use crate::ProviderError;

/// A JSON object of typed fields borrowed from a request, written with
/// its keys in sorted order, as a `Value` object writes them: a request
/// body written straight from it is byte for byte its `Value` form, without
/// building the tree (for a chat of a few KB, the tree and its copies of
/// every message cost about as much as writing it).
#[derive(Debug)]
pub(crate) struct SortedObject<'a, F> {
    /// Sorted by key, each key once.
    fields: Vec<(&'a str, F)>,
}

impl<'a, F: Serialize> SortedObject<'a, F> {
    /// From distinct keys, in any order.
    pub(crate) fn new(mut fields: Vec<(&'a str, F)>) -> Self {
        fields.sort_unstable_by(|a, b| a.0.cmp(b.0));
        SortedObject { fields }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        self.fields.retain(|(k, _)| *k != key);
    }

    pub(crate) fn to_value(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|(key, field)| {
                    let value = serde_json::to_value(field).unwrap_or(Value::Null);
                    (key.to_string(), value)
                })
                .collect(),
        )
    }
}

/// The JSON schema an OpenAI-style `response_format` asks the answer to
/// follow (`{"type": "json_schema", "json_schema": {name, description,
/// schema}}`); `None` for plain JSON or text, or without an object schema.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct SchemaFormat<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub schema: &'a Value,
}

impl<'a> SchemaFormat<'a> {
    pub(crate) fn of(response_format: Option<&'a Value>) -> Option<Self> {
        let format = response_format?;
        if format.get("type").and_then(Value::as_str) != Some("json_schema") {
            return None;
        }
        let json_schema = format.get("json_schema")?;
        Some(SchemaFormat {
            name: json_schema.get("name").and_then(Value::as_str),
            description: json_schema.get("description").and_then(Value::as_str),
            schema: json_schema.get("schema").filter(|s| s.is_object())?,
        })
    }
}

/// Appends the `extra` fields whose key `fields` does not have yet: a field
/// the translation set wins over a client extra of the same name.
pub(crate) fn push_missing<'a, F>(
    fields: &mut Vec<(&'a str, F)>,
    extra: impl IntoIterator<Item = (&'a str, F)>,
) {
    let set = fields.len();
    for (key, field) in extra {
        if !fields[..set].iter().any(|(k, _)| *k == key) {
            fields.push((key, field));
        }
    }
}

impl<F: Serialize> Serialize for SortedObject<'_, F> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.fields.len()))?;
        for (key, field) in &self.fields {
            map.serialize_entry(key, field)?;
        }
        map.end()
    }
}

/// Longest upstream text quoted in an error message.
const MAX_QUOTED_CHARS: usize = 300;

/// Milliseconds since the Unix epoch, from the system clock.
pub fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// First value of a header, by case-insensitive name.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// How long the upstream asks us to wait, in milliseconds: `retry-after-ms`
/// (OpenAI, Azure) wins over `retry-after`, which is either delay seconds
/// (possibly fractional) or an HTTP date, measured against `now_ms`.
pub fn retry_after_ms(headers: &[(String, String)], now_ms: u64) -> Option<u64> {
    if let Some(ms) = header(headers, "retry-after-ms").and_then(parse_non_negative) {
        return Some(ms.round() as u64);
    }
    let value = header(headers, "retry-after")?;
    if let Some(seconds) = parse_non_negative(value) {
        return Some((seconds * 1000.0).round() as u64);
    }
    let date = httpdate::parse_http_date(value).ok()?;
    let date_ms = date.duration_since(UNIX_EPOCH).ok()?.as_millis() as u64;
    Some(date_ms.saturating_sub(now_ms))
}

fn parse_non_negative(value: &str) -> Option<f64> {
    value
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
}

/// The human message of an upstream error body: the common JSON shapes
/// (`{"error": {"message"}}`, `{"error": "…"}`, `{"message"}`, `{"detail"}`),
/// otherwise the (truncated) body text. `None` for an empty body.
pub fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(value) = serde_json::from_slice::<Value>(body)
        && let Some(message) = json_error_message(&value)
    {
        return Some(message);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        None
    } else {
        Some(truncate(text, MAX_QUOTED_CHARS))
    }
}

/// The message of a JSON error document, if it has a known shape.
pub fn json_error_message(value: &Value) -> Option<String> {
    let candidates = [
        value.pointer("/error/message"),
        value.get("error").filter(|v| v.is_string()),
        value.get("message"),
        value.get("detail"),
        value.get("error_description"),
    ];
    candidates
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::trim)
        .find(|m| !m.is_empty())
        .map(|m| truncate(m, MAX_QUOTED_CHARS * 4))
}

/// An upstream error response as a typed error: kind from the status,
/// message from the body, `Retry-After` honoured. Statuses below 400 are
/// not errors the upstream meant, so they become a 502.
pub fn upstream_error(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    now_ms: u64,
) -> ProviderError {
    let message = error_message(body);
    if status < 400 {
        let detail = message.map(|m| format!(": {m}")).unwrap_or_default();
        return ProviderError::bad_upstream(format!(
            "upstream answered HTTP {status} unexpectedly{detail}"
        ));
    }
    let message = match message {
        Some(m) if is_json(body) => m,
        Some(m) => format!("upstream returned HTTP {status}: {m}"),
        None => format!("upstream returned HTTP {status} with an empty body"),
    };
    ProviderError::from_upstream(status, message, retry_after_ms(headers, now_ms))
}

fn is_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

/// `text` cut to at most `max` characters (on a char boundary), with an
/// ellipsis when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Standard base64 of the little-endian `f32` bytes, the encoding OpenAI's
/// `encoding_format: "base64"` uses (and its SDKs decode).
pub fn f32s_to_base64(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

/// Inverse of [`f32s_to_base64`].
pub fn base64_to_f32s(data: &str) -> Result<Vec<f32>, String> {
    let bytes = STANDARD
        .decode(data.trim())
        .map_err(|e| format!("invalid base64: {e}"))?;
    if bytes.len() % 4 != 0 {
        return Err(format!(
            "{} bytes is not a whole number of f32 values",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A JSON number for an `f32` that prints as the shortest decimal that
/// round-trips to the same `f32` (`0.1`, not `0.10000000149011612`), which
/// keeps embedding payloads small. Non-finite values become `null`.
pub fn f32_json(value: f32) -> Value {
    if !value.is_finite() {
        return Value::Null;
    }
    // `f32` Display is the shortest round-trip representation.
    let shortest = value.to_string().parse::<f64>().unwrap_or(f64::from(value));
    serde_json::Number::from_f64(shortest)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A fresh random id: `prefix` followed by 24 alphanumeric characters.
pub fn random_id(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    // Each RandomState gets fresh OS-seeded SipHash keys: good enough for
    // unique ids without pulling a RNG crate into every plugin.
    for _ in 0..2 {
        let mut bits = RandomState::new().build_hasher().finish();
        for _ in 0..12 {
            id.push(ALPHABET[(bits % 62) as usize] as char);
            bits /= 62;
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn retry_after_variants() {
        let now = 1_700_000_000_000;
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "7")]), now),
            Some(7000)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("Retry-After", "1.5")]), now),
            Some(1500)
        );
        assert_eq!(
            retry_after_ms(
                &headers(&[("retry-after-ms", "250"), ("retry-after", "9")]),
                now
            ),
            Some(250)
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "soon")]), now),
            None
        );
        assert_eq!(
            retry_after_ms(&headers(&[("retry-after", "-3")]), now),
            None
        );
        assert_eq!(retry_after_ms(&headers(&[]), now), None);
        // 1_700_000_000 s is Tue, 14 Nov 2023 22:13:20 GMT.
        let date = headers(&[("retry-after", "Tue, 14 Nov 2023 22:13:30 GMT")]);
        assert_eq!(retry_after_ms(&date, now), Some(10_000));
        assert_eq!(retry_after_ms(&date, now + 60_000), Some(0));
    }

    #[test]
    fn error_messages() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad key","type":"x"}}"#).as_deref(),
            Some("bad key")
        );
        assert_eq!(
            error_message(br#"{"error":"nope"}"#).as_deref(),
            Some("nope")
        );
        assert_eq!(
            error_message(br#"{"detail":"Not Found"}"#).as_deref(),
            Some("Not Found")
        );
        assert_eq!(error_message(b"  \n").as_deref(), None);
        let long = "x".repeat(1000);
        let message = error_message(long.as_bytes()).unwrap_or_default();
        assert_eq!(message.chars().count(), MAX_QUOTED_CHARS + 1);
        assert!(message.ends_with('…'));
        // Invalid UTF-8 is replaced, not fatal.
        assert!(error_message(&[0xff, b'a']).is_some_and(|m| m.ends_with('a')));
    }

    #[test]
    fn upstream_errors() {
        let err = upstream_error(502, &[], b"<html>bad gateway</html>", 0);
        assert_eq!(err.status, 502);
        assert_eq!(
            err.message,
            "upstream returned HTTP 502: <html>bad gateway</html>"
        );
        let err = upstream_error(200, &[], b"", 0);
        assert_eq!((err.kind, err.status), (crate::ErrorKind::Upstream, 502));
        let err = upstream_error(503, &[], b"", 0);
        assert_eq!(err.message, "upstream returned HTTP 503 with an empty body");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("héllo", 5), "héllo");
    }

    #[test]
    fn base64_round_trip() {
        let values = [0.0f32, -1.5, 0.1, f32::MAX, f32::MIN_POSITIVE, 123.456];
        let encoded = f32s_to_base64(&values);
        assert_eq!(base64_to_f32s(&encoded), Ok(values.to_vec()));
        // Known vector: 1.0f32 is 00 00 80 3f little-endian.
        assert_eq!(f32s_to_base64(&[1.0]), "AACAPw==");
        assert!(base64_to_f32s("AACA").is_err());
        assert!(base64_to_f32s("!!").is_err());
    }

    #[test]
    fn f32_json_is_short_and_exact() {
        assert_eq!(f32_json(0.1).to_string(), "0.1");
        assert_eq!(f32_json(-0.006929283).to_string(), "-0.006929283");
        assert_eq!(f32_json(f32::NAN), Value::Null);
        let back = f32_json(0.1).as_f64().map(|v| v as f32);
        assert_eq!(back, Some(0.1f32));
    }

    #[test]
    fn random_ids_are_distinct() {
        let a = random_id("chatcmpl-");
        let b = random_id("chatcmpl-");
        assert!(a.starts_with("chatcmpl-") && a.len() == 9 + 24);
        assert_ne!(a, b);
    }
}
