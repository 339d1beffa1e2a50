//! The links of one user (each event pair with its last-synced content, the base of the merge)
//! and the conflict journal, in a partition of the user's own. The cursors live on the user's
//! item instead ([`calsync_core::sync::SyncProgress`]), so a run with nothing to do reads one
//! item.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::adapters::store::{Item, ItemStore, Precondition, StoreError, WriteOp};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::sync::{Conflict, Link, LinkKey, Record};

/// The partition of one user's links and journal.
pub fn sync_pk(tenant: &TenantId, user: &CrmUserName) -> String {
    format!("SYNC#{tenant}#{user}")
}

const LINK_PREFIX: &str = "LINK#";
const JOURNAL_PREFIX: &str = "JOURNAL#";
/// Journal entries are kept half a year.
const JOURNAL_TTL_SECS: i64 = 183 * 24 * 3600;

/// A journal entry as stored: the conflict and when it was settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub at: i64,
    #[serde(flatten)]
    pub conflict: Conflict,
}

impl JournalEntry {
    /// What the entry is about: a field's name, or `deletion`.
    pub fn what(&self) -> String {
        self.conflict
            .field
            .and_then(|field| serde_json::to_value(field).ok())
            .and_then(|value| value.as_str().map(str::to_owned))
            .unwrap_or_else(|| "deletion".to_owned())
    }

    /// The value that was not kept, as short text (`None`: that side had deleted the event).
    pub fn not_kept(&self) -> Option<String> {
        let text = match self.conflict.value_not_kept()? {
            Value::String(text) => text.clone(),
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut short: String = text.chars().take(JOURNAL_TEXT_CHARS).collect();
        if short.len() < text.len() {
            short.push('…');
        }
        Some(short)
    }
}

/// How much of a value not kept status pages and the CLI show.
const JOURNAL_TEXT_CHARS: usize = 160;

/// Links and journal of one user.
#[derive(Clone)]
pub struct LinkStore<'a> {
    store: &'a dyn ItemStore,
    pk: String,
}

impl<'a> LinkStore<'a> {
    pub fn new(store: &'a dyn ItemStore, tenant: &TenantId, user: &CrmUserName) -> Self {
        Self {
            store,
            pk: sync_pk(tenant, user),
        }
    }

    /// Every stored link, each with the version it is stored at.
    pub async fn links(&self) -> Result<Vec<Link>, StoreError> {
        self.store
            .query(&self.pk, LINK_PREFIX)
            .await?
            .iter()
            .map(link_from_item)
            .collect()
    }

    /// Stores `link` if the stored version is `link.version - 1` (no record for 0); `false`
    /// when that did not hold.
    pub async fn put_link(&self, link: &Link) -> Result<bool, StoreError> {
        let previous = link
            .version
            .checked_sub(1)
            .ok_or(StoreError::Invalid("a link is stored from version 1"))?;
        let item = self.link_item(link)?;
        match self.store.put(&item, Precondition::Version(previous)).await {
            Ok(_) => Ok(true),
            // A retry of a put whose answer was lost finds its own write.
            Err(StoreError::ConditionFailed) => Ok(self
                .store
                .get(&self.pk, &item.sk)
                .await?
                .is_some_and(|stored| stored.version == link.version && stored.data == item.data)),
            Err(e) => Err(e),
        }
    }

