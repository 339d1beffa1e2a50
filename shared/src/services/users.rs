//! The users of a tenant: each CRM user's connection to a Microsoft account, its status, the
//! sealed tokens, the Graph subscription, what the last runs did and where the sync stands.
//!
//! [`Users`] is the one owner of these items: every write goes through an operation named for
//! what happened (a user connected, tokens were refreshed, a run finished, a subscription was
//! set, the user disconnected), and nothing else builds their keys. One item per user in the
//! tenant's partition (`USER#{user}`), and an index item per Microsoft account
//! (`MSUSER#{oid}`) that says which CRM user it feeds, so one Outlook calendar is never synced
//! into two CRM users.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::adapters::store::{
    item_to_record, record_to_item, Claim, Item, ItemStore, Precondition, StoreError, WriteOp,
};
use crate::services::tenants::{tenant_pk, MicrosoftAccess, TenantSettings};
use calsync_core::crm::CrmUser;
use calsync_core::ids::{CrmUserName, TenantId};
pub use calsync_core::sync::ParkedEvent;
use calsync_core::sync::{HeldDeletion, LinkKey, SyncProgress};

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

/// What can be wrong with a user's sync, as status shows it. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    /// Microsoft no longer accepts the saved sign-in.
    ReconnectRequired,
    /// Push is not set up (no webhook URL); the user is synced on schedule.
    NotificationsUnavailable,
    /// Creating or renewing the Graph subscription failed; retried on the next round.
    SubscriptionFailed,
    /// The first sync could not be queued at connect time; the scheduler runs it.
    InitialSyncNotQueued,
    CrmUnreachable,
    OutlookUnreachable,
    /// A run stopped for another reason (storage, sign-in service).
    SyncFailed,
    /// The CRM has no active user by this name.
    CrmUserMissing,
    /// The mass-deletion guard held a run's deletions back.
    DeletionGuard,
    /// Some events failed in the last run.
    SyncErrors,
    /// A side refused some events for good; they are parked and tried again later.
    EventsParked,
    /// Some events could not be read, so they are not synced.
    EventsSkipped,
}

impl ProblemCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReconnectRequired => "reconnect_required",
            Self::NotificationsUnavailable => "notifications_unavailable",
            Self::SubscriptionFailed => "subscription_failed",
            Self::InitialSyncNotQueued => "initial_sync_not_queued",
            Self::CrmUnreachable => "crm_unreachable",
            Self::OutlookUnreachable => "outlook_unreachable",
            Self::SyncFailed => "sync_failed",
            Self::CrmUserMissing => "crm_user_missing",
            Self::DeletionGuard => "deletion_guard",
            Self::SyncErrors => "sync_errors",
            Self::EventsParked => "events_parked",
            Self::EventsSkipped => "events_skipped",
        }
    }

    /// The problems a run that could read both sides clears, whatever else it found (the
    /// first sync that could not be queued has now run).
    const CLEARED_BY_A_FINISHED_RUN: [ProblemCode; 5] = [
        Self::InitialSyncNotQueued,
        Self::CrmUnreachable,
        Self::OutlookUnreachable,
        Self::SyncFailed,
        Self::CrmUserMissing,
    ];
}

impl std::fmt::Display for ProblemCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something wrong that the user or operator should see, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub code: ProblemCode,
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
    /// Access tokens are not stored: each container keeps its own while they last
    /// ([`crate::services::tokens`]), which keeps this item small and its writes cheap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_sealed: Option<String>,
    /// When the refresh token above was stored (epoch seconds): a refresh stores its rotated
    /// successor only once this is old enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_stored_at: Option<i64>,
    pub connected_at: i64,
    pub updated_at: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Set once the Graph subscription exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_expires_at: Option<i64>,
    /// What the last sync runs did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncSummary>,
    /// The deletions the mass-deletion guard held back in the last run that tripped it: the
    /// list an operator looks at before confirming.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_deletions: Vec<HeldDeletion>,
    /// Deletions an operator confirmed ([`Users::confirm_held_deletions`]): the guard lets
    /// exactly these through until a run commits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confirmed_deletions: Vec<LinkKey>,
    /// Events a side refused for good, waiting for their next try.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parked: Vec<ParkedEvent>,
    /// Events that could not be read, until they are read again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedEvent>,
    /// Set while a nudge's job waits in the queue: further nudges need no job of their own
    /// until a run starts (see [`Users::note_nudge`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nudge_queued: Option<RunLease>,
    /// The sync run that holds the user now, if any (see [`Users::begin_run`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_lease: Option<RunLease>,
    /// Where the sync stands with this user (cursors). Stored under its first name.
    #[serde(
        default,
        rename = "sync_state",
        skip_serializing_if = "Option::is_none"
    )]
    pub progress: Option<SyncProgress>,
}

/// An event calsync could not read (a record with a broken date, an item Graph describes in a
/// way calsync cannot map): it is not synced, and status says so until it is read again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEvent {
    pub side: calsync_core::sync::Side,
    /// Its id on that side; empty when it had none.
    pub id: String,
    pub why: String,
    /// When it was first skipped (epoch seconds).
    pub since: i64,
}

