//! The Anthropic dialect: `/gateway/anthropic/v1/messages` (and its token
//! count) and `/gateway/anthropic/v1/models`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use portico_model::formats::anthropic;
use portico_model::{ErrorKind, ProviderError};
use serde_json::json;

use super::{
    StreamItem, body_or_error, json_answer, json_error, passthrough_or, push_sse, query_or_error,
    stream_response,
};
use crate::routing::{Caller, Gateway};
use portico_model::plugin::Dialect;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{model}", get(get_model))
        .fallback(not_found)
}

async fn messages(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body)
        .and_then(|body| anthropic::parse_messages_request(&body))
        .and_then(|client| with_betas(client, &headers))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Anthropic);
    if !client.stream {
        return match gateway.chat(&ctx, &client.endpoint, client.request).await {
            Ok(response) => passthrough_or(response, |r| {
                json_answer(&anthropic::message_body(r, &client.endpoint))
            }),
            Err(error) => error_response(&error),
        };
    }
    let events = match gateway
        .chat_stream(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(events) => events,
        Err(error) => return error_response(&error),
    };
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let mut encoder = anthropic::EventEncoder::new(id, client.endpoint);
    stream_response(events, "text/event-stream", move |item, out| {
        let frames = match item {
            StreamItem::Event(event) => encoder.encode(&event),
            StreamItem::End => encoder.finish(),
            StreamItem::Error(error) => vec![("error", anthropic::error_body(&error))],
        };
        for (name, data) in frames {
            push_sse(out, Some(name), &data);
        }
    })
}

/// `messages.count_tokens`: counted by the endpoint's provider (any whose
/// plugin can count, not only Anthropic).
async fn count_tokens(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body)
        .and_then(|body| anthropic::parse_messages_request(&with_max_tokens(&body)))
        .and_then(|client| with_betas(client, &headers))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Anthropic);
    match gateway
        .count_tokens(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(tokens) => Json(json!({ "input_tokens": tokens })).into_response(),
        Err(error) => error_response(&error),
    }
}

/// The header an Anthropic client names its betas in.
const BETA_HEADER: &str = "anthropic-beta";

/// The client's `anthropic-beta` headers, kept on its request for the
/// providers that serve Claude (the header, or Bedrock's model fields).
fn with_betas(
    mut client: anthropic::ClientMessagesRequest,
    headers: &HeaderMap,
) -> Result<anthropic::ClientMessagesRequest, ProviderError> {
    let values = headers
        .get_all(BETA_HEADER)
        .iter()
        .map(|value| {
            value.to_str().map_err(|_| {
                ProviderError::invalid_request("anthropic-beta: beta names are ASCII tokens")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    anthropic::set_betas(&mut client.request, values)?;
    Ok(client)
}

/// count_tokens requests carry no max_tokens, which the messages parser
/// requires; add a placeholder so the rest is validated the same way.
fn with_max_tokens(body: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut object)) => {
            object.entry("max_tokens").or_insert(serde_json::json!(1));
            serde_json::to_vec(&object).unwrap_or_else(|_| body.to_vec())
        }
        _ => body.to_vec(),
    }
}

/// An endpoint as the Models API describes a model.
fn model_object(name: &str) -> serde_json::Value {
    json!({
        "type": "model",
        "id": name,
        "display_name": name,
        // Endpoints have no creation time to show.
        "created_at": "1970-01-01T00:00:00Z",
    })
}

/// `GET /v1/models`: the endpoints the caller may call, a page at a time
/// as the Models API pages (`limit`, 20 by default, up to 1000;
/// `after_id` / `before_id`), in name order.
async fn list_models(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let query = match query_or_error(query) {
        Ok(query) => query,
        Err(error) => return error_response(&error),
    };
    let limit = match query.get("limit").map(|limit| limit.parse::<usize>()) {
        None => 20,
        Some(Ok(limit @ 1..=1000)) => limit,
        Some(_) => {
            return error_response(&ProviderError::invalid_request(
                "limit: Input should be an integer from 1 to 1000",
            ));
        }
    };
    let names: Vec<String> = caller
        .visible(&gateway.endpoints)
        .iter()
        .map(|endpoint| endpoint.name.clone())
        .collect();
    // [start, end) of the names; `has_more` looks the way the page went.
    let (start, end, has_more) = match (query.get("after_id"), query.get("before_id")) {
        (Some(_), Some(_)) => {
            return error_response(&ProviderError::invalid_request(
                "after_id and before_id cannot be given together",
            ));
        }
        (Some(after), None) => {
            let start = names.partition_point(|name| name <= after);
            let end = (start + limit).min(names.len());
            (start, end, end < names.len())
        }
        (None, Some(before)) => {
            let end = names.partition_point(|name| name < before);
            let start = end.saturating_sub(limit);
            (start, end, start > 0)
        }
        (None, None) => {
            let end = limit.min(names.len());
            (0, end, end < names.len())
        }
    };
    let page = &names[start..end];
    Json(json!({
        "data": page.iter().map(|name| model_object(name)).collect::<Vec<_>>(),
        "has_more": has_more,
        "first_id": page.first(),
        "last_id": page.last(),
    }))
    .into_response()
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    Path(model): Path<String>,
) -> Response {
    match caller.lookup(&gateway.endpoints, &model) {
        Ok(endpoint) => Json(model_object(&endpoint.name)).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn not_found() -> Response {
    error_response(&ProviderError::new(
        ErrorKind::NotFound,
        "unknown Anthropic API route on this gateway",
    ))
}

/// An error in Anthropic's shape; overload is 529 as Anthropic answers it.
pub fn error_response(error: &ProviderError) -> Response {
    json_error(
        anthropic::error_status(error),
        anthropic::error_body(error),
        error.retry_after_ms,
    )
}
