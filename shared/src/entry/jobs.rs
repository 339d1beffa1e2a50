//! The sync function's events (docs/design.md §2): the scheduler's `{"action":"dispatch"}` and
//! SQS batches of sync jobs, one user per message, answered with `batchItemFailures` so only
//! the failed messages come back. A job that panics fails its own message, not the batch.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::FutureExt;
use serde_json::{json, Value};

use crate::adapters::queue::{JobReason, QueueError, SyncJob};
use crate::app::App;
use crate::services::sync_run::{RunError, RunOptions, RunOutcome, RunReport};
use crate::services::tenants::MicrosoftAccess;
use crate::services::tenants::TenantError;
use calsync_core::ids::{InvalidId, TenantId};

#[derive(Debug, PartialEq)]
pub enum SyncEvent {
    Dispatch {
        tenant: Option<TenantId>,
    },
    /// Each message's id with its job, or why its body is not a job.
    Jobs(Vec<(String, Result<SyncJob, JobBodyError>)>),
}

/// Why an invocation's payload is not one the sync function takes.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the SQS event is malformed")]
    NotSqs(#[source] serde_json::Error),
    #[error("an SQS record has no messageId")]
    NoMessageId,
    #[error("the dispatch names an invalid tenant")]
    BadTenant(#[source] InvalidId),
    #[error("unknown action {action:?}")]
    UnknownAction { action: String },
    #[error("neither SQS records nor an action")]
    Unrecognised,
    #[error("the dispatch round failed")]
    Dispatch(#[source] crate::entry::dispatch::DispatchError),
}

/// Why one message's body is not a sync job.
#[derive(Debug, thiserror::Error)]
pub enum JobBodyError {
    #[error("the message has no body")]
    Missing,
    #[error("the body is not a sync job")]
    NotAJob(#[source] serde_json::Error),
}

impl PartialEq for JobBodyError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

pub fn parse_event(event: Value) -> Result<SyncEvent, EventError> {
    if event.get("Records").is_some() {
        let sqs: SqsEvent = serde_json::from_value(event).map_err(EventError::NotSqs)?;
        let mut jobs = Vec::with_capacity(sqs.records.len());
        for message in sqs.records {
            let id = message.message_id.ok_or(EventError::NoMessageId)?;
            let job = message.body.ok_or(JobBodyError::Missing).and_then(|body| {
                serde_json::from_str::<SyncJob>(&body).map_err(JobBodyError::NotAJob)
            });
            jobs.push((id, job));
        }
        return Ok(SyncEvent::Jobs(jobs));
    }
    // EventBridge Scheduler passes the input as is; an EventBridge rule wraps it in `detail`.
    let input = event
        .get("detail")
        .filter(|d| d.is_object())
        .unwrap_or(&event);
    match input.get("action").and_then(Value::as_str) {
        Some("dispatch") => {
            let tenant = match input.get("tenant").and_then(Value::as_str) {
                Some(t) => Some(TenantId::parse(t).map_err(EventError::BadTenant)?),
                None => None,
            };
            Ok(SyncEvent::Dispatch { tenant })
        }
        Some(other) => Err(EventError::UnknownAction {
            action: other.chars().take(64).collect(),
        }),
        None => Err(EventError::Unrecognised),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("the tenant could not be loaded")]
    Tenant(#[source] TenantError),
    #[error(transparent)]
    Sync(#[from] RunError),
    #[error("the run ran out of time and its follow-up job could not be queued")]
    FollowUp(#[source] QueueError),
}

/// Runs one job: first the subscription work it asks for (reauthorize, recreate), then the
/// two-way sync of the user. An error means the message should come back (the queue retries,
/// then parks it in the dead-letter queue); outcomes that a retry cannot change (the user must
/// reconnect, the deletion guard held) are recorded in the user's status and succeed.
pub async fn run_job(app: &App, job: &SyncJob) -> Result<RunReport, JobError> {
    run_job_until(app, job, None).await
}

/// [`run_job`] that starts no write after `deadline`. What is left goes to a follow-up job for
/// the same user, queued at once, so a large first sync continues instead of being cut off.
pub async fn run_job_until(
    app: &App,
    job: &SyncJob,
    deadline: Option<Instant>,
) -> Result<RunReport, JobError> {
    let tenant = app
        .tenants
        .context_cached(&job.tenant)
        .await
        .map_err(JobError::Tenant)?;
    if tenant.settings.microsoft_access() != MicrosoftAccess::Active {
        // Queued before the tenant lost its access: done, without asking Microsoft again.
        tracing::info!(tenant = %job.tenant, user = %job.user, access = tenant.settings.microsoft_access().as_str(), "job skipped: the tenant has no Microsoft access");
        return Ok(RunReport::new(RunOutcome::NotConnected));
    }
    let upkeep = app
        .subscriptions
        .for_job(&tenant, &job.user, job.reason)
        .await;
    let options = RunOptions {
        full: job.full,
        reconcile: job.reason == JobReason::Nudge,
        dry_run: false,
        // The schedule is the safety net: it mostly finds nothing, and then writes nothing.
        look_first: job.reason == JobReason::Schedule && !job.full,
        deadline,
    };
    let report = app.runner.sync_user(&tenant, &job.user, options).await?;
    if report.postponed > 0 {
        let follow_up = SyncJob {
            tenant: job.tenant.clone(),
            user: job.user.clone(),
            reason: JobReason::Continue,
            full: false,
            // The follow-up carries on the same work.
            origin: job.origin.clone(),
        };
        app.queue
            .send(&[follow_up])
            .await
            .map_err(JobError::FollowUp)?;
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

/// Why one message failed, for the log.
fn failure_reason(
    outcome: Result<Result<RunReport, JobError>, Box<dyn std::any::Any + Send>>,
) -> Option<String> {
    match outcome {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(crate::errors::chain(&e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            Some(format!("the job panicked: {what}"))
        }
    }
}

/// One SQS message: its id, and its job or why its body is not one.
type Message = (String, Result<SyncJob, JobBodyError>);

/// Runs one FIFO group's messages in order; returns the ids of those that failed. After the
/// first failure the rest of the group goes back untried, as SQS FIFO requires: a later job of
/// the user must not overtake an earlier one. Failed messages return to the queue and, after
/// five tries, to the dead-letter queue, where nothing is lost.
async fn run_group(app: &App, messages: Vec<Message>, deadline: Option<Instant>) -> Vec<String> {
    let mut failed = Vec::new();
    for (message_id, job) in messages {
        if !failed.is_empty() {
            tracing::warn!(%message_id, "sync job sent back: an earlier job of its user failed");
            failed.push(message_id);
            continue;
        }
        let why = match &job {
            Ok(job) => {
                let span = tracing::info_span!(
                    "job",
                    tenant = %job.tenant,
                    user = %job.user,
                    job_id = %message_id,
                    reason = ?job.reason,
                    correlation = job.origin.as_ref().map_or("", |o| o.correlation.as_str()),
                );
                let started = Instant::now();
                let run = AssertUnwindSafe(run_job_until(app, job, deadline));
                let outcome = tracing::Instrument::instrument(run.catch_unwind(), span).await;
                crate::entry::metrics::emit(&crate::entry::metrics::job(
                    job,
                    outcome.as_ref().ok().and_then(|r| r.as_ref().ok()),
                    started.elapsed(),
                    crate::adapters::store::now_epoch() * 1000,
                    app.config.metrics_by_tenant,
                ));
                failure_reason(outcome)
            }
            Err(why) => Some(crate::errors::chain(why)),
        };
        if let Some(why) = why {
            tracing::error!(%message_id, reason = %why, "sync job failed");
            failed.push(message_id);
        }
    }
    failed
}

/// Handles one invocation of the sync function. `deadline`: when the invocation ends.
pub async fn handle_event(
    app: &App,
    event: Value,
    deadline: Option<Instant>,
) -> Result<Value, EventError> {
    // A short invocation keeps a fifth of its time as the margin.
    let deadline = deadline.map(|at| {
        let margin = DEADLINE_MARGIN.min(at.saturating_duration_since(Instant::now()) / 5);
        at.checked_sub(margin).unwrap_or(at)
    });
    match parse_event(event)? {
        SyncEvent::Dispatch { tenant } => {
            let report = crate::entry::dispatch::dispatch(app, tenant.as_ref())
                .await
                .map_err(EventError::Dispatch)?;
            crate::entry::metrics::emit(&crate::entry::metrics::dispatch(
                &report,
                crate::adapters::store::now_epoch() * 1000,
            ));
            Ok(json!({ "tenants": report.tenants, "jobs_queued": report.jobs_queued }))
        }
        SyncEvent::Jobs(jobs) => {
            // One user's jobs (a FIFO group) run in order; different users' run side by side,
            // so one slow CRM does not hold up the other tenants' users in the batch.
            let mut groups: Vec<(Option<String>, Vec<Message>)> = Vec::new();
            for (message_id, job) in jobs {
                let group = job.as_ref().ok().map(SyncJob::group_id);
                match groups.iter_mut().find(|(g, _)| g.is_some() && *g == group) {
                    Some((_, messages)) => messages.push((message_id, job)),
                    None => groups.push((group, vec![(message_id, job)])),
                }
            }
            let failed = futures_util::future::join_all(
                groups
                    .into_iter()
                    .map(|(_, messages)| run_group(app, messages, deadline)),
            )
            .await;
            let mut response = SqsBatchResponse::default();
            for message_id in failed.into_iter().flatten() {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id;
                response.batch_item_failures.push(failure);
            }
            serde_json::to_value(response).map_err(EventError::NotSqs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_events_in_both_shapes() {
        assert_eq!(
            parse_event(json!({"action": "dispatch"})).unwrap(),
            SyncEvent::Dispatch { tenant: None }
        );
        let scoped =
            parse_event(json!({"detail": {"action": "dispatch", "tenant": "acme"}})).unwrap();
        assert_eq!(
            scoped,
            SyncEvent::Dispatch {
                tenant: Some(TenantId::parse("acme").unwrap())
            }
        );
        assert!(parse_event(json!({"action": "dispatch", "tenant": "Bad Id"})).is_err());
        assert!(parse_event(json!({"action": "explode"})).is_err());
        assert!(parse_event(json!([])).is_err());
    }

    #[test]
    fn sqs_batches_keep_bad_bodies_as_failures() {
        let event = json!({"Records": [
            {"messageId": "m1", "body": "{\"tenant\":\"acme\",\"user\":\"ana\",\"reason\":\"schedule\",\"full\":false}"},
            {"messageId": "m2", "body": "not json"},
        ]});
        let SyncEvent::Jobs(jobs) = parse_event(event).unwrap() else {
            panic!("jobs expected")
        };
        assert_eq!(jobs[0].0, "m1");
        assert_eq!(jobs[0].1.as_ref().unwrap().user.as_str(), "ana");
        assert!(matches!(jobs[1].1, Err(JobBodyError::NotAJob(_))));
    }

    #[test]
    fn a_panic_is_one_failure_with_its_message() {
        let caught = std::panic::catch_unwind(|| panic!("boom")).map(|()| Ok(unreachable_report()));
        assert_eq!(
            failure_reason(caught).as_deref(),
            Some("the job panicked: boom")
        );
    }

    fn unreachable_report() -> RunReport {
        unreachable!("the closure panics first")
    }
}
