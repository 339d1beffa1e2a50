//! A stand-in for Microsoft Graph's calendar surface, faithful to Graph as docs/design.md §7
//! describes it: mailboxes of events (single, series with occurrences, exceptions and cancelled
//! dates, all-day, any time zone), calendarView delta with real paging, tokens and tombstones,
//! event CRUD with change keys, immutable ids and `transactionId` dedupe, series instances,
//! `$batch`, subscriptions that really call their notification URLs, and fault injection.
//!
//! Tokens are checked with the identity part: a delegated token reaches `/me` (its own
//! mailbox); an app-only token with calendar roles reaches `/users/{id}`. Tests steer it
//! through [`Graph`]'s control methods.

mod batch;
mod delta;
mod errors;
mod events;
mod faults;
mod http;
mod mailbox;
mod model;
mod profile;
mod recurrence;
mod subscriptions;
mod time;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::Value;

use crate::identity::Identity;
use faults::ActiveFault;
pub use faults::{FaultRate, FaultRoute, FaultRule, GraphFault};
pub(crate) use http::router;
pub use mailbox::{DeltaExpiry, DeltaQuirks};
use mailbox::{MailboxState, Target};
use model::{RenderPrefs, View};
use subscriptions::SubscriptionState;
pub use subscriptions::{Delivery, DeliveryKind, LifecycleEvent, SubscriptionInfo};

/// Request log entries kept; later requests are not logged (a benchmark can send many).
const MAX_LOGGED_REQUESTS: usize = 200_000;

/// Errors of the control methods.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphControlError {
    #[error("unknown mailbox {0}: add the user to the identity part or call add_mailbox")]
    UnknownMailbox(String),
    #[error("unknown event {0}")]
    UnknownEvent(String),
    #[error("unknown subscription {0}")]
    UnknownSubscription(String),
    #[error("refused like Graph would: {0}")]
    Rejected(String),
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path after `/v1.0`, as sent (still percent-encoded).
    pub path: String,
    pub query: String,
    /// The mailbox owner's object id (lower case), for mailbox routes.
    pub mailbox: Option<String>,
    /// 0 while the request is still being answered.
    pub status: u16,
    pub client_request_id: Option<String>,
    pub prefer: Option<String>,
    /// The client's address: a new port means a new connection.
    pub remote: Option<SocketAddr>,
    /// Since the sandbox started.
    pub started: Duration,
    pub finished: Duration,
    pub in_batch: bool,
    /// The injected fault, if one was played.
    pub fault: Option<String>,
}

/// What a mailbox has been asked to do, as counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxCounters {
    pub creates: u64,
    /// Creates answered with an existing event because of a repeated `transactionId`.
    pub transaction_dedupes: u64,
    /// Attendees invited by writes (calsync must keep this at zero).
    pub invitations_sent: u64,
    /// Attendees sent cancellations by deletes of meetings the user organises.
    pub cancellations_sent: u64,
    /// Attendees sent updates by patches of meetings the user organises.
    pub updates_sent: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    now: usize,
    peak: usize,
}

pub(crate) struct GraphState {
    mailboxes: HashMap<String, MailboxState>,
    subscriptions: BTreeMap<String, SubscriptionState>,
    faults: Vec<ActiveFault>,
    requests: Vec<RequestRecord>,
    deliveries: Vec<Delivery>,
    in_flight: HashMap<String, InFlight>,
    concurrency_limit: Option<usize>,
    /// Connections that answered 503: they keep failing, so clients must open new ones.
    poisoned: HashSet<SocketAddr>,
    default_page_size: usize,
}

/// Handle on the Graph stand-in: cheap to clone, shared with the HTTP handlers.
#[derive(Clone)]
pub struct Graph {
    shared: Arc<Shared>,
}

struct Shared {
    base_url: String,
    identity: Identity,
    state: Mutex<GraphState>,
    /// For validation requests and notifications.
    http: reqwest::Client,
    epoch: Instant,
}

fn key(oid: &str) -> String {
    oid.trim().to_ascii_lowercase()
}

