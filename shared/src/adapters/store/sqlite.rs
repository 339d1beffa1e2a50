//! The embedded adapter: one SQLite file, for running calsync on a single machine.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{
    next_version, now_epoch, slot_is_free, validate_item, validate_transaction,
    validate_unconditional, Claim, Item, ItemStore, Precondition, StoreError, WriteOp,
};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(StoreError::backend)?;
        }
        let conn = Connection::open(path).map_err(backend_err)?;
        restrict_permissions(path);
        Self::init(conn)
    }

    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory().map_err(backend_err)?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS items (
                 pk TEXT NOT NULL,
                 sk TEXT NOT NULL,
                 version INTEGER NOT NULL,
                 expires_at INTEGER,
                 data TEXT NOT NULL,
                 PRIMARY KEY (pk, sk)
             ) WITHOUT ROWID;",
        )
        .map_err(backend_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Applies the operations in one transaction.
    async fn apply_all(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        self.with_tx(move |tx| {
            let now = now_epoch();
            for op in &ops {
                apply(tx, op, now)?;
            }
            Ok(())
        })
        .await
    }

    /// Runs `work` inside one immediate transaction on a blocking thread.
    async fn with_tx<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Foreign("the store lock is poisoned"))?;
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(backend_err)?;
            let out = work(&tx)?;
            tx.commit().map_err(backend_err)?;
            Ok(out)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // Sealed tokens live here (and local secrets beside them): owner only.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &Path) {}

fn backend_err(e: rusqlite::Error) -> StoreError {
    StoreError::backend(e)
}

fn read(tx: &Transaction<'_>, pk: &str, sk: &str, now: i64) -> Result<Option<Item>, StoreError> {
    let row = tx
        .query_row(
            "SELECT version, expires_at, data FROM items WHERE pk = ?1 AND sk = ?2",
            params![pk, sk],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Option<i64>>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )
        .optional()
        .map_err(backend_err)?;
    let Some((version, expires_at, data)) = row else {
        return Ok(None);
    };
    let item = Item {
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        version: version as u64,
        expires_at,
        data: serde_json::from_str(&data).map_err(StoreError::backend)?,
    };
    Ok((!item.is_expired(now)).then_some(item))
}

fn check(current: Option<&Item>, precondition: Precondition) -> Result<(), StoreError> {
    let holds = match precondition {
        Precondition::None => true,
        Precondition::Absent | Precondition::Version(0) => current.is_none(),
        Precondition::Exists => current.is_some(),
        Precondition::Version(v) => current.is_some_and(|c| c.version == v),
    };
    if holds {
        Ok(())
    } else {
        Err(StoreError::ConditionFailed)
    }
}

fn apply(tx: &Transaction<'_>, op: &WriteOp, now: i64) -> Result<ApplyResult, StoreError> {
    match op {
        WriteOp::Put(item, precondition) => {
            let current = read(tx, &item.pk, &item.sk, now)?;
            check(current.as_ref(), *precondition)?;
            let version = next_version(item, *precondition);
            let data = serde_json::to_string(&item.data).map_err(StoreError::backend)?;
            tx.execute(
                "INSERT OR REPLACE INTO items (pk, sk, version, expires_at, data)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![item.pk, item.sk, version as i64, item.expires_at, data],
            )
            .map_err(backend_err)?;
            Ok(ApplyResult::Version(version))
        }
        WriteOp::Delete {
            pk,
            sk,
            precondition,
        } => {
            let current = read(tx, pk, sk, now)?;
            check(current.as_ref(), *precondition)?;
            tx.execute(
                "DELETE FROM items WHERE pk = ?1 AND sk = ?2",
                params![pk, sk],
            )
            .map_err(backend_err)?;
            Ok(ApplyResult::Deleted(current))
        }
    }
}

enum ApplyResult {
    Version(u64),
    Deleted(Option<Item>),
}

#[async_trait]
impl ItemStore for SqliteStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        self.with_tx(move |tx| read(tx, &pk, &sk, now_epoch()))
            .await
    }

    async fn put(&self, item: &Item, precondition: Precondition) -> Result<u64, StoreError> {
        validate_item(item)?;
        let op = WriteOp::Put(item.clone(), precondition);
        match self.with_tx(move |tx| apply(tx, &op, now_epoch())).await? {
            ApplyResult::Version(v) => Ok(v),
            ApplyResult::Deleted(_) => Err(StoreError::Foreign("a delete where a put was asked")),
        }
    }

    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        precondition: Precondition,
    ) -> Result<Option<Item>, StoreError> {
        let op = WriteOp::Delete {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
            precondition,
        };
        match self.with_tx(move |tx| apply(tx, &op, now_epoch())).await? {
            ApplyResult::Deleted(old) => Ok(old),
            ApplyResult::Version(_) => Err(StoreError::Foreign("a put where a delete was asked")),
        }
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError> {
        let (pk, prefix) = (pk.to_owned(), sk_prefix.to_owned());
        self.with_tx(move |tx| {
            let now = now_epoch();
            let mut stmt = tx
                .prepare(
                    "SELECT sk, version, expires_at, data FROM items
                     WHERE pk = ?1 AND substr(sk, 1, length(?2)) = ?2 ORDER BY sk",
                )
                .map_err(backend_err)?;
            let rows = stmt
                .query_map(params![pk, prefix], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<i64>>(2)?,
                        row.get::<_, String>(3)?,
                    ))
                })
                .map_err(backend_err)?;
            let mut items = Vec::new();
            for row in rows {
                let (sk, version, expires_at, data) = row.map_err(backend_err)?;
                let item = Item {
                    pk: pk.clone(),
                    sk,
                    version: version as u64,
                    expires_at,
                    data: serde_json::from_str(&data).map_err(StoreError::backend)?,
                };
                if !item.is_expired(now) {
                    items.push(item);
                }
            }
            Ok(items)
        })
        .await
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Item>, StoreError> {
        let (pk, sk, slot) = (
            claim.pk.to_owned(),
            claim.sk.to_owned(),
            claim.slot.to_owned(),
        );
        let value = claim.value();
        let (holder, now) = (claim.holder.to_owned(), claim.now);
        self.with_tx(move |tx| {
            let Some(mut item) = read(tx, &pk, &sk, now_epoch())? else {
                return Ok(None);
            };
            if !slot_is_free(item.data.get(&slot), &holder, now) {
                return Err(StoreError::ConditionFailed);
            }
            item.data.insert(slot, value);
            let precondition = Precondition::Version(item.version);
            match apply(tx, &WriteOp::Put(item.clone(), precondition), now_epoch())? {
                ApplyResult::Version(version) => {
                    item.version = version;
                    Ok(Some(item))
                }
                ApplyResult::Deleted(_) => {
                    Err(StoreError::Foreign("a delete where a put was asked"))
                }
            }
        })
        .await
    }

    async fn write_unconditionally(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_unconditional(&ops)?;
        // One SQLite transaction: all-or-nothing, more than the port promises.
        self.apply_all(ops).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        // Any failed precondition returns early, and the dropped transaction rolls back.
        self.apply_all(ops).await
    }
}
