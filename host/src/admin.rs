//! Management API under `/api/v1`: endpoints (CRUD), providers, plugins,
//! and its OpenAPI document. Errors are
//! `{"error": {"message": "...", "type": "..."}}` with a matching status.
//!
//! With an admin token configured, every request (including unknown paths
//! and the OpenAPI document) needs `Authorization: Bearer <token>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use portico_model::plugin::ProviderInfo;
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::endpoints::{EndpointInput, EndpointManager, EndpointView, ManageError};
use crate::policy::EndpointPolicy;
use crate::registry::PluginStatus;

/// The OpenAPI 3 document of this API, maintained by hand next to the
/// routes (a test checks every documented operation is routed).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// The management router, to nest at `/api/v1`. `admin_token`, when set,
/// is required on every request.
/// The management API. `extensions` are more routes (with their own
/// state) served under the same prefix and behind the same admin token.
pub fn router<S>(
    manager: Arc<EndpointManager>,
    admin_token: Option<&str>,
    extensions: Router<S>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let router = Router::new()
        .route("/plugins", get(list_plugins))
        .route("/providers", get(list_providers))
        .route("/endpoints", get(list_endpoints).post(create_endpoint))
        .route(
            "/endpoints/{name}",
            get(get_endpoint)
                .put(replace_endpoint)
                .delete(delete_endpoint),
        )
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::not_found("no such API route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "method not allowed on this API route",
            )
        })
        .with_state(manager)
        .merge(extensions);
    match admin_token {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::new(TokenDigest::of(token)),
            require_token,
        )),
        None => router,
    }
}

// ------------------------------------------------------------------ errors

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"message": self.message, "type": self.kind}});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<ManageError> for ApiError {
    fn from(error: ManageError) -> Self {
        match error {
            ManageError::Invalid(msg) => ApiError::invalid(msg),
            ManageError::NotFound(msg) => ApiError::not_found(msg),
            ManageError::Conflict(msg) => ApiError::new(StatusCode::CONFLICT, "conflict", msg),
            internal @ (ManageError::Store(_) | ManageError::Secrets(_)) => {
                tracing::error!(error = %internal, "management API internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error (see the gateway log)",
                )
            }
        }
    }
}

/// `Json` whose rejections are API errors.
struct ApiJson<T>(T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                // A body of the wrong shape is a 400 like any other invalid
                // request (axum says 422); 415 (not JSON) and 413 (too
                // large) keep their status.
                let status = match rejection.status() {
                    StatusCode::UNPROCESSABLE_ENTITY => StatusCode::BAD_REQUEST,
                    other => other,
                };
                Err(ApiError::new(
                    status,
                    "invalid_request",
                    rejection.body_text(),
                ))
            }
        }
    }
}

/// The `{name}` path segment, with rejections as API errors.
struct EndpointName(String);

impl<S: Send + Sync> FromRequestParts<S> for EndpointName {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(name)| EndpointName(name))
            .map_err(|rejection: PathRejection| ApiError::invalid(rejection.body_text()))
    }
}

// -------------------------------------------------------------------- auth

/// SHA-256 of the token: comparing digests in constant time reveals
/// neither the token's bytes nor its length through timing.
struct TokenDigest([u8; 32]);

impl TokenDigest {
    fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(self.0.ct_eq(&digest))
    }
}

async fn require_token(
    State(expected): State<Arc<TokenDigest>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(token.trim())
        });
    match presented {
        Some(token) if expected.matches(token) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid admin token",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this API needs the admin token: send `Authorization: Bearer <token>`",
        )
        .into_response(),
    }
}

// ---------------------------------------------------------------- handlers

type Manager = State<Arc<EndpointManager>>;

/// Every plugin file: loaded ones with their identity, failed ones with
/// their last load error.
async fn list_plugins(State(manager): Manager) -> Json<Vec<PluginStatus>> {
    Json(manager.registry().statuses())
}

/// Providers of the loaded plugins: config fields and model catalogs.
async fn list_providers(State(manager): Manager) -> Json<Vec<ProviderInfo>> {
    Json(
        manager
            .registry()
            .plugins()
            .iter()
            .map(|plugin| plugin.info.clone())
            .collect(),
    )
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// Body of POST /endpoints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    name: String,
    /// Empty or omitted for a router endpoint (policy with targets).
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    policy: EndpointPolicy,
    // Read-only fields of a fetched endpoint, accepted and ignored so a
    // client may send back what it got.
    #[serde(default, rename = "secrets_set")]
    _secrets_set: Option<IgnoredAny>,
    #[serde(default, rename = "source")]
    _source: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

/// Body of PUT /endpoints/{name}.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceBody {
    /// Optional; must match the path when present.
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    provider: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    config: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    policy: EndpointPolicy,
    #[serde(default, rename = "secrets_set")]
    _secrets_set: Option<IgnoredAny>,
    #[serde(default, rename = "source")]
    _source: Option<IgnoredAny>,
    #[serde(default, rename = "created_at")]
    _created_at: Option<IgnoredAny>,
    #[serde(default, rename = "updated_at")]
    _updated_at: Option<IgnoredAny>,
}

async fn list_endpoints(State(manager): Manager) -> Result<Json<Vec<EndpointView>>, ApiError> {
    Ok(Json(manager.list().await?))
}

async fn get_endpoint(
    State(manager): Manager,
    EndpointName(name): EndpointName,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(manager.get(&name).await?))
}

async fn create_endpoint(
    State(manager): Manager,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<(StatusCode, Json<EndpointView>), ApiError> {
    let input = EndpointInput {
        provider: body.provider,
        model: body.model,
        config: body.config,
        policy: body.policy,
    };
    let view = manager.create(&body.name, input).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn replace_endpoint(
    State(manager): Manager,
    EndpointName(name): EndpointName,
    ApiJson(body): ApiJson<ReplaceBody>,
) -> Result<Json<EndpointView>, ApiError> {
    if let Some(body_name) = &body.name
        && body_name != &name
    {
        return Err(ApiError::invalid(format!(
            "the body names endpoint '{body_name}' but the path '{name}'; endpoints cannot be renamed"
        )));
    }
    let input = EndpointInput {
        provider: body.provider,
        model: body.model,
        config: body.config,
        policy: body.policy,
    };
    Ok(Json(manager.replace(&name, input).await?))
}

async fn delete_endpoint(
    State(manager): Manager,
    EndpointName(name): EndpointName,
) -> Result<StatusCode, ApiError> {
    manager.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_digest_compares_exactly() {
        let digest = TokenDigest::of("s3cret");
        assert!(digest.matches("s3cret"));
        assert!(!digest.matches("s3cre"));
        assert!(!digest.matches("s3cret "));
        assert!(!digest.matches(""));
    }

    #[test]
    fn openapi_document_is_valid_json() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    }
}
