//! Start-up and the HTTP surface: which routes live where.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::config::Cli;
use crate::dialects;
use crate::endpoints::EndpointTable;
use crate::registry::Registry;
use crate::routing::{Gateway, UpstreamTimeouts};
use crate::runtime::{PluginRuntime, RuntimeConfig};
use crate::{admin, config};

/// The whole application router.
pub fn app(gateway: Arc<Gateway>, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest("/api/v1", admin::router())
        .nest("/gateway/openai/v1", dialects::openai::router())
        .nest("/gateway/anthropic", dialects::anthropic::router())
        .nest("/gateway/gemini", dialects::gemini::router())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(gateway)
}

/// Loads plugins and endpoints, then serves until SIGINT/SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating data dir {}", cli.data_dir.display()))?;
    std::fs::create_dir_all(&cli.plugins_dir)
        .with_context(|| format!("creating plugins dir {}", cli.plugins_dir.display()))?;

    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(cli.connect_timeout_secs))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .context("building the HTTP client")?;

    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(cli.data_dir.join("plugin-cache")),
            ..RuntimeConfig::default()
        },
        http.clone(),
    )?;
    let registry = Registry::load_dir(runtime, cli.plugins_dir.clone()).await?;
    let _watch = registry.watch().context("watching the plugins dir")?;
    for status in registry.statuses() {
        match status.last_error {
            Some(error) => tracing::error!(file = %status.file, %error, "plugin failed to load"),
            None => tracing::info!(
                file = %status.file,
                id = status.id.as_deref().unwrap_or_default(),
                version = status.version.as_deref().unwrap_or_default(),
                "plugin loaded"
            ),
        }
    }

    let defs = match cli.config_file() {
        Some(path) => config::load_endpoints(&path)?,
        None => Vec::new(),
    };
    for def in &defs {
        if registry.get(&def.provider).is_none() {
            tracing::warn!(endpoint = %def.name, provider = %def.provider, "endpoint's provider plugin is not loaded (yet)");
        }
    }
    tracing::info!(count = defs.len(), "endpoints configured");
    let endpoints = Arc::new(EndpointTable::new(defs));

    let timeouts = UpstreamTimeouts {
        request: Duration::from_secs(cli.request_timeout_secs),
        stream_idle: Duration::from_secs(cli.request_timeout_secs),
    };
    let gateway = Arc::new(Gateway::new(registry, endpoints, http, timeouts));
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("binding {}", cli.listen))?;
    tracing::info!(address = %cli.listen, "Portico gateway listening");
    axum::serve(listener, app(gateway, cli.max_body_bytes))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
