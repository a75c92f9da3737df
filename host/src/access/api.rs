//! `/api/v1/keys`: create, list, show and revoke gateway keys. Mounted
//! through [`crate::admin::router`]'s extensions, so the admin token
//! guards it and errors have the management API's JSON shape.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{Access, AccessError, CreatedKey, KeyView, NewKey};
use crate::admin::ApiError;

/// The key routes, to merge into the management API.
pub fn router<S>(access: Arc<Access>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/keys", get(list_keys).post(create_key))
        .route("/keys/{id}", get(get_key).delete(revoke_key))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method not allowed on this API route",
            )
        })
        .with_state(access)
}

impl From<AccessError> for ApiError {
    fn from(error: AccessError) -> Self {
        match error {
            AccessError::Invalid(msg) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", msg)
            }
            AccessError::NotFound(msg) => ApiError::new(StatusCode::NOT_FOUND, "not_found", msg),
            error @ (AccessError::Store(_) | AccessError::Random(_)) => {
                tracing::error!(%error, "gateway key operation failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the gateway key operation failed; see the gateway log",
                )
            }
        }
    }
}

type AccessState = State<Arc<Access>>;

async fn create_key(
    State(access): AccessState,
    body: Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let Json(new) = body.map_err(|rejection| {
        // A body of the wrong shape is a 400 like any other invalid
        // request (axum says 422); 415 and 413 keep their status.
        let status = match rejection.status() {
            StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
            other => other,
        };
        ApiError::new(status, "invalid_request", rejection.body_text())
    })?;
    let created = access.create_key(new).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list_keys(State(access): AccessState) -> Result<Json<Vec<KeyView>>, ApiError> {
    Ok(Json(access.list_keys().await?))
}

async fn get_key(
    State(access): AccessState,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(access.get_key(&id).await?))
}

async fn revoke_key(
    State(access): AccessState,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, ApiError> {
    Ok(Json(access.revoke_key(&id).await?))
}
