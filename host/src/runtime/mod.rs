//! The plugin runtime: compiles provider components, runs them sandboxed
//! (no filesystem, env or sockets; memory cap; CPU-time budget per call)
//! and keeps a pool of ready instances per plugin version.
//!
//! A fault (trap, CPU or memory limit, invalid JSON from the plugin) fails
//! only the call that hit it: its instance is discarded, never pooled.

mod bindings;
mod compile;
mod host_imports;
mod kv;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portico_model::error::{ErrorKind, ProviderError};
use portico_model::plugin::{Endpoint, FieldKind, HttpRequest, HttpResponse, ProviderInfo};
use portico_model::{
    ChatRequest, ChatResponse, EmbeddingsRequest, EmbeddingsResponse, StreamEvent,
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker, ResourceAny};
use wasmtime::{Engine, Store, UpdateDeadline};

use bindings::{Bindings, Pre, WitVersion};
pub use compile::CompileSource;
use host_imports::{HostState, PluginCtx};
use kv::KvCache;

/// How often the epoch ticker advances; the unit of the CPU-time budget.
const TICK: Duration = Duration::from_millis(10);
/// Instances whose memory grew beyond this are not pooled: a pooled instance
/// keeps its memory, and one big request should not pin it forever.
const MAX_POOLED_MEMORY: usize = 64 << 20;

/// Limits and knobs of the plugin runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Linear-memory cap per instance.
    pub memory_limit_bytes: usize,
    /// CPU time one plugin call may use (time awaiting `http-fetch` is not
    /// counted).
    pub call_time_limit: Duration,
    /// Compiled-component cache; `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Idle instances kept per plugin version. A stream holds its instance
    /// from first to last chunk, so this should cover a busy endpoint's
    /// concurrent streams: below that, every wave of streams drops
    /// instances and builds new ones (memory mapped, faulted in, unmapped).
    /// An idle instance costs a few hundred KB of resident memory.
    pub max_idle_instances: usize,
    /// Idle instances unused this long are dropped by [`Plugin::trim_idle`]
    /// (which the server runs periodically), so what a burst of concurrent
    /// calls or streams pinned is given back instead of held until a
    /// restart. The most recently used instance is always kept warm.
    pub idle_instance_ttl: Duration,
    /// Requests one plugin version may have in flight (see
    /// [`Plugin::reserve`]); a stream counts until its last chunk. Past
    /// it, a request waits up to [`Self::busy_wait`] for one to end, then
    /// fails with 503: a flood of slow streams, each holding an instance
    /// (up to `memory_limit_bytes`), cannot grow the gateway without bound.
    pub max_concurrent_calls: usize,
    /// How long a request waits at most for a slot under
    /// `max_concurrent_calls` (zero: refused at once).
    pub busy_wait: Duration,
    /// Timeout of one `http-fetch` (connect to end of body).
    pub http_fetch_timeout: Duration,
    /// Largest `http-fetch` response body handed to a plugin.
    pub http_fetch_max_bytes: usize,
    /// Size bound of each plugin's `cache-get`/`cache-set` store.
    pub plugin_cache_max_bytes: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit_bytes: 128 << 20,
            call_time_limit: Duration::from_secs(1),
            cache_dir: None,
            max_idle_instances: 64,
            idle_instance_ttl: Duration::from_secs(60),
            max_concurrent_calls: 1024,
            busy_wait: Duration::from_secs(2),
            http_fetch_timeout: Duration::from_secs(30),
            http_fetch_max_bytes: 8 << 20,
            plugin_cache_max_bytes: 8 << 20,
        }
    }
}

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a WebAssembly component{0}")]
    NotComponent(&'static str),
    #[error("invalid component: {0}")]
    Compile(String),
    #[error("incompatible WIT: {0}")]
    IncompatibleWit(String),
    #[error("component imports something this host does not provide: {0}")]
    Link(String),
    #[error("describe failed: {0}")]
    Describe(String),
    #[error("invalid provider info: {0}")]
    InvalidInfo(String),
}

/// Failure of a plugin call.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin returned a typed error (e.g. the upstream said 429).
    #[error(transparent)]
    Provider(ProviderError),
    /// The plugin itself failed: trap, CPU or memory limit, bad output.
    #[error("provider plugin '{plugin}' failed: {message}")]
    Fault { plugin: String, message: String },
}

