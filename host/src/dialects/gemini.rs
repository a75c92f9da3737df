//! The Gemini dialect: `/gateway/gemini/{v1beta|v1}/models/{endpoint}:{method}`.
//!
//! The reference documents `v1beta`; today's google-genai SDK defaults to
//! `v1`: both are served identically.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portico_model::formats::gemini;
use portico_model::{ErrorKind, ProviderError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    StreamItem, body_or_error, json_answer, json_error, passthrough_or, push_sse, query_or_error,
    stream_response,
};
use crate::routing::{CallContext, Caller, Gateway};
use portico_model::plugin::Dialect;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/{version}/models", get(list_models))
        .route(
            "/{version}/models/{target}",
            post(call_model).get(get_model),
        )
        .fallback(not_found)
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    alt: Option<String>,
}

fn check_version(version: &str) -> Result<(), ProviderError> {
    match version {
        "v1" | "v1beta" => Ok(()),
        other => Err(ProviderError::new(
            ErrorKind::NotFound,
            format!("API version '{other}' is not served; use v1beta or v1"),
        )),
    }
}

async fn call_model(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path((version, target)): Path<(String, String)>,
    Query(query): Query<StreamQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(error) = check_version(&version) {
        return error_response(&error);
    }
    let Some((endpoint, method)) = target.rsplit_once(':') else {
        return error_response(&ProviderError::new(
            ErrorKind::NotFound,
            format!(
                "'models/{target}' names no method; expected models/<endpoint>:generateContent"
            ),
        ));
    };
    let body = match body_or_error(body) {
        Ok(body) => body,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Gemini);
    match method {
        "generateContent" => generate(&gateway, &ctx, endpoint, &body).await,
        "streamGenerateContent" => {
            let sse = query.alt.as_deref() == Some("sse");
            stream_generate(&gateway, &ctx, endpoint, &body, sse).await
        }
        "embedContent" => embed(&gateway, &ctx, endpoint, &body, false).await,
        "batchEmbedContents" => embed(&gateway, &ctx, endpoint, &body, true).await,
        "countTokens" => match gemini::parse_count_tokens_request(&body) {
            Ok(request) => match gateway.count_tokens(&ctx, endpoint, request).await {
                Ok(tokens) => Json(gemini::count_tokens_body(tokens)).into_response(),
                Err(error) => error_response(&error),
            },
            Err(error) => error_response(&error),
        },
        other => error_response(&ProviderError::new(
            ErrorKind::NotFound,
            format!("method '{other}' is not served by this gateway"),
        )),
    }
}

async fn generate(gateway: &Gateway, ctx: &CallContext, endpoint: &str, body: &[u8]) -> Response {
    let request = match gemini::parse_generate_content_request(body) {
        Ok(request) => request,
        Err(error) => return error_response(&error),
    };
    match gateway.chat(ctx, endpoint, request).await {
        Ok(response) => passthrough_or(response, |r| {
            json_answer(&gemini::generate_content_body(r, endpoint))
        }),
        Err(error) => error_response(&error),
    }
}

/// Streams GenerateContentResponse chunks: as SSE with `alt=sse`, else as
/// one JSON array written element by element (Google's default).
async fn stream_generate(
    gateway: &Gateway,
    ctx: &CallContext,
    endpoint: &str,
    body: &[u8],
    sse: bool,
) -> Response {
    let request = match gemini::parse_generate_content_request(body) {
        Ok(request) => request,
        Err(error) => return error_response(&error),
    };
    let events = match gateway.chat_stream(ctx, endpoint, request).await {
        Ok(events) => events,
        Err(error) => return error_response(&error),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut encoder = gemini::ChunkEncoder::new(id, endpoint.to_string());
    let mut array_started = false;
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/json"
    };
    stream_response(events, content_type, move |item, out| {
        let (chunks, last) = match item {
            StreamItem::Event(event) => (encoder.encode(&event), false),
            StreamItem::End => (encoder.finish(), true),
            StreamItem::Error(error) => {
                let mut chunks = encoder.interrupt();
                chunks.push(gemini::error_body(&error));
                (chunks, true)
            }
        };
        for chunk in &chunks {
            if sse {
                push_sse(out, None, chunk);
            } else {
                out.extend_from_slice(if array_started { b",\r\n" } else { b"[" });
                array_started = true;
                let _ = serde_json::to_writer(&mut *out, chunk);
            }
        }
        if last && !sse {
            out.extend_from_slice(if array_started { b"]" } else { b"[]" });
        }
    })
}

