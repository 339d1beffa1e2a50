//! Nudges from the CRM module (the format is in [`crate::nudge`]): each good one becomes at
//! most one queued sync of that user. A nudge is checked (tenant, signature, freshness), spent
//! (its nonce is remembered for twice the freshness window, so a replay is refused), and then
//! collapsed: while a nudge's job waits in the queue, more nudges for the user add nothing —
//! the waiting job reads those changes too — and once a run starts, the next nudge queues again.

use std::time::Duration;

use crate::adapters::queue::{JobQueue, JobReason, QueueError, SyncJob};
use crate::adapters::store::{record_to_item, ItemStore, Precondition, StoreError};
use crate::nudge::{Nudge, NudgeError, NUDGE_FRESH_SECS};
use crate::services::tenants::{TenantError, Tenants};
use crate::services::users::{NudgeNote, UserWriteError, Users};

/// How long a queued nudge job silences further nudges at most (a lost job does not silence
/// them for long).
const QUEUED_MARK: Duration = Duration::from_secs(300);

/// What an accepted nudge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NudgeOutcome {
    Queued,
    /// A job for the user was already waiting.
    Collapsed,
    /// The user is not connected: nothing to sync.
    NotSyncing,
}

/// Why a nudge was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NudgeRefusal {
    #[error("malformed or unauthentic nudge")]
    Refused(#[source] NudgeError),
    #[error("the nudge was already received")]
    Replayed,
    #[error("storage failed")]
    Store(#[from] StoreError),
    #[error("the user record could not be written")]
    User(#[from] UserWriteError),
    #[error("the tenant could not be read")]
    Tenant(#[source] TenantError),
    #[error("the job could not be queued")]
    Queue(#[from] QueueError),
}

/// Checks, spends and collapses one nudge (a form body), queueing a job when one is due.
pub async fn accept(
    store: &dyn ItemStore,
    tenants: &Tenants,
    users: &Users,
    queue: &dyn JobQueue,
    body: &[u8],
    now: i64,
) -> Result<NudgeOutcome, NudgeRefusal> {
    let (nudge, signature) = Nudge::parse(body).map_err(NudgeRefusal::Refused)?;
    // An unknown tenant is refused as a bad signature is: a nudge learns nothing.
    let tenant = match tenants.context_cached(&nudge.tenant).await {
        Ok(tenant) => tenant,
        Err(TenantError::NotFound(_)) => {
            return Err(NudgeRefusal::Refused(NudgeError::BadSignature))
        }
        Err(e) => return Err(NudgeRefusal::Tenant(e)),
    };
    // After a link-key rotation the CRM module signs with the earlier key until its
    // administrator types in the new one: nudges signed with it are taken for the overlap the
    // rotation gave (links never are).
    let verified = match nudge.verify(&tenant.secret.link_key, &signature, now) {
        Err(NudgeError::BadSignature) => match tenant.secret.nudge_fallback_key(now) {
            Some(earlier) => nudge.verify(earlier, &signature, now),
            None => Err(NudgeError::BadSignature),
        },
        other => other,
    };
    verified.map_err(NudgeRefusal::Refused)?;
    spend(store, &nudge, now).await?;
    // The tenant's CRM nudges: its users need only a safety sweep. Noted once an hour.
    if tenant
        .settings
        .nudges_seen_at
        .is_none_or(|at| now - at >= 3600)
    {
        if let Err(e) = tenants
            .update_settings(&nudge.tenant, move |s| s.nudges_seen_at = Some(now))
            .await
        {
            tracing::warn!(tenant = %nudge.tenant, error = %crate::errors::chain(&e), "nudge time not noted");
        }
    }
    match users
        .note_nudge(&nudge.tenant, &nudge.user, QUEUED_MARK, now)
        .await?
    {
        NudgeNote::NotSyncing => Ok(NudgeOutcome::NotSyncing),
        NudgeNote::AlreadyQueued => Ok(NudgeOutcome::Collapsed),
        NudgeNote::QueueJob => {
            let origin = crate::adapters::queue::JobOrigin::now();
            tracing::info!(tenant = %nudge.tenant, user = %nudge.user, correlation = %origin.correlation, "nudge queues a job");
            let job = SyncJob {
                tenant: nudge.tenant.clone(),
                user: nudge.user.clone(),
                reason: JobReason::Nudge,
                full: false,
                origin: Some(origin),
            };
            if let Err(e) = queue.send(&[job]).await {
                // No job waits: let the next nudge try again.
                if let Err(clear) = users.clear_nudge(&nudge.tenant, &nudge.user).await {
                    tracing::error!(tenant = %nudge.tenant, user = %nudge.user, error = %crate::errors::chain(&clear), "nudge mark not cleared");
                }
                return Err(e.into());
            }
            Ok(NudgeOutcome::Queued)
        }
    }
}

/// Remembers the nonce for twice the freshness window: the same nudge twice is refused.
async fn spend(store: &dyn ItemStore, nudge: &Nudge, now: i64) -> Result<(), NudgeRefusal> {
    let mut item = record_to_item(
        format!("NUDGE#{}#{}", nudge.tenant, nudge.nonce),
        "NUDGE",
        &serde_json::json!({ "user": nudge.user }),
    )?;
    item.expires_at = Some(now + 2 * NUDGE_FRESH_SECS);
    match store.put(&item, Precondition::Absent).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => Err(NudgeRefusal::Replayed),
        Err(e) => Err(e.into()),
    }
}
