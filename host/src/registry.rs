//! The loaded provider plugins, by provider id, with hot reload of the
//! plugins directory.
//!
//! Every `*.wasm` file in the directory supplies (at most) one provider. A
//! new or changed file is loaded and validated before it replaces the
//! version it supersedes, in one atomic swap of the id → plugin map;
//! requests in flight hold an `Arc<Plugin>` and finish on the version they
//! started with. A file that fails to load is recorded with its error and,
//! if an older version of it was serving, that version keeps serving.
//! Removing a file unloads its provider.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use portico_model::plugin::Operation;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::runtime::{Plugin, PluginRuntime};
use crate::tasks::AbortOnDrop;

/// Quiet time after the last change to a file before it is (re)loaded: a
/// file written in several steps is loaded once, and a change is live well
/// within a second.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// What the admin API shows about one plugin file.
#[derive(Serialize, Clone, Debug)]
pub struct PluginStatus {
    pub id: Option<String>,
    pub display_name: Option<String>,
    pub version: Option<String>,
    pub wit_version: Option<String>,
    /// File name within the plugins directory.
    pub file: String,
    pub sha256: Option<String>,
    /// RFC 3339 UTC.
    pub loaded_at: Option<String>,
    pub operations: Vec<Operation>,
    /// `loaded` when a version of this file is serving (even if a later
    /// change failed to load: see `last_error`), else `failed`.
    pub status: &'static str,
    /// Why the latest load of this file failed, if it did.
    pub last_error: Option<String>,
    /// Instances of the serving version pooled for reuse (see
    /// `RuntimeConfig::idle_instance_ttl`).
    pub idle_instances: usize,
    /// Requests of the serving version in flight (streams until their
    /// end), out of `RuntimeConfig::max_concurrent_calls`.
    pub requests_in_flight: usize,
}

#[derive(Default)]
struct FileState {
    /// The version this file currently supplies.
    plugin: Option<Arc<Plugin>>,
    last_error: Option<String>,
    /// SHA-256 of the content that failed, so the same bad bytes are not
    /// retried (and logged) on every event.
    failed_sha256: Option<String>,
    /// The failure was this provider id being supplied by another file:
    /// retried once no file supplies it.
    conflict: Option<String>,
}

/// The loaded plugins. Cheap to read from any number of requests.
pub struct Registry {
    runtime: Arc<PluginRuntime>,
    dir: PathBuf,
    plugins: ArcSwap<HashMap<String, Arc<Plugin>>>,
    /// Per file name; the map above is only changed with this held.
    files: Mutex<BTreeMap<String, FileState>>,
    /// Serializes (re)loads, so events are applied in order.
    reload: tokio::sync::Mutex<()>,
}

/// Stops watching the plugins directory when dropped.
pub struct WatchGuard {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
    _task: AbortOnDrop,
}

/// Whether `path` names a plugin file: `*.wasm`, not hidden (editors and
/// atomic writers use hidden temp names).
fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && path.extension().is_some_and(|ext| ext == "wasm")
}

fn rfc3339(unix_ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(unix_ms)).to_string()
}

impl Registry {
    /// Loads every `*.wasm` in `dir`. Files that fail are recorded (see
    /// [`Registry::statuses`]) and logged, never fatal; a missing or
    /// unreadable directory is.
    pub async fn load_dir(runtime: Arc<PluginRuntime>, dir: PathBuf) -> anyhow::Result<Arc<Self>> {
        let meta = tokio::fs::metadata(&dir)
            .await
            .with_context(|| format!("plugins directory {}", dir.display()))?;
        anyhow::ensure!(
            meta.is_dir(),
            "plugins directory {} is not a directory",
            dir.display()
        );
        let registry = Arc::new(Registry {
            runtime,
            dir,
            plugins: ArcSwap::from_pointee(HashMap::new()),
            files: Mutex::new(BTreeMap::new()),
            reload: tokio::sync::Mutex::new(()),
        });
        registry.rescan().await?;
        Ok(registry)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The serving version of a provider.
    pub fn get(&self, provider_id: &str) -> Option<Arc<Plugin>> {
        self.plugins.load().get(provider_id).cloned()
    }

    /// Loaded plugins, sorted by id.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        let mut plugins: Vec<_> = self.plugins.load().values().cloned().collect();
        plugins.sort_by(|a, b| a.info.id.cmp(&b.info.id));
        plugins
    }

    /// Drops the instances of serving plugins idle longer than the
    /// runtime's `idle_instance_ttl`; returns how many were dropped.
    /// (Replaced versions free theirs when their last call ends.)
    pub fn trim_idle_instances(&self) -> usize {
        let now = Instant::now();
        self.plugins
            .load()
            .values()
            .map(|plugin| plugin.trim_idle(now))
            .sum()
    }

