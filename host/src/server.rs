//! Start-up and the HTTP surface: which routes live where.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::response::IntoResponse;
use axum::routing::get;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::trace::TraceLayer;

use crate::access::{self, Access};
use crate::admin;
use crate::config::Cli;
use crate::dialects;
use crate::endpoints::{EndpointManager, EndpointTable, FileWatchGuard};
use crate::registry::Registry;
use crate::routing::{Gateway, UpstreamClients, UpstreamTimeouts, UpstreamTrust};
use crate::runtime::{PluginRuntime, RuntimeConfig};
use crate::secrets::{self, Cipher};
use crate::store::{self, Store};
use crate::tasks::AbortOnDrop;
use crate::telemetry::{self, Telemetry};

/// The whole application router.
pub fn app(
    gateway: Arc<Gateway>,
    manager: Arc<EndpointManager>,
    access: Arc<Access>,
    telemetry: Arc<Telemetry>,
    admin_token: Option<&str>,
    max_body_bytes: usize,
) -> Router {
    use portico_model::plugin::Dialect;
    let guarded = |dialect, routes: Router<Arc<Gateway>>| {
        access.guard(dialect, routes.with_state(gateway.clone()))
    };
    let routes = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest(
            "/api/v1",
            admin::router(
                manager,
                admin_token,
                access::api::router(access.clone()).merge(telemetry.api_router()),
            ),
        )
        .nest_service(
            "/gateway/openai/v1",
            guarded(Dialect::Openai, dialects::openai::router()),
        )
        .nest_service(
            "/gateway/anthropic",
            guarded(Dialect::Anthropic, dialects::anthropic::router()),
        )
        .nest_service(
            "/gateway/gemini",
            guarded(Dialect::Gemini, dialects::gemini::router()),
        )
        .merge(crate::ui::router());
    around(
        routes,
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http())
            .layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

/// `router` with `layer` around it as a whole. `Router::layer` instead
/// wraps each route in its own boxed copy of the layer, and a request
/// clones every boxed level below the one it enters: with several layers
/// and nested routers, some thirty allocations a request before the
/// handler runs. Here the layers are one concrete service around the
/// router, cloned without allocating.
pub fn around<L>(router: Router, layer: L) -> Router
where
    L: Layer<Router>,
    L::Service: Service<Request, Error = Infallible> + Clone + Send + Sync + 'static,
    <L::Service as Service<Request>>::Response: IntoResponse + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    Router::new().fallback_service(layer.layer(router))
}

/// What [`build`] needs besides the loaded plugins.
#[derive(Debug, Clone)]
pub struct AppOptions {
    /// Holds portico.db and (without `master_key`) master.key.
    pub data_dir: PathBuf,
    /// The declarative endpoints file; `None` for none.
    pub config_file: Option<PathBuf>,
    /// Re-apply the endpoints file when it changes.
    pub watch_config: bool,
    pub admin_token: Option<String>,
    /// Base64 master key (the value of `PORTICO_MASTER_KEY`); `None` uses
    /// the key file in the data dir.
    pub master_key: Option<String>,
    pub max_body_bytes: usize,
    pub timeouts: UpstreamTimeouts,
}

/// A built gateway: its router and the services behind it. Dropping it
/// stops watching the endpoints file.
pub struct App {
    pub router: Router,
    pub gateway: Arc<Gateway>,
    pub manager: Arc<EndpointManager>,
    pub store: Arc<dyn Store>,
    /// Gateway keys and rate limits (keys start not required).
    pub access: Arc<Access>,
    /// Request log, usage and metrics.
    pub telemetry: Arc<Telemetry>,
    _file_watch: Option<FileWatchGuard>,
    _access_housekeeping: AbortOnDrop,
}

impl App {
    /// Stops watching and closes the store.
    pub async fn close(self) {
        let App {
            store,
            _file_watch,
            access,
            telemetry,
            ..
        } = self;
        drop(_file_watch);
        access.flush_last_used().await;
        telemetry.close().await;
        store.close().await;
    }
}

