//! The SQLite backend: one file, WAL journal, embedded migrations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};

use super::{Source, Store, StoreError, StoreResult, StoredEndpoint, from_unix_ms, unix_ms};

/// File name of the database inside the data dir.
pub const DB_FILE: &str = "portico.db";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

pub struct SqliteStore {
    pool: SqlitePool,
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
        Ok(SqliteStore {
            pool,
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
    Ok(StoredEndpoint {
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

async fn upsert(tx: &mut Transaction<'_, Sqlite>, endpoint: &StoredEndpoint) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO endpoints (name, provider, model, config, source, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET
           provider = excluded.provider, model = excluded.model, config = excluded.config,
           source = excluded.source, updated_at = excluded.updated_at",
    )
    .bind(&endpoint.name)
    .bind(&endpoint.provider)
    .bind(&endpoint.model)
    .bind(config_json(endpoint)?)
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
            "SELECT name, provider, model, config, source, created_at, updated_at
             FROM endpoints ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn get_endpoint(&self, name: &str) -> StoreResult<Option<StoredEndpoint>> {
        let row = sqlx::query(
            "SELECT name, provider, model, config, source, created_at, updated_at
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
            "INSERT INTO endpoints (name, provider, model, config, source, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&endpoint.name)
        .bind(&endpoint.provider)
        .bind(&endpoint.model)
        .bind(config_json(endpoint)?)
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
            "UPDATE endpoints SET provider = ?, model = ?, config = ?, source = ?, updated_at = ?
             WHERE name = ?",
        )
        .bind(&endpoint.provider)
        .bind(&endpoint.model)
        .bind(config_json(endpoint)?)
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

    async fn close(&self) {
        self.pool.close().await;
    }
}

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
