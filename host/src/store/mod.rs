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
    /// Targets, fallbacks, retries, timeouts, limits (stored as JSON).
    pub policy: crate::policy::EndpointPolicy,
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

    // ---- gateway keys (see crate::access) ----

    /// Inserts a new gateway key.
    async fn create_gateway_key(&self, key: &StoredGatewayKey) -> StoreResult<()>;

    /// All gateway keys (revoked ones too), oldest first.
    async fn list_gateway_keys(&self) -> StoreResult<Vec<StoredGatewayKey>>;

    async fn get_gateway_key(&self, id: &str) -> StoreResult<Option<StoredGatewayKey>>;

    /// Marks a key revoked at `at` (an already revoked key keeps its first
    /// revocation time); false if there is no such key.
    async fn revoke_gateway_key(&self, id: &str, at: SystemTime) -> StoreResult<bool>;

    /// Records when keys were last used (id, time); unknown ids are ignored.
    async fn touch_gateway_keys(&self, used: &[(String, SystemTime)]) -> StoreResult<()>;

    // ---- end gateway keys ----

    // ---- request log (see crate::telemetry) ----

    /// Appends request log entries in one transaction. Taken by value so a
    /// store can write them on a thread of its own.
    async fn insert_request_log(&self, entries: Vec<RequestLogEntry>) -> StoreResult<()>;

    /// Usage totals of the calls received in `[from, to)`, grouped as asked.
    async fn query_usage(&self, query: &UsageQuery) -> StoreResult<Vec<UsageRow>>;

    /// The most recent entries received in `[from, to)`, newest first, with
    /// an id lower than `before_id` when given (for paging).
    async fn list_request_log(
        &self,
        from: SystemTime,
        to: SystemTime,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LoggedRequest>>;

    /// Deletes entries received before `older_than`; returns how many.
    async fn prune_request_log(&self, older_than: SystemTime) -> StoreResult<u64>;

    // ---- end request log ----

    /// Flushes and closes; later calls fail.
    async fn close(&self);
}

/// A gateway key as stored: never the key itself, only its SHA-256.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredGatewayKey {
    pub id: String,
    pub name: String,
    /// The first characters of the key, safe to show and log.
    pub prefix: String,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    /// Endpoints the key may call; `None` means all.
    pub endpoints: Option<Vec<String>>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub created_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    pub last_used_at: Option<SystemTime>,
}

// ---- request log types (see crate::telemetry) ----

/// One call through the gateway, as logged. Never holds message contents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestLogEntry {
    pub request_id: String,
    /// When the gateway received the request, Unix milliseconds.
    pub at_ms: i64,
    pub endpoint: String,
    pub provider: String,
    pub model: String,
    pub operation: String,
    pub dialect: String,
    pub key_id: Option<String>,
    pub key_prefix: Option<String>,
    pub status: u16,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub latency_ms: u64,
    pub ttft_ms: Option<u64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_input_tokens: Option<u64>,
    /// `None` when the model has no price in its plugin's catalog.
    pub cost_usd: Option<f64>,
    pub attempts: u32,
    pub fallbacks: u32,
    pub cancelled: bool,
}

/// A stored [`RequestLogEntry`] with its row id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoggedRequest {
    pub id: i64,
    #[serde(flatten)]
    pub entry: RequestLogEntry,
}

/// A dimension usage can be grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    Endpoint,
    Provider,
    Model,
    Key,
}

/// The time bucket of a usage series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageBucket {
    Minute,
    Hour,
    Day,
}

impl UsageBucket {
    pub fn millis(self) -> i64 {
        match self {
            UsageBucket::Minute => 60_000,
            UsageBucket::Hour => 3_600_000,
            UsageBucket::Day => 86_400_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsageQuery {
    pub from: SystemTime,
    pub to: SystemTime,
    pub group_by: Vec<UsageGroup>,
    /// Also split by time bucket (UTC-aligned).
    pub bucket: Option<UsageBucket>,
}

/// Totals of one group (and bucket). Group fields not asked for are `None`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct UsageRow {
    /// Start of the bucket, Unix milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_start_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Key id (`""` for calls without a gateway key), with its prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Sum over the priced calls.
    pub cost_usd: f64,
    /// Calls with tokens but no catalog price (not in `cost_usd`).
    pub unpriced_requests: u64,
    pub avg_latency_ms: f64,
    pub max_latency_ms: u64,
    /// Latency percentiles (nearest rank: the smallest latency at least
    /// that share of the calls did not exceed).
    pub p50_latency_ms: u64,
    pub p95_latency_ms: u64,
    pub p99_latency_ms: u64,
    /// Over the calls that measured it (streams).
    pub avg_ttft_ms: Option<f64>,
}

// ---- end request log types ----

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
