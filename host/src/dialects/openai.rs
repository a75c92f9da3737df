//! The OpenAI dialect: `/gateway/openai/v1/...`.

use std::sync::Arc;

use crate::store::Store;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portico_model::ProviderError;
use portico_model::formats::openai;
use portico_model::formats::openai_responses as responses_api;
use portico_model::{ChatResponseBuilder, Message};
use serde_json::{Value, json};

use super::{
    StreamItem, body_or_error, json_answer, json_error, passthrough_or, push_sse, stream_response,
    unix_now,
};
use crate::routing::EventStream;
use crate::routing::{Caller, Gateway};
use portico_model::plugin::Dialect;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/embeddings", post(embeddings))
        .route("/responses", post(responses))
        .route("/responses/input_tokens", post(response_input_tokens))
        .route("/models", get(list_models))
        .route("/models/{model}", get(get_model))
        .fallback(not_found)
}

async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = body_or_error(body).and_then(|body| openai::parse_chat_request(&body));
    let client = match parsed {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let created = unix_now();
    let ctx = caller.context(Dialect::Openai);
    if client.stream {
        match gateway
            .chat_stream(&ctx, &client.endpoint, client.request)
            .await
        {
            Ok(events) => {
                let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
                let encoder =
                    openai::ChunkEncoder::new(id, client.endpoint, created, client.include_usage);
                sse_response(events, encoder)
            }
            Err(error) => error_response(&error),
        }
    } else {
        match gateway.chat(&ctx, &client.endpoint, client.request).await {
            Ok(response) => passthrough_or(response, |r| {
                json_answer(&openai::chat_completion_body(r, &client.endpoint, created))
            }),
            Err(error) => error_response(&error),
        }
    }
}

/// Renders neutral events as OpenAI `chat.completion.chunk` server-sent
/// events, ending with `[DONE]`; a mid-stream failure becomes an `error`
/// event (OpenAI's own convention), after which the stream ends.
fn sse_response(events: EventStream, mut encoder: openai::ChunkEncoder) -> Response {
    stream_response(events, "text/event-stream", move |item, out| match item {
        StreamItem::Event(event) => {
            for chunk in encoder.encode(&event) {
                push_sse(out, None, &chunk);
            }
        }
        StreamItem::Error(error) => push_sse(out, None, &openai::error_body(&error)),
        StreamItem::End => {
            for chunk in encoder.finish() {
                push_sse(out, None, &chunk);
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
        }
    })
}

async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client = match body_or_error(body).and_then(|body| openai::parse_embeddings_request(&body))
    {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Openai);
    match gateway
        .embeddings(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(response) => Json(openai::embeddings_body(
            &response,
            &client.endpoint,
            client.base64,
        ))
        .into_response(),
        Err(error) => error_response(&error),
    }
}

fn model_object(name: &str, provider: &str) -> Value {
    json!({"id": name, "object": "model", "created": 0, "owned_by": provider})
}

/// `GET /models`: the endpoints the caller may call.
async fn list_models(State(gateway): State<Arc<Gateway>>, caller: Caller) -> Json<Value> {
    let data: Vec<Value> = caller
        .visible(&gateway.endpoints)
        .iter()
        .map(|endpoint| model_object(&endpoint.name, &endpoint.provider))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    axum::extract::Path(model): axum::extract::Path<String>,
) -> Response {
    match caller.lookup(&gateway.endpoints, &model) {
        Ok(endpoint) => Json(model_object(&endpoint.name, &endpoint.provider)).into_response(),
        Err(error) => error_response(&error),
    }
}

async fn not_found() -> Response {
    error_response(&ProviderError::new(
        portico_model::ErrorKind::NotFound,
        "unknown OpenAI API route on this gateway",
    ))
}

/// An error in OpenAI's shape and status, with `Retry-After` when known.
pub fn error_response(error: &ProviderError) -> Response {
    json_error(
        super::status_outside_anthropic(error),
        openai::error_body(error),
        error.retry_after_ms,
    )
}