impl PluginError {
    /// The error to answer a client with: faults become 502 upstream errors.
    pub fn into_provider_error(self) -> ProviderError {
        match self {
            PluginError::Provider(error) => error,
            fault @ PluginError::Fault { .. } => {
                ProviderError::new(ErrorKind::Upstream, fault.to_string())
            }
        }
    }

    pub fn is_fault(&self) -> bool {
        matches!(self, PluginError::Fault { .. })
    }
}

/// No place for a request in flight freed up within `busy_wait`: the
/// plugin version had its maximum of requests in flight all along. Only
/// [`Plugin::reserve`] fails this way; plugin calls never do.
#[derive(Debug, thiserror::Error)]
#[error(
    "provider plugin '{plugin}' is at its limit of requests in flight ({limit}, set by --plugin-max-concurrency); try again shortly"
)]
pub struct Busy {
    pub plugin: String,
    pub limit: usize,
}

impl Busy {
    /// The error to answer a client with: 503, overloaded (retryable).
    pub fn into_provider_error(self) -> ProviderError {
        ProviderError::new(ErrorKind::Overloaded, self.to_string())
    }
}

/// Compiles, links and instantiates provider plugins. One per process.
pub struct PluginRuntime {
    engine: Engine,
    engine_hash: String,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    http: reqwest::Client,
    call_ticks: u64,
    /// `cache-get`/`cache-set` stores by provider id, shared across versions.
    kv: Mutex<HashMap<String, Arc<KvCache>>>,
}

