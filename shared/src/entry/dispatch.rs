//! The scheduler's round (docs/design.md §2, `{"action":"dispatch"}`): find the connected users who
//! are due a sync, and queue one job each. Push notifications bring changes within a minute; this
//! round is the safety net that catches whatever push missed, and the place where tenants'
//! expiring secrets get noticed. Each tenant's sweep clock ([`crate::services::sweeps`]) says
//! when its users are due, so a round reads a tenant's users only when it sweeps them.

use crate::adapters::queue::{JobReason, QueueError, SyncJob};
use crate::adapters::store::now_epoch;
use crate::app::App;
use crate::services::subscriptions::Upkeep;
use crate::services::sweeps::{everyone_every_minutes, SweepDue, SWEEP_SLACK_SECS};
use crate::services::tenants::MicrosoftAccess;
use crate::services::tenants::TenantError;
use crate::services::users::{UserRecord, UserStatus};
use calsync_core::ids::TenantId;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchReport {
    pub tenants: usize,
    pub users_due: usize,
    pub jobs_queued: usize,
    /// Tenants that could not be read, with the reason: the round goes on without them.
    pub failed_tenants: Vec<(TenantId, String)>,
    /// What subscription upkeep did, one entry per user it touched.
    pub upkeep: Vec<(String, Upkeep)>,
    /// Tenants with a warning for the operator (a client secret near or past its expiry).
    pub tenants_warned: usize,
    /// Tenants whose users this round read (a sweep of theirs was due).
    pub tenants_swept: usize,
    /// Users of the tenants swept that nothing has synced for several sweeps, with no
    /// problem that says why ([`UserRecord::overdue_in`]): something stopped silently.
    pub users_overdue: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("the tenants could not be listed")]
    Tenants(#[source] TenantError),
    #[error("the jobs could not be queued")]
    Queue(#[source] QueueError),
}

/// A connected user whose last recorded run is older than `interval_minutes` (or who never
/// ran): a run after a notification or a nudge makes the next sweep unnecessary.
pub fn is_due(user: &UserRecord, interval_minutes: u32, now: i64) -> bool {
    if user.status != UserStatus::Connected {
        return false;
    }
    let last = user.last_sync.as_ref().and_then(|s| s.last_run_at);
    last.is_none_or(|at| now - at >= i64::from(interval_minutes) * 60 - SWEEP_SLACK_SECS)
}

/// Runs one round, for every tenant, or only `only` (swept whatever its clock says: an
/// operator asked).
pub async fn dispatch(app: &App, only: Option<&TenantId>) -> Result<DispatchReport, DispatchError> {
    let now = now_epoch();
    let tenants = match only {
        Some(tenant) => match app.tenants.settings(tenant).await {
            Ok(Some(settings)) => vec![settings],
            Ok(None) => Vec::new(),
            Err(e) => return Err(DispatchError::Tenants(e)),
        },
        None => app.tenants.list().await.map_err(DispatchError::Tenants)?,
    };
    let mut report = DispatchReport {
        tenants: tenants.len(),
        ..DispatchReport::default()
    };
    let mut jobs = Vec::new();
    let mut swept = Vec::new();
    for settings in &tenants {
        let warnings = app.tenants.warnings(settings, now).await;
        if !warnings.is_empty() {
            report.tenants_warned += 1;
        }
        for warning in warnings {
            tracing::warn!(tenant = %settings.tenant, %warning, "tenant needs attention");
        }
        // Without Microsoft access (no consent yet, or removed) every token request would be
        // refused: nothing is tried until the administrator consents.
        if settings.microsoft_access() != MicrosoftAccess::Active {
            continue;
        }
        let clock = match app.sweeps.clock(&settings.tenant).await {
            Ok(clock) => clock,
            Err(e) => {
                tracing::warn!(tenant = %settings.tenant, error = %crate::errors::chain(&e), "sweep clock not read; sweeping everyone");
                Default::default()
            }
        };
        let due = if only.is_some() {
            SweepDue::Everyone
        } else {
            clock.due(settings, now)
        };
        if due == SweepDue::Nobody {
            continue;
        }
        report.tenants_swept += 1;
        // As status shows them: a quiet look is a sync, for telling who is overdue.
        let users = match app.users.list_for_status(&settings.tenant).await {
            Ok(users) => users,
            Err(e) => {
                tracing::error!(tenant = %settings.tenant, error = %crate::errors::chain(&e), "users not listed");
                report
                    .failed_tenants
                    .push((settings.tenant.clone(), e.to_string()));
                continue;
            }
        };
        maintain_subscriptions(app, &settings.tenant, &users, now, &mut report).await;
        for user in &users {
            if user.overdue_in(settings, now) {
                report.users_overdue += 1;
                tracing::warn!(tenant = %settings.tenant, user = %user.user, "nothing has synced this user for several sweeps, and no problem says why");
            }
        }
        let everyone_every = everyone_every_minutes(settings, now);
        let on_short_interval = |user: &UserRecord| {
            user.status == UserStatus::Connected
                && settings.sweep_minutes(user.subscription_id.is_some(), now) < everyone_every
        };
        let short_users = users.iter().any(on_short_interval);
        for user in users.iter().filter(|u| {
            (due == SweepDue::Everyone || on_short_interval(u))
                && is_due(
                    u,
                    settings.sweep_minutes(u.subscription_id.is_some(), now),
                    now,
                )
        }) {
            jobs.push(SyncJob {
                tenant: settings.tenant.clone(),
                user: user.user.clone(),
                reason: JobReason::Schedule,
                full: false,
                origin: None,
            });
        }
        swept.push((settings.tenant.clone(), clock.after(due, short_users, now)));
    }
    report.users_due = jobs.len();
    if !jobs.is_empty() {
        app.queue.send(&jobs).await.map_err(DispatchError::Queue)?;
    }
    report.jobs_queued = jobs.len();
    // Only once the jobs are queued: a round that failed to queue sweeps again next time.
    for (tenant, clock) in swept {
        if let Err(e) = app.sweeps.set(&tenant, &clock).await {
            tracing::warn!(%tenant, error = %crate::errors::chain(&e), "sweep clock not stored; the next round sweeps again");
        }
    }
    tracing::info!(
        tenants = report.tenants,
        users_due = report.users_due,
        failed_tenants = report.failed_tenants.len(),
        users_overdue = report.users_overdue,
        "dispatch round done"
    );
    Ok(report)
}

async fn maintain_subscriptions(
    app: &App,
    tenant: &TenantId,
    users: &[UserRecord],
    now: i64,
    report: &mut DispatchReport,
) {
    let pending: Vec<&UserRecord> = users
        .iter()
        .filter(|u| app.subscriptions.needs_upkeep(u, now))
        .collect();
    if pending.is_empty() {
        return;
    }
    let context = match app.tenants.context(tenant).await {
        Ok(context) => context,
        Err(e) => {
            tracing::error!(%tenant, error = %crate::errors::chain(&e), "tenant not loaded for subscription upkeep");
            return;
        }
    };
    for user in pending {
        let done = app.subscriptions.maintain_user(&context, user, now).await;
        report.upkeep.push((user.user.to_string(), done));
    }
}