/// `POST /responses`: the Responses API for any provider. With `store`
/// (the default) the conversation is kept so a later request can continue
/// it with `previous_response_id`.
async fn responses(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = parse_continued(&gateway, body, responses_api::parse_responses_request);
    let client = match parsed.await {
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Openai);
    let request = client.request;
    let history = request.messages.clone();
    let id = format!("resp_{}", uuid::Uuid::new_v4().simple());
    let created = unix_now();
    let endpoint = client.endpoint;
    let echo = client.echo;
    let store = echo
        .store
        .then(|| gateway.conversations().cloned())
        .flatten();
    if !client.stream {
        return match gateway.chat(&ctx, &endpoint, request).await {
            Ok(response) => {
                if let Some(store) = store {
                    let conversation = responses_api::conversation_after(&history, &response);
                    if let Err(error) =
                        save_conversation(&*store, &id, &endpoint, &conversation).await
                    {
                        return error_response(&error);
                    }
                }
                Json(responses_api::response_body(
                    &id, created, &endpoint, &response, &echo,
                ))
                .into_response()
            }
            Err(error) => error_response(&error),
        };
    }
    let events = match gateway.chat_stream(&ctx, &endpoint, request).await {
        Ok(events) => events,
        Err(error) => return error_response(&error),
    };
    let mut encoder =
        responses_api::ResponsesEventEncoder::new(id.clone(), created, endpoint.clone(), echo);
    let mut answer = ChatResponseBuilder::default();
    let mut sequence_after_error = 0u64;
    let background = gateway.clone();
    stream_response(events, "text/event-stream", move |item, out| {
        let frames = match item {
            StreamItem::Event(event) => {
                answer.push(&event);
                encoder.encode(&event)
            }
            StreamItem::End => {
                if let Some(store) = store.clone() {
                    let response = std::mem::take(&mut answer).finish();
                    let conversation = responses_api::conversation_after(&history, &response);
                    let (id, endpoint) = (id.clone(), endpoint.clone());
                    // The last event is written now; storing must not
                    // delay it, and a failure is logged (the client has
                    // its answer).
                    background.spawn_background(async move {
                        if let Err(error) =
                            save_conversation(&*store, &id, &endpoint, &conversation).await
                        {
                            tracing::error!(response = %id, error = %error.message, "could not store the response");
                        }
                    });
                }
                encoder.finish()
            }
            StreamItem::Error(error) => {
                sequence_after_error += 1;
                vec![(
                    "error",
                    json!({"type": "error", "code": openai::error_body(&error)["error"]["type"],
                           "message": error.message, "param": null, "sequence_number": sequence_after_error}),
                )]
            }
        };
        for (name, data) in frames {
            push_sse(out, Some(name), &data);
        }
    })
}

/// `POST /responses/input_tokens`: the input of a Responses request
/// counted by the endpoint's provider (any whose plugin can count; the
/// others answer a 400 saying so).
async fn response_input_tokens(
    State(gateway): State<Arc<Gateway>>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let parsed = parse_continued(&gateway, body, responses_api::parse_input_tokens_request);
    let client = match parsed.await {
        Ok(client) if client.request.messages.is_empty() => {
            return error_response(&ProviderError::invalid_request(
                "'input' is required unless 'previous_response_id' names a stored response",
            ));
        }
        Ok(client) => client,
        Err(error) => return error_response(&error),
    };
    let ctx = caller.context(Dialect::Openai);
    match gateway
        .count_tokens(&ctx, &client.endpoint, client.request)
        .await
    {
        Ok(tokens) => {
            Json(json!({"object": "response.input_tokens", "input_tokens": tokens})).into_response()
        }
        Err(error) => error_response(&error),
    }
}

/// A Responses request read by `parse` (create's or input_tokens' reading),
/// with the stored conversation its `previous_response_id` names put before
/// its own input.
async fn parse_continued(
    gateway: &Gateway,
    body: Result<Bytes, BytesRejection>,
    parse: fn(&[u8]) -> Result<responses_api::ClientResponsesRequest, ProviderError>,
) -> Result<responses_api::ClientResponsesRequest, ProviderError> {
    let mut client = parse(&body_or_error(body)?)?;
    if let Some(previous) = &client.echo.previous_response_id {
        let mut history = load_conversation(gateway, previous).await?;
        history.append(&mut client.request.messages);
        client.request.messages = history;
    }
    Ok(client)
}

async fn load_conversation(gateway: &Gateway, id: &str) -> Result<Vec<Message>, ProviderError> {
    let store = gateway
        .conversations()
        .ok_or_else(|| ProviderError::invalid_request("this gateway does not store responses"))?;
    let stored = store
        .load_response(id)
        .await
        .map_err(|error| {
            ProviderError::internal(format!("could not read stored responses: {error}"))
        })?
        .ok_or_else(|| {
            ProviderError::new(
                portico_model::ErrorKind::NotFound,
                format!(
                    "previous response '{id}' was not found (it may have expired or was not stored)"
                ),
            )
        })?;
    serde_json::from_value(stored["messages"].clone()).map_err(|error| {
        ProviderError::internal(format!("stored response '{id}' is unreadable: {error}"))
    })
}

async fn save_conversation(
    store: &dyn Store,
    id: &str,
    endpoint: &str,
    conversation: &[Message],
) -> Result<(), ProviderError> {
    store
        .save_response(id, endpoint, &json!({ "messages": conversation }))
        .await
        .map_err(|error| ProviderError::internal(format!("could not store the response: {error}")))
}