impl PluginRuntime {
    pub fn new(config: RuntimeConfig, http: reqwest::Client) -> anyhow::Result<Arc<Self>> {
        let mut wasm = wasmtime::Config::new();
        wasm.wasm_component_model(true);
        wasm.epoch_interruption(true);
        // Diagnostics: with PORTICO_WASM_PERFMAP set, plugin code is named in
        // /tmp/perf-<pid>.map so `perf report` can attribute guest time.
        if std::env::var_os("PORTICO_WASM_PERFMAP").is_some() {
            wasm.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        // On-demand allocation: instances are pooled and reused by this
        // runtime, so instantiation is off the hot path and the pooling
        // allocator's large up-front virtual reservations buy nothing.
        let engine = Engine::new(&wasm)?;
        let mut linker = Linker::new(&engine);
        bindings::add_to_linker(&mut linker)?;
        if let Some(dir) = &config.cache_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!("cannot create plugin cache dir {}: {e}", dir.display())
            })?;
        }
        spawn_epoch_ticker(&engine)?;
        let call_ticks = config
            .call_time_limit
            .as_millis()
            .div_ceil(TICK.as_millis())
            .max(1) as u64;
        Ok(Arc::new(PluginRuntime {
            engine_hash: compile::engine_hash(&engine),
            engine,
            linker,
            config,
            http,
            call_ticks,
            kv: Mutex::new(HashMap::new()),
        }))
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The cache file a plugin with this SHA-256 compiles to.
    pub fn cache_file(&self, sha256: &str) -> Option<PathBuf> {
        self.config
            .cache_dir
            .as_deref()
            .map(|dir| compile::entry_path(dir, sha256, &self.engine_hash))
    }

    /// Compiles (or loads from cache), checks the WIT version, instantiates,
    /// calls `describe` and validates the answer.
    pub async fn load_file(self: &Arc<Self>, path: &Path) -> Result<Arc<Plugin>, LoadError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| LoadError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        check_component_header(&bytes)?;
        let runtime = self.clone();
        let (sha256, compiled) = tokio::task::spawn_blocking(move || {
            let sha256 = hex::encode(Sha256::digest(&bytes));
            let compiled = compile::compile(
                &runtime.engine,
                &runtime.engine_hash,
                runtime.config.cache_dir.as_deref(),
                &bytes,
                &sha256,
            );
            (sha256, compiled)
        })
        .await
        .map_err(|e| LoadError::Compile(format!("compilation task failed: {e}")))?;
        let (component, compile_source) =
            compiled.map_err(|e| LoadError::Compile(format!("{e:#}")))?;

        let version = self.pick_version(&component)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let pre = Pre::new(version, instance_pre).map_err(|e| {
            LoadError::IncompatibleWit(format!(
                "component's {} does not match this host's definition: {e:#}",
                version.export_name()
            ))
        })?;

        let loading = Arc::new(PluginCtx::loading(
            self.http.clone(),
            self.config.http_fetch_timeout,
            self.config.http_fetch_max_bytes,
        ));
        let mut instance = self
            .instantiate(&pre, loading.clone())
            .await
            .map_err(LoadError::Describe)?;
        instance.begin(None, self.call_ticks);
        let info = match instance.bindings.describe(&mut instance.store).await {
            Ok(info) => info,
            Err(error) => {
                return Err(LoadError::Describe(fault_message(
                    &self.config,
                    instance.store.data(),
                    &error,
                )));
            }
        };
        validate(&info).map_err(LoadError::InvalidInfo)?;

        let ctx = Arc::new(loading.described(&info, self.kv_for(&info.id)));
        instance.store.data_mut().ctx = ctx.clone();
        Ok(Arc::new(Plugin {
            info,
            wit_version: version.as_str().to_string(),
            file: path.to_path_buf(),
            sha256,
            loaded_at_unix_ms: unix_ms_now(),
            compile_source,
            runtime: self.clone(),
            pre,
            ctx,
            idle: Mutex::new(vec![instance]),
            slots: Arc::new(Semaphore::new(self.config.max_concurrent_calls)),
        }))
    }

    /// The newest supported contract version the component exports.
    fn pick_version(&self, component: &Component) -> Result<WitVersion, LoadError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if let Some(version) = WitVersion::ALL
            .iter()
            .find(|v| exports.iter().any(|e| e == v.export_name()))
        {
            return Ok(*version);
        }
        let found = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        Err(LoadError::IncompatibleWit(format!(
            "component exports {found}; this host supports {}",
            WitVersion::supported()
        )))
    }

    fn kv_for(&self, id: &str) -> Arc<KvCache> {
        let mut kv = self.kv.lock().unwrap_or_else(|e| e.into_inner());
        kv.entry(id.to_string())
            .or_insert_with(|| Arc::new(KvCache::new(self.config.plugin_cache_max_bytes)))
            .clone()
    }

    fn new_store(&self, ctx: Arc<PluginCtx>) -> Store<HostState> {
        let mut store = Store::new(
            &self.engine,
            HostState::new(ctx, self.config.memory_limit_bytes),
        );
        store.limiter(|state| &mut state.limiter);
        // Called once per epoch tick while wasm runs (never while a host
        // import is awaited), so counting calls counts CPU time. Yielding
        // each tick keeps a long call from monopolizing a Tokio worker.
        store.epoch_deadline_callback(|mut cx| {
            let call = &mut cx.data_mut().call;
            if call.ticks_left == 0 {
                call.cpu_exceeded = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            call.ticks_left -= 1;
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store
    }

    /// A fresh instance; `Err` is a fault message.
    async fn instantiate(&self, pre: &Pre, ctx: Arc<PluginCtx>) -> Result<Instance, String> {
        let mut store = self.new_store(ctx);
        store.data_mut().begin_call(None, self.call_ticks);
        store.set_epoch_deadline(1);
        match pre.instantiate(&mut store).await {
            Ok(bindings) => Ok(Instance {
                store,
                bindings,
                idle_since: Instant::now(),
            }),
            Err(error) => Err(format!(
                "instantiation failed: {}",
                fault_message(&self.config, store.data(), &error)
            )),
        }
    }
}

/// Advances the engine epoch every [`TICK`] until the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) -> anyhow::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("portico-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })?;
    Ok(())
}

/// Rejects anything but a component early, with a clear message.
fn check_component_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotComponent(""));
    }
    // Bytes 4..8: version and layer; layer 1 is a component, 0 a module.
    match bytes[6..8] {
        [1, 0] => Ok(()),
        [0, 0] => Err(LoadError::NotComponent(
            " (it is a core module; build for wasm32-wasip2 or wrap it with `wasm-tools component new`)",
        )),
        _ => Err(LoadError::NotComponent(" (unknown WebAssembly layer)")),
    }
}

