//! One sync run for one user, end to end: read both sides from the committed cursors, plan,
//! execute, commit the cursors, record the outcome in the user's status. The engine's rules
//! are in [`calsync_core::sync`]; this module does the I/O around them, in the order its
//! runner contract gives.
//!
//! Cost of a run with nothing to do — what every scheduled run pays for every user
//! (docs/design.md §4): one claim of the user's item (a conditional write that takes the run
//! lease and returns token and cursors), one Graph delta page, one CRM feed request, one write
//! of the user's item. The links are also read when a side reports something, when the CRM is
//! reconciled, on a full listing, and every 30 minutes when the linked series are listed.

mod links;
mod look;
mod outlook;
mod skipped;
mod target;

pub use links::{sync_pk, JournalEntry, LinkStore};
pub use look::RECORDED_RUN_AT_LEAST_EVERY_SECS;
pub use outlook::{item_from, OutlookRead};
pub use target::{LeaseWatch, LiveTarget};

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::adapters::crm::vtiger::{AccessKey, VtigerConfig, VtigerCrm};
use crate::adapters::crm::{
    ChangeCursor, ChangesRequest, ConfigProblem, CrmError, CrmEventId, CrmPort, CrmUser,
};
use crate::adapters::graph::{GraphClient, GraphError, MailboxClient};
use crate::adapters::store::{now_epoch, ItemStore, StoreError};
use crate::crypto::random_token;
use crate::services::crm_sessions::{CrmSessions, SessionGate};
use crate::services::tenants::{TenantContext, TenantSettings};
use crate::services::tokens::{TokenError, Tokens};
use crate::services::users::{
    GuardNote, ParkedEvent, ProblemCode, RunCounts, RunRecord, RunStart, SkippedEvent, UserStatus,
    UserWriteError, Users, VersionedUser,
};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::sync::{
    execute, plan, settle_folds, CrmChanges, Execution, FieldSet, Link, LinkKey, Parking, Plan,
    PlanCounts, Policy, Side, Stopped, SyncProgress,
};
use calsync_core::time::TimeWindow;

/// A delta link keeps the window it was started with; once the wanted window has moved on by
/// this much, the next round lists the new window in full.
const REBASELINE_AFTER: SignedDuration = SignedDuration::from_hours(7 * 24);
/// How often the CRM is listed in full to find deletions by absence when its change feed
/// cannot report them (stock vtiger 8 without a working `sync`), and at the latest.
const RECONCILE_WHEN_BLIND_SECS: i64 = 30 * 60;
/// The same when the CRM module nudges: each deletion is announced, and the listing only
/// catches a nudge that was lost.
const RECONCILE_WHEN_BLIND_AND_NUDGED_SECS: i64 = 6 * 3600;
const RECONCILE_ANYWAY_SECS: i64 = 24 * 3600;
/// How often linked Outlook series are listed: delta does not report a cancelled occurrence.
const SERIES_CHECK_SECS: i64 = 30 * 60;
/// Pages of the CRM feed read in one run; the rest waits for the next run.
const MAX_CRM_READS: usize = 50;
/// A run takes one more CRM session (of the tenant's cap) for each this many CRM writes in
/// its plan: a handful of edits goes through one session, a first sync spreads over the cap.
const WRITES_PER_EXTRA_SESSION: usize = 8;

/// What a run is asked to do beyond the usual.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Forget the cursors: list both sides in full and reconcile with the links.
    pub full: bool,
    /// Reconcile the CRM now when its feed cannot see deletions: a nudge may announce one.
    pub reconcile: bool,
    /// Read and plan, write nothing, commit nothing.
    pub dry_run: bool,
    /// A scheduled run: look at both sides first, and end without writing anything when
    /// neither has news ([`look`]).
    pub look_first: bool,
    /// Start no write after this: a Lambda invocation ends at its timeout, and a large first
    /// sync continues in a follow-up job instead of being cut off.
    pub deadline: Option<std::time::Instant>,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Nothing changed on either side.
    Quiet,
    /// Every planned write happened and the cursors moved on.
    Synced,
    /// Some events failed; the cursors stay, so the next run tries them again.
    Partial,
    /// The mass-deletion guard held the run's deletions back.
    GuardTripped,
    /// Microsoft refused the user's refresh token; the user must connect again.
    ReconnectRequired,
    /// The user is not connected (any more).
    NotConnected,
    /// Planned only (`dry_run`).
    DryRun,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub outcome: RunOutcome,
    pub counts: RunCounts,
    /// The plan, for a dry run.
    pub plan: Option<Plan>,
    /// Input items that could not be read, with why.
    pub skipped: Vec<String>,
    /// Steps that failed, with why.
    pub failures: Vec<String>,
    /// Whether Outlook was listed in full (first run, lost delta token, moved window).
    pub outlook_full: bool,
    /// Steps left for a follow-up run because this one ran out of time.
    pub postponed: usize,
    pub graph_pages: u32,
    /// The run only looked: nothing was claimed, written or recorded.
    pub looked_only: bool,
}