/// A sync run's hold on its user: one run per user at a time, across processes. It lapses at
/// `until` unless renewed, so a run that died blocks the next one only briefly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLease {
    pub holder: String,
    /// Epoch seconds.
    pub until: i64,
}

/// How [`Users::begin_run`] went.
#[derive(Debug)]
pub enum RunStart {
    /// The run holds the user; here is the record as the claim wrote it.
    Started(Box<VersionedUser>),
    /// Another run holds the user until `until`.
    Busy { until: i64 },
    /// No such user.
    Missing,
}

/// The item attribute the run lease is kept in.
const RUN_LEASE_SLOT: &str = "run_lease";
/// The item attribute a queued nudge job is marked in.
const NUDGE_SLOT: &str = "nudge_queued";

/// What a nudge found ([`Users::note_nudge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeNote {
    /// Marked: queue a job.
    QueueJob,
    /// A job for the user is already waiting; it will read this change too.
    AlreadyQueued,
    /// No such user, or not connected: nothing to sync.
    NotSyncing,
}

/// The outcome of recent syncs, as status shows it. Stored by recorded runs; status readers
/// also fold in the last quiet look ([`Users::get_for_status`]), which moves the three "as
/// of" moments on between recorded runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSummary {
    /// When the last run that committed its cursors ended: the CRM holds every Outlook change
    /// up to then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_crm_at: Option<i64>,
    /// The same moment seen from Outlook: it holds every CRM change up to then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_outlook_at: Option<i64>,
    /// When the last recorded run ended, successful or not. A scheduled run that only looked
    /// and found nothing is not recorded; one is at least every few hours
    /// ([`crate::services::sync_run::RECORDED_RUN_AT_LEAST_EVERY_SECS`]).
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

impl SyncSummary {
    /// Folds in a quiet look at `at` ([`Users::note_quiet_look`]): the look found neither side
    /// with news and nothing waiting, so as of then each side held every change of the other,
    /// just as after a run that committed its cursors and finished everything.
    fn fold_quiet_look(&mut self, at: i64) {
        for moment in [
            &mut self.to_crm_at,
            &mut self.to_outlook_at,
            &mut self.last_success_at,
        ] {
            *moment = Some(moment.map_or(at, |m| m.max(at)));
        }
    }
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

/// A connected user with no problem on record is *overdue* when neither side has been known in
/// sync for this many of the user's sweeps (and [`OVERDUE_AT_LEAST_SECS`]): whatever should
/// sweep them stopped without a word. Quiet looks note themselves, so a quiet user is never
/// overdue while the sweeps work.
pub const OVERDUE_AFTER_SWEEPS: i64 = 3;
/// The shortest time a user may go unsynced before being overdue: a change of sweep interval
/// (a tenant's nudges lapsing) must not make users overdue before their next sweep.
pub const OVERDUE_AT_LEAST_SECS: i64 = 2 * 3600;
/// How status (the CLI, `calsync serve`) says a user is overdue.
pub const OVERDUE_TEXT: &str = "overdue: nothing synced for several sweeps";

impl UserRecord {
    /// Whether the user is overdue at `now` (see [`OVERDUE_AFTER_SWEEPS`]) when swept every
    /// `sweep_minutes`. Meant for a record as status shows it ([`Users::get_for_status`]).
    pub fn overdue(&self, sweep_minutes: u32, now: i64) -> bool {
        if self.status != UserStatus::Connected || !self.problems.is_empty() {
            return false;
        }
        let summary = self.last_sync.as_ref();
        let side = |at: Option<i64>| at.unwrap_or(self.connected_at);
        // The side that lags; never before this connection began (a reconnected user keeps
        // what the sync knew from before).
        let known_in_sync = side(summary.and_then(|s| s.to_crm_at))
            .min(side(summary.and_then(|s| s.to_outlook_at)))
            .max(self.connected_at);
        let allowed =
            (OVERDUE_AFTER_SWEEPS * i64::from(sweep_minutes) * 60).max(OVERDUE_AT_LEAST_SECS);
        now - known_in_sync > allowed
    }

    /// [`Self::overdue`] at the user's own sweep interval in `settings`. A tenant without
    /// Microsoft access has no overdue users: its warning already says why nothing syncs.
    pub fn overdue_in(&self, settings: &TenantSettings, now: i64) -> bool {
        settings.microsoft_access() == MicrosoftAccess::Active
            && self.overdue(
                settings.sweep_minutes(self.subscription_id.is_some(), now),
                now,
            )
    }

    /// The associated data that binds a sealed token to this tenant and user.
    pub fn seal_context(tenant: &TenantId, user: &CrmUserName) -> String {
        format!("calsync-token\0{tenant}\0{user}")
    }

    pub fn problem(&self, code: ProblemCode) -> Option<&Problem> {
        self.problems.iter().find(|p| p.code == code)
    }

    fn set_problem(&mut self, code: ProblemCode, detail: impl Into<String>, now: i64) {
        let detail = detail.into();
        match self.problems.iter_mut().find(|p| p.code == code) {
            Some(p) => p.detail = detail,
            None => self.problems.push(Problem {
                code,
                detail,
                since: now,
            }),
        }
    }

