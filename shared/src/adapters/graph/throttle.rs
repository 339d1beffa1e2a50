//! Client-side throttling: Outlook runs at most 4 requests at once per mailbox and counts every
//! request, throttled or not, and each item of a `$batch` as a request, so we never exceed that, and after a 429 with `Retry-After` the
//! whole mailbox waits — not only the request that was refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// Beyond this many idle mailboxes the map is pruned (a long-lived process serves many users).
const PRUNE_ABOVE: usize = 4096;

pub(crate) struct Throttle {
    per_mailbox: usize,
    global: Arc<Semaphore>,
    mailboxes: Mutex<HashMap<String, Arc<Gate>>>,
}

struct Gate {
    slots: Arc<Semaphore>,
    paused_until: Mutex<Option<Instant>>,
}

impl Gate {
    fn paused_until(&self) -> Option<Instant> {
        let until = *self
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.filter(|t| *t > Instant::now())
    }
}

/// Held while a request is on the wire; dropping it frees the slots.
pub(crate) struct Permits {
    _mailbox: OwnedSemaphorePermit,
    _global: OwnedSemaphorePermit,
}

impl Throttle {
    pub(crate) fn new(per_mailbox: usize, global: usize) -> Self {
        Self {
            per_mailbox: per_mailbox.max(1),
            global: Arc::new(Semaphore::new(global.max(1))),
            mailboxes: Mutex::new(HashMap::new()),
        }
    }

    fn gate(&self, mailbox: &str) -> Arc<Gate> {
        let mut map = self
            .mailboxes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() > PRUNE_ABOVE && !map.contains_key(mailbox) {
            map.retain(|_, gate| Arc::strong_count(gate) > 1 || gate.paused_until().is_some());
        }
        map.entry(mailbox.to_owned())
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.per_mailbox)),
                    paused_until: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Waits out any pause of the mailbox, then takes a mailbox slot for each of the
    /// `requests` the call carries (all of them, for a batch larger than the limit) and a
    /// global slot.
    pub(crate) async fn acquire(&self, mailbox: &str, requests: usize) -> Permits {
        let wanted = requests.clamp(1, self.per_mailbox) as u32;
        let gate = self.gate(mailbox);
        loop {
            if let Some(until) = gate.paused_until() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let Ok(slot) = gate.slots.clone().acquire_many_owned(wanted).await else {
                continue;
            };
            // A 429 may have paused the mailbox while we queued for the slot.
            if gate.paused_until().is_some() {
                drop(slot);
                continue;
            }
            let Ok(global) = self.global.clone().acquire_owned().await else {
                continue;
            };
            return Permits {
                _mailbox: slot,
                _global: global,
            };
        }
    }

    /// Holds every request of the mailbox until `until` (a later pause wins).
    pub(crate) fn pause(&self, mailbox: &str, until: Instant) {
        let gate = self.gate(mailbox);
        let mut paused = gate
            .paused_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn never_more_than_the_mailbox_limit_at_once() {
        let throttle = Arc::new(Throttle::new(4, 100));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (throttle, now, peak) = (throttle.clone(), now.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let _permits = throttle.acquire("box", 1).await;
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn each_request_of_a_batch_counts() {
        let throttle = Throttle::new(4, 100);
        let three = throttle.acquire("box", 3).await;
        let one = throttle.acquire("box", 1).await;
        // The mailbox's four are taken: another request waits for the batch.
        let waited =
            tokio::time::timeout(Duration::from_millis(50), throttle.acquire("box", 1)).await;
        assert!(waited.is_err());
        drop((three, one));
        // A batch of twenty takes the whole mailbox: nothing else goes beside it.
        let _twenty = throttle.acquire("box", 20).await;
        let waited =
            tokio::time::timeout(Duration::from_millis(50), throttle.acquire("box", 1)).await;
        assert!(waited.is_err());
    }

    #[tokio::test]
    async fn a_pause_holds_the_mailbox() {
        let throttle = Throttle::new(4, 100);
        let start = Instant::now();
        throttle.pause("box", start + Duration::from_millis(80));
        let _permits = throttle.acquire("box", 1).await;
        assert!(start.elapsed() >= Duration::from_millis(80));
        // Other mailboxes are not affected.
        let before = Instant::now();
        throttle.pause("box", Instant::now() + Duration::from_secs(5));
        let _other = throttle.acquire("other", 1).await;
        assert!(before.elapsed() < Duration::from_millis(50));
    }
}
