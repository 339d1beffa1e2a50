//! The live [`SyncTarget`]: Graph for Outlook, the CRM port for the CRM, the item store for
//! links and the journal. Each method is one attempt; errors are sorted into what the
//! executor may retry, what ends a step and what stops the run.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::links::LinkStore;
use crate::adapters::crm::{CrmError, CrmEventId, CrmPort, CrmUser, EventPatch, NewEvent};
use crate::adapters::graph::mapping::draft_from_event;
use crate::adapters::graph::{to_calendar_event, GraphError, GraphEvent, MailboxClient};
use crate::adapters::store::StoreError;
use calsync_core::cause::Cause;
use calsync_core::event::{CalendarEvent, EventField};
use calsync_core::sync::{Conflict, Link, LinkKey, Occurrence, Record, SyncTarget, WriteFailure};

/// Steps a run carries out at once: enough that a wave's bookkeeping (its intents, then its
/// links, each two `BatchWriteItem` requests of 25) is shared by many events, and that four
/// writers are rarely idle at the wave's end, while Graph (four requests in flight per
/// mailbox) and the CRM (a session per writer) keep their own limits.
pub const PARALLEL_STEPS: usize = 50;

pub struct LiveTarget<'a> {
    pub links: LinkStore<'a>,
    /// The stored version of every link, from the snapshot the plan was made from, kept up
    /// to date by this run's own writes (runs of one user never overlap: the run lease).
    pub versions: Mutex<HashMap<LinkKey, u64>>,
    pub mailbox: &'a MailboxClient,
    pub crm: &'a dyn CrmPort,
    pub owner: &'a CrmUser,
    pub now: i64,
    /// Wait between attempts (zero in tests that count requests, not time).
    pub backoff: Duration,
    /// No step is started after this (the invocation's end, less a margin).
    pub deadline: Option<std::time::Instant>,
    /// The run's lease: once lost, like running out of time, no further step starts; while
    /// it surely holds, the bookkeeping is written without conditions.
    pub lease: Option<std::sync::Arc<LeaseWatch>>,
}

/// What a run knows of its lease on the user: whether it was lost, and until when it surely
/// holds (the time the last successful claim or renewal set, as sent).
#[derive(Debug)]
pub struct LeaseWatch {
    lost: AtomicBool,
    until: AtomicI64,
}

/// How long before its end a lease no longer counts as held for unconditional writes: the
/// clocks of two function instances may differ, and a write (its retries included) takes a
/// while to land. Renewed every 40 s for 120 s, a live run's lease always has more than this.
const LEASE_MARGIN_SECS: i64 = 60;

impl LeaseWatch {
    pub fn new(until: i64) -> Self {
        Self {
            lost: AtomicBool::new(false),
            until: AtomicI64::new(until),
        }
    }

    pub fn kept_until(&self, until: i64) {
        self.until.fetch_max(until, Ordering::SeqCst);
    }

    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Whether no other run can hold the user before a write sent now lands.
    pub fn surely_held(&self, now: i64) -> bool {
        !self.is_lost() && now + LEASE_MARGIN_SECS < self.until.load(Ordering::SeqCst)
    }
}

impl<'a> LiveTarget<'a> {
    pub fn new(
        links: LinkStore<'a>,
        snapshot: &[Link],
        mailbox: &'a MailboxClient,
        crm: &'a dyn CrmPort,
        owner: &'a CrmUser,
        now: i64,
    ) -> Self {
        Self {
            links,
            versions: Mutex::new(
                snapshot
                    .iter()
                    .map(|link| (link.key.clone(), link.version))
                    .collect(),
            ),
            mailbox,
            crm,
            owner,
            now,
            backoff: Duration::from_millis(300),
            deadline: None,
            lease: None,
        }
    }

    fn set_version(&self, key: &LinkKey, version: Option<u64>) {
        if let Ok(mut versions) = self.versions.lock() {
            match version {
                Some(v) => versions.insert(key.clone(), v),
                None => versions.remove(key),
            };
        }
    }
}