    /// Runs [`Self::trim_idle_instances`] in the background, twice per
    /// `idle_instance_ttl` so no instance outstays it by more than half,
    /// until the returned handle is dropped. Must be called within a Tokio
    /// runtime.
    pub fn trim_idle_periodically(self: &Arc<Self>) -> AbortOnDrop {
        let registry: Weak<Registry> = Arc::downgrade(self);
        let period = (self.runtime.config().idle_instance_ttl / 2).max(Duration::from_millis(1));
        AbortOnDrop(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                let dropped = registry.trim_idle_instances();
                if dropped > 0 {
                    tracing::debug!(dropped, "dropped idle plugin instances");
                }
            }
        }))
    }

    /// One status per plugin file, including failed ones, by file name.
    pub fn statuses(&self) -> Vec<PluginStatus> {
        self.files()
            .iter()
            .map(|(file, state)| {
                let p = state.plugin.as_deref();
                PluginStatus {
                    id: p.map(|p| p.info.id.clone()),
                    display_name: p.map(|p| p.info.display_name.clone()),
                    version: p.map(|p| p.info.version.clone()),
                    wit_version: p.map(|p| p.wit_version.clone()),
                    file: file.clone(),
                    sha256: p.map(|p| p.sha256.clone()),
                    loaded_at: p.map(|p| rfc3339(p.loaded_at_unix_ms)),
                    operations: p.map(|p| p.info.operations.clone()).unwrap_or_default(),
                    status: if p.is_some() { "loaded" } else { "failed" },
                    last_error: state.last_error.clone(),
                    idle_instances: p.map_or(0, |p| p.idle_instances()),
                    requests_in_flight: p.map_or(0, |p| p.requests_in_flight()),
                }
            })
            .collect()
    }

    /// Brings the registry in line with the directory: loads new and
    /// changed files, unloads removed ones. The watcher does this per
    /// event; call it to force a full pass.
    pub async fn rescan(&self) -> anyhow::Result<()> {
        let _serial = self.reload.lock().await;
        let mut present = BTreeSet::new();
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .with_context(|| format!("reading {}", self.dir.display()))?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if is_plugin_file(&path) {
                present.insert(path);
            }
        }
        let gone: Vec<String> = self
            .files()
            .keys()
            .filter(|name| !present.contains(&self.dir.join(name)))
            .cloned()
            .collect();
        for name in gone {
            self.remove(&name);
        }
        for path in present {
            self.sync_file(&path).await;
        }
        self.retry_conflicts().await;
        Ok(())
    }

    /// Starts watching the directory; changes are applied in the
    /// background (within about [`DEBOUNCE`] plus load time). Must be called
    /// within a Tokio runtime.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<WatchGuard> {
        let handle = tokio::runtime::Handle::try_current()
            .context("Registry::watch needs a Tokio runtime")?;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<DebounceEventResult>();
        let mut debouncer = new_debouncer(
            DEBOUNCE,
            Some(DEBOUNCE / 4),
            move |result: DebounceEventResult| {
                // The receiver is gone only when the guard was dropped.
                let _ = tx.send(result);
            },
        )
        .context("cannot start the plugins directory watcher")?;
        debouncer
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch {}", self.dir.display()))?;
        let registry: Weak<Registry> = Arc::downgrade(self);
        let task = handle.spawn(async move {
            while let Some(result) = rx.recv().await {
                let Some(registry) = registry.upgrade() else {
                    break;
                };
                registry.apply_events(result).await;
            }
        });
        tracing::info!(dir = %self.dir.display(), "watching plugins directory for changes");
        Ok(WatchGuard {
            _debouncer: debouncer,
            _task: AbortOnDrop(task),
        })
    }

    async fn apply_events(&self, result: DebounceEventResult) {
        match result {
            Ok(events) => {
                // Acting on each path's current state (exists or not) covers
                // creates, writes, renames and removals alike.
                let paths: BTreeSet<PathBuf> = events
                    .iter()
                    .flat_map(|e| e.paths.iter())
                    .filter(|p| is_plugin_file(p))
                    .cloned()
                    .collect();
                if paths.is_empty() {
                    return;
                }
                let _serial = self.reload.lock().await;
                for path in paths {
                    self.sync_file(&path).await;
                }
                self.retry_conflicts().await;
            }
            Err(errors) => {
                for error in errors {
                    tracing::warn!(dir = %self.dir.display(), %error, "plugins directory watcher error; rescanning");
                }
                if let Err(error) = self.rescan().await {
                    tracing::error!(dir = %self.dir.display(), error = %format!("{error:#}"), "rescan of plugins directory failed");
                }
            }
        }
    }

    fn files(&self) -> MutexGuard<'_, BTreeMap<String, FileState>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads, reloads or unloads one file according to what is on disk.
    /// Caller holds `reload`.
    async fn sync_file(&self, path: &Path) {
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_string)
        else {
            return;
        };
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.remove(&name);
                return;
            }
            Err(e) if path.is_dir() => {
                tracing::debug!(path = %path.display(), error = %e, "ignoring directory in plugins dir");
                return;
            }
            Err(e) => {
                self.fail(
                    &name,
                    None,
                    format!("cannot read {}: {e}", path.display()),
                    None,
                );
                return;
            }
        };
        let sha256 = hex::encode(Sha256::digest(&bytes));
        drop(bytes);
        if let Some(state) = self.files().get(&name) {
            let serving = state.plugin.as_ref().is_some_and(|p| p.sha256 == sha256);
            let known_bad =
                state.failed_sha256.as_deref() == Some(sha256.as_str()) && state.conflict.is_none();
            if (serving && state.last_error.is_none()) || known_bad {
                return;
            }
        }
        match self.runtime.load_file(path).await {
            Ok(plugin) => self.install(&name, plugin),
            Err(error) => self.fail(&name, Some(sha256), error.to_string(), None),
        }
    }

    /// Makes `plugin` the version `name` supplies, unless another file
    /// already supplies its id.
    fn install(&self, name: &str, plugin: Arc<Plugin>) {
        let id = plugin.info.id.clone();
        let mut files = self.files();
        let other = files
            .iter()
            .find(|(n, s)| n.as_str() != name && s.plugin.as_ref().is_some_and(|p| p.info.id == id))
            .map(|(n, _)| n.clone());
        if let Some(other) = other {
            drop(files);
            self.fail(
                name,
                Some(plugin.sha256.clone()),
                format!("provider id '{id}' is already supplied by {other}"),
                Some(id),
            );
            return;
        }
        let state = files.entry(name.to_string()).or_default();
        let old = state.plugin.replace(plugin.clone());
        state.last_error = None;
        state.failed_sha256 = None;
        state.conflict = None;
        let mut map = HashMap::clone(&self.plugins.load());
        if let Some(old) = &old
            && old.info.id != id
        {
            map.remove(&old.info.id);
        }
        map.insert(id.clone(), plugin.clone());
        self.plugins.store(Arc::new(map));
        drop(files);
        let counter = if old.is_some() {
            "portico_plugin_reloads_total"
        } else {
            "portico_plugin_loads_total"
        };
        metrics::counter!(counter, "plugin" => id.clone()).increment(1);
        match old {
            Some(old) => tracing::info!(
                plugin = %id,
                file = name,
                from = %old.info.version,
                to = %plugin.info.version,
                sha256 = %plugin.sha256,
                "plugin reloaded"
            ),
            None => tracing::info!(
                plugin = %id,
                file = name,
                version = %plugin.info.version,
                wit = %plugin.wit_version,
                sha256 = %plugin.sha256,
                "plugin loaded"
            ),
        }
    }

    /// Records a failed load; a version already serving keeps serving.
    fn fail(&self, name: &str, sha256: Option<String>, error: String, conflict: Option<String>) {
        let mut files = self.files();
        let state = files.entry(name.to_string()).or_default();
        state.last_error = Some(error.clone());
        state.failed_sha256 = sha256;
        state.conflict = conflict;
        metrics::counter!("portico_plugin_load_failures_total").increment(1);
        match &state.plugin {
            Some(old) => tracing::error!(
                file = name,
                %error,
                serving = %old.info.version,
                "plugin file rejected; the previous version keeps serving"
            ),
            None => tracing::error!(file = name, %error, "plugin file rejected"),
        }
    }

    /// Forgets a file that is gone and unloads the provider it supplied.
    fn remove(&self, name: &str) {
        let mut files = self.files();
        let Some(state) = files.remove(name) else {
            return;
        };
        if let Some(plugin) = state.plugin {
            let mut map = HashMap::clone(&self.plugins.load());
            map.remove(&plugin.info.id);
            self.plugins.store(Arc::new(map));
            tracing::info!(plugin = %plugin.info.id, file = name, version = %plugin.info.version, "plugin unloaded (file removed)");
        }
    }

    /// Retries files that lost an id conflict whose rival is gone.
    async fn retry_conflicts(&self) {
        let retry: Vec<String> = {
            let files = self.files();
            let map = self.plugins.load();
            files
                .iter()
                .filter(|(_, s)| {
                    s.plugin.is_none()
                        && s.conflict.as_ref().is_some_and(|id| !map.contains_key(id))
                })
                .map(|(n, _)| n.clone())
                .collect()
        };
        for name in retry {
            self.sync_file(&self.dir.join(&name)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_file_names() {
        assert!(is_plugin_file(Path::new("/p/openai.wasm")));
        assert!(!is_plugin_file(Path::new("/p/.openai.wasm")));
        assert!(!is_plugin_file(Path::new("/p/openai.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("/p/openai.wasm~")));
        assert!(!is_plugin_file(Path::new("/p/README.md")));
        assert!(!is_plugin_file(Path::new("/p/wasm")));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
