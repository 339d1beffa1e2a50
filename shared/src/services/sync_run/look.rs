//! A scheduled run looks before it runs. The schedule is the safety net behind Graph's
//! notifications and the CRM module's nudges, so almost every scheduled run finds nothing;
//! taking the user's lease and recording the run would write the user's item twice for that.
//! Looking reads the item, one Graph delta page and one CRM feed page, and leaves the item
//! alone; only news, or something only a run can do, makes it a run (docs/design.md §4). A
//! quiet look is noted in a small item of its own, for status ([`crate::services::users::Users::note_quiet_look`]).
//!
//! Looking holds no lease: it changes nothing the sync reads, and a run it turns into claims
//! the user and reads both sides again from the cursors the claim returns.

use jiff::Timestamp;

use super::{
    outlook, reconcile_due, stored_window, window_at, window_slid, RunOptions, SyncRunner,
};
use crate::adapters::crm::{ChangesRequest, CrmPort};
use crate::services::tenants::TenantContext;
use crate::services::users::{ProblemCode, UserRecord, UserStatus};
use calsync_core::ids::CrmUserName;
use calsync_core::sync::{Parking, SyncProgress};

/// How long a user may go without a recorded run while looks find nothing. A recorded run
/// also lists the linked series (delta does not report a cancelled occurrence), moves the
/// stored delta link on, and shows in status when the user was last synced.
pub const RECORDED_RUN_AT_LEAST_EVERY_SECS: i64 = 6 * 3600;
/// At most this many looks between recorded runs: each look makes Exchange keep one more sync
/// state for the mailbox, and it evicts the oldest when its cache is full (the sandbox keeps
/// 16), which would lose the stored delta link and cost a full listing.
pub const LOOKS_BETWEEN_RECORDED_RUNS: i64 = 8;

/// How long the user may go without a recorded run: 6 hours, or fewer when the user is swept
/// often enough that 6 hours would hold more than [`LOOKS_BETWEEN_RECORDED_RUNS`] looks.
pub fn recorded_run_every_secs(sweep_minutes: u32) -> i64 {
    RECORDED_RUN_AT_LEAST_EVERY_SECS
        .min(LOOKS_BETWEEN_RECORDED_RUNS * i64::from(sweep_minutes) * 60)
}

/// What looking found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Looked {
    /// Neither side has news and nothing waits: no run, nothing written.
    Quiet,
    /// The user is not syncing (disconnected, or must reconnect); nothing to do.
    NotSyncing(UserStatus),
    /// A run is needed, for this reason.
    Run(&'static str),
}

impl SyncRunner {
    /// Looks at the user's item and both sides, without writing (see the module's docs).
    pub(super) async fn look(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        crm: &dyn CrmPort,
        now: i64,
    ) -> Looked {
        let record = match self.users.get(&tenant.id, user).await {
            Ok(Some(read)) => read.record,
            Ok(None) => return Looked::NotSyncing(UserStatus::Disconnected),
            Err(_) => return Looked::Run("the user's item could not be read"),
        };
        if record.status != UserStatus::Connected {
            return Looked::NotSyncing(record.status);
        }
        let progress = match waiting_work(&record, tenant, now) {
            Ok(progress) => progress,
            Err(why) => return Looked::Run(why),
        };
        let Ok(token) = self.tokens.for_mailbox(tenant, &record).await else {
            return Looked::Run("no access token");
        };
        let mailbox = self.graph.mailbox(
            tenant.settings.mode.mailbox(record.ms_user_id.clone()),
            token,
        );
        let now_ts = Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH);
        let window = window_at(&tenant.settings, now_ts);
        let stored_window = stored_window(progress, &window);
        let Some(delta) = progress.outlook_delta.as_deref() else {
            return Looked::Run("no delta link");
        };
        match outlook::read(&mailbox, Some(delta), stored_window, stored_window, false).await {
            Ok(read) if read.is_quiet() => {}
            Ok(_) => return Looked::Run("Outlook has news"),
            Err(_) => return Looked::Run("Outlook could not be read"),
        }
        let (Some(owner), Some(cursor)) = (&progress.crm_owner, &progress.crm_cursor) else {
            return Looked::Run("no CRM cursor");
        };
        let page = crm
            .changes(ChangesRequest {
                owner,
                cursor: Some(cursor.clone()),
                window,
                known: &[],
                report_any_gone: true,
                reconcile: false,
            })
            .await;
        match page {
            Ok(page)
                if page.upserts.is_empty()
                    && page.gone.is_empty()
                    && page.unreadable.is_empty()
                    && !page.more =>
            {
                Looked::Quiet
            }
            Ok(_) => Looked::Run("the CRM has news"),
            Err(_) => Looked::Run("the CRM could not be read"),
        }
    }
}

/// The user's settled progress, or why a run is needed whatever the sides say.
fn waiting_work<'a>(
    record: &'a UserRecord,
    tenant: &TenantContext,
    now: i64,
) -> Result<&'a SyncProgress, &'static str> {
    if record.nudge_queued.is_some() {
        return Err("a nudge waits");
    }
    // Only a run clears a problem (notifications are the dispatcher's upkeep).
    let run_clears = |code: &ProblemCode| {
        !matches!(
            code,
            ProblemCode::NotificationsUnavailable | ProblemCode::SubscriptionFailed
        )
    };
    if record.problems.iter().any(|p| run_clears(&p.code)) {
        return Err("a problem to clear");
    }
    if !record.held_deletions.is_empty() || !record.confirmed_deletions.is_empty() {
        return Err("deletions wait for the guard");
    }
    let progress = match &record.progress {
        Some(progress) if progress.mailbox == record.ms_user_id && progress.first_sync_done => {
            progress
        }
        _ => return Err("no first sync yet"),
    };
    let last_run = record.last_sync.as_ref().and_then(|s| s.last_run_at);
    let sweep_minutes = tenant
        .settings
        .sweep_minutes(record.subscription_id.is_some(), now);
    if last_run.is_none_or(|at| now - at >= recorded_run_every_secs(sweep_minutes)) {
        return Err("a recorded run is due");
    }
    if Parking::new(&record.parked, now, false).has_due() {
        return Err("a parked event is due");
    }
    let nudging = tenant.settings.nudging(now);
    if reconcile_due(progress, now, &RunOptions::default(), nudging) {
        return Err("the CRM is due a full listing");
    }
    let now_ts = Timestamp::from_second(now).unwrap_or(Timestamp::UNIX_EPOCH);
    if window_slid(progress, &window_at(&tenant.settings, now_ts)) {
        return Err("the window moved on");
    }
    Ok(progress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn looks_between_recorded_runs_stay_fewer_than_exchange_keeps_sync_states() {
        // Hourly sweeps: six looks in six hours.
        assert_eq!(
            recorded_run_every_secs(60),
            RECORDED_RUN_AT_LEAST_EVERY_SECS
        );
        // Quarter-hour sweeps: a recorded run every two hours, eight looks.
        assert_eq!(recorded_run_every_secs(15), 2 * 3600);
        for minutes in [1, 5, 15, 30, 60, 240] {
            let looks = recorded_run_every_secs(minutes) / (i64::from(minutes) * 60);
            assert!(
                looks <= LOOKS_BETWEEN_RECORDED_RUNS,
                "{minutes} min: {looks}"
            );
        }
    }
}
