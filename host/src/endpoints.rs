//! Endpoints: the in-memory table routing reads, and the manager that owns
//! their persistent state.
//!
//! The [`EndpointManager`] validates endpoint definitions against the
//! provider's declared config fields, encrypts secret values, writes them to
//! the [`Store`], and after every write refreshes the [`EndpointTable`] from
//! the store (secrets decrypted), so the next request sees the change. The
//! table is the only place secrets exist in clear, and only the plugin
//! serving an endpoint receives that endpoint's config.
//!
//! Endpoints come from the management API (source `api`) and from the
//! declarative file (source `file`), which is applied to the store at start
//! and whenever it changes. API writes to a file-sourced endpoint are
//! refused (409): the file stays the single source of truth for its
//! endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use portico_model::plugin::{ConfigField, FieldKind, ProviderInfo};
use serde::{Deserialize, Serialize};

use crate::policy::EndpointPolicy;
use crate::registry::Registry;
use crate::secrets::{self, Cipher, SecretsError};
use crate::store::{Source, Store, StoreError, StoredEndpoint};
use crate::tasks::AbortOnDrop;

/// An endpoint as configured: what clients call it and where it goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointDef {
    /// Name clients pass as `model`.
    pub name: String,
    /// Plugin (provider) id.
    pub provider: String,
    /// Upstream model id.
    pub model: String,
    /// Provider configuration values (secrets in clear: never log these).
    pub config: BTreeMap<String, String>,
    /// Targets, fallbacks, retries, timeouts and limits.
    #[serde(default)]
    pub policy: EndpointPolicy,
}

/// Lock-free read, copy-on-write table of endpoints by name.
#[derive(Default)]
pub struct EndpointTable {
    by_name: ArcSwap<HashMap<String, Arc<EndpointDef>>>,
}

impl EndpointTable {
    pub fn new(defs: impl IntoIterator<Item = EndpointDef>) -> Self {
        let table = Self::default();
        table.replace_all(defs);
        table
    }

    pub fn get(&self, name: &str) -> Option<Arc<EndpointDef>> {
        self.by_name.load().get(name).cloned()
    }

    /// All endpoints, sorted by name.
    pub fn list(&self) -> Vec<Arc<EndpointDef>> {
        let mut all: Vec<_> = self.by_name.load().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    pub fn replace_all(&self, defs: impl IntoIterator<Item = EndpointDef>) {
        let map = defs
            .into_iter()
            .map(|d| (d.name.clone(), Arc::new(d)))
            .collect();
        self.by_name.store(Arc::new(map));
    }
}

/// What the API shows in place of a secret value.
pub const MASK: &str = "********";
/// Longest endpoint name.
const MAX_NAME_LEN: usize = 128;
/// Quiet time after the last change to the endpoints file before it is
/// applied: an editor's multi-step save is applied once.
const FILE_DEBOUNCE: Duration = Duration::from_millis(250);
/// Meta key of the value that proves the master key is the one the store
/// was written with.
const KEY_CHECK: &str = "master_key_check";
const KEY_CHECK_PLAINTEXT: &str = "portico master key check";

/// An endpoint as the management API shows it: secrets masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub provider: String,
    pub model: String,
    /// Values by field; secret values appear as [`MASK`].
    pub config: BTreeMap<String, String>,
    /// Secret fields that have a value.
    pub secrets_set: Vec<String>,
    /// Targets, fallbacks, retries, timeouts, breaker and limits.
    #[serde(default)]
    pub policy: EndpointPolicy,
    pub source: Source,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// An endpoint definition as written through the API: config values are
/// JSON (strings; numbers and booleans are taken as their text; objects and
/// arrays only for `secret_json` fields; null or "" means unset).
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// Empty for a router: an endpoint that only routes to its targets.
    pub provider: String,
    pub model: String,
    pub config: BTreeMap<String, serde_json::Value>,
    pub policy: EndpointPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The request is wrong (400).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretsError),
}

impl From<StoreError> for ManageError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::AlreadyExists(name) => {
                ManageError::Conflict(format!("endpoint '{name}' already exists"))
            }
            StoreError::NotFound(name) => {
                ManageError::NotFound(format!("endpoint '{name}' does not exist"))
            }
            other => ManageError::Store(other),
        }
    }
}

/// What applying the endpoints file changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileApplied {
    /// Endpoints the file declares.
    pub declared: usize,
    /// Of those, created or changed in the store.
    pub written: Vec<String>,
    /// File-sourced endpoints removed because the file no longer has them.
    pub deleted: Vec<String>,
}

