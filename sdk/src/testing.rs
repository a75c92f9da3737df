//! Helpers for plugins' native unit tests: endpoints, canned responses,
//! request inspection, and stream bodies fed split at every byte.
//!
//! ```
//! use portico_sdk::openai_compat::OpenAiCompat;
//! use portico_sdk::testing;
//!
//! let compat = OpenAiCompat::new().default_base_url("https://api.example.com/v1");
//! let body = b"data: {\"id\":\"a\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
//! let events = testing::decode_split_everywhere(|| compat.stream_decoder(), body).unwrap();
//! assert_eq!(events.len(), 3); // start, text, finish
//! ```
//!
//! The helpers panic with a clear message on misuse (they are for tests).

use portico_model::plugin::{
    Endpoint, FieldKind, HttpRequest, HttpResponse, ModelInfo, ProviderInfo,
};
use portico_model::{ProviderError, StreamEvent};
use serde_json::Value;

use crate::{Provider, StreamDecoder, catalog};

/// An endpoint named `name` for upstream model `model` with `config`.
pub fn endpoint(name: &str, model: &str, config: &[(&str, &str)]) -> Endpoint {
    Endpoint {
        name: name.to_string(),
        model: model.to_string(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// First value of a request header (case-insensitive name).
pub fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The request body as JSON.
///
/// # Panics
/// When the body is not JSON.
pub fn json_body(request: &HttpRequest) -> Value {
    serde_json::from_slice(&request.body)
        .unwrap_or_else(|e| panic!("request body is not JSON ({e})"))
}

/// A response with exactly `headers` (names lower-cased, as the host
/// delivers them) and no others, for bodies that are not plain JSON.
pub fn response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect(),
        body: body.as_bytes().to_vec(),
    }
}

/// A response with a JSON content type (plus `headers`).
pub fn json_response(status: u16, headers: &[(&str, &str)], body: &str) -> HttpResponse {
    let mut response = response(status, headers, body);
    response.headers.insert(
        0,
        ("content-type".to_string(), "application/json".to_string()),
    );
    response
}

/// Decodes `body` whole, then again split at every byte boundary (two
/// pushes), then byte by byte; returns the events (or the first error)
/// after checking that every way of splitting gives exactly the same.
///
/// # Panics
/// When two ways of splitting disagree.
pub fn decode_split_everywhere<D: StreamDecoder>(
    new_decoder: impl FnMut() -> D,
    body: &[u8],
) -> Result<Vec<StreamEvent>, ProviderError> {
    decode_split_everywhere_normalized(new_decoder, body, |events| events)
}

/// [`decode_split_everywhere`] for decoders that make up values (e.g.
/// random tool-call ids): `normalize` replaces them before comparing, and
/// the normalized events are returned.
///
/// # Panics
/// When two ways of splitting disagree after normalizing.
pub fn decode_split_everywhere_normalized<D: StreamDecoder>(
    mut new_decoder: impl FnMut() -> D,
    body: &[u8],
    normalize: fn(Vec<StreamEvent>) -> Vec<StreamEvent>,
) -> Result<Vec<StreamEvent>, ProviderError> {
    let run = |decoder: &mut D, pieces: &[&[u8]]| -> Result<Vec<StreamEvent>, ProviderError> {
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(decoder.push(piece)?);
        }
        events.extend(decoder.finish()?);
        Ok(normalize(events))
    };
    let whole = run(&mut new_decoder(), &[body]);
    for cut in 0..=body.len() {
        let split = run(&mut new_decoder(), &[&body[..cut], &body[cut..]]);
        assert_eq!(split, whole, "body split at byte {cut} decodes differently");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let one_by_one = run(&mut new_decoder(), &bytes);
    assert_eq!(
        one_by_one, whole,
        "body fed byte by byte decodes differently"
    );
    whole
}

/// Checks that `provider`'s stream decoder for `endpoint` turns `body`
/// into exactly `expected`, whole, split at every byte boundary and fed
/// byte by byte (see [`decode_split_everywhere`]).
///
/// # Panics
/// When decoding fails or gives other events.
pub fn assert_stream_decodes_at_every_split<P: Provider>(
    provider: &P,
    endpoint: &Endpoint,
    body: &[u8],
    expected: &[StreamEvent],
) {
    let events = decode_split_everywhere(|| provider.stream_decoder(endpoint), body)
        .unwrap_or_else(|e| panic!("stream does not decode: {e:?}"));
    assert_eq!(events, expected);
}

/// The config fields of `info` as (name, kind, required, default), for one
/// `assert_eq!` against the expected list.
pub fn fields(info: &ProviderInfo) -> Vec<(&str, FieldKind, bool, Option<&str>)> {
    info.config_fields
        .iter()
        .map(|f| {
            (
                f.name.as_str(),
                f.kind,
                f.required,
                f.default_value.as_deref(),
            )
        })
        .collect()
}

/// Checks the rules every embedded catalog keeps beyond what
/// [`catalog::parse`] enforces, and returns its models for the plugin's own
/// checks: it lists each of `ids`; embedding models (and only they) give
/// their dimensions and no output limit; chat models have an output limit
/// within the context window.
///
/// # Panics
/// When a rule is broken.
pub fn assert_catalog_rules(models_toml: &str, ids: &[&str]) -> Vec<ModelInfo> {
    let models =
        catalog::parse(models_toml).unwrap_or_else(|e| panic!("catalog does not parse: {e}"));
    for id in ids {
        assert!(
            models.iter().any(|m| m.id == *id),
            "{id} missing from the catalog"
        );
    }
    for m in &models {
        let id = &m.id;
        assert_eq!(
            m.capabilities.embeddings,
            m.embedding_dimensions.is_some(),
            "{id}: embedding dimensions go with (only) embedding models"
        );
        if m.capabilities.embeddings {
            assert_eq!(
                m.max_output_tokens, 0,
                "{id}: an embedding model has no output limit"
            );
        } else {
            assert!(
                m.max_output_tokens > 0 && m.max_output_tokens <= m.context_window,
                "{id}: output limit outside the context window"
            );
        }
    }
    models
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_compat::OpenAiCompat;

    #[test]
    fn helpers() {
        let ep = endpoint("e", "m", &[("api_key", "k")]);
        assert_eq!((ep.name.as_str(), ep.get("api_key")), ("e", Some("k")));
        let request = crate::http::RequestBuilder::post("https://x")
            .header("X-A", "1")
            .json(&serde_json::json!({"a": 1}))
            .build();
        assert_eq!(header(&request, "x-a"), Some("1"));
        assert_eq!(json_body(&request)["a"], 1);
        let response = json_response(429, &[("Retry-After", "2")], "{}");
        assert_eq!(response.header("retry-after"), Some("2"));
        assert_eq!(response.header("content-type"), Some("application/json"));
        let raw = super::response(200, &[("X-B", "3")], "x");
        assert_eq!(raw.headers, vec![("x-b".to_string(), "3".to_string())]);
        assert_eq!(raw.body, b"x");

        let compat = OpenAiCompat::new();
        let err = decode_split_everywhere(
            || compat.stream_decoder(),
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n",
        )
        .unwrap_err();
        assert_eq!(err.kind, portico_model::ErrorKind::Upstream);
    }

    #[test]
    fn catalog_rules() {
        let models = assert_catalog_rules(
            "[[models]]\nid = \"chat\"\ndisplay_name = \"C\"\ninput_price_per_mtok = 1.0\ncontext_window = 100\nmax_output_tokens = 10\n\n[[models]]\nid = \"embed\"\ndisplay_name = \"E\"\ninput_price_per_mtok = 0.1\ncontext_window = 100\nembedding_dimensions = 8\ncapabilities = [\"embeddings\"]\n",
            &["chat", "embed"],
        );
        assert_eq!(models.len(), 2);
        let broken = std::panic::catch_unwind(|| {
            assert_catalog_rules(
                "[[models]]\nid = \"chat\"\ndisplay_name = \"C\"\ninput_price_per_mtok = 1.0\ncontext_window = 100\nmax_output_tokens = 200\n",
                &[],
            )
        });
        assert!(broken.is_err());
        let missing = std::panic::catch_unwind(|| {
            assert_catalog_rules(
                "[[models]]\nid = \"chat\"\ndisplay_name = \"C\"\ninput_price_per_mtok = 1.0\ncontext_window = 100\nmax_output_tokens = 10\n",
                &["other"],
            )
        });
        assert!(missing.is_err());
    }
}
