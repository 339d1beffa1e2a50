//! Bookkeeping written together: the steps of a wave run at once, and the links and journal
//! entries they store are held until every step still running waits on one, then written in
//! one [`SyncTarget::store_all`] (one request to the store where the target can). A step's
//! record is thus durable before the step goes on — the intent before its create or update
//! leaves, the link before the cursors move — while a wave of creates or updates costs two
//! store requests, not two per event. The records a step writes before its next write (its
//! journal entries and intent) go in the same request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use super::execute::{SyncTarget, WriteFailure};
use super::journal::Conflict;
use super::model::{Link, LinkKey};

/// One bookkeeping write.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Stored if the stored version is `link.version - 1` (absent for 0), as
    /// [`SyncTarget::put_link`].
    Link(Box<Link>),
    /// Put by its id, as [`SyncTarget::record_conflict`].
    Conflict(Conflict),
    /// Forgotten if still at `expect`, as [`SyncTarget::delete_link`].
    Unlink { key: LinkKey, expect: Option<u64> },
}

impl Record {
    /// Writes the record alone, by the target's single-record methods.
    pub async fn store_alone<T: SyncTarget + ?Sized>(
        &self,
        target: &T,
    ) -> Result<bool, WriteFailure> {
        match self {
            Record::Link(link) => target.put_link(link).await,
            Record::Conflict(conflict) => target.record_conflict(conflict).await.map(|()| true),
            Record::Unlink { key, expect } => target.delete_link(key, *expect).await.map(|()| true),
        }
    }
}

type Answer = Arc<Mutex<Reply>>;

#[derive(Default)]
struct Reply {
    value: Option<Result<bool, WriteFailure>>,
    waker: Option<Waker>,
}

/// The bookkeeping of one wave.
pub(crate) struct Books<'a> {
    target: &'a dyn SyncTarget,
    shelf: Mutex<Shelf>,
}

struct Shelf {
    /// Steps of the wave not finished yet.
    running: usize,
    /// Steps waiting for the next write.
    waiting: usize,
    /// Records waiting for the next write (a waiting step may have several).
    queued: Vec<(Record, Answer)>,
}

impl<'a> Books<'a> {
    pub(crate) fn new(target: &'a dyn SyncTarget, steps: usize) -> Self {
        Self {
            target,
            shelf: Mutex::new(Shelf {
                running: steps,
                waiting: 0,
                queued: Vec::new(),
            }),
        }
    }

    pub(crate) fn target(&self) -> &'a dyn SyncTarget {
        self.target
    }

    /// Writes `record` with the others of the wave: when the last running step waits, that
    /// step writes them all.
    pub(crate) async fn write(&self, record: Record) -> Result<bool, WriteFailure> {
        self.write_all(vec![record])
            .await
            .pop()
            .unwrap_or_else(|| Err(short_answer()))
    }

    /// Writes one step's `records` (those that go before its next write: journal entries
    /// and an intent) together, with the others of the wave; one answer per record.
    pub(crate) async fn write_all(&self, records: Vec<Record>) -> Vec<Result<bool, WriteFailure>> {
        let answers: Vec<Answer> = records.iter().map(|_| Answer::default()).collect();
        let all_waiting = {
            let mut shelf = self.shelf.lock().unwrap_or_else(PoisonError::into_inner);
            for (record, answer) in records.into_iter().zip(&answers) {
                shelf.queued.push((record, answer.clone()));
            }
            shelf.waiting += 1;
            shelf.waiting >= shelf.running
        };
        if all_waiting {
            self.flush().await;
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            out.push(Waiting(answer).await);
        }
        out
    }

    /// A step of the wave has ended: if every other running step waits, write for them.
    pub(crate) async fn finish(&self) {
        let all_waiting = {
            let mut shelf = self.shelf.lock().unwrap_or_else(PoisonError::into_inner);
            shelf.running = shelf.running.saturating_sub(1);
            shelf.waiting > 0 && shelf.waiting >= shelf.running
        };
        if all_waiting {
            self.flush().await;
        }
    }

    async fn flush(&self) {
        let queued = {
            let mut shelf = self.shelf.lock().unwrap_or_else(PoisonError::into_inner);
            shelf.waiting = 0;
            std::mem::take(&mut shelf.queued)
        };
        if queued.is_empty() {
            return;
        }
        let records: Vec<Record> = queued.iter().map(|(record, _)| record.clone()).collect();
        let mut results = self.target.store_all(&records).await.into_iter();
        for (_, answer) in queued {
            let value = results.next().unwrap_or_else(|| Err(short_answer()));
            let mut reply = answer.lock().unwrap_or_else(PoisonError::into_inner);
            reply.value = Some(value);
            if let Some(waker) = reply.waker.take() {
                waker.wake();
            }
        }
    }
}

fn short_answer() -> WriteFailure {
    WriteFailure::Transient(crate::cause::Cause::message(
        "the store answered fewer records than it was given",
    ))
}

/// Resolves when the record's write has been answered.
struct Waiting(Answer);

impl Future for Waiting {
    type Output = Result<bool, WriteFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut reply = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match reply.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                reply.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