/// Opens (creating and migrating) the endpoint store in the data dir,
/// loads or generates the master key, applies the endpoints file, fills the
/// endpoint table, and assembles the router.
pub async fn build(
    options: AppOptions,
    registry: Arc<Registry>,
    http: UpstreamClients,
) -> anyhow::Result<App> {
    std::fs::create_dir_all(&options.data_dir)
        .with_context(|| format!("creating data dir {}", options.data_dir.display()))?;
    let (cipher, key_source) =
        Cipher::load_or_create(options.master_key.as_deref(), &options.data_dir)?;
    tracing::info!(from = %key_source, "master key for secrets at rest loaded");
    let store = store::open_default(&options.data_dir)
        .await
        .with_context(|| {
            format!(
                "opening the endpoint store in {}",
                options.data_dir.display()
            )
        })?;
    tracing::info!(store = %store.location(), "endpoint store open");

    let table = Arc::new(EndpointTable::default());
    let manager =
        EndpointManager::new(store.clone(), cipher, registry.clone(), table.clone()).await?;
    let mut file_watch = None;
    if let Some(path) = &options.config_file {
        manager.apply_file_logged(path).await;
        if options.watch_config {
            match manager.watch_file(path.clone()) {
                Ok(guard) => file_watch = Some(guard),
                // Serving without live reload beats not serving.
                Err(error) => tracing::error!(
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "cannot watch the endpoints file; changes need a restart"
                ),
            }
        }
    }
    for def in table.list() {
        if registry.get(&def.provider).is_none() {
            tracing::warn!(endpoint = %def.name, provider = %def.provider, "endpoint's provider plugin is not loaded (yet)");
        }
    }
    tracing::info!(count = table.list().len(), "endpoints configured");

    let access = Access::load(store.clone())
        .await
        .context("loading gateway keys")?;
    let access_housekeeping = AbortOnDrop(access.spawn_housekeeping());
    let telemetry = Telemetry::start(store.clone(), registry.clone(), table.clone());
    let gateway = Arc::new(
        Gateway::new(registry, table, http, options.timeouts)
            .with_conversations(store.clone())
            .with_hooks(access.clone())
            .with_hooks(telemetry.clone()),
    );
    let router = app(
        gateway.clone(),
        manager.clone(),
        access.clone(),
        telemetry.clone(),
        options.admin_token.as_deref(),
        options.max_body_bytes,
    );
    // Outermost: the request id and the log cover what any layer refuses.
    let router = telemetry.wrap(router);
    Ok(App {
        router,
        gateway,
        manager,
        store,
        access,
        telemetry,
        _file_watch: file_watch,
        _access_housekeeping: access_housekeeping,
    })
}

/// Loads plugins and endpoints, then serves until SIGINT/SIGTERM.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    // Before the plugins load, so their load counters are recorded.
    telemetry::metrics::GatewayMetrics::install();
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating data dir {}", cli.data_dir.display()))?;
    std::fs::create_dir_all(&cli.plugins_dir)
        .with_context(|| format!("creating plugins dir {}", cli.plugins_dir.display()))?;

    let trust = match &cli.upstream_ca_file {
        Some(path) => {
            let trust = UpstreamTrust::with_ca_file(path)?;
            tracing::info!(
                file = %path.display(),
                authorities = trust.extra_authorities(),
                "upstream certificates may also be issued by the CA file's authorities"
            );
            trust
        }
        None => UpstreamTrust::default(),
    };
    let upstream = UpstreamClients::new(Duration::from_secs(cli.connect_timeout_secs), &trust)
        .map_err(|error| anyhow::anyhow!("building the HTTP client: {error}"))?;
    if upstream.proxied() {
        tracing::info!("upstream requests go through the proxy the environment names");
    }

    let runtime = PluginRuntime::new(
        RuntimeConfig {
            cache_dir: Some(cli.data_dir.join("plugin-cache")),
            idle_instance_ttl: Duration::from_secs(cli.plugin_idle_secs),
            max_concurrent_calls: cli.plugin_max_concurrency,
            busy_wait: Duration::from_millis(cli.plugin_busy_wait_ms),
            ..RuntimeConfig::default()
        },
        upstream.shared(),
    )?;
    let registry = Registry::load_dir(runtime, cli.plugins_dir.clone()).await?;
    let _watch = registry.watch().context("watching the plugins dir")?;
    let _trim = registry.trim_idle_periodically();
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

    let master_key = std::env::var(secrets::KEY_ENV)
        .ok()
        .filter(|k| !k.trim().is_empty());
    let options = AppOptions {
        data_dir: cli.data_dir.clone(),
        config_file: Some(cli.config_file()),
        watch_config: true,
        admin_token: cli.admin_token().map(str::to_string),
        master_key,
        max_body_bytes: cli.max_body_bytes,
        timeouts: UpstreamTimeouts {
            request: Duration::from_secs(cli.request_timeout_secs),
            stream_idle: Duration::from_secs(cli.request_timeout_secs),
        },
    };
    if options.admin_token.is_none() && !cli.listen.ip().is_loopback() {
        tracing::warn!(address = %cli.listen, "the management API is reachable from the network without an admin token: set --admin-token");
    }
    let app = build(options, registry, upstream).await?;
    app.access.set_required(cli.require_keys);
    if cli.require_keys {
        tracing::info!(
            active_keys = app.access.active_keys(),
            "gateway keys required on /gateway requests"
        );
    }
    let _pruning = prune_responses_periodically(
        app.store.clone(),
        Duration::from_secs(cli.response_retention_days.saturating_mul(86_400)),
    );
    let _request_log_pruning = telemetry::prune_periodically(
        app.store.clone(),
        Duration::from_secs(cli.request_log_retention_days.saturating_mul(86_400)),
    );

    let threads = match cli.serve_threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let serving = serving::start(cli.listen, threads, app.router.clone())?;
    tracing::info!(address = %cli.listen, threads, "Portico gateway listening");
    shutdown_signal().await;
    let grace = Duration::from_secs(cli.shutdown_grace_secs);
    // The listeners close at the signal; in-flight requests and streams get
    // `grace` to finish, then whatever still runs is cut so the process
    // exits in bounded time (an orchestrator's SIGKILL would lose more).
    if tokio::time::timeout(grace, serving.stop()).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "shutdown grace period over; cutting the requests still in flight"
        );
    }
    app.close().await;
    tracing::info!("stopped");
    Ok(())
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
    tracing::info!("shutting down: no new connections; letting in-flight requests finish");
}

