//! What the engine reads and remembers: the link between the two copies of an event (with the
//! last-synced content, the base of the three-way merge) and each side's changes since the last
//! run.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

use super::pending::PendingUpdate;
use crate::crm::{CrmEventId, Gone};
use crate::event::{CalendarEvent, EventField};

/// One of the two calendars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Crm,
    Outlook,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Crm => Side::Outlook,
            Side::Outlook => Side::Crm,
        }
    }
}

/// A set of [`EventField`]s as a bit mask: cheap to copy and test in the per-event hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FieldSet(u16);

impl FieldSet {
    pub const EMPTY: FieldSet = FieldSet(0);

    pub fn of(fields: &[EventField]) -> Self {
        let mut set = Self::EMPTY;
        for field in fields {
            set.insert(*field);
        }
        set
    }

    pub fn all() -> Self {
        Self::of(&EventField::ALL)
    }

    fn bit(field: EventField) -> u16 {
        1 << (field as u16)
    }

    pub fn insert(&mut self, field: EventField) {
        self.0 |= Self::bit(field);
    }

    pub fn remove(&mut self, field: EventField) {
        self.0 &= !Self::bit(field);
    }

    pub fn contains(self, field: EventField) -> bool {
        self.0 & Self::bit(field) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn union(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 | other.0)
    }

    pub fn intersection(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & other.0)
    }

    pub fn without(self, other: FieldSet) -> FieldSet {
        FieldSet(self.0 & !other.0)
    }

    /// The fields in [`EventField::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = EventField> {
        EventField::ALL
            .into_iter()
            .filter(move |field| self.contains(*field))
    }

    pub fn to_vec(self) -> Vec<EventField> {
        self.iter().collect()
    }
}

/// The fields of `fields` whose values differ between `a` and `b`.
pub fn differing(a: &CalendarEvent, b: &CalendarEvent, fields: FieldSet) -> FieldSet {
    let mut out = FieldSet::EMPTY;
    for field in fields.iter() {
        if !a.same_field(b, field) {
            out.insert(field);
        }
    }
    out
}

/// The storage key of a link. It is taken from the side the event was first seen on and never
/// changes, so every record about one event pair (intent, final link, journal) shares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LinkKey(String);

impl LinkKey {
    pub fn for_crm(id: &CrmEventId) -> Self {
        Self(format!("crm:{id}"))
    }

    pub fn for_outlook(id: &str) -> Self {
        Self(format!("outlook:{id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The side the event was first seen on and its id there.
    pub fn origin(&self) -> Option<(Side, &str)> {
        if let Some(id) = self.0.strip_prefix("crm:") {
            Some((Side::Crm, id))
        } else {
            self.0
                .strip_prefix("outlook:")
                .map(|id| (Side::Outlook, id))
        }
    }
}

impl fmt::Display for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an Outlook occurrence (or exception) sits in its series. Writes go to the occurrence's
/// own id; the master is never written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Occurrence {
    pub series_master_id: String,
    /// The start the occurrence had in the series pattern (Graph `originalStart`, UTC); it
    /// stays the same when the occurrence is moved.
    pub original_start: Timestamp,
}

/// Which side the event existed on before calsync linked it. It decides who owns the Outlook
/// copy: only an Outlook event calsync made for a CRM record may be removed without the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A CRM record; calsync created the Outlook copy.
    Crm,
    /// An Outlook event; calsync created the CRM record.
    Outlook,
    /// Found on both sides on a first sync (or re-found by its stamp) and linked.
    Matched,
}

/// Where a link stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Both copies exist and `base` is their last-synced content.
    Linked,
    /// Stored before creating the CRM copy; `crm_id` is unknown until a run adopts the record
    /// it finds in the CRM feed (or creates it again if there is none).
    CreatingInCrm,
    /// Stored before creating the Outlook copy; `outlook_tx` is the create's transactionId.
    CreatingInOutlook,
    /// calsync stopped mirroring this Outlook event: its CRM record was reassigned to someone
    /// else, or it is a meeting the user only attends whose CRM copy was deleted. The ids are
    /// kept so the Outlook event is never imported again (which would undo the reassignment or
    /// the deletion in the CRM).
    Detached,
}

/// The stored record of one event pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub key: LinkKey,
    /// Incremented on every store; each store is conditional on the previous value (0 = no
    /// record), which is what makes a replayed plan a no-op.
    pub version: u64,
    pub state: LinkState,
    pub origin: Origin,
    pub crm_id: Option<CrmEventId>,
    pub outlook_id: Option<String>,
    /// The transactionId of the Outlook create calsync made (or is making) for this link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook_tx: Option<String>,
    /// How many Outlook creates were issued for this link. Part of the next transactionId, so
    /// re-creating an event the user deleted is not answered with the deleted one.
    #[serde(default)]
    pub outlook_creates: u32,
    /// The marker of the CRM create calsync made (or is making) for this link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_marker: Option<String>,
    /// How many CRM creates were issued for this link: part of the next marker.
    #[serde(default)]
    pub crm_creates: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurrence: Option<Occurrence>,
    /// The last-synced content: the common ancestor of the three-way merge.
    pub base: CalendarEvent,
    /// What each side actually holds where it stored the base differently (vtiger cuts a
    /// subject at 255 characters, keeps no 0-minute reminder, knows no "personal").
    #[serde(default, skip_serializing_if = "AsStored::is_empty")]
    pub as_stored: AsStored,
    /// Updates being sent when the link was stored, not yet recorded as landed: the next run
    /// settles them by what the sides show ([`PendingUpdate`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Box<PendingUpdate>>,
}

