//! The link between a CRM user and their Microsoft account, with their connection status and
//! the sealed tokens. One item per user in the tenant's partition.

use serde::{Deserialize, Serialize};

use crate::ids::{CrmUserName, TenantId};
use crate::store::{item_to_record, record_to_item, Item, ItemStore, Precondition, StoreError};
use crate::tenant::tenant_pk;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Connected,
    Disconnected,
    /// Microsoft refused the refresh token: the user must connect again.
    ReconnectRequired,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Disconnected => "disconnected",
            Self::ReconnectRequired => "reconnect_required",
        }
    }
}

/// Something wrong that the user or operator should see, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Stable machine-readable code, e.g. `reconnect_required`.
    pub code: String,
    /// What happened, in plain words (never a secret).
    pub detail: String,
    pub since: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub tenant: TenantId,
    pub user: CrmUserName,
    pub status: UserStatus,
    /// Microsoft identity: tenant id (`tid`), object id (`oid`), sign-in name.
    pub ms_tenant_id: String,
    pub ms_user_id: String,
    #[serde(default)]
    pub ms_username: String,
    /// The refresh token, sealed with the tenant's token key (never stored in the clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_sealed: Option<String>,
    /// A current access token, sealed too, so any container can reuse it until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<i64>,
    pub connected_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Set once the Graph subscription exists (see `subscription`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_expires_at: Option<i64>,
    /// What the last sync runs did; written by the sync engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncSummary>,
    /// Where the sync engine stands with this user (cursors); kept on this item so a run with
    /// nothing to do reads one item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_state: Option<crate::runner::SyncState>,
}

/// The outcome of recent syncs, as status shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// Last successful run that brought Outlook changes into the CRM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_crm_at: Option<i64>,
    /// Last successful run that brought CRM changes into Outlook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_outlook_at: Option<i64>,
    /// When the last run ended, successful or not: the scheduler's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<i64>,
    /// When the last run that finished everything ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_at: Option<i64>,
    /// What the last run did.
    #[serde(default)]
    pub last_counts: RunCounts,
    /// Since the first run.
    #[serde(default)]
    pub total_counts: RunCounts,
    /// Events currently linked on both sides.
    #[serde(default)]
    pub linked_events: u64,
}

/// Writes done by sync runs, per side, and the conflicts they settled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub crm_created: u64,
    pub crm_updated: u64,
    pub crm_deleted: u64,
    pub outlook_created: u64,
    pub outlook_updated: u64,
    pub outlook_deleted: u64,
    pub conflicts: u64,
    pub failed: u64,
}

impl RunCounts {
    pub fn add(&mut self, other: &RunCounts) {
        self.crm_created += other.crm_created;
        self.crm_updated += other.crm_updated;
        self.crm_deleted += other.crm_deleted;
        self.outlook_created += other.outlook_created;
        self.outlook_updated += other.outlook_updated;
        self.outlook_deleted += other.outlook_deleted;
        self.conflicts += other.conflicts;
        self.failed += other.failed;
    }

    pub fn writes(&self) -> u64 {
        self.crm_created
            + self.crm_updated
            + self.crm_deleted
            + self.outlook_created
            + self.outlook_updated
            + self.outlook_deleted
    }
}

impl UserRecord {
    /// The associated data that binds a sealed token to this tenant and user.
    pub fn seal_context(tenant: &TenantId, user: &CrmUserName) -> String {
        format!("calsync-token\0{tenant}\0{user}")
    }

    pub fn set_problem(&mut self, code: &str, detail: impl Into<String>, now: i64) {
        let detail = detail.into();
        match self.problems.iter_mut().find(|p| p.code == code) {
            Some(p) => p.detail = detail,
            None => self.problems.push(Problem {
                code: code.to_owned(),
                detail,
                since: now,
            }),
        }
    }

    pub fn clear_problem(&mut self, code: &str) {
        self.problems.retain(|p| p.code != code);
    }
}

pub fn user_sk(user: &CrmUserName) -> String {
    format!("USER#{user}")
}

/// Index item: which CRM user a Microsoft account (`oid`) is linked to, so one Outlook
/// calendar is never synced into two CRM users.
pub fn ms_link_sk(ms_user_id: &str) -> String {
    format!("MSUSER#{ms_user_id}")
}

/// A user record together with the version it was read at.
pub struct VersionedUser {
    pub record: UserRecord,
    pub version: u64,
}

pub async fn get_user(
    store: &dyn ItemStore,
    tenant: &TenantId,
    user: &CrmUserName,
) -> Result<Option<VersionedUser>, StoreError> {
    let Some(item) = store.get(&tenant_pk(tenant), &user_sk(user)).await? else {
        return Ok(None);
    };
    Ok(Some(VersionedUser {
        record: item_to_record(&item)?,
        version: item.version,
    }))
}

pub async fn list_users(
    store: &dyn ItemStore,
    tenant: &TenantId,
) -> Result<Vec<UserRecord>, StoreError> {
    store
        .query(&tenant_pk(tenant), "USER#")
        .await?
        .iter()
        .map(item_to_record)
        .collect()
}

pub fn user_item(record: &UserRecord, version: u64) -> Result<Item, StoreError> {
    let mut item = record_to_item(tenant_pk(&record.tenant), user_sk(&record.user), record)?;
    item.version = version;
    Ok(item)
}

/// [`update_user`] starting from a record just read: one write when nobody changed the item
/// meanwhile, the re-reading loop otherwise.
pub async fn update_read_user(
    store: &dyn ItemStore,
    read: &VersionedUser,
    mut change: impl FnMut(&mut UserRecord),
) -> Result<Option<UserRecord>, StoreError> {
    let mut record = read.record.clone();
    change(&mut record);
    match store
        .put(
            &user_item(&record, read.version)?,
            Precondition::Version(read.version),
        )
        .await
    {
        Ok(_) => Ok(Some(record)),
        Err(StoreError::ConditionFailed) => {
            update_user(store, &read.record.tenant, &read.record.user, change).await
        }
        Err(e) => Err(e),
    }
}

/// Applies `change` to the stored user under optimistic concurrency, re-reading on conflicts.
/// Returns `None` when the user does not exist.
pub async fn update_user(
    store: &dyn ItemStore,
    tenant: &TenantId,
    user: &CrmUserName,
    mut change: impl FnMut(&mut UserRecord),
) -> Result<Option<UserRecord>, StoreError> {
    for _ in 0..8 {
        let Some(VersionedUser {
            mut record,
            version,
        }) = get_user(store, tenant, user).await?
        else {
            return Ok(None);
        };
        change(&mut record);
        match store
            .put(
                &user_item(&record, version)?,
                Precondition::Version(version),
            )
            .await
        {
            Ok(_) => return Ok(Some(record)),
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Backend(
        "the user record kept changing under us; try again".into(),
    ))
}
