//! Persistent state behind one interface: endpoints (secret values already
//! encrypted by the caller, see [`crate::secrets`]) and stored Responses API
//! objects.
//!
//! SQLite ([`sqlite::SqliteStore`], a file in the data dir) is the embedded
//! default; another backend (PostgreSQL) implements [`Store`] the same way.
//! The store never sees plaintext secrets and does no validation: that is
//! [`crate::endpoints::EndpointManager`]'s job.

pub mod sqlite;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Where an endpoint was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Created through the management API (or the UI).
    Api,
    /// Declared in the endpoints file; follows the file.
    File,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::File => "file",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "api" => Some(Source::Api),
            "file" => Some(Source::File),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEndpoint {
    pub name: String,
    pub provider: String,
    pub model: String,
    /// Values by config field name; secret values are `enc:v1:` ciphertexts.
    pub config: BTreeMap<String, String>,
    pub source: Source,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("endpoint '{0}' already exists")]
    AlreadyExists(String),
    #[error("endpoint '{0}' does not exist")]
    NotFound(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage interface. Implementations are safe to share between tasks;
/// each method is atomic on its own.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Human-readable location, for logs (no credentials).
    fn location(&self) -> String;

    /// All endpoints, sorted by name.
    async fn list_endpoints(&self) -> StoreResult<Vec<StoredEndpoint>>;

    async fn get_endpoint(&self, name: &str) -> StoreResult<Option<StoredEndpoint>>;

    /// Inserts a new endpoint; [`StoreError::AlreadyExists`] if the name is
    /// taken.
    async fn create_endpoint(&self, endpoint: &StoredEndpoint) -> StoreResult<()>;

    /// Replaces provider, model, config, source and `updated_at` of an
    /// existing endpoint (its `created_at` is kept);
    /// [`StoreError::NotFound`] if there is none.
    async fn update_endpoint(&self, endpoint: &StoredEndpoint) -> StoreResult<()>;

    /// Deletes an endpoint; false if there was none.
    async fn delete_endpoint(&self, name: &str) -> StoreResult<bool>;

    /// Brings the file-sourced endpoints in line with the endpoints file, in
    /// one transaction: inserts or replaces each of `upserts` (keeping the
    /// `created_at` of an existing row), then deletes every endpoint with
    /// source `file` whose name is not in `keep`. Returns the deleted names.
    async fn sync_file_endpoints(
        &self,
        upserts: &[StoredEndpoint],
        keep: &BTreeSet<String>,
    ) -> StoreResult<Vec<String>>;

    /// A small fact about the store itself.
    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>>;

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()>;

    /// Stores (or replaces) a Responses API object by its id.
    async fn save_response(
        &self,
        id: &str,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> StoreResult<()>;

    /// A stored Responses API object, if it exists (and was not pruned).
    async fn load_response(&self, id: &str) -> StoreResult<Option<serde_json::Value>>;

    /// Deletes responses stored before `older_than`; returns how many.
    async fn prune_responses(&self, older_than: SystemTime) -> StoreResult<u64>;

    /// Flushes and closes; later calls fail.
    async fn close(&self);
}

/// Opens the embedded default store: SQLite at `<data_dir>/portico.db`,
/// created and migrated as needed.
pub async fn open_default(data_dir: &Path) -> StoreResult<Arc<dyn Store>> {
    let store = sqlite::SqliteStore::open(&data_dir.join(sqlite::DB_FILE)).await?;
    Ok(Arc::new(store))
}

/// Unix milliseconds, saturating (times before 1970 are 0).
pub(crate) fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(crate) fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}