/// Each side's own form of a link's base, kept only where it differs. A side's edits are
/// measured against its own form, and a side that still holds its form of the merged value
/// is not written again: what a side stored after calsync's write never comes back as an edit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsStored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<Box<CalendarEvent>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook: Option<Box<CalendarEvent>>,
}

impl AsStored {
    pub fn is_empty(&self) -> bool {
        self.crm.is_none() && self.outlook.is_none()
    }

    /// What `side` is known to hold: its own form, or the base.
    pub fn on<'e>(&'e self, side: Side, base: &'e CalendarEvent) -> &'e CalendarEvent {
        let own = match side {
            Side::Crm => &self.crm,
            Side::Outlook => &self.outlook,
        };
        own.as_deref().unwrap_or(base)
    }

    /// Records what `side` holds now (`held`), kept only if it differs from `base` in a field
    /// that side carries.
    pub fn note(
        &mut self,
        side: Side,
        held: &CalendarEvent,
        base: &CalendarEvent,
        fields: FieldSet,
    ) {
        let own = (!differing(held, base, fields).is_empty()).then(|| Box::new(held.clone()));
        match side {
            Side::Crm => self.crm = own,
            Side::Outlook => self.outlook = own,
        }
    }
}

impl Link {
    /// Fills in the ids that the creates of the same step returned, making the link whole.
    pub fn fill_created(&mut self, crm_id: Option<CrmEventId>, outlook_id: Option<String>) {
        if self.crm_id.is_none() {
            if let Some(id) = crm_id {
                self.base.ids.crm = Some(id.as_str().to_owned());
                self.crm_id = Some(id);
            }
        }
        if self.outlook_id.is_none() {
            if let Some(id) = outlook_id {
                self.base.ids.outlook = Some(id.clone());
                self.outlook_id = Some(id);
            }
        }
    }

    /// Takes into the base the fields that only `written` carries, from the event a create or
    /// update on that side returned (Graph's default `showAs`, vtiger's default activity
    /// type). The other side never compares or writes those fields, so this cannot start a
    /// ping-pong; it only saves storing the link again when the echo comes back.
    pub fn absorb(
        &mut self,
        written: Side,
        returned: &CalendarEvent,
        crm_fields: FieldSet,
        outlook_fields: FieldSet,
    ) {
        let only = match written {
            Side::Crm => crm_fields.without(outlook_fields),
            Side::Outlook => outlook_fields.without(crm_fields),
        };
        for field in only.iter() {
            self.base.copy_field(returned, field);
        }
    }
}

/// An Outlook event as the Graph side delivers it: single events, exceptions, and occurrences
/// completed from their series master. Series masters themselves are never items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutlookItem {
    /// `ids.outlook` must be set; `modified.outlook` feeds the `latest` policy.
    pub event: CalendarEvent,
    pub occurrence: Option<Occurrence>,
    /// The transactionId the event was created with, if any (visible in delta pages).
    pub transaction_id: Option<String>,
    /// The CRM id calsync stamped on the event, when the reader fetched it.
    pub crm_stamp: Option<CrmEventId>,
}

impl OutlookItem {
    pub fn new(event: CalendarEvent) -> Self {
        Self {
            event,
            occurrence: None,
            transaction_id: None,
            crm_stamp: None,
        }
    }

    pub fn id(&self) -> Option<&str> {
        self.event.ids.outlook.as_deref()
    }
}

/// What changed in Outlook since the last committed cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutlookChanges {
    pub upserts: Vec<OutlookItem>,
    /// Confirmed deletions: tombstones checked to be real deletions, not events that left the
    /// window (docs/design.md §7). Cancelled occurrences are listed here by occurrence id.
    pub deleted: Vec<String>,
    /// Series masters that were deleted: every occurrence linked to them is gone.
    pub deleted_series: Vec<String>,
}

/// What changed in the CRM since the last committed cursor (the pages of the CRM feed,
/// gathered).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrmChanges {
    /// `ids.crm` must be set; `modified.crm` feeds the `latest` policy. A CRM that can stamp
    /// the Outlook id on its records sets `ids.outlook`, which makes adopting an interrupted
    /// create exact.
    pub upserts: Vec<CalendarEvent>,
    pub gone: Vec<Gone>,
    /// Which of `upserts` the integration user created through the API (vtiger: `source` =
    /// `WEBSERVICE`, `created_user_id`). Only calsync creates those, so they are the only
    /// candidates when an interrupted create is adopted, even if a user edited the record
    /// before the next run. `None`: the CRM cannot tell; adoption goes by content alone.
    pub created_by_sync: Option<Vec<CrmEventId>>,
}

impl CrmChanges {
    /// Adds one page of the CRM feed.
    pub fn extend(&mut self, upserts: Vec<CalendarEvent>, gone: Vec<Gone>) {
        self.upserts.extend(upserts);
        self.gone.extend(gone);
    }
}

/// The ids a full listing of one side did not return although a link knows them: candidate
/// deletions after a resync (Graph 410) or a CRM reconciliation. They may also have left the
/// window, so the runner confirms each (a GET answering 404, or vtiger `ACCESS_DENIED`)
/// before passing it as deleted.
pub fn absent_from_listing<'a>(
    snapshot: &[Link],
    side: Side,
    listed: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let listed: std::collections::HashSet<&str> = listed.into_iter().collect();
    snapshot
        .iter()
        .filter_map(|link| match side {
            Side::Crm => link.crm_id.as_ref().map(CrmEventId::as_str),
            Side::Outlook => link.outlook_id.as_deref(),
        })
        .filter(|id| !listed.contains(id))
        .map(str::to_owned)
        .collect()
}
