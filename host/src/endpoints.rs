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
    pub provider: String,
    pub model: String,
    pub config: BTreeMap<String, serde_json::Value>,
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
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileWatchGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let info = self.provider_info(&input.provider)?;
        let plain = validate_config(&info, &input, None)?;
        let now = now();
        let stored = StoredEndpoint {
            name: name.to_string(),
            config: self.seal(name, &plain, Some(&info))?,
            provider: input.provider,
            model: validate_model(&input.model)?,
            source: Source::Api,
            created_at: now,
            updated_at: now,
        };
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
        let info = self.provider_info(&input.provider)?;
        let previous = if existing.provider == input.provider {
            Some(self.open(&existing)?)
        } else {
            None
        };
        let plain = validate_config(&info, &input, previous.as_ref())?;
        let stored = StoredEndpoint {
            name: name.to_string(),
            config: self.seal(name, &plain, Some(&info))?,
            provider: input.provider,
            model: validate_model(&input.model)?,
            source: Source::Api,
            created_at: existing.created_at,
            updated_at: now(),
        };
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
            let model = validate_model(&def.model).map_err(context)?;
            let info = self.registry.get(&def.provider).map(|p| p.info.clone());
            let plain = match &info {
                Some(info) => {
                    let input = EndpointInput {
                        provider: def.provider.clone(),
                        model: model.clone(),
                        config: def
                            .config
                            .iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                            .collect(),
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
                source: Source::File,
                created_at: existing.as_ref().map_or(now, |e| e.created_at),
                updated_at: now,
            });
        }
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
            task,
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
                    policy: EndpointPolicy::default(),
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
            source: endpoint.source,
            created_at: rfc3339(endpoint.created_at),
            updated_at: rfc3339(endpoint.updated_at),
        }
    }
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
        }
    }

    fn invalid(result: Result<BTreeMap<String, String>, ManageError>) -> String {
        match result {
            Err(ManageError::Invalid(msg)) => msg,
            other => panic!("expected a validation error, got {other:?}"),
        }
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