async fn embed(
    gateway: &Gateway,
    ctx: &CallContext,
    endpoint: &str,
    body: &[u8],
    batch: bool,
) -> Response {
    let client = match gemini::ClientEmbedRequest::parse(body, batch) {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    match gateway
        .embeddings(ctx, endpoint, client.request.clone())
        .await
    {
        Ok(response) => Json(client.response_body(&response)).into_response(),
        Err(error) => error_response(&error),
    }
}

fn model_object(name: &str, provider: &str) -> Value {
    json!({
        "name": format!("models/{name}"),
        "displayName": name,
        "description": format!("Portico endpoint '{name}' (provider {provider})"),
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent", "embedContent", "batchEmbedContents"],
    })
}

/// Google's default page of models, and the most it returns in one.
const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    page_size: Option<String>,
    page_token: Option<String>,
}

/// `GET /{version}/models`: the endpoints the caller may call, in name
/// order, paged as Google pages (`pageSize`, 50 by default and at most
/// 1000; `pageToken` from the last page's `nextPageToken`). The token
/// encodes the page's last name rather than an offset, so paging stays
/// in order when endpoints are added or removed between calls.
async fn list_models(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path(version): Path<String>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    if let Err(error) = check_version(&version) {
        return error_response(&error);
    }
    let query = match query_or_error(query) {
        Ok(query) => query,
        Err(error) => return error_response(&error),
    };
    let size = match query.page_size.as_deref().map(str::parse::<i64>) {
        None | Some(Ok(0)) => DEFAULT_PAGE_SIZE,
        Some(Ok(size @ 1..)) => {
            usize::try_from(size).map_or(MAX_PAGE_SIZE, |s| s.min(MAX_PAGE_SIZE))
        }
        Some(_) => {
            return error_response(&ProviderError::invalid_request(
                "pageSize must be a non-negative integer",
            ));
        }
    };
    let after = match query.page_token.as_deref().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => match decode_page_token(token) {
            Some(name) => Some(name),
            None => {
                return error_response(&ProviderError::invalid_request(
                    "pageToken is not a token this gateway gave",
                ));
            }
        },
    };
    let visible = caller.visible(&gateway.endpoints);
    let start = after.map_or(0, |after| {
        visible.partition_point(|e| e.name.as_str() <= after.as_str())
    });
    let end = (start + size).min(visible.len());
    let page = &visible[start..end];
    let mut body = json!({
        "models": page.iter().map(|e| model_object(&e.name, &e.provider)).collect::<Vec<_>>(),
    });
    if end < visible.len()
        && let Some(last) = page.last()
    {
        body["nextPageToken"] = json!(encode_page_token(&last.name));
    }
    Json(body).into_response()
}

fn encode_page_token(last_name: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last_name)
}

fn decode_page_token(token: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    String::from_utf8(bytes).ok()
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path((version, name)): Path<(String, String)>,
) -> Response {
    if let Err(error) = check_version(&version) {
        return error_response(&error);
    }
    match caller.lookup(&gateway.endpoints, &name) {
        Ok(endpoint) => Json(model_object(&endpoint.name, &endpoint.provider)).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn not_found() -> Response {
    error_response(&ProviderError::new(
        ErrorKind::NotFound,
        "unknown Gemini API route on this gateway",
    ))
}

/// An error in Google's shape (`{"error": {code, message, status}}`).
pub fn error_response(error: &ProviderError) -> Response {
    json_error(
        super::status_outside_anthropic(error),
        gemini::error_body(error),
        error.retry_after_ms,
    )
}