impl RunReport {
    /// A report of a run that ended with `outcome` and did nothing yet.
    pub fn new(outcome: RunOutcome) -> Self {
        Self {
            outcome,
            counts: RunCounts::default(),
            plan: None,
            skipped: Vec::new(),
            failures: Vec::new(),
            outlook_full: false,
            postponed: 0,
            graph_pages: 0,
            looked_only: false,
        }
    }
}

/// Why a run could not finish; the job fails and the queue delivers it again.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("the run's outcome could not be recorded")]
    Record(#[from] UserWriteError),
    #[error("Microsoft sign-in failed")]
    Token(#[source] TokenError),
    #[error("Outlook could not be read")]
    Outlook(#[source] GraphError),
    #[error("the CRM could not be read")]
    Crm(#[source] CrmError),
    #[error("the run stopped")]
    Stopped(#[source] Stopped),
    /// Another run of this user holds it; this one started nothing and is retried later.
    #[error("the user is busy: another sync of this user runs until {until}")]
    Busy { until: i64 },
    /// Every CRM session the tenant allows is in use; this run started nothing and is retried.
    #[error("the CRM is busy: all {cap} sessions calsync may open on it are in use")]
    CrmBusy { cap: u32 },
    /// The run lost its lease mid-way (it stalled past it); it committed nothing.
    #[error("the run lost its hold on the user; another sync took over")]
    LeaseLost,
}

impl RunError {
    /// Graph turned the access token down (401).
    fn is_token_refused(&self) -> bool {
        let unauthorized = |e: &GraphError| matches!(e, GraphError::Unauthorized { .. });
        match self {
            RunError::Outlook(e) => unauthorized(e),
            RunError::Stopped(stopped) => stopped
                .reason
                .downcast_ref::<GraphError>()
                .is_some_and(unauthorized),
            _ => false,
        }
    }

    /// The status problem this error leaves on the user, with what to do about it.
    fn problem(&self) -> (ProblemCode, String) {
        let why = crate::errors::chain(self);
        match self {
            RunError::Crm(CrmError::UnknownUser { user_name: name }) => (
                ProblemCode::CrmUserMissing,
                format!("The CRM has no active user named {name:?}. Check the user name in the CRM's link, or disconnect this user."),
            ),
            RunError::Crm(_) => (
                ProblemCode::CrmUnreachable,
                format!("{why}. calsync keeps trying; if this lasts, check the CRM address, the integration user and its access key."),
            ),
            RunError::Outlook(_) => (
                ProblemCode::OutlookUnreachable,
                format!("{why}. calsync keeps trying."),
            ),
            _ => (
                ProblemCode::SyncFailed,
                format!("The last sync stopped: {why}. calsync tries again on its own."),
            ),
        }
    }

    fn record(&self) -> RunRecord<'static> {
        let (code, detail) = self.problem();
        RunRecord::Failed { code, detail }
    }
}

/// The window to sync now, by the tenant's settings.
pub fn window_at(settings: &TenantSettings, now: Timestamp) -> TimeWindow {
    let day = SignedDuration::from_hours(24);
    let start = now
        .checked_sub(day * i32::try_from(settings.window_past_days).unwrap_or(i32::MAX))
        .unwrap_or(Timestamp::MIN);
    let end = now
        .checked_add(day * i32::try_from(settings.window_future_days).unwrap_or(i32::MAX))
        .unwrap_or(Timestamp::MAX);
    TimeWindow::new(start, end)
}

/// Runs syncs: everything a run needs besides the tenant, the user and the CRM.
#[derive(Clone)]
pub struct SyncRunner {
    store: Arc<dyn ItemStore>,
    users: Users,
    tokens: Tokens,
    graph: GraphClient,
    /// Upper bound of every CRM call.
    http_timeout: Duration,
    crm_sessions: CrmSessions,
}

impl SyncRunner {
    pub fn new(
        store: Arc<dyn ItemStore>,
        users: Users,
        tokens: Tokens,
        graph: GraphClient,
        http_timeout: Duration,
    ) -> Self {
        Self {
            crm_sessions: CrmSessions::new(store.clone()),
            store,
            users,
            tokens,
            graph,
            http_timeout,
        }
    }

    /// The tenant's CRM adapter. Cheap: sessions are shared process-wide.
    pub fn crm_for(&self, tenant: &TenantContext) -> Result<VtigerCrm, CrmError> {
        let mut config = VtigerConfig::new(
            tenant.secret.crm_url.clone(),
            tenant.secret.crm_user.clone(),
            AccessKey::new(tenant.secret.crm_access_key.expose()),
        );
        config.server_zone = tenant.settings.crm_time_zone.clone();
        config.timeout = self.http_timeout;
        VtigerCrm::new(config)
    }

    /// The links and journal of one user.
    pub fn links<'a>(&'a self, tenant: &TenantContext, user: &CrmUserName) -> LinkStore<'a> {
        LinkStore::new(self.store.as_ref(), &tenant.id, user)
    }

    /// The newest `limit` entries of a user's conflict journal: what calsync settled, and the
    /// values it did not keep.
    pub async fn journal(
        &self,
        tenant: &TenantId,
        user: &CrmUserName,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError> {
        let mut entries = LinkStore::new(self.store.as_ref(), tenant, user)
            .journal()
            .await?;
        entries.truncate(limit);
        Ok(entries)
    }

    /// Syncs one user once. Records the outcome in the user's status either way.
    pub async fn sync_user(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        options: RunOptions,
    ) -> Result<RunReport, RunError> {
        let crm = self.crm_for(tenant).map_err(RunError::Crm)?;
        self.sync_user_with(tenant, user, &crm, options).await
    }

    /// [`Self::sync_user`] with a given CRM adapter.
    pub async fn sync_user_with(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        crm: &dyn CrmPort,
        options: RunOptions,
    ) -> Result<RunReport, RunError> {
        // A dry run writes nothing, so it needs no lease; every other run holds the user.
        if options.dry_run {
            let Some(read) = self.users.get(&tenant.id, user).await? else {
                return Ok(RunReport::new(RunOutcome::NotConnected));
            };
            return self.run_held(tenant, user, crm, options, read, None).await;
        }
        if options.look_first {
            let looked_at = now_epoch();
            match self.look(tenant, user, crm, looked_at).await {
                look::Looked::Quiet => {
                    if let Err(e) = self
                        .users
                        .note_quiet_look(&tenant.id, user, looked_at)
                        .await
                    {
                        // Only status's freshness depends on it; the sync does not.
                        tracing::warn!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "quiet look not noted");
                    }
                    let mut report = RunReport::new(RunOutcome::Quiet);
                    report.looked_only = true;
                    return Ok(report);
                }
                look::Looked::NotSyncing(UserStatus::ReconnectRequired) => {
                    return Ok(RunReport::new(RunOutcome::ReconnectRequired))
                }
                look::Looked::NotSyncing(_) => return Ok(RunReport::new(RunOutcome::NotConnected)),
                look::Looked::Run(why) => {
                    tracing::debug!(tenant = %tenant.id, user = %user, why, "the scheduled run has work")
                }
            }
        }
        let holder = random_token(12);
        let claimed_at = now_epoch();
        let read = match self
            .users
            .begin_run(&tenant.id, user, &holder, RUN_LEASE_TTL, claimed_at)
            .await?
        {
            RunStart::Started(read) => *read,
            RunStart::Missing => return Ok(RunReport::new(RunOutcome::NotConnected)),
            RunStart::Busy { until } => return Err(RunError::Busy { until }),
        };
        let read = if read.record.nudge_queued.is_some() {
            // This run reads whatever the waiting nudges announced; a nudge from now on
            // queues a run of its own.
            match self.users.clear_nudge_at(&read).await {
                Ok(cleared) => cleared,
                Err(e) => {
                    tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "nudge mark not cleared; it lapses on its own");
                    read
                }
            }
        } else {
            read
        };
        let gate = Arc::new(SessionGate::new(
            self.crm_sessions.clone(),
            tenant.id.clone(),
            tenant.settings.crm_sessions,
            user.as_str(),
            holder.clone(),
            RUN_LEASE_TTL,
        ));
        let lease = Held::keep(
            self.users.clone(),
            tenant.id.clone(),
            user.clone(),
            holder,
            Some(gate.clone()),
            claimed_at,
        );
        let outcome = self
            .run_held(tenant, user, crm, options, read, Some(&lease))
            .await;
        lease.stop();
        gate.give_back().await;
        outcome
    }

    /// The run itself, once it holds the user (`lease`; `None` for a dry run).
    async fn run_held(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        crm: &dyn CrmPort,
        options: RunOptions,
        read: VersionedUser,
        lease: Option<&Held>,
    ) -> Result<RunReport, RunError> {
        let read = &read;
        let not_running = |outcome| async move {
            if let Some(lease) = lease {
                self.users.end_run(read, &lease.holder).await?;
            }
            Ok(RunReport::new(outcome))
        };
        match read.record.status {
            UserStatus::Connected => {}
            UserStatus::ReconnectRequired => {
                return not_running(RunOutcome::ReconnectRequired).await
            }
            UserStatus::Disconnected => return not_running(RunOutcome::NotConnected).await,
        }
        let token = match self.tokens.for_mailbox(tenant, &read.record).await {
            Ok(token) => token,
            // Recorded on the user by the token service; retrying cannot help, so no retry
            // storm.
            Err(e) if e.is_reconnect_required() => {
                return not_running(RunOutcome::ReconnectRequired).await
            }
            Err(TokenError::NotConnected) => return not_running(RunOutcome::NotConnected).await,
            Err(e) => {
                let error = RunError::Token(e);
                if let Some(lease) = lease {
                    if let Err(e) = self
                        .users
                        .record_run(read, &error.record(), &lease.holder, now_epoch())
                        .await
                    {
                        tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "sync status not recorded");
                    }
                }
                return Err(error);
            }
        };
        let oid = read.record.ms_user_id.clone();
        let mailbox = self
            .graph
            .mailbox(tenant.settings.mode.mailbox(oid.clone()), token.clone());
        let links = self.links(tenant, user);
        let mut progress = match &read.record.progress {
            Some(progress) if progress.mailbox == oid => progress.clone(),
            Some(_) => {
                // Another Microsoft account: its links point at someone else's events.
                let forgotten = links.forget_links().await?;
                tracing::info!(tenant = %tenant.id, user = %user, forgotten, "mailbox changed, starting over");
                SyncProgress::starting(oid.clone())
            }
            None => SyncProgress::starting(oid.clone()),
        };

        let now = now_epoch();
        let run = Run {
            tenant,
            user,
            crm,
            options,
            now,
            lease: lease.map(|lease| lease.watch.clone()),
            confirmed: read.record.confirmed_deletions.iter().cloned().collect(),
            parking: Parking::new(&read.record.parked, now, options.full),
            skipped_before: read.record.skipped.clone(),
            gate: lease.and_then(|lease| lease.gate.clone()),
        };
        let mut outcome = run.sync(&mailbox, &links, &mut progress).await;
        if outcome.as_ref().is_err_and(RunError::is_token_refused) {
            // A revoked grant or a continuous-access event: a new token, once.
            tracing::info!(tenant = %tenant.id, user = %user, "Graph refused the access token; getting a new one");
            match self
                .tokens
                .after_refusal(tenant, &read.record, &token)
                .await
            {
                Ok(fresh) => {
                    let mailbox = self
                        .graph
                        .mailbox(tenant.settings.mode.mailbox(oid.clone()), fresh);
                    outcome = run.sync(&mailbox, &links, &mut progress).await;
                }
                // Recorded on the user by the token service.
                Err(e) if e.is_reconnect_required() => {
                    return not_running(RunOutcome::ReconnectRequired).await
                }
                Err(e) => outcome = Err(RunError::Token(e)),
            }
        }
        let Some(lease) = lease else {
            return outcome.map(|done| done.report);
        };
        if lease.is_lost() {
            // Another run holds the user now: record nothing over what it writes.
            tracing::warn!(tenant = %tenant.id, user = %user, "the run lost its lease; its cursors are not committed");
            return Err(RunError::LeaseLost);
        }
        if let Err(RunError::CrmBusy { .. }) = &outcome {
            // Nothing was written and nothing is wrong with the user: no problem to show.
            self.users.end_run(read, &lease.holder).await?;
            return outcome.map(|done| done.report);
        }
        let record = match &outcome {
            Ok(done) => RunRecord::Finished {
                counts: done.report.counts,
                linked: done.linked,
                guard: done.guard.clone(),
                failures: &done.report.failures,
                parked: done.parked.clone(),
                skipped: done.skipped.clone(),
                committed: done.commit.then_some(&progress),
                owner: progress.crm_owner.as_ref(),
                mailbox: &progress.mailbox,
            },
            Err(e) => e.record(),
        };
        if let Err(e) = self
            .users
            .record_run(read, &record, &lease.holder, now)
            .await
        {
            tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "sync status not recorded");
            // Without the status the cursors are not committed either: the run failed.
            return Err(RunError::Record(e));
        }
        outcome.map(|done| done.report)
    }
}