/// Checks what `describe` answered is usable by the gateway.
fn validate(info: &ProviderInfo) -> Result<(), String> {
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    if info.id.is_empty() {
        return Err("empty id".into());
    }
    if !id_ok(&info.id) {
        return Err(format!(
            "id '{}' must be 1-64 characters of a-z, 0-9, '-', '_' or '.'",
            info.id
        ));
    }
    if info.display_name.trim().is_empty() {
        return Err(format!("'{}': empty display name", info.id));
    }
    if info.version.trim().is_empty() {
        return Err(format!("'{}': empty version", info.id));
    }
    if info.operations.is_empty() {
        return Err(format!("'{}': no operations", info.id));
    }
    let mut names = std::collections::HashSet::new();
    for field in &info.config_fields {
        if field.name.is_empty() {
            return Err(format!("'{}': config field with an empty name", info.id));
        }
        if !names.insert(field.name.as_str()) {
            return Err(format!(
                "'{}': config field '{}' declared twice",
                info.id, field.name
            ));
        }
        if field.kind == FieldKind::Enum {
            if field.options.is_empty() {
                return Err(format!(
                    "'{}': enum config field '{}' has no options",
                    info.id, field.name
                ));
            }
            if let Some(default) = &field.default_value
                && !field.options.contains(default)
            {
                return Err(format!(
                    "'{}': default '{default}' of config field '{}' is not one of its options",
                    info.id, field.name
                ));
            }
        }
    }
    for host in &info.egress_hosts {
        if !host_imports::valid_egress_host(host) {
            return Err(format!(
                "'{}': invalid egress host '{host}' (expected host or host:port)",
                info.id
            ));
        }
    }
    let mut models = std::collections::HashSet::new();
    for model in &info.models {
        if model.id.is_empty() {
            return Err(format!("'{}': model with an empty id", info.id));
        }
        if !models.insert(model.id.as_str()) {
            return Err(format!("'{}': model '{}' listed twice", info.id, model.id));
        }
    }
    Ok(())
}

/// Describes a fault for the error message (no plugin output: it may
/// contain anything).
fn fault_message(config: &RuntimeConfig, state: &HostState, error: &wasmtime::Error) -> String {
    if state.call.cpu_exceeded {
        format!(
            "exceeded its CPU time limit ({} ms)",
            config.call_time_limit.as_millis()
        )
    } else if state.limiter.exceeded {
        format!(
            "exceeded its memory limit ({} MiB)",
            config.memory_limit_bytes >> 20
        )
    } else if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        // Trap's Display starts with "wasm trap: ".
        format!(
            "trapped: {}",
            trap.to_string().trim_start_matches("wasm trap: ")
        )
    } else {
        format!("{error:#}")
    }
}

pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A store with an instantiated component, reusable across calls.
struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    /// When it last went back to the pool.
    idle_since: Instant,
}

/// One of a plugin version's places for a request in flight; dropping it
/// frees the place.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Instance {
    /// Prepares a call on behalf of `endpoint` with a fresh CPU budget.
    fn begin(&mut self, endpoint: Option<&Endpoint>, ticks: u64) {
        self.store.data_mut().begin_call(endpoint, ticks);
        self.store.set_epoch_deadline(1);
    }

    /// A fresh CPU budget for the next call of the same stream.
    fn rebudget(&mut self, ticks: u64) {
        self.store.data_mut().reset_budget(ticks);
        self.store.set_epoch_deadline(1);
    }
}

/// One loaded version of a provider plugin.
pub struct Plugin {
    pub info: ProviderInfo,
    /// Contract version the component implements, e.g. `0.1.0`.
    pub wit_version: String,
    pub file: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub loaded_at_unix_ms: u64,
    compile_source: CompileSource,
    runtime: Arc<PluginRuntime>,
    pre: Pre,
    ctx: Arc<PluginCtx>,
    idle: Mutex<Vec<Instance>>,
    /// One permit per request in flight, up to `max_concurrent_calls`.
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("id", &self.info.id)
            .field("version", &self.info.version)
            .field("wit_version", &self.wit_version)
            .field("file", &self.file)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// Whether the compiled code came from the disk cache.
    pub fn compile_source(&self) -> CompileSource {
        self.compile_source
    }

