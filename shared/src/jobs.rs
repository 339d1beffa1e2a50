//! The sync function's events (DESIGN §2): the scheduler's `{"action":"dispatch"}` and SQS
//! batches of sync jobs, one user per message, answered with `batchItemFailures` so only the
//! failed messages come back.

use serde_json::{json, Value};

use crate::app::App;
use crate::ids::TenantId;
use std::time::{Duration, Instant};

use crate::queue::{JobReason, SyncJob};

#[derive(Debug, Clone, PartialEq)]
pub enum SyncEvent {
    Dispatch {
        tenant: Option<TenantId>,
    },
    /// Each message's id with its job, or why its body is not a job.
    Jobs(Vec<(String, Result<SyncJob, String>)>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a sync function event: {0}")]
pub struct EventError(pub String);

pub fn parse_event(event: &Value) -> Result<SyncEvent, EventError> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let mut jobs = Vec::with_capacity(records.len());
        for record in records {
            let id = record
                .get("messageId")
                .and_then(Value::as_str)
                .ok_or_else(|| EventError("an SQS record without messageId".into()))?;
            let job = record
                .get("body")
                .and_then(Value::as_str)
                .ok_or_else(|| "the message has no body".to_owned())
                .and_then(|body| {
                    serde_json::from_str::<SyncJob>(body)
                        .map_err(|e| format!("the body is not a sync job: {e}"))
                });
            jobs.push((id.to_owned(), job));
        }
        return Ok(SyncEvent::Jobs(jobs));
    }
    // EventBridge Scheduler passes the input as is; an EventBridge rule wraps it in `detail`.
    let input = event
        .get("detail")
        .filter(|d| d.is_object())
        .unwrap_or(event);
    match input.get("action").and_then(Value::as_str) {
        Some("dispatch") => {
            let tenant = match input.get("tenant").and_then(Value::as_str) {
                Some(t) => Some(TenantId::parse(t).map_err(|e| EventError(e.to_string()))?),
                None => None,
            };
            Ok(SyncEvent::Dispatch { tenant })
        }
        Some(other) => Err(EventError(format!("unknown action {other:?}"))),
        None => Err(EventError("neither SQS records nor an action".into())),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the tenant could not be loaded: {0}")]
    Tenant(String),
    #[error(transparent)]
    Sync(#[from] crate::runner::RunError),
    #[error("the run ran out of time and its follow-up job could not be queued: {0}")]
    FollowUp(String),
}

/// Runs one job: first the subscription work it asks for (reauthorize, recreate), then the
/// two-way sync of the user. An error means the message should come back (the queue retries,
/// then parks it in the dead-letter queue); outcomes that a retry cannot change (the user must
/// reconnect, the deletion guard held) are recorded in the user's status and succeed.
pub async fn run_job(app: &App, job: &SyncJob) -> Result<crate::runner::RunReport, JobError> {
    run_job_until(app, job, None).await
}

/// [`run_job`] that starts no write after `deadline`. What is left goes to a follow-up job for
/// the same user, queued at once, so a large first sync continues instead of being cut off.
pub async fn run_job_until(
    app: &App,
    job: &SyncJob,
    deadline: Option<Instant>,
) -> Result<crate::runner::RunReport, JobError> {
    let tenant = app
        .tenants
        .context_cached(&job.tenant)
        .await
        .map_err(|e| JobError::Tenant(e.to_string()))?;
    let upkeep = crate::maintenance::for_job(app, &tenant, job).await;
    let options = crate::runner::RunOptions {
        full: job.full,
        confirm_deletions: job.confirm_deletions,
        dry_run: false,
        deadline,
    };
    let report = crate::runner::sync_user(app, &tenant, &job.user, options).await?;
    if report.postponed > 0 {
        let follow_up = SyncJob {
            tenant: job.tenant.clone(),
            user: job.user.clone(),
            reason: JobReason::Continue,
            full: false,
            confirm_deletions: job.confirm_deletions,
        };
        app.queue
            .send(&[follow_up])
            .await
            .map_err(|e| JobError::FollowUp(e.to_string()))?;
    }
    tracing::info!(
        tenant = %job.tenant,
        user = %job.user,
        reason = ?job.reason,
        ?upkeep,
        outcome = ?report.outcome,
        writes = report.counts.writes(),
        failed = report.counts.failed,
        postponed = report.postponed,
        "job done"
    );
    Ok(report)
}

/// How long before the invocation's end no new write is started: the longest a write with its
/// retries can take (at most a fifth of the invocation).
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Handles one invocation of the sync function. `deadline`: when the invocation ends.
pub async fn handle_event(
    app: &App,
    event: &Value,
    deadline: Option<Instant>,
) -> Result<Value, EventError> {
    // A short invocation keeps a fifth of its time as the margin.
    let deadline = deadline.map(|at| {
        let margin = DEADLINE_MARGIN.min(at.saturating_duration_since(Instant::now()) / 5);
        at.checked_sub(margin).unwrap_or(at)
    });
    match parse_event(event)? {
        SyncEvent::Dispatch { tenant } => {
            let report = crate::dispatch::dispatch(app, tenant.as_ref())
                .await
                .map_err(|e| EventError(e.to_string()))?;
            Ok(json!({ "tenants": report.tenants, "jobs_queued": report.jobs_queued }))
        }
        SyncEvent::Jobs(jobs) => {
            let mut failures = Vec::new();
            for (message_id, job) in jobs {
                let outcome = match &job {
                    Ok(job) => run_job_until(app, job, deadline)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                    Err(why) => Err(why.clone()),
                };
                if let Err(why) = outcome {
                    // Failed messages return to the queue and, after five tries, to the
                    // dead-letter queue, where nothing is lost.
                    tracing::error!(%message_id, reason = %why, "sync job failed");
                    failures.push(json!({ "itemIdentifier": message_id }));
                }
            }
            Ok(json!({ "batchItemFailures": failures }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_events_in_both_shapes() {
        assert_eq!(
            parse_event(&json!({"action": "dispatch"})),
            Ok(SyncEvent::Dispatch { tenant: None })
        );
        let scoped =
            parse_event(&json!({"detail": {"action": "dispatch", "tenant": "acme"}})).unwrap();
        assert_eq!(
            scoped,
            SyncEvent::Dispatch {
                tenant: Some(TenantId::parse("acme").unwrap())
            }
        );
        assert!(parse_event(&json!({"action": "dispatch", "tenant": "Bad Id"})).is_err());
        assert!(parse_event(&json!({"action": "explode"})).is_err());
        assert!(parse_event(&json!([])).is_err());
    }

    #[test]
    fn sqs_batches_keep_bad_bodies_as_failures() {
        let event = json!({"Records": [
            {"messageId": "m1", "body": "{\"tenant\":\"acme\",\"user\":\"ana\",\"reason\":\"schedule\",\"full\":false}"},
            {"messageId": "m2", "body": "not json"},
        ]});
        let SyncEvent::Jobs(jobs) = parse_event(&event).unwrap() else {
            panic!("jobs expected")
        };
        assert_eq!(jobs[0].0, "m1");
        assert_eq!(jobs[0].1.as_ref().unwrap().user.as_str(), "ana");
        assert!(jobs[1].1.is_err());
    }
}