/// How long a run's lease lasts without renewal, and how often a run renews it.
const RUN_LEASE_TTL: Duration = Duration::from_secs(120);
const RUN_LEASE_RENEW: Duration = Duration::from_secs(40);

/// A run's lease on its user, and its CRM session, renewed in the background while the run
/// goes on.
struct Held {
    holder: String,
    gate: Option<Arc<SessionGate>>,
    watch: Arc<LeaseWatch>,
    renewal: tokio::task::JoinHandle<()>,
}

impl Held {
    fn keep(
        users: Users,
        tenant: TenantId,
        user: CrmUserName,
        holder: String,
        gate: Option<Arc<SessionGate>>,
        claimed_at: i64,
    ) -> Self {
        let watch = Arc::new(LeaseWatch::new(claimed_at + RUN_LEASE_TTL.as_secs() as i64));
        let renewal = tokio::spawn({
            let (watch, holder, gate) = (watch.clone(), holder.clone(), gate.clone());
            async move {
                loop {
                    tokio::time::sleep(RUN_LEASE_RENEW).await;
                    if let Some(gate) = &gate {
                        gate.renew().await;
                    }
                    let at = now_epoch();
                    let kept = users
                        .keep_run(&tenant, &user, &holder, RUN_LEASE_TTL, at)
                        .await;
                    match kept {
                        Ok(true) => watch.kept_until(at + RUN_LEASE_TTL.as_secs() as i64),
                        Ok(false) => {
                            watch.lose();
                            return;
                        }
                        // Storage hiccup: the lease still has most of its time; try again.
                        Err(e) => {
                            tracing::warn!(error = %crate::errors::chain(&e), "the run lease was not renewed")
                        }
                    }
                }
            }
        });
        Self {
            holder,
            gate,
            watch,
            renewal,
        }
    }

