//! In-process adapter, for `calsync serve` on one machine. Jobs not acknowledged within the
//! visibility timeout come back, as with SQS.

use async_trait::async_trait;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

use super::{JobQueue, QueueError, ReceivedJob, SyncJob};
use crate::crypto::random_token;

/// The lock around the queue was poisoned by a panic elsewhere.
#[derive(Debug, thiserror::Error)]
#[error("the in-process queue's lock is poisoned")]
struct Poisoned;

#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    visibility: Duration,
}

#[derive(Default)]
struct State {
    ready: VecDeque<(SyncJob, u32)>,
    in_flight: HashMap<String, (SyncJob, u32, Instant)>,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

impl MemoryQueue {
    pub fn new(visibility: Duration) -> Self {
        Self {
            inner: Arc::default(),
            arrived: Arc::default(),
            visibility,
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, QueueError> {
        self.inner.lock().map_err(|_| QueueError::backend(Poisoned))
    }

    fn take(&self, max: usize) -> Result<Vec<ReceivedJob>, QueueError> {
        let mut state = self.lock()?;
        let now = Instant::now();
        let expired: Vec<String> = state
            .in_flight
            .iter()
            .filter(|(_, (_, _, until))| *until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for receipt in expired {
            if let Some((job, count, _)) = state.in_flight.remove(&receipt) {
                state.ready.push_front((job, count));
            }
        }
        // Like a FIFO queue, hand out at most one job per group while another is in flight.
        let busy: std::collections::HashSet<String> = state
            .in_flight
            .values()
            .map(|(j, _, _)| j.group_id())
            .collect();
        let mut taken = Vec::new();
        let mut kept = VecDeque::new();
        let mut handed: std::collections::HashSet<String> = std::collections::HashSet::new();
        while let Some((job, count)) = state.ready.pop_front() {
            let group = job.group_id();
            if taken.len() < max && !busy.contains(&group) && handed.insert(group) {
                let receipt = random_token(16);
                state.in_flight.insert(
                    receipt.clone(),
                    (job.clone(), count + 1, now + self.visibility),
                );
                taken.push(ReceivedJob {
                    job,
                    receipt,
                    receive_count: count + 1,
                });
            } else {
                kept.push_back((job, count));
            }
        }
        state.ready = kept;
        Ok(taken)
    }

    /// Jobs waiting (not in flight): for status pages and tests.
    pub fn pending(&self) -> usize {
        self.inner.lock().map(|s| s.ready.len()).unwrap_or(0)
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn send(&self, jobs: &[SyncJob]) -> Result<(), QueueError> {
        let mut state = self.lock()?;
        state.ready.extend(jobs.iter().cloned().map(|j| (j, 0)));
        drop(state);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<ReceivedJob>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let jobs = self.take(max)?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            // Wake on new jobs, or re-check now and then for expired visibility.
            let _ = tokio::time::timeout(left.min(Duration::from_millis(500)), notified).await;
        }
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.lock()?.in_flight.remove(receipt);
        Ok(())
    }
}
