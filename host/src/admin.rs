//! Management API under `/api/v1`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use portico_model::plugin::ProviderInfo;

use crate::registry::PluginStatus;
use crate::routing::Gateway;

pub fn router() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/plugins", get(list_plugins))
        .route("/providers", get(list_providers))
}

/// Every plugin file: loaded ones with their identity, failed ones with
/// their last load error.
async fn list_plugins(State(gateway): State<Arc<Gateway>>) -> Json<Vec<PluginStatus>> {
    Json(gateway.registry.statuses())
}

/// Providers of the loaded plugins: config fields and model catalogs.
async fn list_providers(State(gateway): State<Arc<Gateway>>) -> Json<Vec<ProviderInfo>> {
    Json(
        gateway
            .registry
            .plugins()
            .iter()
            .map(|plugin| plugin.info.clone())
            .collect(),
    )
}