    fn is_lost(&self) -> bool {
        self.watch.is_lost()
    }

    fn stop(self) {
        self.renewal.abort();
    }
}

struct Run<'a> {
    tenant: &'a TenantContext,
    user: &'a CrmUserName,
    crm: &'a dyn CrmPort,
    options: RunOptions,
    now: i64,
    /// The run's lease: once lost, no further write may start (`None`: a dry run).
    lease: Option<Arc<LeaseWatch>>,
    /// Deletions an operator confirmed after the guard held them back.
    confirmed: HashSet<LinkKey>,
    /// Events refused earlier: which wait, which are tried now.
    parking: Parking,
    /// Events that could not be read before this run.
    skipped_before: Vec<SkippedEvent>,
    /// The tenant's CRM sessions, one of which a run takes before it writes to the CRM
    /// (`None`: a dry run).
    gate: Option<Arc<SessionGate>>,
}

/// A finished run: its report, and whether the cursors in the state may be committed.
struct Done {
    report: RunReport,
    commit: bool,
    linked: Option<u64>,
    guard: Option<GuardNote>,
    /// The parked events after the run.
    parked: Vec<ParkedEvent>,
    /// The events that could not be read, after the run.
    skipped: Vec<SkippedEvent>,
}

impl Run<'_> {
    async fn sync(
        &self,
        mailbox: &MailboxClient,
        links: &LinkStore<'_>,
        state: &mut SyncProgress,
    ) -> Result<Done, RunError> {
        let settings = &self.tenant.settings;
        let now_ts = Timestamp::from_second(self.now).unwrap_or(Timestamp::UNIX_EPOCH);
        let window = window_at(settings, now_ts);
        let stored_window = stored_window(state, &window);
        let slid = window_slid(state, &window);
        let outlook = outlook::read(
            mailbox,
            state.outlook_delta.as_deref(),
            stored_window,
            window,
            self.options.full || slid,
        )
        .await
        .map_err(RunError::Outlook)?;

        let owner = match &state.crm_owner {
            Some(owner) => owner.clone(),
            None => {
                let owner = self
                    .crm
                    .resolve_user(self.user.as_str())
                    .await
                    .map_err(RunError::Crm)?;
                state.crm_owner = Some(owner.clone());
                owner
            }
        };
        let cursor = if self.options.full {
            None
        } else {
            state.crm_cursor.clone()
        };
        let reconcile = cursor.is_some() && self.reconcile_due(state);
        let check_series = self.options.full
            || state
                .series_checked_at
                .is_none_or(|at| self.now - at >= SERIES_CHECK_SECS);
        // The links are read up front only when something needs them anyway.
        let mut snapshot: Option<Vec<Link>> = if !outlook.is_quiet()
            || cursor.is_none()
            || reconcile
            || check_series
            || self.parking.has_due()
        {
            Some(links.links().await?)
        } else {
            None
        };
        let full_crm_listing = cursor.is_none();
        let (mut crm_changes, crm_cursor, crm_unreadable) = self
            .read_crm(&owner, cursor, reconcile, &window, snapshot.as_deref())
            .await?;

        let quiet =
            outlook.is_quiet() && crm_changes.upserts.is_empty() && crm_changes.gone.is_empty();
        let mut report = RunReport::new(RunOutcome::Quiet);
        report.outlook_full = outlook.full;
        report.graph_pages = outlook.round.pages;
        let delta_link = outlook.round.delta_link.clone();
        let outlook_window = outlook.window;
        let advance = |state: &mut SyncProgress| {
            state.outlook_delta = Some(delta_link.clone());
            state.window_start = outlook_window.start.as_second();
            state.window_end = outlook_window.end.as_second();
            state.crm_cursor = Some(crm_cursor.clone());
            // A first load or a full resync lists the window: that is a reconciliation too.
            if reconcile || full_crm_listing {
                state.reconciled_at = Some(self.now);
            }
            if check_series {
                state.series_checked_at = Some(self.now);
            }
        };
        if quiet && snapshot.is_none() && !self.options.dry_run {
            advance(state);
            return Ok(Done {
                report,
                commit: true,
                linked: None,
                guard: None,
                parked: self.parking.before().to_vec(),
                skipped: self.skipped_before.clone(),
            });
        }
        let snapshot = match snapshot.take() {
            Some(snapshot) => snapshot,
            None => links.links().await?,
        };
        let (mut outlook_changes, outlook_unreadable) = outlook
            .into_changes(mailbox, &snapshot, check_series)
            .await
            .map_err(RunError::Outlook)?;

        let mut policy = Policy::new(
            settings.conflict_policy,
            mailbox.mailbox().oid(),
            FieldSet::of(self.crm.carried_fields()),
        );
        policy.first_sync = !state.first_sync_done;
        policy.crm_storage = self.crm.storage();
        policy.guard.confirmed = self.confirmed.clone();
        // Both sides by the bounds of the Outlook listing.
        policy.window = Some(outlook_window);
        self.parking
            .prepare(&mut policy, &mut outlook_changes, &mut crm_changes);
        if let Some(zone) = calsync_core::time::resolve_zone(&settings.crm_time_zone) {
            settle_folds(&mut crm_changes, &snapshot, &outlook_changes, &zone);
        }
        let plan = plan(&snapshot, &outlook_changes, &crm_changes, &policy);
        let unreadable = outlook_unreadable
            .into_iter()
            .map(|(id, why)| (Side::Outlook, id, why))
            .chain(
                crm_unreadable
                    .into_iter()
                    .map(|(id, why)| (Side::Crm, id.to_string(), why)),
            )
            .chain(
                plan.skipped
                    .iter()
                    .map(|why| (Side::Outlook, String::new(), why.clone())),
            )
            .collect();
        let skipped = skipped::after(
            &self.skipped_before,
            unreadable,
            &outlook_changes,
            &crm_changes,
            self.now,
        );
        report.skipped = skipped.iter().map(skipped::describe).collect();
        if self.options.dry_run {
            report.outcome = RunOutcome::DryRun;
            report.plan = Some(plan);
            return Ok(Done {
                report,
                commit: false,
                linked: None,
                guard: None,
                parked: self.parking.before().to_vec(),
                skipped: self.skipped_before.clone(),
            });
        }

        let crm_writes = plan.counts.create_crm + plan.counts.update_crm + plan.counts.delete_crm;
        let mut writers = None;
        if let (true, Some(gate)) = (crm_writes > 0, &self.gate) {
            if !gate.take(self.options.deadline).await? {
                return Err(RunError::CrmBusy { cap: gate.cap() });
            }
            // A session per writer, when there is enough to share among them.
            let wanted = (crm_writes / WRITES_PER_EXTRA_SESSION).max(1) as u32;
            let held = gate.widen(wanted).await?;
            if held > 1 {
                writers = self.crm.with_writers(held as usize);
            }
        }
        let mut target = LiveTarget::new(
            links.clone(),
            &snapshot,
            mailbox,
            writers.as_deref().unwrap_or(self.crm),
            &owner,
            self.now,
        );
        target.deadline = self.options.deadline;
        target.lease = self.lease.clone();
        let execution = execute(&plan, &target, &policy)
            .await
            .map_err(RunError::Stopped)?;
        let linked = target.versions.lock().map(|v| v.len() as u64).ok();
        report.counts = counts(&plan.counts, &execution);
        report.postponed = execution.postponed;
        report.failures = execution
            .failed
            .iter()
            .map(|(key, why)| format!("{key}: {why}"))
            .chain(
                execution
                    .gone
                    .iter()
                    .map(|(side, id)| format!("{side:?} {id} disappeared while syncing")),
            )
            .collect();
        let guard = plan.guard.as_ref().map(|trip| GuardNote {
            detail: format!(
                "This sync would have deleted {} events ({} in the CRM, {} in Outlook) of {} linked: more than {} % and at least {}, the safety limit. Nothing was deleted. `calsync status --tenant {} --user {}` lists them; if they are intended, confirm exactly those with `calsync resync --tenant {} --user {} --confirm-deletions`.",
                trip.events,
                trip.crm_deletions,
                trip.outlook_deletions,
                trip.linked,
                trip.max_percent,
                trip.floor,
                self.tenant.id,
                self.user,
                self.tenant.id,
                self.user,
            ),
            held: trip.held.clone(),
        });
        let commit = execution.all_done() && plan.may_commit_cursors();
        report.outcome = if guard.is_some() {
            RunOutcome::GuardTripped
        } else if commit && plan.is_empty() {
            // Only echoes of our own writes, or nothing calsync carries, changed.
            RunOutcome::Quiet
        } else if commit {
            RunOutcome::Synced
        } else {
            RunOutcome::Partial
        };
        if commit {
            advance(state);
            state.first_sync_done = true;
        }
        let parked = self.parking.after(
            &plan,
            &execution,
            &snapshot,
            &outlook_changes,
            &crm_changes,
            self.now,
        );
        Ok(Done {
            report,
            commit,
            linked,
            guard,
            parked,
            skipped,
        })
    }

    fn reconcile_due(&self, state: &SyncProgress) -> bool {
        reconcile_due(
            state,
            self.now,
            &self.options,
            self.tenant.settings.nudging(self.now),
        )
    }

    /// Reads the CRM feed to its end (or [`MAX_CRM_READS`] pages). Without `snapshot`, any
    /// deletion the feed shows is reported and the planner ignores the ones it has no link for.
    async fn read_crm(
        &self,
        owner: &CrmUser,
        cursor: Option<ChangeCursor>,
        reconcile: bool,
        window: &TimeWindow,
        snapshot: Option<&[Link]>,
    ) -> Result<(CrmChanges, ChangeCursor, Vec<(CrmEventId, String)>), RunError> {
        let known: Vec<CrmEventId> = snapshot
            .unwrap_or_default()
            .iter()
            .filter_map(|link| link.crm_id.clone())
            .collect();
        let mut changes = CrmChanges::default();
        let mut unreadable = Vec::new();
        let mut cursor = cursor;
        for n in 0..MAX_CRM_READS {
            let page = self
                .crm
                .changes(ChangesRequest {
                    owner,
                    cursor: cursor.clone(),
                    window: *window,
                    known: &known,
                    reconcile: reconcile && n == 0,
                    report_any_gone: snapshot.is_none(),
                })
                .await
                .map_err(RunError::Crm)?;
            for (id, why) in &page.unreadable {
                tracing::warn!(tenant = %self.tenant.id, user = %self.user, crm_id = %id, reason = %why, "CRM event skipped");
            }
            unreadable.extend(page.unreadable.iter().cloned());
            let more = page.more;
            cursor = Some(page.cursor.clone());
            changes.extend(page.upserts, page.gone);
            if !more {
                break;
            }
        }
        let cursor = cursor.ok_or(RunError::Crm(CrmError::Config(ConfigProblem::NoCursor)))?;
        // calsync's creates carry a marker, so the CRM tells which records are calsync's.
        changes.created_by_sync = Some(
            changes
                .upserts
                .iter()
                .filter(|event| event.ids.crm_marker.is_some())
                .filter_map(|event| event.ids.crm.as_deref().map(CrmEventId::new))
                .collect(),
        );
        Ok((changes, cursor, unreadable))
    }
}