/// Deletes stored Responses API conversations older than `retention`, at
/// start and then hourly, off the request path. Aborted on drop.
fn prune_responses_periodically(store: Arc<dyn Store>, retention: Duration) -> AbortOnDrop {
    AbortOnDrop(tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let Some(cutoff) = std::time::SystemTime::now().checked_sub(retention) else {
                continue;
            };
            match store.prune_responses(cutoff).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "pruned expired stored responses"),
                Err(error) => tracing::warn!(%error, "could not prune stored responses"),
            }
        }
    }))
}

/// Serving threads: one single-threaded runtime and one listening socket
/// each. A connection, its requests, their plugin calls and their upstream
/// connections (see [`UpstreamClients`]) all stay on the thread that
/// accepted it, so a request never waits for another thread to wake up:
/// at moderate load those wake-ups cost more than the request's own work.
/// Background work (request log, reloads, pruning) runs on the main runtime.
mod serving {
    use std::net::{Shutdown, SocketAddr};

    use anyhow::Context;
    use axum::Router;
    use axum::serve::{Listener, ListenerExt as _};
    use socket2::Socket;
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::{oneshot, watch};

    pub struct Serving {
        stopping: watch::Sender<bool>,
        /// Handles on the listening sockets, to refuse new connections
        /// from the stopping thread itself.
        listening: Vec<Socket>,
        finished: Vec<oneshot::Receiver<()>>,
    }

    impl Serving {
        /// Closes the listeners and waits for in-flight requests to finish.
        pub async fn stop(self) {
            let _ = self.stopping.send(true);
            // Each serving thread drops its listener once its runtime gets
            // to the stop; shutting the sockets down here refuses new
            // connections at once, however busy those threads are.
            for socket in &self.listening {
                if let Err(error) = socket.shutdown(Shutdown::Read) {
                    tracing::debug!(%error, "cannot shut a listening socket down");
                }
            }
            for finished in self.finished {
                // An error means the thread is gone: nothing left to wait for.
                let _ = finished.await;
            }
        }
    }