    fn clear_problem(&mut self, code: ProblemCode) {
        self.problems.retain(|p| p.code != code);
    }

    fn summary(&mut self) -> &mut SyncSummary {
        self.last_sync.get_or_insert_with(Default::default)
    }
}

/// A user record together with the version it was read at.
#[derive(Debug, Clone)]
pub struct VersionedUser {
    pub record: UserRecord,
    pub version: u64,
}

/// A successful sign-in, as the connect flow hands it over.
pub struct Connection {
    pub tenant: TenantId,
    pub user: CrmUserName,
    pub ms_tenant_id: String,
    pub ms_user_id: String,
    pub ms_username: String,
    pub refresh_token_sealed: String,
}

/// How a sync run ended, as the user's record keeps it.
pub enum RunRecord<'a> {
    /// The run read both sides and planned; some steps may have failed.
    Finished {
        counts: RunCounts,
        /// Events linked after the run, when the run read the links.
        linked: Option<u64>,
        /// The mass-deletion guard's explanation and list, when it held deletions back.
        guard: Option<GuardNote>,
        /// Steps that failed, with why.
        failures: &'a [String],
        /// Every event parked after this run.
        parked: Vec<ParkedEvent>,
        /// Every event that could not be read, after this run.
        skipped: Vec<SkippedEvent>,
        /// The progress to commit, when every step succeeded.
        committed: Option<&'a SyncProgress>,
        /// The CRM user resolved by this run, kept even when nothing is committed.
        owner: Option<&'a CrmUser>,
        mailbox: &'a str,
    },
    /// The run could not finish.
    Failed { code: ProblemCode, detail: String },
}

/// What a run whose deletions the guard held back leaves on the user.
#[derive(Debug, Clone)]
pub struct GuardNote {
    /// For status: how many, and what to do.
    pub detail: String,
    pub held: Vec<HeldDeletion>,
}

