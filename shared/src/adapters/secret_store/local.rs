//! Local adapter: secrets in a table of the embedded SQLite file (readable by its owner only).

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{SecretStore, SecretStoreError};
use calsync_core::secret::Secret;

#[derive(Clone)]
pub struct LocalSecretStore {
    conn: Arc<Mutex<Connection>>,
}

fn err(e: impl std::error::Error + Send + Sync + 'static) -> SecretStoreError {
    SecretStoreError::backend(e)
}

/// The lock around the connection was poisoned by a panic elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("the secret store's lock is poisoned")]
struct Poisoned;

impl LocalSecretStore {
    pub fn open(path: &Path) -> Result<Self, SecretStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(err)?;
        }
        Self::init(Connection::open(path).map_err(err)?)
    }

    pub fn in_memory() -> Result<Self, SecretStoreError> {
        Self::init(Connection::open_in_memory().map_err(err)?)
    }

    fn init(conn: Connection) -> Result<Self, SecretStoreError> {
        conn.execute_batch(
            "PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS secrets (
                 name TEXT PRIMARY KEY,
                 value TEXT NOT NULL,
                 version INTEGER NOT NULL
             );",
        )
        .map_err(err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, SecretStoreError> + Send + 'static,
    ) -> Result<T, SecretStoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().map_err(|_| err(Poisoned))?;
            work(&conn)
        })
        .await
        .map_err(err)?
    }
}

#[async_trait]
impl SecretStore for LocalSecretStore {
    async fn get(&self, name: &str) -> Result<Option<Secret>, SecretStoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            conn.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map(|v| v.map(Secret::new))
            .map_err(err)
        })
        .await
    }

    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError> {
        let (name, value) = (name.to_owned(), value.clone());
        self.run(move |conn| {
            conn.execute(
                "INSERT INTO secrets (name, value, version) VALUES (?1, ?2, 1)
                 ON CONFLICT(name) DO UPDATE SET value = excluded.value, version = version + 1",
                params![name, value.expose()],
            )
            .map(|_| ())
            .map_err(err)
        })
        .await
    }

    async fn delete(&self, name: &str) -> Result<bool, SecretStoreError> {
        let name = name.to_owned();
        self.run(move |conn| {
            conn.execute("DELETE FROM secrets WHERE name = ?1", params![name])
                .map(|n| n > 0)
                .map_err(err)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, SecretStoreError> {
        let prefix = prefix.to_owned();
        self.run(move |conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT name FROM secrets WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name",
                )
                .map_err(err)?;
            let names = stmt
                .query_map(params![prefix], |row| row.get::<_, String>(0))
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            Ok(names)
        })
        .await
    }
}
