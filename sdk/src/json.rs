//! JSON helpers for upstream bodies.

use portico_model::ProviderError;
use portico_model::formats::common::truncate;
use portico_model::plugin::HttpRequest;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::http::RequestBuilder;

/// A `POST` of `body` as JSON to `url` with `headers`.
pub fn post_json(url: impl Into<String>, headers: &[(&str, &str)], body: &Value) -> HttpRequest {
    headers
        .iter()
        .fold(RequestBuilder::post(url), |builder, (name, value)| {
            builder.header(*name, *value)
        })
        .json(body)
        .build()
}

/// Deserializes an upstream body; failures are upstream errors (502) that
/// quote the start of the body.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(body).map_err(|e| {
        ProviderError::bad_upstream(format!(
            "upstream answered unreadable JSON ({e}): {}",
            truncate(&String::from_utf8_lossy(body), 200)
        ))
    })
}

/// [`parse`] into a [`Value`].
pub fn parse_value(body: &[u8]) -> Result<Value, ProviderError> {
    parse(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn posts_and_parses() {
        let request = post_json("https://h/x", &[("api-key", "k")], &json!({"a": 1}));
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.headers,
            vec![
                ("api-key".to_string(), "k".to_string()),
                ("content-type".to_string(), "application/json".to_string())
            ]
        );
        assert_eq!(parse_value(&request.body).unwrap(), json!({"a": 1}));
        let err = parse::<Value>(b"<html>oops").unwrap_err();
        assert_eq!(err.status, 502);
        assert!(err.message.ends_with("<html>oops"));
    }
}