/// Whether the CRM is listed in full this run, to find deletions by absence: when asked, and
/// on a schedule when its change feed cannot report deletions (more often without the CRM
/// module's nudges, which announce each deletion), and once a day anyway.
fn reconcile_due(state: &SyncProgress, now: i64, options: &RunOptions, nudging: bool) -> bool {
    if options.full || (options.reconcile && !feed_sees_deletions(state)) {
        return true;
    }
    let blind_every = if nudging {
        RECONCILE_WHEN_BLIND_AND_NUDGED_SECS
    } else {
        RECONCILE_WHEN_BLIND_SECS
    };
    state.reconciled_at.is_none_or(|at| {
        let elapsed = now - at;
        (elapsed >= blind_every && !feed_sees_deletions(state)) || elapsed >= RECONCILE_ANYWAY_SECS
    })
}

/// The window the stored delta link keeps (`wanted` where the progress has none).
fn stored_window(state: &SyncProgress, wanted: &TimeWindow) -> TimeWindow {
    TimeWindow::new(
        Timestamp::from_second(state.window_start).unwrap_or(wanted.start),
        Timestamp::from_second(state.window_end).unwrap_or(wanted.end),
    )
}

/// Whether the wanted window has moved on so far from the one the delta link keeps that the
/// window is listed again.
fn window_slid(state: &SyncProgress, window: &TimeWindow) -> bool {
    let stored_start = Timestamp::from_second(state.window_start).unwrap_or(window.start);
    window.start.duration_since(stored_start) >= REBASELINE_AFTER
}

fn feed_sees_deletions(state: &SyncProgress) -> bool {
    state
        .crm_cursor
        .as_ref()
        .is_some_and(crate::adapters::crm::vtiger::cursor_sees_deletions)
}

/// What a run did, by side and kind, as executed; conflicts as planned (their entries are
/// written before the writes they explain).
fn counts(planned: &PlanCounts, execution: &Execution) -> RunCounts {
    RunCounts {
        crm_created: execution.crm.created as u64,
        crm_updated: execution.crm.updated as u64,
        crm_deleted: execution.crm.deleted as u64,
        outlook_created: execution.outlook.created as u64,
        outlook_updated: execution.outlook.updated as u64,
        outlook_deleted: execution.outlook.deleted as u64,
        conflicts: planned.conflicts as u64,
        failed: (execution.failed.len()
            + execution.refused.len()
            + execution.gone.len()
            + execution.stale) as u64,
    }
}