    /// Idle instances currently pooled.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|idle| idle.len()).unwrap_or(0)
    }

    pub async fn build_chat_request(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
        stream: bool,
    ) -> Result<HttpRequest, PluginError> {
        let json = to_json(request)?;
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .build_chat_request(&mut instance.store, endpoint, &json, stream)
            .await;
        self.settle(instance, "build-chat-request", result)?
            .map_err(PluginError::Provider)
    }

    pub async fn parse_chat_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ChatResponse, PluginError> {
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .parse_chat_response(&mut instance.store, endpoint, response)
            .await;
        self.settle_json(instance, "parse-chat-response", result)
    }

    pub async fn build_embeddings_request(
        &self,
        endpoint: &Endpoint,
        request: &EmbeddingsRequest,
    ) -> Result<HttpRequest, PluginError> {
        let json = to_json(request)?;
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .build_embeddings_request(&mut instance.store, endpoint, &json)
            .await;
        self.settle(instance, "build-embeddings-request", result)?
            .map_err(PluginError::Provider)
    }

    pub async fn parse_embeddings_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<EmbeddingsResponse, PluginError> {
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .parse_embeddings_response(&mut instance.store, endpoint, response)
            .await;
        self.settle_json(instance, "parse-embeddings-response", result)
    }

    /// The upstream request counting `request`'s input tokens; a plugin
    /// built against a contract before 0.3.0 answers a typed error.
    pub async fn build_count_tokens_request(
        &self,
        endpoint: &Endpoint,
        request: &ChatRequest,
    ) -> Result<HttpRequest, PluginError> {
        let json = to_json(request)?;
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .build_count_tokens_request(&mut instance.store, endpoint, &json)
            .await;
        self.settle(instance, "build-count-tokens-request", result)?
            .map_err(PluginError::Provider)
    }

    pub async fn parse_count_tokens_response(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<u64, PluginError> {
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .parse_count_tokens_response(&mut instance.store, endpoint, response)
            .await;
        self.settle(instance, "parse-count-tokens-response", result)?
            .map_err(PluginError::Provider)
    }

    pub async fn parse_error(
        &self,
        endpoint: &Endpoint,
        response: HttpResponse,
    ) -> Result<ProviderError, PluginError> {
        let mut instance = self.checkout(Some(endpoint)).await?;
        let result = instance
            .bindings
            .parse_error(&mut instance.store, endpoint, response)
            .await;
        self.settle(instance, "parse-error", result)
    }

    /// A decoder for one streaming response body, on its own instance.
    pub async fn stream_decoder(
        self: &Arc<Self>,
        endpoint: &Endpoint,
    ) -> Result<StreamDecoder, PluginError> {
        let mut instance = self.checkout(Some(endpoint)).await?;
        match instance
            .bindings
            .decoder_new(&mut instance.store, endpoint)
            .await
        {
            Ok(resource) => Ok(StreamDecoder {
                plugin: self.clone(),
                slot: None,
                joined: Vec::new(),
                active: Some(ActiveDecoder {
                    instance,
                    resource,
                    busy: false,
                }),
            }),
            Err(error) => Err(self.fault(&instance, "stream-decoder", &error)),
        }
    }

    /// Requests of this plugin version in flight (slots reserved).
    pub fn requests_in_flight(&self) -> usize {
        self.runtime
            .config
            .max_concurrent_calls
            .saturating_sub(self.slots.available_permits())
    }

    /// A place for one request in flight, waiting for one to free up up to
    /// `busy_wait` or `within`, whichever is shorter (the caller's time
    /// budget: waiting here is part of the request's time). Taken before
    /// the upstream is called and held until its answer is read (a
    /// stream's until its end, see [`StreamDecoder::hold`]), so a request
    /// the upstream has begun to answer is never refused for want of one.
    pub async fn reserve(&self, within: Duration) -> Result<Slot, Busy> {
        // The uncontended case costs one atomic operation, no timer.
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot { _permit: permit });
        }
        let wait = self.runtime.config.busy_wait.min(within);
        match tokio::time::timeout(wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            // Timed out (the semaphore is never closed).
            _ => {
                let limit = self.runtime.config.max_concurrent_calls;
                ::metrics::counter!("portico_plugin_busy_total", "plugin" => self.info.id.clone())
                    .increment(1);
                tracing::debug!(plugin = %self.info.id, limit, "plugin at its limit of requests in flight");
                Err(Busy {
                    plugin: self.info.id.clone(),
                    limit,
                })
            }
        }
    }

    /// An idle instance, or a new one, ready for a call.
    async fn checkout(&self, endpoint: Option<&Endpoint>) -> Result<Instance, PluginError> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut instance = match idle {
            Some(instance) => instance,
            None => self.runtime.instantiate(&self.pre, self.ctx.clone()).await.map_err(|message| {
                tracing::warn!(plugin = %self.info.id, version = %self.info.version, %message, "plugin instantiation failed");
                PluginError::Fault { plugin: self.info.id.clone(), message }
            })?,
        };
        instance.begin(endpoint, self.runtime.call_ticks);
        Ok(instance)
    }

    /// Returns a healthy instance to the pool (or drops it when the pool is
    /// full or the instance grew large).
    fn checkin(&self, mut instance: Instance) {
        if instance.store.data().limiter.peak > MAX_POOLED_MEMORY {
            return;
        }
        instance.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.runtime.config.max_idle_instances {
            idle.push(instance);
        }
    }

    /// Drops the pooled instances idle for the runtime's
    /// `idle_instance_ttl` as of `now`, except the most recently used one;
    /// returns how many were dropped.
    pub fn trim_idle(&self, now: Instant) -> usize {
        let ttl = self.runtime.config.idle_instance_ttl;
        let expired: Vec<Instance> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Instances are pushed as they come back and popped from the
            // end, so the pool is ordered oldest first.
            let stale = idle
                .iter()
                .take_while(|instance| now.saturating_duration_since(instance.idle_since) >= ttl)
                .count()
                .min(idle.len().saturating_sub(1));
            idle.drain(..stale).collect()
        };
        // Unmapping their memory happens here, outside the lock.
        expired.len()
    }

    /// Pools the instance after a clean call, or reports the fault.
    fn settle<T>(
        &self,
        instance: Instance,
        operation: &str,
        result: wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        match result {
            Ok(value) => {
                self.checkin(instance);
                Ok(value)
            }
            Err(error) => Err(self.fault(&instance, operation, &error)),
        }
    }

    /// Like `settle`, and decodes the JSON document the plugin returned;
    /// invalid JSON is a fault.
    fn settle_json<T: DeserializeOwned>(
        &self,
        instance: Instance,
        operation: &str,
        result: wasmtime::Result<Result<String, ProviderError>>,
    ) -> Result<T, PluginError> {
        match result {
            Ok(Ok(json)) => match serde_json::from_str(&json) {
                Ok(value) => {
                    self.checkin(instance);
                    Ok(value)
                }
                Err(e) => Err(self.bad_output(operation, &e)),
            },
            Ok(Err(error)) => {
                self.checkin(instance);
                Err(PluginError::Provider(error))
            }
            Err(error) => Err(self.fault(&instance, operation, &error)),
        }
    }

    /// Logs a fault (with the plugin's redacted output) and makes its error.
    /// The caller drops the instance.
    fn fault(&self, instance: &Instance, operation: &str, error: &wasmtime::Error) -> PluginError {
        let state = instance.store.data();
        let message = fault_message(&self.runtime.config, state, error);
        let output = state.redact(&state.output.text());
        tracing::warn!(
            plugin = %self.info.id,
            version = %self.info.version,
            operation,
            error = %message,
            plugin_output = %output,
            "plugin call failed; instance discarded"
        );
        PluginError::Fault {
            plugin: self.info.id.clone(),
            message,
        }
    }

    fn bad_output(&self, operation: &str, error: &serde_json::Error) -> PluginError {
        let message = format!("returned invalid JSON from {operation}: {error}");
        tracing::warn!(plugin = %self.info.id, version = %self.info.version, operation, error = %message, "plugin call failed; instance discarded");
        PluginError::Fault {
            plugin: self.info.id.clone(),
            message,
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, PluginError> {
    portico_model::json::to_string(value).map_err(|e| {
        PluginError::Provider(ProviderError::internal(format!(
            "cannot encode request: {e}"
        )))
    })
}

/// Decodes one stream on a dedicated instance. Holds its [`Plugin`], so the
/// version a stream started on serves it to the end, whatever reloads
/// happen meanwhile.
pub struct StreamDecoder {
    plugin: Arc<Plugin>,
    /// `None` once finished or after a fault.
    active: Option<ActiveDecoder>,
    /// The request's place in flight, held until the stream ends.
    slot: Option<Slot>,
    /// Reused buffer for chunks fed to the decoder in one call.
    joined: Vec<u8>,
}

struct ActiveDecoder {
    instance: Instance,
    resource: ResourceAny,
    /// Set while a call is in progress: if the future is dropped mid-call
    /// the instance state is unknown and it must not be reused.
    busy: bool,
}

impl StreamDecoder {
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Keeps the request's slot until the stream finishes or is dropped.
    pub fn hold(&mut self, slot: Slot) {
        self.slot = Some(slot);
    }

    /// Feeds body chunks already received (each split anywhere) and
    /// returns their events, then the error the stream ended with if they
    /// hold one. A decoder of contract 0.2.0 or later takes them in one
    /// call. A 0.1.0 decoder's failing call returns its error alone, so it
    /// takes one call per chunk: the events of the chunks before an error
    /// still come out ahead of it.
    pub async fn feed<C: AsRef<[u8]>>(&mut self, chunks: &[C]) -> Decoded {
        let batches = match &self.active {
            Some(active) => active.instance.bindings.decodes_batches(),
            None => false,
        };
        if batches && chunks.len() > 1 {
            let mut joined = std::mem::take(&mut self.joined);
            joined.clear();
            for chunk in chunks {
                joined.extend_from_slice(chunk.as_ref());
            }
            let decoded = self.push_once(&joined).await;
            self.joined = joined;
            return decoded;
        }
        let mut all = Decoded::default();
        for chunk in chunks {
            let decoded = self.push_once(chunk.as_ref()).await;
            all.events.extend(decoded.events);
            if decoded.error.is_some() {
                all.error = decoded.error;
                break;
            }
        }
        all
    }

    /// Feeds the next chunk of the body (split anywhere); an error drops
    /// the events decoded together with it (see [`feed`](Self::feed)).
    pub async fn push(&mut self, chunk: &[u8]) -> Result<Vec<StreamEvent>, PluginError> {
        self.push_once(chunk).await.into_result()
    }

    async fn push_once(&mut self, chunk: &[u8]) -> Decoded {
        let ticks = self.plugin.runtime.call_ticks;
        let active = match self.active() {
            Ok(active) => active,
            Err(error) => return Decoded::failed(error),
        };
        active.busy = true;
        active.instance.rebudget(ticks);
        let result = active
            .instance
            .bindings
            .decoder_push(&mut active.instance.store, active.resource, chunk)
            .await;
        active.busy = false;
        self.events("stream-decoder.push", result)
    }

    /// Signals the end of the body: the remaining events, then the error
    /// the stream ended with, if any. The decoder is closed afterwards and
    /// its instance returned to the pool.
    pub async fn end(&mut self) -> Decoded {
        let ticks = self.plugin.runtime.call_ticks;
        let active = match self.active() {
            Ok(active) => active,
            Err(error) => return Decoded::failed(error),
        };
        active.busy = true;
        active.instance.rebudget(ticks);
        let result = active
            .instance
            .bindings
            .decoder_finish(&mut active.instance.store, active.resource)
            .await;
        active.busy = false;
        let decoded = self.events("stream-decoder.finish", result);
        if let Some(active) = self.active.take() {
            active.close(&self.plugin).await;
        }
        self.slot = None;
        decoded
    }

    /// [`end`](Self::end), with an error dropping the events before it.
    pub async fn finish(&mut self) -> Result<Vec<StreamEvent>, PluginError> {
        self.end().await.into_result()
    }

    fn active(&mut self) -> Result<&mut ActiveDecoder, PluginError> {
        self.active.as_mut().ok_or_else(|| PluginError::Fault {
            plugin: self.plugin.info.id.clone(),
            message: "stream decoder used after it finished or failed".into(),
        })
    }

    fn events(&mut self, operation: &str, result: wasmtime::Result<bindings::Decoded>) -> Decoded {
        let fault = match result {
            Ok(decoded) => {
                match decoded
                    .events
                    .iter()
                    .map(|j| serde_json::from_str(j))
                    .collect::<Result<Vec<StreamEvent>, _>>()
                {
                    Ok(events) => {
                        return Decoded {
                            events,
                            error: decoded.error.map(PluginError::Provider),
                        };
                    }
                    Err(e) => self.plugin.bad_output(operation, &e),
                }
            }
            Err(error) => match &self.active {
                Some(active) => self.plugin.fault(&active.instance, operation, &error),
                None => {
                    return Decoded::failed(PluginError::Provider(ProviderError::internal(
                        "stream decoder closed",
                    )));
                }
            },
        };
        // Discard the instance: a faulted decoder cannot be trusted again.
        self.active = None;
        Decoded::failed(fault)
    }
}

/// What a stream decoder made of some body bytes: the events decoded, in
/// order, then the error that ended the stream after them, if any.
#[derive(Debug, Default)]
pub struct Decoded {
    pub events: Vec<StreamEvent>,
    pub error: Option<PluginError>,
}

impl Decoded {
    fn failed(error: PluginError) -> Self {
        Decoded {
            events: Vec::new(),
            error: Some(error),
        }
    }

    /// The events, or the error alone (dropping the events before it).
    pub fn into_result(self) -> Result<Vec<StreamEvent>, PluginError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.events),
        }
    }
}