fn from_store(e: StoreError) -> WriteFailure {
    match e {
        StoreError::Invalid(_) | StoreError::ReservedAttribute { .. } | StoreError::Encode(_) => {
            WriteFailure::Rejected(Cause::new(e))
        }
        other => WriteFailure::Transient(Cause::new(other)),
    }
}

fn from_graph(e: GraphError) -> WriteFailure {
    match e {
        GraphError::Unauthorized { .. } => WriteFailure::Fatal(Cause::new(e)),
        GraphError::Throttled { .. } => WriteFailure::Transient(Cause::new(e)),
        GraphError::Conflict { .. } => WriteFailure::Stale(Cause::new(e)),
        // Graph retried these itself; what is left may or may not have happened.
        GraphError::Unavailable { .. } => WriteFailure::Ambiguous(Cause::new(e)),
        _ => WriteFailure::Rejected(Cause::new(e)),
    }
}

fn from_crm(e: CrmError) -> WriteFailure {
    match &e {
        CrmError::Login { .. } | CrmError::Config(_) => WriteFailure::Fatal(Cause::new(e)),
        CrmError::ChangedMeanwhile { .. } => WriteFailure::Stale(Cause::new(e)),
        // The request went out; whether it was carried out is unknown.
        CrmError::Timeout { .. } | CrmError::AnswerLost { .. } | CrmError::Malformed { .. } => {
            WriteFailure::Ambiguous(Cause::new(e))
        }
        CrmError::Http { status, .. } if *status >= 500 => WriteFailure::Ambiguous(Cause::new(e)),
        _ if e.is_transient() => WriteFailure::Transient(Cause::new(e)),
        _ => WriteFailure::Rejected(Cause::new(e)),
    }
}

/// The event as Outlook stored it; if the answer cannot be mapped, what was asked for with
/// the new id (the next round's echo corrects any difference).
fn returned(asked: &CalendarEvent, stored: &GraphEvent) -> CalendarEvent {
    to_calendar_event(stored).unwrap_or_else(|_| {
        let mut event = asked.clone();
        event.ids.outlook = Some(stored.id.clone());
        event
    })
}

impl LiveTarget<'_> {
    /// The zone all-day events are written in: the user's own, as the CRM knows it.
    fn all_day_zone(&self) -> &str {
        self.owner
            .time_zone
            .as_deref()
            .filter(|zone| calsync_core::time::resolve_zone(zone).is_some())
            .unwrap_or("UTC")
    }
}