/// Why a user item could not be written.
#[derive(Debug, thiserror::Error)]
pub enum UserWriteError {
    #[error("the user record kept changing during the write; try again")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why [`Users::reseal_tokens`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error("a token could not be sealed again")]
    Seal(#[source] crate::crypto::CryptoError),
    #[error(transparent)]
    Write(#[from] UserWriteError),
}

/// Why [`Users::connect`] did not link the account.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The Microsoft account already feeds another connected CRM user.
    #[error("the Microsoft account is linked to CRM user {0}")]
    AccountTaken(CrmUserName),
    #[error(transparent)]
    Write(#[from] UserWriteError),
}

/// The users of every tenant, in the item store.
#[derive(Clone)]
pub struct Users {
    store: Arc<dyn ItemStore>,
}

fn user_sk(user: &CrmUserName) -> String {
    format!("USER#{user}")
}

fn quiet_look_sk(user: &CrmUserName) -> String {
    format!("{QUIET_LOOK_PREFIX}{user}")
}

/// Items that hold when a user's last quiet look happened; not under `USER#`, so listing
/// users never reads them.
const QUIET_LOOK_PREFIX: &str = "LOOKED#";
/// A quiet-look item lapses after this: by then a recorded run has long superseded it.
const QUIET_LOOK_KEPT_SECS: i64 = 7 * 24 * 3600;

fn account_sk(ms_user_id: &str) -> String {
    format!("MSUSER#{ms_user_id}")
}

fn quiet_look_at(item: &Item) -> Option<i64> {
    item.data.get("at").and_then(|v| v.as_i64())
}

/// The CRM user an account index entry names.
fn holder_of(item: &Item) -> Option<CrmUserName> {
    item.data
        .get("user")
        .and_then(|v| v.as_str())
        .and_then(|name| CrmUserName::parse(name).ok())
}

/// The key of a user's item, for tools that read or arrange the table directly (tests).
pub fn item_key(tenant: &TenantId, user: &CrmUserName) -> (String, String) {
    (tenant_pk(tenant), user_sk(user))
}

/// How often a write re-reads a user item that changed under it before giving up.
const WRITE_ATTEMPTS: usize = 8;

impl Users {
    pub fn new(store: Arc<dyn ItemStore>) -> Self {
        Self { store }
    }

    pub async fn get(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
    ) -> Result<Option<VersionedUser>, StoreError> {
        let Some(item) = self.store.get(&tenant_pk(tenant), &user_sk(user)).await? else {
            return Ok(None);
        };
        Ok(Some(VersionedUser {
            record: item_to_record(&item)?,
            version: item.version,
        }))
    }

    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        self.store
            .query(&tenant_pk(tenant), "USER#")
            .await?
            .iter()
            .map(item_to_record)
            .collect()
    }

    /// Notes that a scheduled look at `at` found the user quiet. Looks do not write the user's
    /// item (4 KB: 4 write units); this small item of its own costs 1, and keeps what status
    /// shows as fresh as the sweeps, where recorded runs come only every few hours.
    pub async fn note_quiet_look(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        at: i64,
    ) -> Result<(), StoreError> {
        let mut item = Item::new(tenant_pk(tenant), quiet_look_sk(user));
        item.expires_at = Some(at + QUIET_LOOK_KEPT_SECS);
        item.data.insert("at".to_owned(), at.into());
        self.store.put(&item, Precondition::None).await.map(|_| ())
    }

    /// The user's record as status shows it: with the last quiet look folded into its sync
    /// summary ([`SyncSummary::fold_quiet_look`]). For status readers only; the sync decides
    /// on the recorded runs alone.
    pub async fn get_for_status(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
    ) -> Result<Option<UserRecord>, StoreError> {
        let Some(read) = self.get(tenant, user).await? else {
            return Ok(None);
        };
        let mut record = read.record;
        let look = self
            .store
            .get(&tenant_pk(tenant), &quiet_look_sk(user))
            .await?;
        if let Some(at) = look.as_ref().and_then(quiet_look_at) {
            record.summary().fold_quiet_look(at);
        }
        Ok(Some(record))
    }

    /// Every user of the tenant as status shows them (see [`Self::get_for_status`]).
    pub async fn list_for_status(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let mut records = self.list(tenant).await?;
        // The dispatcher calls this at every sweep: one pass over each list, not one per user.
        let looks: std::collections::HashMap<String, i64> = self
            .store
            .query(&tenant_pk(tenant), QUIET_LOOK_PREFIX)
            .await?
            .iter()
            .filter_map(|look| {
                let name = look.sk.strip_prefix(QUIET_LOOK_PREFIX)?;
                Some((name.to_owned(), quiet_look_at(look)?))
            })
            .collect();
        for record in &mut records {
            if let Some(&at) = looks.get(record.user.as_str()) {
                record.summary().fold_quiet_look(at);
            }
        }
        Ok(records)
    }

    /// The CRM user a Microsoft account currently feeds, if any.
    pub async fn account_holder(
        &self,
        tenant: &TenantId,
        ms_user_id: &str,
    ) -> Result<Option<CrmUserName>, StoreError> {
        Ok(self
            .store
            .get(&tenant_pk(tenant), &account_sk(ms_user_id))
            .await?
            .as_ref()
            .and_then(holder_of))
    }

    /// Whether the user is still connected (or must reconnect): only such a holder keeps its
    /// Microsoft account from others.
    async fn is_live(&self, tenant: &TenantId, user: &CrmUserName) -> Result<bool, ConnectError> {
        Ok(self
            .get(tenant, user)
            .await
            .map_err(UserWriteError::from)?
            .is_some_and(|u| u.record.status != UserStatus::Disconnected))
    }

    /// Whether `user` may connect the Microsoft account: it feeds nobody else who is still
    /// connected (or must reconnect).
    pub async fn check_account_free(
        &self,
        tenant: &TenantId,
        ms_user_id: &str,
        user: &CrmUserName,
    ) -> Result<(), ConnectError> {
        let Some(holder) = self
            .account_holder(tenant, ms_user_id)
            .await
            .map_err(UserWriteError::from)?
        else {
            return Ok(());
        };
        if &holder == user {
            return Ok(());
        }
        if self.is_live(tenant, &holder).await? {
            return Err(ConnectError::AccountTaken(holder));
        }
        Ok(())
    }

    /// Records a sign-in: the user is connected to the Microsoft account with fresh tokens. A
    /// reconnect keeps what the sync knows (subscription, summary, progress); the runner drops
    /// progress and links that belong to another account. The account index moves with the
    /// user, in the same transaction. The caller has checked [`Self::check_account_free`].
    pub async fn connect(
        &self,
        connection: Connection,
        now: i64,
    ) -> Result<UserRecord, ConnectError> {
        let tenant = &connection.tenant;
        let existing = self
            .get(tenant, &connection.user)
            .await
            .map_err(UserWriteError::from)?;
        let version = existing.as_ref().map(|u| u.version).unwrap_or(0);
        let previous = existing.map(|u| u.record);
        let record = UserRecord {
            tenant: tenant.clone(),
            user: connection.user.clone(),
            status: UserStatus::Connected,
            ms_tenant_id: connection.ms_tenant_id,
            ms_user_id: connection.ms_user_id.clone(),
            ms_username: connection.ms_username,
            refresh_token_sealed: Some(connection.refresh_token_sealed),
            refresh_token_stored_at: Some(now),
            connected_at: now,
            updated_at: now,
            problems: Vec::new(),
            subscription_id: previous.as_ref().and_then(|p| p.subscription_id.clone()),
            subscription_expires_at: previous.as_ref().and_then(|p| p.subscription_expires_at),
            last_sync: previous.as_ref().and_then(|p| p.last_sync.clone()),
            // A new connection starts without confirmations; a run that trips lists again.
            held_deletions: Vec::new(),
            confirmed_deletions: Vec::new(),
            parked: previous
                .as_ref()
                .map(|p| p.parked.clone())
                .unwrap_or_default(),
            skipped: previous
                .as_ref()
                .map(|p| p.skipped.clone())
                .unwrap_or_default(),
            nudge_queued: None,
            run_lease: previous.as_ref().and_then(|p| p.run_lease.clone()),
            progress: previous.as_ref().and_then(|p| p.progress.clone()),
        };
        let pk = tenant_pk(tenant);
        let index_sk = account_sk(&connection.ms_user_id);
        // The index entry is checked and taken on one version: of two sign-ins of one mailbox
        // at once, the later either sees the first's entry or fails its transaction, and the
        // account ends up linked once.
        let index_item = self
            .store
            .get(&pk, &index_sk)
            .await
            .map_err(UserWriteError::from)?;
        let index_version = index_item.as_ref().map_or(0, |item| item.version);
        if let Some(holder) = index_item.as_ref().and_then(holder_of) {
            if holder != connection.user && self.is_live(tenant, &holder).await? {
                return Err(ConnectError::AccountTaken(holder));
            }
        }
        let index = record_to_item(
            &pk,
            index_sk,
            &serde_json::json!({ "user": connection.user }),
        )
        .map_err(UserWriteError::from)?;
        let mut ops = vec![
            WriteOp::Put(
                self.item(&record, version).map_err(UserWriteError::from)?,
                Precondition::Version(version),
            ),
            WriteOp::Put(index, Precondition::Version(index_version)),
        ];
        // Switching Microsoft accounts frees the old account's index entry.
        if let Some(old) = previous
            .as_ref()
            .filter(|p| !p.ms_user_id.is_empty() && p.ms_user_id != connection.ms_user_id)
        {
            ops.push(WriteOp::Delete {
                pk: pk.clone(),
                sk: account_sk(&old.ms_user_id),
                precondition: Precondition::None,
            });
        }
        match self.store.transact(ops).await {
            Ok(()) => Ok(record),
            Err(StoreError::ConditionFailed) => {
                // Someone else took the account meanwhile, or the user item moved on.
                self.check_account_free(tenant, &connection.ms_user_id, &connection.user)
                    .await?;
                Err(UserWriteError::Contended.into())
            }
            Err(e) => Err(UserWriteError::from(e).into()),
        }
    }

    /// Stores the rotated refresh token of a refresh, sealed, unless the user is no longer
    /// connected (a disconnect in between keeps no token).
    pub async fn store_refresh_token(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        refresh_token_sealed: String,
        now: i64,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| {
            if r.status == UserStatus::Connected {
                r.refresh_token_sealed = Some(refresh_token_sealed.clone());
                r.refresh_token_stored_at = Some(now);
                r.updated_at = now;
            }
        })
        .await
        .map(|_| ())
    }