impl ActiveDecoder {
    /// Runs the guest destructor and pools the instance if all went well.
    async fn close(mut self, plugin: &Plugin) {
        self.instance.rebudget(plugin.runtime.call_ticks);
        match self
            .resource
            .resource_drop_async(&mut self.instance.store)
            .await
        {
            Ok(()) => plugin.checkin(self.instance),
            Err(error) => {
                plugin.fault(&self.instance, "stream-decoder.drop", &error);
            }
        }
    }
}

impl Drop for StreamDecoder {
    fn drop(&mut self) {
        // A stream abandoned midway (client gone): close the decoder in the
        // background so its instance can be reused. One caught mid-call is
        // simply dropped with its store.
        let Some(active) = self.active.take() else {
            return;
        };
        if active.busy {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let plugin = self.plugin.clone();
            handle.spawn(async move { active.close(&plugin).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_check() {
        assert!(matches!(
            check_component_header(b""),
            Err(LoadError::NotComponent(""))
        ));
        assert!(matches!(
            check_component_header(b"hello world"),
            Err(LoadError::NotComponent(""))
        ));
        let module = b"\0asm\x01\0\0\0";
        let err = check_component_header(module).unwrap_err().to_string();
        assert!(
            err.starts_with("not a WebAssembly component (it is a core module"),
            "{err}"
        );
        assert!(check_component_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn fault_maps_to_502() {
        let fault = PluginError::Fault {
            plugin: "openai".into(),
            message: "exceeded its CPU time limit (1000 ms)".into(),
        };
        let error = fault.into_provider_error();
        assert_eq!(error.kind, ErrorKind::Upstream);
        assert_eq!(error.status, 502);
        assert_eq!(
            error.message,
            "provider plugin 'openai' failed: exceeded its CPU time limit (1000 ms)"
        );
        let typed = ProviderError::new(ErrorKind::RateLimited, "slow down");
        assert_eq!(
            PluginError::Provider(typed.clone()).into_provider_error(),
            typed
        );
    }

    fn info() -> ProviderInfo {
        serde_json::from_value(serde_json::json!({
            "id": "openai", "display_name": "OpenAI", "version": "1.0.0",
            "operations": ["chat"], "config_fields": [
                {"name": "api_key", "label": "API key", "kind": "secret", "required": true},
                {"name": "tier", "label": "Tier", "kind": "enum", "required": false, "options": ["a", "b"], "default_value": "a"}
            ],
            "egress_hosts": ["oauth2.example.com", "token.example.com:8443"],
            "models": [{"id": "m", "display_name": "M", "context_window": 1, "input_price_per_mtok": 0.0}]
        }))
        .unwrap()
    }

    #[test]
    fn validation() {
        assert_eq!(validate(&info()), Ok(()));
        let check = |f: fn(&mut ProviderInfo), expected: &str| {
            let mut i = info();
            f(&mut i);
            let err = validate(&i).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        };
        check(|i| i.id.clear(), "empty id");
        check(|i| i.id = "Open AI".into(), "must be 1-64 characters");
        check(|i| i.display_name.clear(), "empty display name");
        check(|i| i.version.clear(), "empty version");
        check(|i| i.operations.clear(), "no operations");
        check(
            |i| i.config_fields[1].name = "api_key".into(),
            "declared twice",
        );
        check(|i| i.config_fields[1].options.clear(), "has no options");
        check(
            |i| i.config_fields[1].default_value = Some("c".into()),
            "not one of its options",
        );
        check(
            |i| i.egress_hosts.push("https://x.example.com/path".into()),
            "invalid egress host",
        );
        check(|i| i.models.push(i.models[0].clone()), "listed twice");
    }
}
