//! The storage port: one table of items addressed by a partition key and a sort key, with
//! optimistic concurrency (a version number per item), expiry, prefix queries, transactions and
//! slot claims (a lease kept in one attribute of an item).
//! Two adapters implement it — DynamoDB and an embedded SQLite file — and both pass the same
//! contract tests (`shared/tests/it/store_contract.rs`). Typed records (tenants, users, sign-in
//! states…) are built on top of it once, in the modules that own them.

mod dynamo;
mod lease;
#[cfg(feature = "embedded")]
mod sqlite;

pub use dynamo::DynamoStore;
pub use lease::{Lease, LeaseError};
#[cfg(feature = "embedded")]
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// Attribute names the store keeps for itself; record data may not use them.
pub const RESERVED_ATTRIBUTES: [&str; 4] = ["pk", "sk", "version", "expires_at"];

#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// 0 for an item that has never been stored; each successful write stores `version + 1`.
    pub version: u64,
    /// Epoch seconds after which the item counts as gone (the TTL attribute).
    pub expires_at: Option<i64>,
    pub data: Map<String, Value>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
            version: 0,
            expires_at: None,
            data: Map::new(),
        }
    }

    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What must hold for a write to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// No live item at the key (an expired one counts as absent).
    Absent,
    /// A live item exists at the key.
    Exists,
    /// The stored version equals this one (0 means: absent, as above).
    Version(u64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Put(Item, Precondition),
    Delete {
        pk: String,
        sk: String,
        precondition: Precondition,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the precondition of the write did not hold")]
    ConditionFailed,
    /// What calsync asked to store breaks a rule of the store.
    #[error("invalid item: {0}")]
    Invalid(&'static str),
    #[error("invalid item: the attribute name {name:?} is reserved")]
    ReservedAttribute { name: String },
    #[error("a record could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the stored item {pk}/{sk} is unreadable")]
    Unreadable {
        pk: String,
        sk: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("the store answered an item calsync did not write: {0}")]
    Foreign(&'static str),
    #[error("the storage backend failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend(Box::new(error))
    }
}

#[async_trait]
pub trait ItemStore: Send + Sync {
    /// The live item at the key; expired items read as absent (TTL is never trusted).
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError>;

    /// Writes `item` (replacing the whole item) and returns the version now stored.
    async fn put(&self, item: &Item, precondition: Precondition) -> Result<u64, StoreError>;

    /// Deletes the item and returns the live item that was there, if any.
    async fn delete(
        &self,
        pk: &str,
        sk: &str,
        precondition: Precondition,
    ) -> Result<Option<Item>, StoreError>;

    /// Every live item of the partition whose sort key starts with `sk_prefix`, in sort-key order.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, StoreError>;

    /// All writes or none. At most 100 operations, each on a different item.
    async fn transact(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Writes without conditions (every operation's precondition must be `None`; a put stores
    /// `item.version + 1`), each item at most once, in as few requests as the backend takes.
    /// Not all-or-nothing: after an error some may have been written. For a writer that holds
    /// the items by other means (a run's lease).
    async fn write_unconditionally(&self, ops: Vec<WriteOp>) -> Result<(), StoreError>;

    /// Claims the `slot` attribute of a live item for `holder` until `until` — when the slot is
    /// free (absent, or its `until` is not after `now`) or already this holder's — in one
    /// conditional write that also bumps the version, and returns the item as written. The
    /// slot is stored as `{"holder": …, "until": …}`. `Ok(None)`: no such item;
    /// `ConditionFailed`: another holder has it.
    async fn claim(&self, claim: &Claim<'_>) -> Result<Option<Item>, StoreError>;
}

/// A claim on a slot of an item (see [`ItemStore::claim`]).
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub pk: &'a str,
    pub sk: &'a str,
    pub slot: &'a str,
    pub holder: &'a str,
    pub until: i64,
    pub now: i64,
}

impl Claim<'_> {
    /// The value the slot holds once claimed.
    pub fn value(&self) -> Value {
        serde_json::json!({ "holder": self.holder, "until": self.until })
    }
}

/// Whether a slot holding `current` may be claimed by `holder` at `now`: it is empty, expired
/// or already theirs. Both adapters decide by this.
pub fn slot_is_free(current: Option<&Value>, holder: &str, now: i64) -> bool {
    match current {
        None | Some(Value::Null) => true,
        Some(held) => {
            held.get("holder").and_then(Value::as_str) == Some(holder)
                || held
                    .get("until")
                    .and_then(Value::as_i64)
                    .is_none_or(|until| until <= now)
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Rejects what neither backend can hold, so both adapters fail the same way.
pub(crate) fn validate_item(item: &Item) -> Result<(), StoreError> {
    if item.pk.is_empty() || item.sk.is_empty() {
        return Err(StoreError::Invalid("empty key"));
    }
    if let Some(name) = item
        .data
        .keys()
        .find(|k| RESERVED_ATTRIBUTES.contains(&k.as_str()))
    {
        return Err(StoreError::ReservedAttribute {
            name: name.to_owned(),
        });
    }
    Ok(())
}

pub(crate) fn validate_transaction(ops: &[WriteOp]) -> Result<(), StoreError> {
    if ops.len() > 100 {
        return Err(StoreError::Invalid(
            "a transaction holds at most 100 operations",
        ));
    }
    validate_distinct(ops)
}

/// What [`ItemStore::write_unconditionally`] takes: no preconditions, each item once.
pub(crate) fn validate_unconditional(ops: &[WriteOp]) -> Result<(), StoreError> {
    let conditional = ops.iter().any(|op| match op {
        WriteOp::Put(_, precondition) | WriteOp::Delete { precondition, .. } => {
            *precondition != Precondition::None
        }
    });
    if conditional {
        return Err(StoreError::Invalid(
            "an unconditional write carries no precondition",
        ));
    }
    validate_distinct(ops)
}

fn validate_distinct(ops: &[WriteOp]) -> Result<(), StoreError> {
    let mut keys = std::collections::HashSet::new();
    for op in ops {
        let key = match op {
            WriteOp::Put(item, _) => {
                validate_item(item)?;
                (item.pk.as_str(), item.sk.as_str())
            }
            WriteOp::Delete { pk, sk, .. } => (pk.as_str(), sk.as_str()),
        };
        if !keys.insert(key) {
            return Err(StoreError::Invalid("a write may touch each item once"));
        }
    }
    Ok(())
}

/// The version a successful put stores.
pub(crate) fn next_version(item: &Item, precondition: Precondition) -> u64 {
    match precondition {
        Precondition::Version(v) => v + 1,
        Precondition::Absent => 1,
        _ => item.version + 1,
    }
}

/// Typed access to an item's data, for the record modules built on the store.
pub trait ItemData {
    fn str_field(&self, name: &str) -> Option<&str>;
    fn i64_field(&self, name: &str) -> Option<i64>;
}

impl ItemData for Item {
    fn str_field(&self, name: &str) -> Option<&str> {
        self.data.get(name).and_then(Value::as_str)
    }

    fn i64_field(&self, name: &str) -> Option<i64> {
        self.data.get(name).and_then(Value::as_i64)
    }
}

/// Stores a serializable record as an item's data (it must serialize to a JSON object).
pub fn record_to_item<T: serde::Serialize>(
    pk: impl Into<String>,
    sk: impl Into<String>,
    record: &T,
) -> Result<Item, StoreError> {
    match serde_json::to_value(record) {
        Ok(Value::Object(data)) => {
            let mut item = Item::new(pk, sk);
            item.data = data;
            Ok(item)
        }
        Ok(_) => Err(StoreError::Invalid("a record must be a JSON object")),
        Err(e) => Err(StoreError::Encode(e)),
    }
}

/// Reads an item's data back into its record type.
pub fn item_to_record<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, StoreError> {
    serde_json::from_value(Value::Object(item.data.clone())).map_err(|source| {
        StoreError::Unreadable {
            pk: item.pk.clone(),
            sk: item.sk.clone(),
            source,
        }
    })
}
