//! The SQLite backend: one file, WAL journal, embedded migrations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

use super::StoredGatewayKey;
use super::{Source, Store, StoreError, StoreResult, StoredEndpoint, from_unix_ms, unix_ms};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "portico.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
    /// The request log's own connection (see `request_log`); `None` once
    /// the store is closed.
    log_writer: Arc<Mutex<Option<rusqlite::Connection>>>,
    path: PathBuf,
}

fn db_error(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Database(Box::new(error))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies
    /// pending migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        create_private_file(path).map_err(db_error)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // WAL: readers (request routing refreshes) never block on a
            // writer; NORMAL sync is durable across application crashes.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db_error)?;
        MIGRATOR.run(&pool).await.map_err(db_error)?;
        let log_writer = request_log::open_writer(path).map_err(db_error)?;
        Ok(SqliteStore {
            pool,
            log_writer: Arc::new(Mutex::new(Some(log_writer))),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The database holds stored conversations (responses) in clear and
/// encrypted secrets: keep it owner-only. SQLite gives its -wal and -shm
/// files the permissions of the database file.
#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn create_private_file(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn endpoint_from_row(row: &SqliteRow) -> StoreResult<StoredEndpoint> {
    let name: String = row.try_get("name").map_err(db_error)?;
    let config: String = row.try_get("config").map_err(db_error)?;
    let config: BTreeMap<String, String> = serde_json::from_str(&config)
        .map_err(|e| StoreError::Corrupt(format!("config of endpoint '{name}': {e}")))?;
    let source: String = row.try_get("source").map_err(db_error)?;
    let source = Source::parse(&source).ok_or_else(|| {
        StoreError::Corrupt(format!("endpoint '{name}' has unknown source '{source}'"))
    })?;
    let policy: String = row.try_get("policy").map_err(db_error)?;
    let policy = serde_json::from_str(&policy)
        .map_err(|e| StoreError::Corrupt(format!("policy of endpoint '{name}': {e}")))?;
    Ok(StoredEndpoint {
        policy,
        provider: row.try_get("provider").map_err(db_error)?,
        model: row.try_get("model").map_err(db_error)?,
        config,
        source,
        created_at: from_unix_ms(row.try_get("created_at").map_err(db_error)?),
        updated_at: from_unix_ms(row.try_get("updated_at").map_err(db_error)?),
        name,
    })
}

fn config_json(endpoint: &StoredEndpoint) -> StoreResult<String> {
    serde_json::to_string(&endpoint.config).map_err(db_error)
}

fn policy_json(endpoint: &StoredEndpoint) -> StoreResult<String> {
    serde_json::to_string(&endpoint.policy).map_err(db_error)
}

async fn upsert(tx: &mut Transaction<'_, Sqlite>, endpoint: &StoredEndpoint) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO endpoints (name, provider, model, config, policy, source, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
           provider = excluded.provider, model = excluded.model, config = excluded.config,
           policy = excluded.policy, source = excluded.source, updated_at = excluded.updated_at",
    )
    .bind(&endpoint.name)
    .bind(&endpoint.provider)
    .bind(&endpoint.model)
    .bind(config_json(endpoint)?)
    .bind(policy_json(endpoint)?)
    .bind(endpoint.source.as_str())
    .bind(unix_ms(endpoint.created_at))
    .bind(unix_ms(endpoint.updated_at))
    .execute(&mut **tx)
    .await
    .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    fn location(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    async fn list_endpoints(&self) -> StoreResult<Vec<StoredEndpoint>> {
        let rows = sqlx::query(
            "SELECT name, provider, model, config, policy, source, created_at, updated_at
             FROM endpoints ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn get_endpoint(&self, name: &str) -> StoreResult<Option<StoredEndpoint>> {
        let row = sqlx::query(
            "SELECT name, provider, model, config, policy, source, created_at, updated_at
             FROM endpoints WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    async fn create_endpoint(&self, endpoint: &StoredEndpoint) -> StoreResult<()> {
        let result = sqlx::query(
            "INSERT INTO endpoints (name, provider, model, config, policy, source, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&endpoint.name)
        .bind(&endpoint.provider)
        .bind(&endpoint.model)
        .bind(config_json(endpoint)?)
        .bind(policy_json(endpoint)?)
        .bind(endpoint.source.as_str())
        .bind(unix_ms(endpoint.created_at))
        .bind(unix_ms(endpoint.updated_at))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AlreadyExists(endpoint.name.clone()));
        }
        Ok(())
    }

    async fn update_endpoint(&self, endpoint: &StoredEndpoint) -> StoreResult<()> {
        let result = sqlx::query(
            "UPDATE endpoints SET provider = ?, model = ?, config = ?, policy = ?, source = ?,
             updated_at = ? WHERE name = ?",
        )
        .bind(&endpoint.provider)
        .bind(&endpoint.model)
        .bind(config_json(endpoint)?)
        .bind(policy_json(endpoint)?)
        .bind(endpoint.source.as_str())
        .bind(unix_ms(endpoint.updated_at))
        .bind(&endpoint.name)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound(endpoint.name.clone()));
        }
        Ok(())
    }

    async fn delete_endpoint(&self, name: &str) -> StoreResult<bool> {
        let result = sqlx::query("DELETE FROM endpoints WHERE name = ?")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn sync_file_endpoints(
        &self,
        upserts: &[StoredEndpoint],
        keep: &BTreeSet<String>,
    ) -> StoreResult<Vec<String>> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for endpoint in upserts {
            upsert(&mut tx, endpoint).await?;
        }
        let file_names: Vec<String> =
            sqlx::query_scalar("SELECT name FROM endpoints WHERE source = 'file' ORDER BY name")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_error)?;
        let mut deleted = Vec::new();
        for name in file_names.into_iter().filter(|n| !keep.contains(n)) {
            sqlx::query("DELETE FROM endpoints WHERE name = ?")
                .bind(&name)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            deleted.push(name);
        }
        tx.commit().await.map_err(db_error)?;
        Ok(deleted)
    }

    async fn get_meta(&self, key: &str) -> StoreResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
    }

    async fn set_meta(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn save_response(
        &self,
        id: &str,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> StoreResult<()> {
        let body = serde_json::to_string(body).map_err(db_error)?;
        sqlx::query(
            "INSERT INTO responses (id, endpoint, body, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (id) DO UPDATE SET
               endpoint = excluded.endpoint, body = excluded.body, created_at = excluded.created_at",
        )
        .bind(id)
        .bind(endpoint)
        .bind(body)
        .bind(unix_ms(SystemTime::now()))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn load_response(&self, id: &str) -> StoreResult<Option<serde_json::Value>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM responses WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        body.map(|text| {
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("stored response '{id}': {e}")))
        })
        .transpose()
    }

    async fn prune_responses(&self, older_than: SystemTime) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM responses WHERE created_at < ?")
            .bind(unix_ms(older_than))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    // ---- gateway keys (see crate::access) ----

    async fn create_gateway_key(&self, key: &StoredGatewayKey) -> StoreResult<()> {
        let endpoints = key
            .endpoints
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(db_error)?;
        sqlx::query(
            "INSERT INTO gateway_keys (id, name, prefix, key_hash, endpoints,
               requests_per_minute, tokens_per_minute, created_at, revoked_at, last_used_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.hash)
        .bind(endpoints)
        .bind(key.requests_per_minute.map(i64::from))
        .bind(key.tokens_per_minute.map(i64::from))
        .bind(unix_ms(key.created_at))
        .bind(key.revoked_at.map(unix_ms))
        .bind(key.last_used_at.map(unix_ms))
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn list_gateway_keys(&self) -> StoreResult<Vec<StoredGatewayKey>> {
        let rows = sqlx::query(
            "SELECT id, name, prefix, key_hash, endpoints, requests_per_minute, tokens_per_minute,
               created_at, revoked_at, last_used_at
             FROM gateway_keys ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(gateway_key_from_row).collect()
    }

    async fn get_gateway_key(&self, id: &str) -> StoreResult<Option<StoredGatewayKey>> {
        let row = sqlx::query(
            "SELECT id, name, prefix, key_hash, endpoints, requests_per_minute, tokens_per_minute,
               created_at, revoked_at, last_used_at
             FROM gateway_keys WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(gateway_key_from_row).transpose()
    }

    async fn revoke_gateway_key(&self, id: &str, at: SystemTime) -> StoreResult<bool> {
        let result = sqlx::query(
            "UPDATE gateway_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?",
        )
        .bind(unix_ms(at))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(result.rows_affected() > 0)
    }

    async fn touch_gateway_keys(&self, used: &[(String, SystemTime)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        for (id, at) in used {
            sqlx::query(
                "UPDATE gateway_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?)
                 WHERE id = ?",
            )
            .bind(unix_ms(*at))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)
    }

    // ---- end gateway keys ----

    // ---- request log (see crate::telemetry) ----

    async fn insert_request_log(&self, entries: Vec<super::RequestLogEntry>) -> StoreResult<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let writer = self.log_writer.clone();
        tokio::task::spawn_blocking(move || {
            let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(connection) = writer.as_mut() else {
                return Err(StoreError::Database("the store is closed".into()));
            };
            request_log::insert(connection, &entries).map_err(db_error)
        })
        .await
        .map_err(db_error)?
    }

    async fn query_usage(&self, query: &super::UsageQuery) -> StoreResult<Vec<super::UsageRow>> {
        request_log::usage(&self.pool, query).await
    }

    async fn list_request_log(
        &self,
        from: SystemTime,
        to: SystemTime,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<super::LoggedRequest>> {
        request_log::list(&self.pool, from, to, before_id, limit).await
    }

    async fn prune_request_log(&self, older_than: SystemTime) -> StoreResult<u64> {
        let result = sqlx::query("DELETE FROM request_log WHERE at < ?")
            .bind(unix_ms(older_than))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(result.rows_affected())
    }

    // ---- end request log ----

    async fn close(&self) {
        let log_writer = self.log_writer.clone();
        // Closing may checkpoint the journal: file I/O, off the runtime.
        let _ = tokio::task::spawn_blocking(move || {
            log_writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        })
        .await;
        self.pool.close().await;
    }
}

// ---- gateway keys (see crate::access) ----

fn gateway_key_from_row(row: &SqliteRow) -> StoreResult<StoredGatewayKey> {
    let id: String = row.try_get("id").map_err(db_error)?;
    let endpoints: Option<String> = row.try_get("endpoints").map_err(db_error)?;
    let endpoints = endpoints
        .map(|text| serde_json::from_str::<Vec<String>>(&text))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("endpoints of gateway key '{id}': {e}")))?;
    let limit = |column: &str| -> StoreResult<Option<u32>> {
        let value: Option<i64> = row.try_get(column).map_err(db_error)?;
        value
            .map(|v| {
                u32::try_from(v).map_err(|_| {
                    StoreError::Corrupt(format!("{column} of gateway key '{id}' is out of range"))
                })
            })
            .transpose()
    };
    let time = |column: &str| -> StoreResult<Option<SystemTime>> {
        let value: Option<i64> = row.try_get(column).map_err(db_error)?;
        Ok(value.map(from_unix_ms))
    };
    Ok(StoredGatewayKey {
        name: row.try_get("name").map_err(db_error)?,
        prefix: row.try_get("prefix").map_err(db_error)?,
        hash: row.try_get("key_hash").map_err(db_error)?,
        endpoints,
        requests_per_minute: limit("requests_per_minute")?,
        tokens_per_minute: limit("tokens_per_minute")?,
        created_at: from_unix_ms(row.try_get("created_at").map_err(db_error)?),
        revoked_at: time("revoked_at")?,
        last_used_at: time("last_used_at")?,
        id,
    })
}

// ---- end gateway keys ----

// ---- request log (see crate::telemetry) ----

mod request_log {
    use std::fmt::Write as _;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    use sqlx::sqlite::{SqlitePool, SqliteRow};
    use sqlx::{AssertSqlSafe, Row as _};

    use super::db_error;
    use crate::store::{
        LoggedRequest, RequestLogEntry, StoreResult, UsageGroup, UsageQuery, UsageRow, unix_ms,
    };

    /// The columns written, in the order `insert` binds them.
    macro_rules! columns {
        () => {
            "request_id, at, endpoint, provider, model, operation, dialect, key_id, key_prefix, \
             status, error_kind, error_message, latency_ms, ttft_ms, input_tokens, \
             output_tokens, cached_input_tokens, cost_usd, attempts, fallbacks, cancelled"
        };
    }
    const COLUMNS: &str = columns!();
    const INSERT: &str = concat!(
        "INSERT INTO request_log (",
        columns!(),
        ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, \
         ?18, ?19, ?20, ?21)"
    );

    fn to_i64(value: u64) -> i64 {
        i64::try_from(value).unwrap_or(i64::MAX)
    }

    fn to_u64(value: i64) -> u64 {
        u64::try_from(value).unwrap_or(0)
    }

    /// The request log's writer: a blocking connection of its own, used
    /// from one thread at a time. The pool's connections would hand every
    /// statement to sqlx's worker thread and copy every value first; with
    /// one prepared statement executed per row in one transaction the row
    /// costs SQLite's own work only. WAL lets both kinds of connection
    /// share the file; writers queue on the busy timeout.
    pub(super) fn open_writer(path: &Path) -> rusqlite::Result<rusqlite::Connection> {
        let connection = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        connection.busy_timeout(Duration::from_secs(5))?;
        // Per connection, like the pool's: durable across application
        // crashes, one sync per checkpoint rather than per commit.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(connection)
    }

    pub(super) fn insert(
        connection: &mut rusqlite::Connection,
        entries: &[RequestLogEntry],
    ) -> rusqlite::Result<()> {
        // IMMEDIATE: take the write lock up front, so a concurrent writer
        // makes this wait on the busy timeout instead of failing mid-way.
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for e in entries {
                insert.execute(rusqlite::params![
                    e.request_id,
                    e.at_ms,
                    e.endpoint,
                    e.provider,
                    e.model,
                    e.operation,
                    e.dialect,
                    e.key_id,
                    e.key_prefix,
                    e.status,
                    e.error_kind,
                    e.error_message,
                    to_i64(e.latency_ms),
                    e.ttft_ms.map(to_i64),
                    e.input_tokens.map(to_i64),
                    e.output_tokens.map(to_i64),
                    e.cached_input_tokens.map(to_i64),
                    e.cost_usd,
                    e.attempts,
                    e.fallbacks,
                    e.cancelled,
                ])?;
            }
        }
        transaction.commit()
    }

    fn group_column(group: UsageGroup) -> &'static str {
        match group {
            UsageGroup::Endpoint => "endpoint",
            UsageGroup::Provider => "provider",
            UsageGroup::Model => "model",
            UsageGroup::Key => "COALESCE(key_id, '')",
        }
    }

    pub(super) async fn usage(pool: &SqlitePool, query: &UsageQuery) -> StoreResult<Vec<UsageRow>> {
        // Column expressions come from closed enums, never from input.
        let mut select = String::new();
        let mut group = Vec::new();
        if let Some(bucket) = query.bucket {
            let ms = bucket.millis();
            let _ = write!(select, "(at / {ms}) * {ms} AS g_bucket, ");
            group.push("g_bucket".to_string());
        }
        let mut dims = query.group_by.clone();
        dims.dedup();
        for (i, dim) in dims.iter().enumerate() {
            let _ = write!(select, "{} AS g_{i}, ", group_column(*dim));
            group.push(format!("g_{i}"));
        }
        let (group_clause, partition) = if group.is_empty() {
            (String::new(), String::new())
        } else {
            let group = group.join(", ");
            (
                format!("GROUP BY {group} ORDER BY {group}"),
                format!("PARTITION BY {group}"),
            )
        };
        // Latency percentiles by nearest rank: each call's rank by latency
        // within its group, against the group's size.
        let percentile = |q: u32| {
            format!(
                "MIN(CASE WHEN lat_rank * 100 >= lat_n * {q} THEN latency_ms END) AS p{q}_latency"
            )
        };
        let sql = format!(
            "SELECT {groups} COUNT(*) AS requests, \
               COALESCE(SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), 0) AS errors, \
               COALESCE(SUM(input_tokens), 0) AS input_tokens, \
               COALESCE(SUM(output_tokens), 0) AS output_tokens, \
               COALESCE(SUM(cost_usd), 0.0) AS cost_usd, \
               COALESCE(SUM(CASE WHEN cost_usd IS NULL \
                 AND COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) > 0 \
                 THEN 1 ELSE 0 END), 0) AS unpriced, \
               AVG(latency_ms) AS avg_latency, MAX(latency_ms) AS max_latency, \
               {p50}, {p95}, {p99}, \
               AVG(ttft_ms) AS avg_ttft, MAX(key_prefix) AS key_prefix \
             FROM (SELECT *, \
                     ROW_NUMBER() OVER ({partition} ORDER BY latency_ms) AS lat_rank, \
                     COUNT(*) OVER ({partition}) AS lat_n \
                   FROM (SELECT {select} status, input_tokens, output_tokens, cost_usd, \
                           latency_ms, ttft_ms, key_prefix \
                         FROM request_log WHERE at >= ? AND at < ?)) \
             {group_clause}",
            groups = group.iter().map(|g| format!("{g}, ")).collect::<String>(),
            p50 = percentile(50),
            p95 = percentile(95),
            p99 = percentile(99),
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(unix_ms(query.from))
            .bind(unix_ms(query.to))
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let requests: i64 = row.try_get("requests").map_err(db_error)?;
            // NULL when the group has no calls.
            let latency = |column: &str| -> StoreResult<u64> {
                Ok(to_u64(
                    row.try_get::<Option<i64>, _>(column)
                        .map_err(db_error)?
                        .unwrap_or(0),
                ))
            };
            if requests == 0 && !group.is_empty() {
                continue;
            }
            let mut usage = UsageRow {
                requests: to_u64(requests),
                errors: to_u64(row.try_get("errors").map_err(db_error)?),
                input_tokens: to_u64(row.try_get("input_tokens").map_err(db_error)?),
                output_tokens: to_u64(row.try_get("output_tokens").map_err(db_error)?),
                cost_usd: row.try_get("cost_usd").map_err(db_error)?,
                unpriced_requests: to_u64(row.try_get("unpriced").map_err(db_error)?),
                avg_latency_ms: row
                    .try_get::<Option<f64>, _>("avg_latency")
                    .map_err(db_error)?
                    .unwrap_or(0.0),
                max_latency_ms: latency("max_latency")?,
                p50_latency_ms: latency("p50_latency")?,
                p95_latency_ms: latency("p95_latency")?,
                p99_latency_ms: latency("p99_latency")?,
                avg_ttft_ms: row.try_get("avg_ttft").map_err(db_error)?,
                ..UsageRow::default()
            };
            if query.bucket.is_some() {
                usage.bucket_start_ms = Some(row.try_get("g_bucket").map_err(db_error)?);
            }
            for (i, dim) in dims.iter().enumerate() {
                let value: String = row.try_get(format!("g_{i}").as_str()).map_err(db_error)?;
                match dim {
                    UsageGroup::Endpoint => usage.endpoint = Some(value),
                    UsageGroup::Provider => usage.provider = Some(value),
                    UsageGroup::Model => usage.model = Some(value),
                    UsageGroup::Key => {
                        usage.key_prefix = row.try_get("key_prefix").map_err(db_error)?;
                        usage.key = Some(value);
                    }
                }
            }
            out.push(usage);
        }
        Ok(out)
    }

    fn entry_from_row(row: &SqliteRow) -> StoreResult<LoggedRequest> {
        let get_u64 = |name: &str| -> StoreResult<Option<u64>> {
            Ok(row
                .try_get::<Option<i64>, _>(name)
                .map_err(db_error)?
                .map(to_u64))
        };
        Ok(LoggedRequest {
            id: row.try_get("id").map_err(db_error)?,
            entry: RequestLogEntry {
                request_id: row.try_get("request_id").map_err(db_error)?,
                at_ms: row.try_get("at").map_err(db_error)?,
                endpoint: row.try_get("endpoint").map_err(db_error)?,
                provider: row.try_get("provider").map_err(db_error)?,
                model: row.try_get("model").map_err(db_error)?,
                operation: row.try_get("operation").map_err(db_error)?,
                dialect: row.try_get("dialect").map_err(db_error)?,
                key_id: row.try_get("key_id").map_err(db_error)?,
                key_prefix: row.try_get("key_prefix").map_err(db_error)?,
                status: u16::try_from(row.try_get::<i64, _>("status").map_err(db_error)?)
                    .unwrap_or(0),
                error_kind: row.try_get("error_kind").map_err(db_error)?,
                error_message: row.try_get("error_message").map_err(db_error)?,
                latency_ms: get_u64("latency_ms")?.unwrap_or(0),
                ttft_ms: get_u64("ttft_ms")?,
                input_tokens: get_u64("input_tokens")?,
                output_tokens: get_u64("output_tokens")?,
                cached_input_tokens: get_u64("cached_input_tokens")?,
                cost_usd: row.try_get("cost_usd").map_err(db_error)?,
                attempts: u32::try_from(get_u64("attempts")?.unwrap_or(0)).unwrap_or(u32::MAX),
                fallbacks: u32::try_from(get_u64("fallbacks")?.unwrap_or(0)).unwrap_or(u32::MAX),
                cancelled: row.try_get("cancelled").map_err(db_error)?,
            },
        })
    }

    pub(super) async fn list(
        pool: &SqlitePool,
        from: SystemTime,
        to: SystemTime,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<LoggedRequest>> {
        let sql = format!(
            "SELECT id, {COLUMNS} FROM request_log \
             WHERE at >= ? AND at < ? AND id < ? ORDER BY id DESC LIMIT ?"
        );
        // Audited: only the constant column list is spliced in.
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(unix_ms(from))
            .bind(unix_ms(to))
            .bind(before_id.unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(db_error)?;
        rows.iter().map(entry_from_row).collect()
    }
}

// ---- end request log ----

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(name: &str, source: Source) -> StoredEndpoint {
        let now = from_unix_ms(unix_ms(SystemTime::now()));
        StoredEndpoint {
            name: name.into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            config: BTreeMap::from([("api_key".into(), "enc:v1:xyz".into())]),
            policy: Default::default(),
            source,
            created_at: now,
            updated_at: now,
        }
    }

    #[tokio::test]
    async fn endpoints_crud_and_file_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(DB_FILE)).await.unwrap();
        let a = endpoint("a", Source::Api);
        store.create_endpoint(&a).await.unwrap();
        assert!(matches!(
            store.create_endpoint(&a).await,
            Err(StoreError::AlreadyExists(_))
        ));
        assert_eq!(store.get_endpoint("a").await.unwrap(), Some(a.clone()));
        assert_eq!(store.get_endpoint("zz").await.unwrap(), None);

        let mut changed = a.clone();
        changed.model = "gpt-5".into();
        changed.created_at = SystemTime::UNIX_EPOCH; // ignored by update
        store.update_endpoint(&changed).await.unwrap();
        let got = store.get_endpoint("a").await.unwrap().unwrap();
        assert_eq!(got.model, "gpt-5");
        assert_eq!(got.created_at, a.created_at);
        assert!(matches!(
            store.update_endpoint(&endpoint("nope", Source::Api)).await,
            Err(StoreError::NotFound(_))
        ));

        let f1 = endpoint("f1", Source::File);
        let f2 = endpoint("f2", Source::File);
        let keep: BTreeSet<String> = ["f1".to_string(), "f2".to_string()].into();
        let deleted = store
            .sync_file_endpoints(&[f1.clone(), f2.clone()], &keep)
            .await
            .unwrap();
        assert!(deleted.is_empty());
        let keep: BTreeSet<String> = ["f2".to_string()].into();
        let deleted = store.sync_file_endpoints(&[], &keep).await.unwrap();
        assert_eq!(deleted, vec!["f1".to_string()]);
        let names: Vec<_> = store
            .list_endpoints()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names, vec!["a", "f2"], "API endpoints survive a file sync");

        assert!(store.delete_endpoint("a").await.unwrap());
        assert!(!store.delete_endpoint("a").await.unwrap());
        store.close().await;
    }

    #[tokio::test]
    async fn responses_round_trip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join(DB_FILE)).await.unwrap();
        let body = serde_json::json!({"id": "resp_1", "output": [{"type": "message"}]});
        store.save_response("resp_1", "chat", &body).await.unwrap();
        assert_eq!(store.load_response("resp_1").await.unwrap(), Some(body));
        assert_eq!(store.load_response("resp_2").await.unwrap(), None);
        let past = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(store.prune_responses(past).await.unwrap(), 0);
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(store.prune_responses(future).await.unwrap(), 1);
        assert_eq!(store.load_response("resp_1").await.unwrap(), None);
        store.close().await;
    }

    #[tokio::test]
    async fn reopening_keeps_data_and_migrations_are_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DB_FILE);
        let store = SqliteStore::open(&path).await.unwrap();
        store
            .create_endpoint(&endpoint("kept", Source::Api))
            .await
            .unwrap();
        store.set_meta("k", "v").await.unwrap();
        store.close().await;
        let store = SqliteStore::open(&path).await.unwrap();
        assert!(store.get_endpoint("kept").await.unwrap().is_some());
        assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v"));
        store.close().await;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