    /// Microsoft refused the user's refresh token: no more syncs until they connect again.
    pub async fn require_reconnect(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        detail: String,
        now: i64,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| {
            r.status = UserStatus::ReconnectRequired;
            r.set_problem(ProblemCode::ReconnectRequired, detail.clone(), now);
            r.updated_at = now;
        })
        .await
        .map(|_| ())
    }

    /// The user's Graph subscription now is `subscription` (`None`: there is none).
    pub async fn set_subscription(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        subscription: Option<(&str, i64)>,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| match subscription {
            Some((id, expires_at)) => {
                r.subscription_id = Some(id.to_owned());
                r.subscription_expires_at = Some(expires_at);
                r.clear_problem(ProblemCode::NotificationsUnavailable);
                r.clear_problem(ProblemCode::SubscriptionFailed);
            }
            None => {
                r.subscription_id = None;
                r.subscription_expires_at = None;
            }
        })
        .await
        .map(|_| ())
    }

    /// Notes a problem on the user (replacing the detail of one with the same code).
    pub async fn note_problem(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        code: ProblemCode,
        detail: &str,
        now: i64,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| r.set_problem(code, detail, now))
            .await
            .map(|_| ())
    }

    /// Clears problems that no longer hold.
    pub async fn clear_problems(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        codes: &[ProblemCode],
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| {
            for code in codes {
                r.clear_problem(*code);
            }
        })
        .await
        .map(|_| ())
    }

    /// Takes the user for a sync run, and reads it, in one conditional write: refused while
    /// another run holds it. The lease lasts `ttl` unless [`Self::keep_run`] renews it, and
    /// [`Self::record_run`] (or [`Self::end_run`]) gives it back.
    pub async fn begin_run(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        holder: &str,
        ttl: std::time::Duration,
        now: i64,
    ) -> Result<RunStart, UserWriteError> {
        let (pk, sk) = item_key(tenant, user);
        let claim = Claim {
            pk: &pk,
            sk: &sk,
            slot: RUN_LEASE_SLOT,
            holder,
            until: now + ttl.as_secs() as i64,
            now,
        };
        match self.store.claim(&claim).await {
            Ok(Some(item)) => Ok(RunStart::Started(Box::new(VersionedUser {
                record: item_to_record(&item)?,
                version: item.version,
            }))),
            Ok(None) => Ok(RunStart::Missing),
            Err(StoreError::ConditionFailed) => {
                let until = self
                    .get(tenant, user)
                    .await?
                    .and_then(|u| u.record.run_lease)
                    .map_or(now, |lease| lease.until);
                Ok(RunStart::Busy { until })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks that a nudge's job is queued for the user, unless one already is (a mark lasts
    /// `ttl` at most, so a job that was lost does not silence nudges for long). A run clears
    /// the mark when it starts ([`Self::clear_nudge`]): a nudge during a run queues another.
    pub async fn note_nudge(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        ttl: std::time::Duration,
        now: i64,
    ) -> Result<NudgeNote, UserWriteError> {
        let (pk, sk) = item_key(tenant, user);
        // Each nudge holds the slot under its own name, so a live mark is never re-taken.
        let holder = crate::crypto::random_token(9);
        let claim = Claim {
            pk: &pk,
            sk: &sk,
            slot: NUDGE_SLOT,
            holder: &holder,
            until: now + ttl.as_secs() as i64,
            now,
        };
        match self.store.claim(&claim).await {
            Ok(Some(item)) => {
                let record: UserRecord = item_to_record(&item)?;
                Ok(if record.status == UserStatus::Connected {
                    NudgeNote::QueueJob
                } else {
                    NudgeNote::NotSyncing
                })
            }
            Ok(None) => Ok(NudgeNote::NotSyncing),
            Err(StoreError::ConditionFailed) => Ok(NudgeNote::AlreadyQueued),
            Err(e) => Err(e.into()),
        }
    }

    /// Clears the nudge mark (a run has started, or the job could not be queued).
    pub async fn clear_nudge(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| r.nudge_queued = None)
            .await
            .map(|_| ())
    }

    /// [`Self::clear_nudge`] written on the version `read` (a run's own claim), returning the
    /// record as now stored, so the run's later writes start from it instead of failing once
    /// on a version it moved itself.
    pub async fn clear_nudge_at(
        &self,
        read: &VersionedUser,
    ) -> Result<VersionedUser, UserWriteError> {
        let mut record = read.record.clone();
        record.nudge_queued = None;
        match self
            .store
            .put(
                &self.item(&record, read.version)?,
                Precondition::Version(read.version),
            )
            .await
        {
            Ok(version) => Ok(VersionedUser { record, version }),
            Err(StoreError::ConditionFailed) => Err(UserWriteError::Contended),
            Err(e) => Err(e.into()),
        }
    }

    /// Renews a run's lease; `false` when the run no longer holds the user.
    pub async fn keep_run(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        holder: &str,
        ttl: std::time::Duration,
        now: i64,
    ) -> Result<bool, UserWriteError> {
        match self.begin_run(tenant, user, holder, ttl, now).await? {
            RunStart::Started(_) => Ok(true),
            RunStart::Busy { .. } | RunStart::Missing => Ok(false),
        }
    }

    /// Gives a run's lease back without recording anything (the run found nothing to do for a
    /// user who is not connected).
    pub async fn end_run(&self, read: &VersionedUser, holder: &str) -> Result<(), UserWriteError> {
        self.write_from(read, |record| release(record, holder))
            .await
    }

    /// Records how a sync run ended and gives its lease back, starting from the record the run
    /// read: one write when nobody changed the item meanwhile.
    pub async fn record_run(
        &self,
        read: &VersionedUser,
        run: &RunRecord<'_>,
        holder: &str,
        now: i64,
    ) -> Result<(), UserWriteError> {
        self.write_from(read, |record| {
            apply_run(record, run, now);
            release(record, holder);
        })
        .await
    }

    /// Applies `change` to the record read at `read.version`, re-reading if it moved.
    async fn write_from(
        &self,
        read: &VersionedUser,
        change: impl Fn(&mut UserRecord),
    ) -> Result<(), UserWriteError> {
        let mut record = read.record.clone();
        change(&mut record);
        match self
            .store
            .put(
                &self.item(&record, read.version)?,
                Precondition::Version(read.version),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::ConditionFailed) => self
                .update(&read.record.tenant, &read.record.user, change)
                .await
                .map(|_| ()),
            Err(e) => Err(e.into()),
        }
    }

    /// Confirms the deletions the guard held back, exactly those (an operator looked at the
    /// list): the next runs let them through. Returns the list confirmed, empty when nothing
    /// was held; `None` when the user does not exist.
    pub async fn confirm_held_deletions(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
    ) -> Result<Option<Vec<HeldDeletion>>, UserWriteError> {
        let mut confirmed = Vec::new();
        let record = self
            .update(tenant, user, |r| {
                confirmed = r.held_deletions.clone();
                for held in &confirmed {
                    if !r.confirmed_deletions.contains(&held.key) {
                        r.confirmed_deletions.push(held.key.clone());
                    }
                }
            })
            .await?;
        Ok(record.map(|_| confirmed))
    }

    /// Forgets the user's progress (cursors), keeping the links: the next run lists both
    /// sides in full and reconciles.
    pub async fn forget_progress(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
    ) -> Result<(), UserWriteError> {
        self.update(tenant, user, |r| {
            if let Some(progress) = &mut r.progress {
                *progress = SyncProgress::starting(progress.mailbox.clone());
            }
        })
        .await
        .map(|_| ())
    }

    /// Marks the user disconnected: tokens and subscription gone, problems cleared, the
    /// account index freed. What the sync knows stays, so connecting again duplicates nothing.
    /// `None` when the user never connected.
    pub async fn disconnect(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        now: i64,
    ) -> Result<Option<UserRecord>, UserWriteError> {
        let Some(record) = self
            .update(tenant, user, |r| {
                r.status = UserStatus::Disconnected;
                r.refresh_token_sealed = None;
                r.refresh_token_stored_at = None;
                r.subscription_id = None;
                r.subscription_expires_at = None;
                r.problems.clear();
                r.updated_at = now;
            })
            .await?
        else {
            return Ok(None);
        };
        if !record.ms_user_id.is_empty() {
            // Only this user's own entry: another user may hold the account by now.
            let pk = tenant_pk(tenant);
            if self.account_holder(tenant, &record.ms_user_id).await? == Some(user.clone()) {
                self.store
                    .delete(&pk, &account_sk(&record.ms_user_id), Precondition::None)
                    .await?;
            }
        }
        Ok(Some(record))
    }

    /// Seals the user's stored refresh token anew: `reseal` gets the sealed value and answers
    /// its new form, or `None` to keep it. Written on the
    /// version read, re-reading when the item changed meanwhile (a run or a refresh wrote
    /// it), so a token stored by someone else in between is never overwritten with an older
    /// one. `Ok(None)` when the user does not exist; `Ok(Some(false))` when nothing changed.
    pub async fn reseal_tokens(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        mut reseal: impl FnMut(&str) -> Result<Option<String>, crate::crypto::CryptoError>,
    ) -> Result<Option<bool>, ResealError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(VersionedUser {
                mut record,
                version,
            }) = self.get(tenant, user).await.map_err(UserWriteError::from)?
            else {
                return Ok(None);
            };
            let Some(sealed) = record.refresh_token_sealed.as_deref() else {
                return Ok(Some(false));
            };
            let Some(again) = reseal(sealed).map_err(ResealError::Seal)? else {
                return Ok(Some(false));
            };
            record.refresh_token_sealed = Some(again);
            let item = self.item(&record, version).map_err(UserWriteError::from)?;
            match self.store.put(&item, Precondition::Version(version)).await {
                Ok(_) => return Ok(Some(true)),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(UserWriteError::from(e).into()),
            }
        }
        Err(UserWriteError::Contended.into())
    }

    fn item(&self, record: &UserRecord, version: u64) -> Result<Item, StoreError> {
        let mut item = record_to_item(tenant_pk(&record.tenant), user_sk(&record.user), record)?;
        item.version = version;
        Ok(item)
    }

    /// Applies `change` under optimistic concurrency, re-reading on conflicts. `None` when the
    /// user does not exist.
    async fn update(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        mut change: impl FnMut(&mut UserRecord),
    ) -> Result<Option<UserRecord>, UserWriteError> {
        for _ in 0..WRITE_ATTEMPTS {
            let Some(VersionedUser {
                mut record,
                version,
            }) = self.get(tenant, user).await?
            else {
                return Ok(None);
            };
            change(&mut record);
            match self
                .store
                .put(
                    &self.item(&record, version)?,
                    Precondition::Version(version),
                )
                .await
            {
                Ok(_) => return Ok(Some(record)),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(UserWriteError::Contended)
    }
}

/// Clears the run lease if `holder` still has it.
fn release(record: &mut UserRecord, holder: &str) {
    if record
        .run_lease
        .as_ref()
        .is_some_and(|l| l.holder == holder)
    {
        record.run_lease = None;
    }
}

/// What a run's end does to the user's record.
fn apply_run(record: &mut UserRecord, run: &RunRecord<'_>, now: i64) {
    record.summary().last_run_at = Some(now);
    match run {
        RunRecord::Failed { code, detail } => record.set_problem(*code, detail.clone(), now),
        RunRecord::Finished {
            counts,
            linked,
            guard,
            failures,
            parked,
            skipped,
            committed,
            owner,
            mailbox,
        } => {
            let summary = record.summary();
            summary.last_counts = *counts;
            summary.total_counts.add(counts);
            if let Some(linked) = linked {
                summary.linked_events = *linked;
            }
            for code in ProblemCode::CLEARED_BY_A_FINISHED_RUN {
                record.clear_problem(code);
            }
            match guard {
                Some(note) => {
                    record.set_problem(ProblemCode::DeletionGuard, note.detail.clone(), now);
                    record.held_deletions = note.held.clone();
                }
                None => {
                    record.clear_problem(ProblemCode::DeletionGuard);
                    record.held_deletions.clear();
                }
            }
            match failures.first() {
                None => record.clear_problem(ProblemCode::SyncErrors),
                Some(first) => record.set_problem(
                    ProblemCode::SyncErrors,
                    format!(
                        "{} events could not be synced in the last run (first: {first}). calsync tries them again on every run.",
                        failures.len()
                    ),
                    now,
                ),
            }
            match parked.first() {
                None => record.clear_problem(ProblemCode::EventsParked),
                Some(first) => {
                    let next = parked.iter().map(|p| p.next_at).min().unwrap_or(now);
                    record.set_problem(
                        ProblemCode::EventsParked,
                        format!(
                            "{} events were refused and are set aside (first: {:?}: {}). calsync tries them again later, next at {}, and at once on `calsync resync --full`.",
                            parked.len(),
                            first.subject,
                            first.why,
                            jiff::Timestamp::from_second(next)
                                .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
                                .unwrap_or_default(),
                        ),
                        now,
                    );
                }
            }
            record.parked = parked.clone();
            match skipped.first() {
                None => record.clear_problem(ProblemCode::EventsSkipped),
                Some(first) => record.set_problem(
                    ProblemCode::EventsSkipped,
                    format!(
                        "{} events could not be read and are not synced (first: {} event {:?}: {}). calsync reads them again when they change.",
                        skipped.len(),
                        match first.side {
                            calsync_core::sync::Side::Crm => "CRM",
                            calsync_core::sync::Side::Outlook => "Outlook",
                        },
                        first.id,
                        first.why,
                    ),
                    now,
                ),
            }
            record.skipped = skipped.clone();
            match committed {
                Some(progress) => {
                    let summary = record.summary();
                    summary.last_success_at = Some(now);
                    summary.to_crm_at = Some(now);
                    summary.to_outlook_at = Some(now);
                    record.progress = Some((*progress).clone());
                    // What was confirmed is done.
                    record.confirmed_deletions.clear();
                }
                None => {
                    // The cursors stay; what was learned about the CRM user is kept.
                    let progress = record
                        .progress
                        .get_or_insert_with(|| SyncProgress::starting(*mailbox));
                    progress.crm_owner = owner.cloned();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;
    const HOUR: i64 = 3600;

    /// A connected user, connected a day ago, last known in sync `crm_ago` and `outlook_ago`
    /// seconds ago on each side.
    fn user(crm_ago: Option<i64>, outlook_ago: Option<i64>) -> UserRecord {
        serde_json::from_value(serde_json::json!({
            "tenant": "acme",
            "user": "maria",
            "status": "connected",
            "ms_tenant_id": "t",
            "ms_user_id": "o",
            "connected_at": NOW - 24 * HOUR,
            "updated_at": NOW,
            "last_sync": {
                "to_crm_at": crm_ago.map(|ago| NOW - ago),
                "to_outlook_at": outlook_ago.map(|ago| NOW - ago),
            },
        }))
        .unwrap()
    }

    #[test]
    fn overdue_after_three_sweeps_and_never_sooner_than_two_hours() {
        // Hourly sweeps: three hours.
        assert!(!user(Some(3 * HOUR - 60), Some(HOUR)).overdue(60, NOW));
        assert!(user(Some(3 * HOUR + 60), Some(HOUR)).overdue(60, NOW));
        // The lagging side counts.
        assert!(user(Some(HOUR), Some(3 * HOUR + 60)).overdue(60, NOW));
        // Sweeps every 15 minutes: still two hours at least.
        assert!(!user(Some(2 * HOUR - 60), Some(2 * HOUR - 60)).overdue(15, NOW));
        assert!(user(Some(2 * HOUR + 60), Some(2 * HOUR + 60)).overdue(15, NOW));
        // Never synced: counted from the connection.
        assert!(user(None, None).overdue(60, NOW));
    }

    #[test]
    fn not_overdue_when_something_else_already_says_why() {
        let mut problem = user(Some(9 * HOUR), Some(9 * HOUR));
        problem.problems.push(Problem {
            code: ProblemCode::SyncFailed,
            detail: "the CRM answered 500".into(),
            since: NOW - 9 * HOUR,
        });
        assert!(!problem.overdue(60, NOW));
        let mut reconnect = user(Some(9 * HOUR), Some(9 * HOUR));
        reconnect.status = UserStatus::ReconnectRequired;
        assert!(!reconnect.overdue(60, NOW));
        // Reconnected an hour ago with what the sync knew from before: not yet.
        let mut reconnected = user(Some(9 * HOUR), Some(9 * HOUR));
        reconnected.connected_at = NOW - HOUR;
        assert!(!reconnected.overdue(60, NOW));
    }

    #[test]
    fn a_tenant_without_microsoft_access_has_no_overdue_users() {
        let silent = user(Some(9 * HOUR), Some(9 * HOUR));
        let mut settings = TenantSettings::new(
            silent.tenant.clone(),
            "Acme".into(),
            "https://crm.example",
            NOW,
        )
        .unwrap();
        assert!(silent.overdue_in(&settings, NOW));
        settings.access_revoked = Some(crate::services::tenants::AccessRevoked {
            at: NOW - 9 * HOUR,
            detail: "unauthorized_client".into(),
        });
        assert!(!silent.overdue_in(&settings, NOW), "its warning says why");
    }

    #[test]
    fn a_quiet_look_moves_every_as_of_moment_but_never_back() {
        let mut summary = user(Some(5 * HOUR), Some(4 * HOUR)).last_sync.unwrap();
        summary.last_run_at = Some(NOW - 4 * HOUR);
        summary.fold_quiet_look(NOW - HOUR);
        assert_eq!(summary.to_crm_at, Some(NOW - HOUR));
        assert_eq!(summary.to_outlook_at, Some(NOW - HOUR));
        assert_eq!(summary.last_success_at, Some(NOW - HOUR));
        assert_eq!(summary.last_run_at, Some(NOW - 4 * HOUR));
        summary.fold_quiet_look(NOW - 2 * HOUR);
        assert_eq!(
            summary.to_crm_at,
            Some(NOW - HOUR),
            "an older look changes nothing"
        );
    }
}