    pub fn start(addr: SocketAddr, threads: usize, router: Router) -> anyhow::Result<Serving> {
        let listeners = bind(addr, threads.max(1)).with_context(|| format!("binding {addr}"))?;
        let (stopping, stop) = watch::channel(false);
        let listening = listeners
            .iter()
            .map(|listener| Ok(Socket::from(listener.try_clone()?)))
            .collect::<std::io::Result<_>>()
            .context("keeping a handle on a listening socket")?;
        let mut finished = Vec::new();
        for (index, listener) in listeners.into_iter().enumerate() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a serving runtime")?;
            let (done, done_rx) = oneshot::channel();
            let (router, mut stop) = (router.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("portico-serve-{index}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match TcpListener::from_std(listener) {
                            Ok(listener) => listener,
                            Err(error) => {
                                tracing::error!(%error, "cannot serve on a listening socket");
                                return;
                            }
                        };
                        let listener = StoppableListener {
                            listener,
                            stop: stop.clone(),
                        };
                        // Without TCP_NODELAY each small stream frame after
                        // the first waits for the client's delayed ACK.
                        let listener = listener.tap_io(|tcp| {
                            if let Err(error) = tcp.set_nodelay(true) {
                                tracing::debug!(%error, "cannot set TCP_NODELAY on a client connection");
                            }
                        });
                        let served = axum::serve(listener, router).with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|stopping| *stopping).await;
                        });
                        if let Err(error) = served.await {
                            tracing::error!(%error, "serving HTTP failed");
                        }
                    });
                    let _ = done.send(());
                })
                .context("starting a serving thread")?;
            finished.push(done_rx);
        }
        Ok(Serving {
            stopping,
            listening,
            finished,
        })
    }

    /// A listener whose socket [`Serving::stop`] shuts down: accepting then
    /// fails at once, which is the stop rather than an error to log and
    /// retry, so it waits for axum's own shutdown signal instead.
    struct StoppableListener {
        listener: TcpListener,
        stop: watch::Receiver<bool>,
    }

    impl Listener for StoppableListener {
        type Io = TcpStream;
        type Addr = SocketAddr;

        async fn accept(&mut self) -> (TcpStream, SocketAddr) {
            let Self { listener, stop } = self;
            let stopped = async { stop.wait_for(|stopping| *stopping).await.is_ok() };
            tokio::select! {
                biased;
                true = stopped => std::future::pending().await,
                accepted = Listener::accept(listener) => accepted,
            }
        }

        fn local_addr(&self) -> std::io::Result<SocketAddr> {
            self.listener.local_addr()
        }
    }

    /// One listening socket per thread where the kernel balances
    /// connections between sockets on one port (Linux `SO_REUSEPORT`);
    /// elsewhere one socket that every thread accepts from.
    fn bind(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
        let first = listen(addr, cfg!(target_os = "linux"))?;
        // Port 0: the others join the port the first one got.
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        while listeners.len() < threads {
            let next = if cfg!(target_os = "linux") {
                listen(addr, true)?
            } else {
                listeners[0].try_clone()?
            };
            listeners.push(next);
        }
        Ok(listeners)
    }

    fn listen(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        // As tokio's own bind: a restart need not wait out TIME_WAIT.
        socket.set_reuse_address(true)?;
        #[cfg(target_os = "linux")]
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = reuse_port;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket.into())
    }

    #[cfg(test)]
    mod tests {
        use std::io::ErrorKind;
        use std::time::{Duration, Instant};

        use super::*;

        #[tokio::test]
        async fn stop_refuses_new_connections_at_once_even_while_the_serving_thread_is_busy() {
            const BUSY: Duration = Duration::from_secs(3);
            let (started, has_started) = std::sync::mpsc::channel::<()>();
            // Blocks its thread, as a wedged serving runtime would.
            let busy = move || {
                let started = started.clone();
                async move {
                    let _ = started.send(());
                    std::thread::sleep(BUSY);
                    "done"
                }
            };
            let router = Router::new().route("/busy", axum::routing::get(busy));
            let serving = start(SocketAddr::from(([127, 0, 0, 1], 0)), 1, router).unwrap();
            let addr = serving.listening[0]
                .local_addr()
                .unwrap()
                .as_socket()
                .unwrap();
            let in_flight = tokio::spawn(reqwest::get(format!("http://{addr}/busy")));
            tokio::task::spawn_blocking(move || has_started.recv_timeout(Duration::from_secs(10)))
                .await
                .unwrap()
                .unwrap();

            let stopped_at = Instant::now();
            let stopping = tokio::spawn(serving.stop());
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                    Err(error) if error.kind() == ErrorKind::ConnectionRefused => break,
                    _ => assert!(
                        stopped_at.elapsed() < BUSY / 2,
                        "new connections still accepted {:?} after the stop",
                        stopped_at.elapsed()
                    ),
                }
            }

            // The request in flight still finishes, then the stop does.
            let response = in_flight.await.unwrap().unwrap();
            assert_eq!(response.text().await.unwrap(), "done");
            tokio::time::timeout(Duration::from_secs(10), stopping)
                .await
                .unwrap()
                .unwrap();
        }
    }
}
