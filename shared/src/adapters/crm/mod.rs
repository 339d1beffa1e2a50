//! The CRM port: what the sync engine needs from a CRM, in terms of canonical events.
//!
//! The tenant's CRM credentials belong to one integration user (an admin); every call acts on
//! behalf of one CRM user (the owner of the calendar being synced), whose events are read and
//! written with that user as owner. `vtiger` is the one adapter today.

pub mod error;
pub mod vtiger;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use calsync_core::event::{CalendarEvent, EventField};
use calsync_core::time::TimeWindow;

pub use calsync_core::crm::{ChangeCursor, CrmEventId, CrmUser, CrmUserId, Gone, GoneReason};

pub use error::{ConfigProblem, CrmError, CrmErrorCode};

/// How the CRM speaks about time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmTimeModel {
    /// Date/time fields are wall-clock values in this IANA zone (the CRM server's), whoever
    /// reads or writes them; modification times too.
    pub server_zone: String,
    /// Whether the CRM has a real all-day flag. vtiger does not: all-day events are stored as
    /// whole days in the owner's zone with the legacy `notime` flag set.
    pub native_all_day: bool,
}

/// What to read from a user's feed.
#[derive(Debug, Clone)]
pub struct ChangesRequest<'a> {
    /// Whose events (the calendar owner, not the integration user).
    pub owner: &'a CrmUser,
    /// `None` starts over: a full listing of the window.
    pub cursor: Option<ChangeCursor>,
    pub window: TimeWindow,
    /// The CRM ids the caller maps for this user. Deletions and departures are reported only
    /// for these, and they are what a reconciliation checks for absence.
    pub known: &'a [CrmEventId],
    /// Report deletions and departures of any id the feed shows, not only `known` ones; the
    /// caller filters them. Lets a run read the feed before it reads its mappings, which a
    /// run with nothing to do then never needs to read. Reconciliation still checks `known`.
    pub report_any_gone: bool,
    /// Also list the window and check every known id that is missing from it (deletions by
    /// absence). Costs one listing plus one request per missing id: do it at a slow cadence,
    /// or whenever [`ChangeSet::sees_deletions`] was false and deletions matter.
    pub reconcile: bool,
}

/// One read of a user's feed.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// Created or changed events owned by the user (each at most once).
    pub upserts: Vec<CalendarEvent>,
    pub gone: Vec<Gone>,
    /// Where to continue next time.
    pub cursor: ChangeCursor,
    /// More changes are waiting: call again with the new cursor.
    pub more: bool,
    /// `upserts` is a complete listing of the window (first load or reconciliation).
    pub full_listing: bool,
    /// Whether this read could see deletions (the CRM's change feed worked, or a
    /// reconciliation ran). When false, deletions can only be found by reconciling.
    pub sees_deletions: bool,
    /// Records of the owner that could not be mapped (id, reason); skipped, not lost silently.
    pub unreadable: Vec<(CrmEventId, String)>,
}

/// A partial update: the desired event plus the fields to write. Invitees are never named:
/// stock vtiger rebuilds its invitee list from every save's request (so a calsync update
/// clears it), and the calsync CRM module keeps the list only for a request that does not
/// name it.
#[derive(Debug, Clone)]
pub struct EventPatch {
    /// The desired state; only `fields` are written (plus what the CRM needs on every write,
    /// e.g. the reminder for vtiger).
    pub event: CalendarEvent,
    pub fields: Vec<EventField>,
}

/// A new event for an owner.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: CalendarEvent,
    /// What the record carries so it can be found again ([`CrmPort::find_created`]).
    pub marker: Option<String>,
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Already deleted (or never existed): the goal is reached all the same.
    AlreadyGone,
}

/// One field of the CRM's event schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaField {
    pub name: String,
    pub label: String,
    pub mandatory: bool,
    /// The CRM's type name (vtiger: string, date, picklist, reference, ...).
    pub type_name: String,
    /// Allowed values, for picklists.
    pub picklist: Vec<String>,
    pub default: Option<String>,
}

/// The CRM's description of its event records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSchema {
    /// The record id prefix (vtiger `idPrefix`, e.g. `18`).
    pub id_prefix: String,
    pub fields: Vec<SchemaField>,
}

impl EventSchema {
    pub fn field(&self, name: &str) -> Option<&SchemaField> {
        self.fields.iter().find(|field| field.name == name)
    }

    pub fn mandatory_fields(&self) -> impl Iterator<Item = &str> {
        self.fields
            .iter()
            .filter(|field| field.mandatory)
            .map(|field| field.name.as_str())
    }
}

/// The CRM as the sync engine sees it.
#[async_trait]
pub trait CrmPort: Send + Sync {
    /// The fields this CRM carries; the merge must ignore the others when comparing.
    fn carried_fields(&self) -> &'static [EventField];

    /// How the CRM stores what it is given (cut texts, merged values), so that the sync
    /// neither rewrites what the CRM already holds nor takes its stored form for an edit.
    fn storage(&self) -> calsync_core::sync::CrmStorage {
        calsync_core::sync::CrmStorage::LOSSLESS
    }

    /// How the CRM speaks about time.
    fn time_model(&self) -> CrmTimeModel;

    /// The same CRM, taking up to `writers` requests at once on sessions of their own (a
    /// run's parallel writes). `None`: it serves one request at a time.
    fn with_writers(&self, _writers: usize) -> Option<Box<dyn CrmPort>> {
        None
    }

    /// Resolve a CRM login name to the user record.
    async fn resolve_user(&self, user_name: &str) -> Result<CrmUser, CrmError>;

    /// The owner's changes since a cursor (or a full listing of the window without one).
    async fn changes(&self, request: ChangesRequest<'_>) -> Result<ChangeSet, CrmError>;

    /// One event; `None` when it is deleted or does not exist.
    async fn get(
        &self,
        owner: &CrmUser,
        id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, CrmError>;

    /// Create an event owned by `owner`; returns it as the CRM stored it.
    async fn create(&self, owner: &CrmUser, new: &NewEvent) -> Result<CalendarEvent, CrmError>;

    /// The owner's record a create with `marker` made, if any (how a create whose answer was
    /// lost is resolved).
    async fn find_created(
        &self,
        owner: &CrmUser,
        marker: &str,
    ) -> Result<Option<CalendarEvent>, CrmError>;

    /// Write some fields; returns the event as the CRM stored it, `None` when it is gone.
    /// When `patch.event.modified.crm` is set, a record modified after it is not written
    /// ([`CrmError::ChangedMeanwhile`]): someone edited it since the sync read it.
    async fn update(
        &self,
        owner: &CrmUser,
        id: &CrmEventId,
        patch: &EventPatch,
    ) -> Result<Option<CalendarEvent>, CrmError>;

    async fn delete(&self, id: &CrmEventId) -> Result<DeleteOutcome, CrmError>;

    async fn describe(&self) -> Result<EventSchema, CrmError>;
}