/// Owns endpoint state: store, encryption, validation, the routing table.
pub struct EndpointManager {
    store: Arc<dyn Store>,
    cipher: Cipher,
    registry: Arc<Registry>,
    table: Arc<EndpointTable>,
    /// Serializes write + refresh, so refreshes land in write order and a
    /// file apply never interleaves with an API write.
    writes: tokio::sync::Mutex<()>,
}

/// Stops watching the endpoints file when dropped.
pub struct FileWatchGuard {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    _task: AbortOnDrop,
}

impl EndpointManager {
    /// A manager over `store`; checks that `cipher` holds the key the store
    /// was written with (recording it on first use) and fills `table`.
    pub async fn new(
        store: Arc<dyn Store>,
        cipher: Cipher,
        registry: Arc<Registry>,
        table: Arc<EndpointTable>,
    ) -> anyhow::Result<Arc<Self>> {
        match store.get_meta(KEY_CHECK).await? {
            Some(sealed) => {
                let opened = cipher.decrypt("", KEY_CHECK, &sealed);
                anyhow::ensure!(
                    opened.as_deref().ok() == Some(KEY_CHECK_PLAINTEXT),
                    "the master key is not the one the endpoint store {} was written with: \
                     set {} to the original key (or restore the original {} in the data dir)",
                    store.location(),
                    secrets::KEY_ENV,
                    secrets::KEY_FILE,
                );
            }
            None => {
                let sealed = cipher.encrypt("", KEY_CHECK, KEY_CHECK_PLAINTEXT)?;
                store.set_meta(KEY_CHECK, &sealed).await?;
            }
        }
        let manager = Arc::new(EndpointManager {
            store,
            cipher,
            registry,
            table,
            writes: tokio::sync::Mutex::new(()),
        });
        manager.refresh().await?;
        Ok(manager)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn table(&self) -> &Arc<EndpointTable> {
        &self.table
    }

    pub async fn list(&self) -> Result<Vec<EndpointView>, ManageError> {
        let stored = self.store.list_endpoints().await?;
        Ok(stored.iter().map(|e| self.view(e)).collect())
    }

    pub async fn get(&self, name: &str) -> Result<EndpointView, ManageError> {
        let stored = self
            .store
            .get_endpoint(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        Ok(self.view(&stored))
    }

    pub async fn create(
        &self,
        name: &str,
        input: EndpointInput,
    ) -> Result<EndpointView, ManageError> {
        validate_name(name)?;
        let _serial = self.writes.lock().await;
        if self.store.get_endpoint(name).await?.is_some() {
            return Err(ManageError::Conflict(format!(
                "endpoint '{name}' already exists"
            )));
        }
        let (info, plain, model) = self.validate_input(name, &input, None)?;
        let now = now();
        let stored = StoredEndpoint {
            name: name.to_string(),
            config: self.seal(name, &plain, info.as_ref())?,
            provider: input.provider,
            model,
            policy: input.policy,
            source: Source::Api,
            created_at: now,
            updated_at: now,
        };
        self.check_references(&stored).await?;
        self.store.create_endpoint(&stored).await?;
        tracing::info!(endpoint = %name, provider = %stored.provider, model = %stored.model, "endpoint created");
        self.refresh().await?;
        Ok(self.view(&stored))
    }

    /// Full replacement; a secret field left out (or sent as [`MASK`])
    /// keeps its stored value while the provider stays the same.
    pub async fn replace(
        &self,
        name: &str,
        input: EndpointInput,
    ) -> Result<EndpointView, ManageError> {
        let _serial = self.writes.lock().await;
        let existing = self
            .store
            .get_endpoint(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        refuse_file_sourced(&existing, "changed")?;
        let previous = if existing.provider == input.provider {
            Some(self.open(&existing)?)
        } else {
            None
        };
        let (info, plain, model) = self.validate_input(name, &input, previous.as_ref())?;
        let stored = StoredEndpoint {
            name: name.to_string(),
            config: self.seal(name, &plain, info.as_ref())?,
            provider: input.provider,
            model,
            policy: input.policy,
            source: Source::Api,
            created_at: existing.created_at,
            updated_at: now(),
        };
        self.check_references(&stored).await?;
        self.store.update_endpoint(&stored).await?;
        tracing::info!(endpoint = %name, provider = %stored.provider, model = %stored.model, "endpoint updated");
        self.refresh().await?;
        Ok(self.view(&stored))
    }

    pub async fn delete(&self, name: &str) -> Result<(), ManageError> {
        let _serial = self.writes.lock().await;
        let existing = self
            .store
            .get_endpoint(name)
            .await?
            .ok_or_else(|| not_found(name))?;
        refuse_file_sourced(&existing, "deleted")?;
        if !self.store.delete_endpoint(name).await? {
            return Err(not_found(name));
        }
        tracing::info!(endpoint = %name, "endpoint deleted");
        self.refresh().await?;
        Ok(())
    }

    /// Makes the file-sourced endpoints match `defs` (the whole file). Any
    /// invalid endpoint rejects the whole file and changes nothing. An
    /// endpoint whose provider plugin is not loaded is stored unvalidated,
    /// every value encrypted.
    pub async fn apply_file(&self, defs: Vec<EndpointDef>) -> Result<FileApplied, ManageError> {
        let _serial = self.writes.lock().await;
        let mut upserts = Vec::new();
        let mut keep = BTreeSet::new();
        let mut applied = FileApplied {
            declared: defs.len(),
            ..FileApplied::default()
        };
        let now = now();
        for def in defs {
            let context = |e: ManageError| match e {
                ManageError::Invalid(msg) => {
                    ManageError::Invalid(format!("endpoint '{}': {msg}", def.name))
                }
                other => other,
            };
            validate_name(&def.name).map_err(context)?;
            let config_given = def.config.values().any(|v| !v.is_empty());
            validate_policy(&def.provider, &def.model, config_given, &def.policy)
                .map_err(context)?;
            let router = def.provider.is_empty();
            let model = if router {
                String::new()
            } else {
                validate_model(&def.model).map_err(context)?
            };
            let info = if router {
                None
            } else {
                self.registry.get(&def.provider).map(|p| p.info.clone())
            };
            let plain = match &info {
                _ if router => BTreeMap::new(),
                Some(info) => {
                    let input = EndpointInput {
                        provider: def.provider.clone(),
                        model: model.clone(),
                        config: def
                            .config
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect(),
                        policy: EndpointPolicy::default(),
                    };
                    validate_config(info, &input, None).map_err(context)?
                }
                None => {
                    tracing::warn!(
                        endpoint = %def.name,
                        provider = %def.provider,
                        "provider plugin of a file endpoint is not loaded: stored without validation"
                    );
                    def.config
                        .iter()
                        .filter(|(_, v)| !v.is_empty())
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                }
            };
            let existing = self.store.get_endpoint(&def.name).await?;
            keep.insert(def.name.clone());
            if let Some(existing) = &existing {
                let sealed_alike = existing.config.iter().all(|(key, value)| {
                    secrets::is_encrypted(value)
                        == info.as_ref().is_none_or(|i| is_secret_field(i, key))
                });
                if existing.source == Source::File
                    && existing.provider == def.provider
                    && existing.model == model
                    && existing.policy == def.policy
                    && sealed_alike
                    && self.open(existing).ok().as_ref() == Some(&plain)
                {
                    continue; // unchanged: keep its ciphertexts and timestamps
                }
                if existing.source == Source::Api {
                    tracing::warn!(endpoint = %def.name, "endpoint created through the API is now managed by the endpoints file");
                }
            }
            upserts.push(StoredEndpoint {
                config: self.seal(&def.name, &plain, info.as_ref())?,
                name: def.name,
                provider: def.provider,
                model,
                policy: def.policy,
                source: Source::File,
                created_at: existing.as_ref().map_or(now, |e| e.created_at),
                updated_at: now,
            });
        }
        // References are checked against what the store will hold: the
        // file's endpoints and the API ones it does not replace.
        let mut after: Vec<StoredEndpoint> = self
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .filter(|e| e.source == Source::Api && !keep.contains(&e.name))
            .collect();
        let unchanged: Vec<StoredEndpoint> = {
            let mut kept = Vec::new();
            for name in &keep {
                if !upserts.iter().any(|u| &u.name == name)
                    && let Some(existing) = self.store.get_endpoint(name).await?
                {
                    kept.push(existing);
                }
            }
            kept
        };
        after.extend(unchanged);
        after.extend(upserts.iter().cloned());
        check_graph(&after, &keep)?;
        applied.deleted = self.store.sync_file_endpoints(&upserts, &keep).await?;
        applied.written = upserts.into_iter().map(|e| e.name).collect();
        self.refresh().await?;
        Ok(applied)
    }

    /// Reads the endpoints file at `path` and applies it; a missing file
    /// declares no endpoints. Errors (unreadable, invalid) change nothing
    /// and are logged by the caller.
    pub async fn apply_file_at(&self, path: &Path) -> anyhow::Result<FileApplied> {
        let defs = match crate::config::load_endpoints(path) {
            Ok(defs) => defs,
            Err(error)
                if error
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                tracing::debug!(path = %path.display(), "no endpoints file");
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        self.apply_file(defs)
            .await
            .with_context(|| format!("in endpoints file {}", path.display()))
    }

    /// [`EndpointManager::apply_file_at`] with the outcome logged; never
    /// fails (a broken file is ignored and the current endpoints serve on).
    pub async fn apply_file_logged(&self, path: &Path) {
        match self.apply_file_at(path).await {
            Ok(applied) => {
                if !applied.written.is_empty() || !applied.deleted.is_empty() {
                    tracing::info!(
                        path = %path.display(),
                        declared = applied.declared,
                        written = ?applied.written,
                        deleted = ?applied.deleted,
                        "endpoints file applied"
                    );
                }
            }
            Err(error) => tracing::error!(
                path = %path.display(),
                error = %format!("{error:#}"),
                "endpoints file not applied; the current endpoints keep serving"
            ),
        }
    }

    /// Applies the endpoints file whenever it changes (created, written,
    /// replaced, removed). Watches its directory, since editors and
    /// deployment tools replace files rather than write them in place.
    pub fn watch_file(self: &Arc<Self>, path: PathBuf) -> anyhow::Result<FileWatchGuard> {
        let handle = tokio::runtime::Handle::try_current()
            .context("EndpointManager::watch_file needs a Tokio runtime")?;
        let file_name = path
            .file_name()
            .context("the endpoints file path has no file name")?
            .to_os_string();
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(
            FILE_DEBOUNCE,
            Some(FILE_DEBOUNCE / 4),
            move |result: DebounceEventResult| {
                let relevant = match result {
                    Ok(events) => events
                        .iter()
                        .flat_map(|e| e.paths.iter())
                        .any(|p| p.file_name() == Some(file_name.as_os_str())),
                    // Missed events: re-read to be safe.
                    Err(_) => true,
                };
                if relevant {
                    // The receiver is gone only when the guard was dropped.
                    let _ = tx.send(());
                }
            },
        )
        .context("cannot start the endpoints file watcher")?;
        debouncer
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        let manager: Weak<EndpointManager> = Arc::downgrade(self);
        let task = handle.spawn(async move {
            while rx.recv().await.is_some() {
                while rx.try_recv().is_ok() {} // coalesce a burst
                let Some(manager) = manager.upgrade() else {
                    break;
                };
                manager.apply_file_logged(&path).await;
            }
        });
        Ok(FileWatchGuard {
            _debouncer: debouncer,
            _task: AbortOnDrop(task),
        })
    }

    /// Rebuilds the routing table from the store. An endpoint whose secrets
    /// do not decrypt is left out (and logged), not fatal for the others.
    pub async fn refresh(&self) -> Result<(), ManageError> {
        let stored = self.store.list_endpoints().await?;
        let mut defs = Vec::with_capacity(stored.len());
        for endpoint in &stored {
            match self.open(endpoint) {
                Ok(config) => defs.push(EndpointDef {
                    name: endpoint.name.clone(),
                    provider: endpoint.provider.clone(),
                    model: endpoint.model.clone(),
                    config,
                    policy: endpoint.policy.clone(),
                }),
                Err(error) => tracing::error!(
                    endpoint = %endpoint.name,
                    %error,
                    "endpoint left out: its stored secrets cannot be decrypted"
                ),
            }
        }
        self.table.replace_all(defs);
        Ok(())
    }

    /// Checks an API write: the policy, and the provider config unless the
    /// endpoint is a router (no provider). Returns the provider (if any),
    /// the config in clear and the model.
    #[allow(clippy::type_complexity)]
    fn validate_input(
        &self,
        name: &str,
        input: &EndpointInput,
        previous: Option<&BTreeMap<String, String>>,
    ) -> Result<(Option<ProviderInfo>, BTreeMap<String, String>, String), ManageError> {
        let config_given = input
            .config
            .values()
            .any(|v| !v.is_null() && v.as_str() != Some(""));
        validate_policy(&input.provider, &input.model, config_given, &input.policy)?;
        if input.provider.is_empty() {
            tracing::debug!(endpoint = %name, "router endpoint");
            return Ok((None, BTreeMap::new(), String::new()));
        }
        let info = self.provider_info(&input.provider)?;
        let plain = validate_config(&info, input, previous)?;
        Ok((Some(info), plain, validate_model(&input.model)?))
    }

    /// Checks the references from and to `endpoint` against the stored
    /// endpoints, as they will be after writing it.
    async fn check_references(&self, endpoint: &StoredEndpoint) -> Result<(), ManageError> {
        let mut after: Vec<StoredEndpoint> = self
            .store
            .list_endpoints()
            .await?
            .into_iter()
            .filter(|e| e.name != endpoint.name)
            .collect();
        after.push(endpoint.clone());
        check_graph(&after, &BTreeSet::from([endpoint.name.clone()]))
    }

    fn provider_info(&self, provider: &str) -> Result<ProviderInfo, ManageError> {
        if let Some(plugin) = self.registry.get(provider) {
            return Ok(plugin.info.clone());
        }
        let available: Vec<String> = self
            .registry
            .plugins()
            .iter()
            .map(|p| p.info.id.clone())
            .collect();
        Err(ManageError::Invalid(format!(
            "unknown provider '{provider}'; available providers: {}",
            if available.is_empty() {
                "none (no plugin loaded)".to_string()
            } else {
                available.join(", ")
            }
        )))
    }

    /// Encrypts the secret values: fields of a secret kind, or every field
    /// when the provider is unknown.
    fn seal(
        &self,
        name: &str,
        plain: &BTreeMap<String, String>,
        info: Option<&ProviderInfo>,
    ) -> Result<BTreeMap<String, String>, ManageError> {
        plain
            .iter()
            .map(|(key, value)| {
                let secret = info.is_none_or(|info| is_secret_field(info, key));
                let stored = if secret {
                    self.cipher.encrypt(name, key, value)?
                } else {
                    value.clone()
                };
                Ok((key.clone(), stored))
            })
            .collect()
    }

    /// The config in clear.
    fn open(&self, endpoint: &StoredEndpoint) -> Result<BTreeMap<String, String>, SecretsError> {
        endpoint
            .config
            .iter()
            .map(|(key, value)| {
                let clear = if secrets::is_encrypted(value) {
                    self.cipher.decrypt(&endpoint.name, key, value)?
                } else {
                    value.clone()
                };
                Ok((key.clone(), clear))
            })
            .collect()
    }

    fn view(&self, endpoint: &StoredEndpoint) -> EndpointView {
        let info = self
            .registry
            .get(&endpoint.provider)
            .map(|p| p.info.clone());
        let mut secrets_set = Vec::new();
        let config = endpoint
            .config
            .iter()
            .map(|(key, value)| {
                // Encrypted values are always masked, even if the plugin
                // now calls the field plain; and so are values the plugin
                // calls secret.
                let secret = secrets::is_encrypted(value)
                    || info.as_ref().is_some_and(|i| is_secret_field(i, key));
                if secret {
                    secrets_set.push(key.clone());
                    (key.clone(), MASK.to_string())
                } else {
                    (key.clone(), value.clone())
                }
            })
            .collect();
        EndpointView {
            name: endpoint.name.clone(),
            provider: endpoint.provider.clone(),
            model: endpoint.model.clone(),
            config,
            secrets_set,
            policy: endpoint.policy.clone(),
            source: endpoint.source,
            created_at: rfc3339(endpoint.created_at),
            updated_at: rfc3339(endpoint.updated_at),
        }
    }
}

/// The shape rules of an endpoint with its policy: a router (no provider)
/// has targets and no model or config; the policy is valid on its own.
fn validate_policy(
    provider: &str,
    model: &str,
    config_given: bool,
    policy: &EndpointPolicy,
) -> Result<(), ManageError> {
    policy
        .validate()
        .map_err(|e| ManageError::Invalid(format!("invalid policy: {e}")))?;
    if provider.trim().is_empty() {
        if policy.targets.is_empty() {
            return Err(ManageError::Invalid(
                "'provider' is required unless the policy lists targets (a router endpoint)".into(),
            ));
        }
        if !model.trim().is_empty() || config_given {
            return Err(ManageError::Invalid(
                "a router endpoint (no provider) takes no model or config: its targets bring their own"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Checks targets and fallbacks across `endpoints` (the whole set after a
/// write), for the edges from or to the endpoints in `changed`: each
/// reference names an existing plain endpoint (one with a provider and no
/// targets or fallbacks of its own), or the endpoint itself when it has a
/// provider. Nesting is refused, which also rules out cycles. Edges between
/// unchanged endpoints are not checked: a deleted target is tolerated at
/// request time.
fn check_graph(
    endpoints: &[StoredEndpoint],
    changed: &BTreeSet<String>,
) -> Result<(), ManageError> {
    let by_name: HashMap<&str, &StoredEndpoint> =
        endpoints.iter().map(|e| (e.name.as_str(), e)).collect();
    for endpoint in endpoints {
        for reference in endpoint.policy.referenced() {
            let from_changed = changed.contains(&endpoint.name);
            if !from_changed && !changed.contains(reference) {
                continue;
            }
            if reference == endpoint.name {
                if endpoint.provider.is_empty() {
                    return Err(ManageError::Invalid(format!(
                        "endpoint '{}' lists itself as a target but has no provider",
                        endpoint.name
                    )));
                }
                continue;
            }
            match by_name.get(reference) {
                None if from_changed => {
                    return Err(ManageError::Invalid(format!(
                        "endpoint '{}' routes to '{reference}', which does not exist",
                        endpoint.name
                    )));
                }
                None => {}
                Some(target) if target.provider.is_empty() || target.policy.is_router() => {
                    return Err(ManageError::Invalid(format!(
                        "endpoint '{}' routes to '{reference}', which has targets or fallbacks of its own; \
                         targets and fallbacks must be plain endpoints (no nesting, no cycles)",
                        endpoint.name
                    )));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn not_found(name: &str) -> ManageError {
    ManageError::NotFound(format!("endpoint '{name}' does not exist"))
}

fn refuse_file_sourced(endpoint: &StoredEndpoint, what: &str) -> Result<(), ManageError> {
    if endpoint.source == Source::File {
        return Err(ManageError::Conflict(format!(
            "endpoint '{}' is declared in the endpoints file and cannot be {what} through the API; edit the file instead",
            endpoint.name
        )));
    }
    Ok(())
}

/// Now, at the store's millisecond precision (so a value read back compares
/// equal).
fn now() -> SystemTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn is_secret_field(info: &ProviderInfo, key: &str) -> bool {
    info.config_fields
        .iter()
        .any(|f| f.name == key && f.kind.is_secret())
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`: safe in URLs, logs and SDK
/// `model` fields.
pub fn validate_name(name: &str) -> Result<(), ManageError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if first_ok && rest_ok && name.len() <= MAX_NAME_LEN {
        Ok(())
    } else {
        Err(ManageError::Invalid(format!(
            "invalid endpoint name '{name}': use 1 to {MAX_NAME_LEN} letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

fn validate_model(model: &str) -> Result<String, ManageError> {
    let model = model.trim();
    if model.is_empty() {
        return Err(ManageError::Invalid("'model' must not be empty".into()));
    }
    Ok(model.to_string())
}

/// Checks `input.config` against the provider's fields and returns the
/// values to store, in clear. `previous` is the stored config (in clear) of
/// the endpoint being replaced: its secret values are kept where the input
/// omits them or sends [`MASK`].
pub fn validate_config(
    info: &ProviderInfo,
    input: &EndpointInput,
    previous: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>, ManageError> {
    let mut values = BTreeMap::new();
    for (key, value) in &input.config {
        let field = info
            .config_fields
            .iter()
            .find(|f| &f.name == key)
            .ok_or_else(|| {
                let known: Vec<&str> = info.config_fields.iter().map(|f| f.name.as_str()).collect();
                ManageError::Invalid(format!(
                    "unknown config key '{key}' for provider '{}'; known keys: {}",
                    info.id,
                    known.join(", ")
                ))
            })?;
        let Some(text) = value_text(field, value)? else {
            continue;
        };
        if field.kind.is_secret() && text == MASK {
            continue; // "unchanged": handled with the omitted secrets below
        }
        check_value(field, &text)?;
        values.insert(key.clone(), text);
    }
    if let Some(previous) = previous {
        for field in info.config_fields.iter().filter(|f| f.kind.is_secret()) {
            let resent = input
                .config
                .get(&field.name)
                .is_some_and(|v| v.as_str() != Some(MASK));
            if !resent && let Some(old) = previous.get(&field.name) {
                values.insert(field.name.clone(), old.clone());
            }
        }
    }
    for field in &info.config_fields {
        if field.required && field.default_value.is_none() && !values.contains_key(&field.name) {
            return Err(ManageError::Invalid(format!(
                "missing required config field '{}' ({}) for provider '{}'",
                field.name, field.label, info.id
            )));
        }
    }
    Ok(values)
}

/// The text of a config value; `None` for unset (null or empty).
fn value_text(
    field: &ConfigField,
    value: &serde_json::Value,
) -> Result<Option<String>, ManageError> {
    use serde_json::Value;
    let text = match value {
        Value::Null => return Ok(None),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Object(_) | Value::Array(_) if field.kind == FieldKind::SecretJson => {
            value.to_string()
        }
        Value::Object(_) | Value::Array(_) => {
            return Err(ManageError::Invalid(format!(
                "config field '{}' takes a string, not a JSON {}",
                field.name,
                if value.is_object() { "object" } else { "array" }
            )));
        }
    };
    Ok((!text.is_empty()).then_some(text))
}

fn check_value(field: &ConfigField, text: &str) -> Result<(), ManageError> {
    let invalid = |why: String| Err(ManageError::Invalid(why));
    if !field.kind.is_secret() && secrets::is_encrypted(text) {
        return invalid(format!(
            "config field '{}' must not start with '{}'",
            field.name,
            secrets::PREFIX
        ));
    }
    match field.kind {
        FieldKind::Url => match reqwest::Url::parse(text) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(()),
            _ => invalid(format!(
                "config field '{}' must be an http:// or https:// URL, got '{text}'",
                field.name
            )),
        },
        FieldKind::Enum if !field.options.iter().any(|o| o == text) => invalid(format!(
            "config field '{}' must be one of: {}; got '{text}'",
            field.name,
            field.options.join(", ")
        )),
        FieldKind::SecretJson if serde_json::from_str::<serde_json::Value>(text).is_err() => {
            // Never echo a secret back, even an invalid one.
            invalid(format!("config field '{}' must be valid JSON", field.name))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_model::plugin::Operation;
    use serde_json::json;

    fn field(name: &str, kind: FieldKind, required: bool) -> ConfigField {
        ConfigField {
            name: name.into(),
            label: name.to_uppercase(),
            kind,
            required,
            default_value: None,
            help: String::new(),
            options: Vec::new(),
        }
    }

    fn info() -> ProviderInfo {
        let mut region = field("region", FieldKind::Enum, false);
        region.options = vec!["eu".into(), "us".into()];
        let mut base_url = field("base_url", FieldKind::Url, true);
        base_url.default_value = Some("https://api.example.com/v1".into());
        ProviderInfo {
            id: "p".into(),
            display_name: "P".into(),
            version: "1".into(),
            description: String::new(),
            operations: vec![Operation::Chat],
            native_dialect: None,
            config_fields: vec![
                field("api_key", FieldKind::Secret, true),
                base_url,
                region,
                field("sa", FieldKind::SecretJson, false),
                field("org", FieldKind::String, false),
            ],
            egress_hosts: Vec::new(),
            models: Vec::new(),
        }
    }

    fn input(config: serde_json::Value) -> EndpointInput {
        EndpointInput {
            provider: "p".into(),
            model: "m".into(),
            config: serde_json::from_value(config).unwrap(),
            policy: EndpointPolicy::default(),
        }
    }

    fn invalid(result: Result<BTreeMap<String, String>, ManageError>) -> String {
        match result {
            Err(ManageError::Invalid(msg)) => msg,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn stored(name: &str, provider: &str, policy: serde_json::Value) -> StoredEndpoint {
        StoredEndpoint {
            name: name.into(),
            provider: provider.into(),
            model: if provider.is_empty() { "" } else { "m" }.into(),
            config: BTreeMap::new(),
            policy: serde_json::from_value(policy).unwrap(),
            source: Source::Api,
            created_at: UNIX_EPOCH,
            updated_at: UNIX_EPOCH,
        }
    }

    fn graph_error(endpoints: &[StoredEndpoint], changed: &[&str]) -> Option<String> {
        let changed = changed.iter().map(|c| c.to_string()).collect();
        match check_graph(endpoints, &changed) {
            Ok(()) => None,
            Err(ManageError::Invalid(msg)) => Some(msg),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn routing_references() {
        let a = stored("a", "p", json!({}));
        let b = stored("b", "p", json!({}));
        let router = stored(
            "r",
            "",
            json!({"targets": [{"endpoint": "a"}], "fallbacks": ["b"]}),
        );
        assert_eq!(
            graph_error(&[a.clone(), b.clone(), router.clone()], &["r"]),
            None
        );
        // Itself, when it has a provider (a split between itself and another).
        let split = stored(
            "s",
            "p",
            json!({"targets": [{"endpoint": "s"}, {"endpoint": "a"}]}),
        );
        assert_eq!(graph_error(&[a.clone(), split], &["s"]), None);
        let selfish = stored("x", "", json!({"targets": [{"endpoint": "x"}]}));
        assert!(
            graph_error(&[selfish], &["x"])
                .unwrap()
                .contains("no provider")
        );
        // Unknown references are refused on write, tolerated otherwise.
        assert!(
            graph_error(std::slice::from_ref(&router), &["r"])
                .unwrap()
                .contains("does not exist")
        );
        assert_eq!(graph_error(std::slice::from_ref(&router), &["other"]), None);
        // No nesting, hence no cycles: neither to a router nor by turning a
        // target into one.
        let nested = stored("n", "", json!({"targets": [{"endpoint": "r"}]}));
        let all = [a.clone(), b.clone(), router.clone(), nested];
        assert!(graph_error(&all, &["n"]).unwrap().contains("no nesting"));
        let a_router = stored("a", "p", json!({"fallbacks": ["r"]}));
        assert!(
            graph_error(&[a_router, b.clone(), router.clone()], &["a"])
                .unwrap()
                .contains("no nesting")
        );
    }

    #[test]
    fn router_shape() {
        let targets: EndpointPolicy =
            serde_json::from_value(json!({"targets": [{"endpoint": "a"}]})).unwrap();
        assert!(validate_policy("", "", false, &targets).is_ok());
        assert!(validate_policy("", "", false, &EndpointPolicy::default()).is_err());
        assert!(validate_policy("", "m", false, &targets).is_err());
        assert!(validate_policy("", "", true, &targets).is_err());
        assert!(validate_policy("p", "m", true, &targets).is_ok());
    }

    #[test]
    fn names() {
        for ok in ["a", "A-1", "gpt-4o.mini_x", &"x".repeat(128)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", ".a", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn config_validation() {
        let info = info();
        let ok = validate_config(
            &info,
            &input(
                json!({"api_key": "sk", "region": "eu", "org": 42, "sa": {"k": 1}, "base_url": ""}),
            ),
            None,
        )
        .unwrap();
        assert_eq!(ok["org"], "42");
        assert_eq!(ok["sa"], r#"{"k":1}"#);
        assert!(!ok.contains_key("base_url"), "empty means unset");

        assert!(invalid(validate_config(&info, &input(json!({})), None)).contains("'api_key'"));
        assert!(
            invalid(validate_config(
                &info,
                &input(json!({"api_key": "k", "colour": "x"})),
                None
            ))
            .contains("unknown config key 'colour'")
        );
        assert!(
            invalid(validate_config(
                &info,
                &input(json!({"api_key": "k", "region": "mars"})),
                None
            ))
            .contains("eu, us")
        );
        for url in ["ftp://x", "not a url", "http://"] {
            assert!(
                invalid(validate_config(
                    &info,
                    &input(json!({"api_key": "k", "base_url": url})),
                    None
                ))
                .contains("http"),
                "{url}"
            );
        }
        let bad_json = invalid(validate_config(
            &info,
            &input(json!({"api_key": "k", "sa": "{not json"})),
            None,
        ));
        assert!(!bad_json.contains("not json"), "secrets are not echoed");
        assert!(
            invalid(validate_config(
                &info,
                &input(json!({"api_key": "k", "org": [1]})),
                None
            ))
            .contains("array")
        );
        assert!(
            invalid(validate_config(
                &info,
                &input(json!({"api_key": "k", "org": "enc:v1:x"})),
                None
            ))
            .contains("enc:v1:")
        );
    }

    #[test]
    fn replacing_keeps_masked_or_omitted_secrets() {
        let info = info();
        let previous: BTreeMap<String, String> = [
            ("api_key".into(), "sk-old".into()),
            ("sa".into(), "{}".into()),
        ]
        .into();
        let kept =
            validate_config(&info, &input(json!({"api_key": MASK})), Some(&previous)).unwrap();
        assert_eq!(kept["api_key"], "sk-old");
        assert_eq!(kept["sa"], "{}");
        let kept = validate_config(&info, &input(json!({})), Some(&previous)).unwrap();
        assert_eq!(kept["api_key"], "sk-old");
        let new = validate_config(
            &info,
            &input(json!({"api_key": "sk-new", "sa": ""})),
            Some(&previous),
        )
        .unwrap();
        assert_eq!(new["api_key"], "sk-new");
        assert!(!new.contains_key("sa"), "an empty value clears a secret");
        // Without a previous value the mask is no value at all.
        assert!(
            invalid(validate_config(
                &info,
                &input(json!({"api_key": MASK})),
                None
            ))
            .contains("api_key")
        );
    }
}