#[async_trait]
impl SyncTarget for LiveTarget<'_> {
    async fn stored_version(&self, key: &LinkKey) -> Result<Option<u64>, WriteFailure> {
        Ok(self
            .versions
            .lock()
            .map_err(|_| {
                WriteFailure::Fatal(Cause::message("the link versions' lock is poisoned"))
            })?
            .get(key)
            .copied())
    }

    async fn put_link(&self, link: &Link) -> Result<bool, WriteFailure> {
        let stored = self.links.put_link(link).await.map_err(from_store)?;
        if stored {
            self.set_version(&link.key, Some(link.version));
        }
        Ok(stored)
    }

    async fn store_all(&self, records: &[Record]) -> Vec<Result<bool, WriteFailure>> {
        let fenced = self
            .lease
            .as_ref()
            .is_some_and(|lease| lease.surely_held(crate::adapters::store::now_epoch()));
        let answers = self.links.store_all(records, self.now, fenced).await;
        records
            .iter()
            .zip(answers)
            .map(|(record, answer)| {
                let stored = answer.map_err(from_store)?;
                match record {
                    Record::Link(link) if stored => self.set_version(&link.key, Some(link.version)),
                    Record::Unlink { key, .. } => self.set_version(key, None),
                    _ => {}
                }
                Ok(stored)
            })
            .collect()
    }

    fn parallel_steps(&self) -> usize {
        PARALLEL_STEPS
    }

    async fn delete_link(&self, key: &LinkKey, expect: Option<u64>) -> Result<(), WriteFailure> {
        self.links
            .delete_link(key, expect)
            .await
            .map_err(from_store)?;
        self.set_version(key, None);
        Ok(())
    }

    async fn record_conflict(&self, conflict: &Conflict) -> Result<(), WriteFailure> {
        self.links
            .record(conflict, self.now)
            .await
            .map_err(from_store)
    }

    async fn create_in_crm(
        &self,
        event: &CalendarEvent,
        marker: &str,
    ) -> Result<CalendarEvent, WriteFailure> {
        let new = NewEvent {
            event: event.clone(),
            marker: Some(marker.to_owned()),
        };
        self.crm.create(self.owner, &new).await.map_err(from_crm)
    }

    async fn find_crm_created(&self, marker: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.crm
            .find_created(self.owner, marker)
            .await
            .map_err(from_crm)
    }

    async fn find_outlook_created(
        &self,
        crm_id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        let found = self
            .mailbox
            .find_by_crm_id(crm_id.as_str())
            .await
            .map_err(from_graph)?;
        Ok(found
            .first()
            .and_then(|event| to_calendar_event(event).ok()))
    }

    async fn create_in_outlook(
        &self,
        crm_id: &CrmEventId,
        transaction_id: &str,
        event: &CalendarEvent,
    ) -> Result<CalendarEvent, WriteFailure> {
        let draft = draft_from_event(event, &EventField::ALL, self.all_day_zone());
        let stored = self
            .mailbox
            .create_event(&draft, crm_id.as_str(), transaction_id)
            .await
            .map_err(from_graph)?;
        Ok(returned(event, &stored))
    }

    async fn update_crm(
        &self,
        crm_id: &CrmEventId,
        fields: &[EventField],
        event: &CalendarEvent,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        let patch = EventPatch {
            event: event.clone(),
            fields: fields.to_vec(),
        };
        self.crm
            .update(self.owner, crm_id, &patch)
            .await
            .map_err(from_crm)
    }

    async fn update_outlook(
        &self,
        outlook_id: &str,
        fields: &[EventField],
        event: &CalendarEvent,
        _occurrence: Option<&Occurrence>,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        // An occurrence is patched by its own id, which turns it into an exception.
        let draft = draft_from_event(event, fields, self.all_day_zone());
        let if_match = event.ids.outlook_change_key.as_deref();
        match self
            .mailbox
            .update_event(outlook_id, &draft, if_match)
            .await
        {
            Ok(stored) => Ok(Some(returned(event, &stored))),
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(from_graph(e)),
        }
    }

    async fn read_crm(&self, crm_id: &CrmEventId) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.crm.get(self.owner, crm_id).await.map_err(from_crm)
    }

    async fn read_outlook(&self, outlook_id: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        let found = self
            .mailbox
            .get_event(outlook_id)
            .await
            .map_err(from_graph)?;
        Ok(found.and_then(|event| to_calendar_event(&event).ok()))
    }

    async fn delete_in_crm(&self, crm_id: &CrmEventId) -> Result<(), WriteFailure> {
        self.crm.delete(crm_id).await.map(|_| ()).map_err(from_crm)
    }

    async fn delete_in_outlook(
        &self,
        outlook_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), WriteFailure> {
        self.mailbox
            .delete_event(outlook_id, if_match)
            .await
            .map(|_| ())
            .map_err(from_graph)
    }

    fn out_of_time(&self) -> bool {
        self.deadline
            .is_some_and(|deadline| std::time::Instant::now() >= deadline)
            || self.lease.as_ref().is_some_and(|lease| lease.is_lost())
    }

    async fn pause(&self, attempt: u32) {
        if !self.backoff.is_zero() {
            tokio::time::sleep(self.backoff * attempt).await;
        }
    }
}