    /// Writes the records: with `fenced` (the caller holds the user's run lease, so no other
    /// writer touches these items) without conditions, in as few requests as the store takes;
    /// otherwise one by one, each on its own condition (as [`Self::put_link`], [`Self::record`]
    /// and [`Self::delete_link`]). One answer per record, in order: `false` only for a link
    /// whose condition did not hold.
    pub async fn store_all(
        &self,
        records: &[Record],
        at: i64,
        fenced: bool,
    ) -> Vec<Result<bool, StoreError>> {
        let mut answers = Vec::with_capacity(records.len());
        if !fenced {
            for record in records {
                answers.push(self.store_one(record, at).await);
            }
            return answers;
        }
        // Each item at most once per write: a repeated key starts the next write.
        let mut start = 0;
        while start < records.len() {
            let mut keys = std::collections::HashSet::new();
            let mut ops = Vec::new();
            for record in &records[start..] {
                let op = self.write_op(record, at);
                if let Ok(WriteOp::Put(Item { sk, .. }, _) | WriteOp::Delete { sk, .. }) = &op {
                    if !keys.insert(sk.clone()) {
                        break;
                    }
                }
                ops.push(op);
            }
            start += ops.len();
            let valid: Vec<WriteOp> = ops
                .iter()
                .filter_map(|op| op.as_ref().ok().cloned())
                .collect();
            let written = self
                .store
                .write_unconditionally(valid)
                .await
                .map_err(|e| crate::errors::chain(&e));
            for op in ops {
                answers.push(match (op, &written) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Ok(())) => Ok(true),
                    (Ok(_), Err(why)) => Err(StoreError::Backend(why.clone().into())),
                });
            }
        }
        answers
    }

    async fn store_one(&self, record: &Record, at: i64) -> Result<bool, StoreError> {
        match record {
            Record::Link(link) => self.put_link(link).await,
            Record::Conflict(conflict) => self.record(conflict, at).await.map(|()| true),
            Record::Unlink { key, expect } => self.delete_link(key, *expect).await.map(|()| true),
        }
    }

    /// The unconditional store write a record stands for.
    fn write_op(&self, record: &Record, at: i64) -> Result<WriteOp, StoreError> {
        Ok(match record {
            Record::Link(link) => {
                let mut item = self.link_item(link)?;
                // Stored without a condition, at the link's own version.
                item.version = link
                    .version
                    .checked_sub(1)
                    .ok_or(StoreError::Invalid("a link is stored from version 1"))?;
                WriteOp::Put(item, Precondition::None)
            }
            Record::Conflict(conflict) => {
                WriteOp::Put(self.journal_item(conflict, at)?, Precondition::None)
            }
            Record::Unlink { key, .. } => WriteOp::Delete {
                pk: self.pk.clone(),
                sk: link_sk(key),
                precondition: Precondition::None,
            },
        })
    }

    /// Forgets a link if it is still at `expect` (or whatever is stored, for `None`).
    pub async fn delete_link(&self, key: &LinkKey, expect: Option<u64>) -> Result<(), StoreError> {
        let precondition = match expect {
            Some(version) => Precondition::Version(version),
            None => Precondition::None,
        };
        match self
            .store
            .delete(&self.pk, &link_sk(key), precondition)
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Puts a journal entry by its id: recording the same conflict twice keeps one entry.
    pub async fn record(&self, conflict: &Conflict, at: i64) -> Result<(), StoreError> {
        let item = self.journal_item(conflict, at)?;
        self.store.put(&item, Precondition::None).await?;
        Ok(())
    }

    fn journal_item(&self, conflict: &Conflict, at: i64) -> Result<Item, StoreError> {
        let entry = JournalEntry {
            at,
            conflict: conflict.clone(),
        };
        let mut item = crate::adapters::store::record_to_item(
            &self.pk,
            format!("{JOURNAL_PREFIX}{}", conflict.id),
            &entry,
        )?;
        item.expires_at = Some(at + JOURNAL_TTL_SECS);
        Ok(item)
    }

    /// The journal, newest first.
    pub async fn journal(&self) -> Result<Vec<JournalEntry>, StoreError> {
        let mut entries: Vec<JournalEntry> = self
            .store
            .query(&self.pk, JOURNAL_PREFIX)
            .await?
            .iter()
            .map(crate::adapters::store::item_to_record)
            .collect::<Result<_, _>>()?;
        entries.sort_by(|a, b| {
            b.at.cmp(&a.at)
                .then_with(|| a.conflict.id.cmp(&b.conflict.id))
        });
        Ok(entries)
    }

    /// Forgets everything of the user's here, links and journal: the tenant is being removed.
    pub async fn forget_all(&self) -> Result<usize, StoreError> {
        let items = self.store.query(&self.pk, "").await?;
        for item in &items {
            self.store
                .delete(&self.pk, &item.sk, Precondition::None)
                .await?;
        }
        Ok(items.len())
    }

    /// Forgets every link (not the journal): when the user's mailbox changed, the links point
    /// at another account's events.
    pub async fn forget_links(&self) -> Result<usize, StoreError> {
        let items = self.store.query(&self.pk, LINK_PREFIX).await?;
        for item in &items {
            self.store
                .delete(&self.pk, &item.sk, Precondition::None)
                .await?;
        }
        Ok(items.len())
    }

    fn link_item(&self, link: &Link) -> Result<Item, StoreError> {
        let mut item = crate::adapters::store::record_to_item(&self.pk, link_sk(&link.key), link)?;
        // The key is the sort key and the version is the store's own.
        item.data.remove("key");
        item.data.remove("version");
        Ok(item)
    }
}

fn link_sk(key: &LinkKey) -> String {
    format!("{LINK_PREFIX}{key}")
}

fn link_from_item(item: &Item) -> Result<Link, StoreError> {
    let key = item
        .sk
        .strip_prefix(LINK_PREFIX)
        .ok_or(StoreError::Foreign(
            "an item that is not a link among the links",
        ))?;
    let mut data = item.data.clone();
    data.insert("key".into(), Value::String(key.to_owned()));
    data.insert("version".into(), Value::from(item.version));
    serde_json::from_value(Value::Object(data)).map_err(|source| StoreError::Unreadable {
        pk: item.pk.clone(),
        sk: item.sk.clone(),
        source,
    })
}