impl Graph {
    pub(crate) fn new(base_url: String, identity: Identity) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Graph {
            shared: Arc::new(Shared {
                base_url,
                identity,
                state: Mutex::new(GraphState {
                    mailboxes: HashMap::new(),
                    subscriptions: BTreeMap::new(),
                    faults: Vec::new(),
                    requests: Vec::new(),
                    deliveries: Vec::new(),
                    in_flight: HashMap::new(),
                    // Outlook runs at most 4 requests at once per mailbox.
                    concurrency_limit: Some(4),
                    poisoned: HashSet::new(),
                    // Outlook lists default to 10 items a page.
                    default_page_size: 10,
                }),
                http,
                epoch: Instant::now(),
            }),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    pub(crate) fn identity(&self) -> &Identity {
        &self.shared.identity
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.shared.http
    }

    pub(crate) fn since_start(&self) -> Duration {
        self.shared.epoch.elapsed()
    }

    fn lock(&self) -> MutexGuard<'_, GraphState> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The mailbox of `oid`, created on first use for users the identity part knows.
    fn mailbox_mut<'a>(
        &self,
        state: &'a mut GraphState,
        oid: &str,
    ) -> Result<&'a mut MailboxState, GraphControlError> {
        let k = key(oid);
        if !state.mailboxes.contains_key(&k) {
            let profile = self
                .identity()
                .user_profile(oid)
                .ok_or_else(|| GraphControlError::UnknownMailbox(oid.to_owned()))?;
            state.mailboxes.insert(
                k.clone(),
                MailboxState::new(&k, &profile.display_name, &profile.preferred_username),
            );
        }
        state
            .mailboxes
            .get_mut(&k)
            .ok_or_else(|| GraphControlError::UnknownMailbox(oid.to_owned()))
    }

    /// Adds a mailbox for a user the identity part does not know (app-only scenarios).
    pub fn add_mailbox(&self, oid: &str, display_name: &str, address: &str) {
        self.lock()
            .mailboxes
            .entry(key(oid))
            .or_insert_with(|| MailboxState::new(&key(oid), display_name, address));
    }

    /// Creates an event as the user would in Outlook, from a Graph event body (`subject`,
    /// `start`, `end`, `isAllDay`, `recurrence`, `attendees`, `organizer`…). Returns its
    /// immutable id. Subscriptions are notified.
    pub fn insert_event(&self, oid: &str, body: Value) -> Result<String, GraphControlError> {
        let id = {
            let mut state = self.lock();
            let mailbox = self.mailbox_mut(&mut state, oid)?;
            mailbox
                .create(&body, Timestamp::now())
                .map_err(|e| GraphControlError::Rejected(e.message))?
                .0
        };
        self.flush_notifications();
        Ok(id)
    }

    /// Creates many events at once without notifying anyone (seeding large calendars).
    pub fn seed_events(
        &self,
        oid: &str,
        bodies: &[Value],
    ) -> Result<Vec<String>, GraphControlError> {
        let mut state = self.lock();
        let mailbox = self.mailbox_mut(&mut state, oid)?;
        let now = Timestamp::now();
        let ids = bodies
            .iter()
            .map(|body| {
                mailbox
                    .create(body, now)
                    .map(|(id, _)| id)
                    .map_err(|e| GraphControlError::Rejected(e.message))
            })
            .collect::<Result<Vec<_>, _>>()?;
        mailbox.drain_notes();
        Ok(ids)
    }

    /// Edits an event (or one occurrence, by its id) as the user would: a Graph PATCH body.
    pub fn update_event(&self, oid: &str, id: &str, patch: Value) -> Result<(), GraphControlError> {
        {
            let mut state = self.lock();
            let mailbox = self.mailbox_mut(&mut state, oid)?;
            let target = mailbox
                .resolve(id)
                .ok_or_else(|| GraphControlError::UnknownEvent(id.to_owned()))?;
            mailbox
                .update(&target, &patch, None, Timestamp::now())
                .map_err(|e| GraphControlError::Rejected(e.message))?;
        }
        self.flush_notifications();
        Ok(())
    }

    /// Deletes an event, or cancels one occurrence when given an occurrence id.
    pub fn delete_event(&self, oid: &str, id: &str) -> Result<(), GraphControlError> {
        {
            let mut state = self.lock();
            let mailbox = self.mailbox_mut(&mut state, oid)?;
            let target = mailbox
                .resolve(id)
                .ok_or_else(|| GraphControlError::UnknownEvent(id.to_owned()))?;
            mailbox
                .delete(&target, None)
                .map_err(|e| GraphControlError::Rejected(e.message))?;
        }
        self.flush_notifications();
        Ok(())
    }

    /// An event (or occurrence) as `GET` with immutable ids and UTC times would show it.
    pub fn event(&self, oid: &str, id: &str) -> Option<Value> {
        let state = self.lock();
        let mailbox = state.mailboxes.get(&key(oid))?;
        let prefs = RenderPrefs {
            immutable_ids: true,
            ..RenderPrefs::default()
        };
        let (event_id, date) = match mailbox.resolve(id)? {
            Target::Event(id) => (id, None),
            Target::Instance(id, date) => (id, Some(date)),
        };
        let event = mailbox.events.get(&event_id)?;
        Some(View { event, date }.full(&prefs))
    }

    /// Every mailbox: (oid, display name, address), sorted by address.
    pub fn mailboxes(&self) -> Vec<(String, String, String)> {
        let state = self.lock();
        let mut all: Vec<_> = state
            .mailboxes
            .values()
            .map(|m| (m.oid.clone(), m.display_name.clone(), m.address.clone()))
            .collect();
        all.sort_by(|a, b| a.2.cmp(&b.2));
        all
    }

    /// Immutable ids of the mailbox's single events and series masters.
    pub fn event_ids(&self, oid: &str) -> Vec<String> {
        self.lock()
            .mailboxes
            .get(&key(oid))
            .map(|m| m.events.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Ids of the occurrences and exceptions of a series in `[from, to)`.
    pub fn occurrence_ids(
        &self,
        oid: &str,
        master_id: &str,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<String> {
        self.lock()
            .mailboxes
            .get(&key(oid))
            .and_then(|m| m.events.get(master_id))
            .map(|e| e.instances(from, to).into_iter().map(|i| i.id).collect())
            .unwrap_or_default()
    }

    pub fn counters(&self, oid: &str) -> MailboxCounters {
        self.lock()
            .mailboxes
            .get(&key(oid))
            .map(|m| MailboxCounters {
                creates: m.creates,
                transaction_dedupes: m.transaction_dedupes,
                invitations_sent: m.invitations_sent,
                cancellations_sent: m.cancellations_sent,
                updates_sent: m.updates_sent,
            })
            .unwrap_or_default()
    }

    /// Forgets every delta and skip token of the mailbox; they answer as `how` says from now on.
    pub fn expire_delta_tokens(&self, oid: &str, how: DeltaExpiry) {
        if let Some(mailbox) = self.lock().mailboxes.get_mut(&key(oid)) {
            mailbox.sync_states.clear();
            mailbox.rounds.clear();
            mailbox.lost_token_answer = how;
        }
    }

    pub fn set_delta_quirks(
        &self,
        oid: &str,
        quirks: DeltaQuirks,
    ) -> Result<(), GraphControlError> {
        let mut state = self.lock();
        self.mailbox_mut(&mut state, oid)?.quirks = quirks;
        Ok(())
    }

    /// Page size of delta and lists when the client sends no `odata.maxpagesize`.
    pub fn set_default_page_size(&self, size: usize) {
        self.lock().default_page_size = size.max(1);
    }

    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.push(ActiveFault {
            rule,
            matched: 0,
            fired: 0,
        });
    }

    pub fn clear_faults(&self) {
        let mut state = self.lock();
        state.faults.clear();
        state.poisoned.clear();
    }

    /// At most this many requests at once per mailbox; more get 429 (None: no limit).
    pub fn set_mailbox_concurrency_limit(&self, limit: Option<usize>) {
        self.lock().concurrency_limit = limit;
    }

    /// The most requests ever in flight at once for the mailbox (refused ones included).
    pub fn peak_in_flight(&self, oid: &str) -> usize {
        self.lock()
            .in_flight
            .get(&key(oid))
            .map(|f| f.peak)
            .unwrap_or(0)
    }

    pub fn reset_peak_in_flight(&self) {
        for flight in self.lock().in_flight.values_mut() {
            flight.peak = flight.now;
        }
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Validation requests, change and lifecycle notifications sent so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        self.lock()
            .subscriptions
            .values()
            .map(SubscriptionState::info)
            .collect()
    }

    /// Makes a subscription expire now: no more notifications.
    pub fn expire_subscription(&self, id: &str) -> Result<(), GraphControlError> {
        let mut state = self.lock();
        let sub = state
            .subscriptions
            .get_mut(id)
            .ok_or_else(|| GraphControlError::UnknownSubscription(id.to_owned()))?;
        sub.expiration = Timestamp::now();
        Ok(())
    }

    /// Sends a lifecycle event to the subscription's lifecycle URL and waits for the answer.
    /// `SubscriptionRemoved` also removes the subscription.
    pub async fn send_lifecycle(
        &self,
        subscription_id: &str,
        event: LifecycleEvent,
    ) -> Result<Delivery, GraphControlError> {
        subscriptions::send_lifecycle(self, subscription_id, event).await
    }

    /// Waits until `count` change notifications were delivered (or `timeout` passes).
    pub async fn wait_for_notifications(&self, count: usize, timeout: Duration) -> Vec<Delivery> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered: Vec<Delivery> = self
                .deliveries()
                .into_iter()
                .filter(|d| d.kind == DeliveryKind::Change)
                .collect();
            if delivered.len() >= count || Instant::now() >= deadline {
                return delivered;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends the change notifications that edits have queued.
    pub(crate) fn flush_notifications(&self) {
        let pending = {
            let mut state = self.lock();
            subscriptions::collect_notifications(&mut state)
        };
        subscriptions::spawn_deliveries(self, pending);
    }

    fn record_start(&self, record: RequestRecord) -> Option<usize> {
        let mut state = self.lock();
        if state.requests.len() >= MAX_LOGGED_REQUESTS {
            return None;
        }
        state.requests.push(record);
        Some(state.requests.len() - 1)
    }

    fn record_finish(&self, at: Option<usize>, status: u16, fault: Option<String>) {
        let finished = self.since_start();
        self.record_update(at, status, fault, finished);
    }

    fn record_update(
        &self,
        at: Option<usize>,
        status: u16,
        fault: Option<String>,
        finished: Duration,
    ) {
        let Some(at) = at else {
            return;
        };
        let mut state = self.lock();
        if let Some(record) = state.requests.get_mut(at) {
            record.status = status;
            record.finished = finished;
            if fault.is_some() {
                record.fault = fault;
            }
        }
    }
}
