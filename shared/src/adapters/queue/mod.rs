//! The job-queue port: sync jobs, one per (tenant, user), ordered per user. SQS FIFO in AWS, an
//! in-process queue on one machine; both under the same contract tests.

mod memory;
mod sqs;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

use calsync_core::ids::{CrmUserName, TenantId};

/// Why a job exists; it decides nothing about what the sync does beyond `full`, but it shows in
/// logs and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobReason {
    /// The user just connected: the initial sync.
    Connected,
    /// The scheduler found the user due.
    Schedule,
    /// Graph told us something changed.
    Notification,
    /// Graph asked for the subscription to be reauthorized.
    Reauthorize,
    /// Graph removed the subscription: create it again.
    RecreateSubscription,
    /// Graph lost notifications.
    Missed,
    /// An operator asked (`calsync resync`).
    Manual,
    /// The previous run ran out of time; this one goes on where it stopped.
    Continue,
    /// The CRM module said the user's calendar changed in the CRM.
    Nudge,
}

/// The body of one queue message (docs/design.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncJob {
    pub tenant: TenantId,
    pub user: CrmUserName,
    pub reason: JobReason,
    #[serde(default)]
    pub full: bool,
    /// Where the work came from, for the job's log span and the announcement-to-write lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<JobOrigin>,
}

/// The request that announced the change (a Graph notification or a CRM nudge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobOrigin {
    /// One id for everything that request caused: its log lines, its jobs' spans.
    pub correlation: String,
    /// When the announcement arrived, epoch milliseconds.
    pub at_ms: i64,
}

impl JobOrigin {
    /// A new origin for a request arriving now.
    pub fn now() -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Self {
            correlation: crate::crypto::random_token(12),
            at_ms,
        }
    }
}

impl SyncJob {
    /// FIFO group: one sync per user at a time, in order.
    pub fn group_id(&self) -> String {
        format!("{}#{}", self.tenant, self.user)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedJob {
    pub job: SyncJob,
    /// Opaque handle for `ack`.
    pub receipt: String,
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is not configured: {0}")]
    NotConfigured(&'static str),
    /// Some entries of a batch were refused; `code` is the queue's first reason.
    #[error("{failed} of {total} jobs could not be queued ({code})")]
    NotQueued {
        failed: usize,
        total: usize,
        code: String,
    },
    #[error("the queue failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("a job could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("a queued message is not a sync job")]
    BadMessage(#[source] serde_json::Error),
}

impl QueueError {
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        QueueError::Backend(Box::new(error))
    }
}

#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Queues all jobs durably, with as few calls as the backend allows, or fails.
    async fn send(&self, jobs: &[SyncJob]) -> Result<(), QueueError>;
    /// Takes up to `max` jobs, waiting up to `wait` for the first one.
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>, QueueError>;
    /// Marks a received job done.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;
}
