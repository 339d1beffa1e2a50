//! Keeping each user's Graph subscription alive (DESIGN §2, graph-facts §2): the dispatcher
//! renews subscriptions before they expire and replaces missing or removed ones; jobs from
//! lifecycle events reauthorize or recreate on request; a user who is disconnected or must
//! reconnect has their subscription deleted, never renewed.

use crate::app::App;
use crate::queue::{JobReason, SyncJob};
use crate::store::now_epoch;
use crate::subscription::SubscriptionRecord;
use crate::tenant::TenantContext;
use crate::users::{get_user, update_user, UserRecord, UserStatus};

/// Subscriptions expiring within this margin are renewed. Several dispatch rounds fall inside
/// it, so one failed renewal is retried long before Graph drops the subscription.
pub const RENEW_MARGIN_SECS: i64 = 12 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    NothingToDo,
    Created,
    Renewed,
    Reauthorized,
    /// Renewal failed (Graph removed or lost it): a new one replaced it.
    Recreated,
    Deleted,
    /// Recorded on the user as a problem; the next round tries again.
    Failed,
}

async fn set_problem(app: &App, tenant: &TenantContext, user: &UserRecord, detail: &str) {
    let now = now_epoch();
    let outcome = update_user(app.store.as_ref(), &tenant.id, &user.user, |r| {
        r.set_problem("subscription_failed", detail, now)
    })
    .await;
    if let Err(e) = outcome {
        tracing::error!(tenant = %tenant.id, user = %user.user, error = %e, "problem not recorded");
    }
}

async fn clear_problems(app: &App, tenant: &TenantContext, user: &UserRecord) {
    let outcome = update_user(app.store.as_ref(), &tenant.id, &user.user, |r| {
        r.clear_problem("subscription_failed");
        r.clear_problem("notifications_unavailable");
    })
    .await;
    if let Err(e) = outcome {
        tracing::error!(tenant = %tenant.id, user = %user.user, error = %e, "problems not cleared");
    }
}

/// Brings one user's subscription to where it should be, for the scheduler's round.
pub async fn maintain_user(
    app: &App,
    tenant: &TenantContext,
    user: &UserRecord,
    now: i64,
) -> Maintenance {
    if user.status != UserStatus::Connected {
        return match &user.subscription_id {
            Some(id) => drop_subscription(app, tenant, user, id).await,
            None => Maintenance::NothingToDo,
        };
    }
    if app.config.webhook_url.is_none() {
        return Maintenance::NothingToDo;
    }
    let due = match (&user.subscription_id, user.subscription_expires_at) {
        (None, _) => true,
        (Some(_), Some(expires_at)) => expires_at - now <= RENEW_MARGIN_SECS,
        (Some(_), None) => true,
    };
    if !due {
        return Maintenance::NothingToDo;
    }
    apply(app, tenant, user, user_reason(user)).await
}

fn user_reason(user: &UserRecord) -> JobReason {
    if user.subscription_id.is_some() {
        JobReason::Schedule
    } else {
        JobReason::RecreateSubscription
    }
}

/// The subscription work a job asks for (reauthorize, recreate); none for other jobs.
pub async fn for_job(app: &App, tenant: &TenantContext, job: &SyncJob) -> Maintenance {
    if !matches!(
        job.reason,
        JobReason::Reauthorize | JobReason::RecreateSubscription
    ) {
        return Maintenance::NothingToDo;
    }
    let user = match get_user(app.store.as_ref(), &tenant.id, &job.user).await {
        Ok(Some(u)) => u.record,
        Ok(None) => return Maintenance::NothingToDo,
        Err(e) => {
            tracing::error!(tenant = %tenant.id, user = %job.user, error = %e, "user not read");
            return Maintenance::Failed;
        }
    };
    if user.status != UserStatus::Connected {
        return maintain_user(app, tenant, &user, now_epoch()).await;
    }
    apply(app, tenant, &user, job.reason).await
}

/// Renew (or reauthorize) the existing subscription, falling back to a new one.
async fn apply(
    app: &App,
    tenant: &TenantContext,
    user: &UserRecord,
    reason: JobReason,
) -> Maintenance {
    let token = match app
        .tokens
        .user_access_token(app.store.as_ref(), tenant, &user.user)
        .await
    {
        Ok(token) => token,
        Err(e) => {
            // reconnect_required is recorded by the token service itself.
            tracing::warn!(tenant = %tenant.id, user = %user.user, error = %e, "no token for subscription upkeep");
            return Maintenance::Failed;
        }
    };
    let subscriptions = &app.subscriptions;
    let existing = user.subscription_id.as_deref();
    let outcome = match (reason, existing) {
        (JobReason::Reauthorize, Some(id)) => subscriptions
            .reauthorize(tenant, &user.user, id, &token)
            .await
            .map(|_| Maintenance::Reauthorized),
        (JobReason::RecreateSubscription, _) | (_, None) => subscriptions
            .recreate(tenant, &user.user, existing, &token)
            .await
            .map(|_| {
                if existing.is_some() {
                    Maintenance::Recreated
                } else {
                    Maintenance::Created
                }
            }),
        (_, Some(id)) => subscriptions
            .renew(tenant, &user.user, id, &token)
            .await
            .map(|_| Maintenance::Renewed),
    };
    let outcome = match outcome {
        Ok(done) => Ok(done),
        // A subscription Graph no longer knows cannot be renewed or reauthorized: replace it.
        Err(e) if existing.is_some() && reason != JobReason::RecreateSubscription => {
            tracing::info!(tenant = %tenant.id, user = %user.user, error = %e, "renewal failed; creating a new subscription");
            subscriptions
                .recreate(tenant, &user.user, existing, &token)
                .await
                .map(|_| Maintenance::Recreated)
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(done) => {
            clear_problems(app, tenant, user).await;
            done
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, user = %user.user, error = %e, "subscription upkeep failed");
            set_problem(app, tenant, user, "Change notifications could not be renewed; calsync retries on its next round and syncs on schedule meanwhile.").await;
            Maintenance::Failed
        }
    }
}

/// Deletes the subscription of a user who is not connected: at Graph when a token is still to
/// be had, and always in our records, so its notifications are dropped from now on.
async fn drop_subscription(
    app: &App,
    tenant: &TenantContext,
    user: &UserRecord,
    id: &str,
) -> Maintenance {
    if user.status == UserStatus::Disconnected {
        // A disconnected user has no tokens left; the subscription lapses at Graph on its own.
    } else if let Ok(token) = app
        .tokens
        .user_access_token(app.store.as_ref(), tenant, &user.user)
        .await
    {
        if let Err(e) = app.subscriptions.delete(tenant, id, &token).await {
            tracing::warn!(tenant = %tenant.id, user = %user.user, error = %e, "subscription not deleted at Graph; it lapses on its own");
        }
    }
    if let Err(e) = SubscriptionRecord::delete(app.store.as_ref(), id).await {
        tracing::error!(tenant = %tenant.id, user = %user.user, error = %e, "subscription record not deleted");
        return Maintenance::Failed;
    }
    let cleared = update_user(app.store.as_ref(), &tenant.id, &user.user, |r| {
        r.subscription_id = None;
        r.subscription_expires_at = None;
    })
    .await;
    match cleared {
        Ok(_) => Maintenance::Deleted,
        Err(e) => {
            tracing::error!(tenant = %tenant.id, user = %user.user, error = %e, "user not updated");
            Maintenance::Failed
        }
    }
}
