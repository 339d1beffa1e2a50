//! The conflict journal: every time a sync overwrites or discards something a user changed,
//! an entry says what, both values, which side won and why. Entries are kept half a year.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::model::{LinkKey, Side};
use crate::crm::CrmEventId;
use crate::event::{CalendarEvent, EventField};
use crate::sync::ConflictPolicy;

/// What kind of disagreement it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictKind {
    /// Both sides changed the same field to different values since the last sync.
    SameField,
    /// One side deleted the event while the other changed it.
    EditVsDelete,
    /// A first-sync match whose two copies disagreed on a field.
    FirstSyncMatch,
    /// A CRM edit of a field that the meeting's organizer owns (the user only attends it).
    OrganizerOwned,
}

/// Why the winner won.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Reason {
    /// The tenant's fixed policy (`crm-wins` or `outlook-wins`).
    Policy { policy: ConflictPolicy },
    /// The `latest` policy: the later modification wins; a tie or a missing time goes to the
    /// CRM, the system of record.
    Latest {
        crm: Option<Timestamp>,
        outlook: Option<Timestamp>,
    },
    /// Under `latest`, an edit beats a deletion: nothing is lost, the event comes back.
    EditKept,
    /// The user does not organise the meeting, so its Outlook copy is authoritative.
    NotOrganizer,
    /// A cancelled occurrence cannot be re-created in its series, so the deletion stands.
    Occurrence,
    /// The user organises the meeting and has invited people: changing or deleting it in
    /// Outlook would mail every attendee, so Outlook's meeting stands.
    HasAttendees,
    /// Two copies matched on a first sync: Outlook's body (its formatting, an online-meeting
    /// block) is kept over the CRM's plain description, which no edit has made newer.
    OutlookBody,
}

impl Reason {
    /// The rule's stable name, for status displays.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Policy { .. } => "policy",
            Reason::Latest { .. } => "latest",
            Reason::EditKept => "edit_kept",
            Reason::NotOrganizer => "not_organizer",
            Reason::Occurrence => "occurrence",
            Reason::HasAttendees => "has_attendees",
            Reason::OutlookBody => "outlook_body",
        }
    }
}

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// Deterministic (link, kind, field, both values): recording it twice writes one entry.
    pub id: String,
    pub key: LinkKey,
    pub crm_id: Option<CrmEventId>,
    pub outlook_id: Option<String>,
    /// For people reading the journal.
    pub subject: String,
    pub kind: ConflictKind,
    /// `None` for a deletion.
    pub field: Option<EventField>,
    /// The CRM's value; `None` when the CRM deleted the event.
    pub crm_value: Option<Value>,
    /// Outlook's value; `None` when Outlook deleted the event.
    pub outlook_value: Option<Value>,
    pub winner: Side,
    pub reason: Reason,
}

impl Conflict {
    /// The value that was not kept: the losing side's, `None` when that side had deleted
    /// the event.
    pub fn value_not_kept(&self) -> Option<&Value> {
        match self.winner {
            Side::Crm => self.outlook_value.as_ref(),
            Side::Outlook => self.crm_value.as_ref(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        key: &LinkKey,
        crm_id: Option<&CrmEventId>,
        outlook_id: Option<&str>,
        subject: &str,
        kind: ConflictKind,
        field: Option<EventField>,
        crm_value: Option<Value>,
        outlook_value: Option<Value>,
        winner: Side,
        reason: Reason,
    ) -> Self {
        let id = entry_id(key, kind, field, &crm_value, &outlook_value);
        Self {
            id,
            key: key.clone(),
            crm_id: crm_id.cloned(),
            outlook_id: outlook_id.map(str::to_owned),
            subject: subject.to_owned(),
            kind,
            field,
            crm_value,
            outlook_value,
            winner,
            reason,
        }
    }

    /// The value that was overwritten or discarded.
    pub fn losing_value(&self) -> Option<&Value> {
        match self.winner {
            Side::Crm => self.outlook_value.as_ref(),
            Side::Outlook => self.crm_value.as_ref(),
        }
    }
}

fn entry_id(
    key: &LinkKey,
    kind: ConflictKind,
    field: Option<EventField>,
    crm: &Option<Value>,
    outlook: &Option<Value>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(key.as_str());
    hasher.update([0]);
    hasher.update(format!("{kind:?}\0{field:?}\0"));
    hasher.update(crm.as_ref().map(Value::to_string).unwrap_or_default());
    hasher.update([0]);
    hasher.update(outlook.as_ref().map(Value::to_string).unwrap_or_default());
    hex::encode(&hasher.finalize()[..16])
}

/// One field of an event as JSON, for the journal.
pub fn field_value(event: &CalendarEvent, field: EventField) -> Value {
    let value = match field {
        EventField::Subject => serde_json::to_value(&event.subject),
        EventField::Location => serde_json::to_value(&event.location),
        EventField::Description => serde_json::to_value(&event.description),
        EventField::Time => serde_json::to_value(&event.time),
        EventField::Status => serde_json::to_value(event.status),
        EventField::ShowAs => serde_json::to_value(event.show_as),
        EventField::Sensitivity => serde_json::to_value(event.sensitivity),
        EventField::Reminder => serde_json::to_value(event.reminder_minutes),
        EventField::ActivityType => serde_json::to_value(&event.activity_type),
        EventField::Categories => serde_json::to_value(&event.categories),
        EventField::Organizer => serde_json::to_value((&event.organizer, event.is_organizer)),
    };
    // These types always serialise; Null keeps the entry rather than failing the run.
    value.unwrap_or(Value::Null)
}
