//! The canonical calendar event: the one shape both sides are mapped to and from.
//!
//! It is deliberately neutral (no CRM or Graph vocabulary), serialisable (it is stored as the
//! last-synced snapshot) and comparable field by field, which is what the three-way merge needs:
//! [`CalendarEvent::differing_fields`] says which content fields differ and
//! [`CalendarEvent::copy_field`] moves one field from another version.

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// When the event happens: instants in UTC, or whole days.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventTime {
    /// `end` is never before `start`.
    Timed { start: Timestamp, end: Timestamp },
    /// Whole days in the calendar owner's zone; `end` is exclusive (a one-day event on the 1st
    /// has `start` = the 1st and `end` = the 2nd), as in iCalendar and Graph.
    AllDay { start: Date, end: Date },
}

impl EventTime {
    pub fn is_all_day(&self) -> bool {
        matches!(self, EventTime::AllDay { .. })
    }

    /// Whether the event overlaps `window`, as Graph's calendar view decides it: it starts
    /// before the window ends and ends after it starts (an event without duration counts at
    /// its start). Whole days are taken as UTC days, the zone calsync asks Graph to use.
    pub fn overlaps(&self, window: &crate::time::TimeWindow) -> bool {
        let (start, end) = match self {
            EventTime::Timed { start, end } => (*start, *end),
            EventTime::AllDay { start, end } => {
                let utc = |date: &Date| {
                    jiff::tz::TimeZone::UTC
                        .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                        .unwrap_or(Timestamp::MIN)
                };
                (utc(start), utc(end))
            }
        };
        start < window.end && (end > window.start || (end == start && start >= window.start))
    }
}

/// Whether the event is still going to happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    #[default]
    Scheduled,
    /// It took place (CRMs track this; calendars usually do not).
    Held,
    Cancelled,
}

/// How the time shows in a free/busy view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShowAs {
    Free,
    Tentative,
    Busy,
    OutOfOffice,
    WorkingElsewhere,
}

/// Who may see the details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    #[default]
    Normal,
    Personal,
    Private,
    Confidential,
}

impl Sensitivity {
    /// Anything but `Normal` hides the details from others.
    pub fn is_restricted(self) -> bool {
        self != Sensitivity::Normal
    }
}

/// The person who organises a meeting, as far as a side tells.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct Organizer {
    pub name: Option<String>,
    pub email: Option<String>,
}

/// The event's id on each side it exists on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct SideIds {
    /// The CRM record id (vtiger: `18x1234`).
    pub crm: Option<String>,
    /// The Outlook event id (immutable id).
    pub outlook: Option<String>,
    /// The iCalendar UID, when a side exposes one.
    pub ical_uid: Option<String>,
    /// The marker calsync's create carried, on a CRM record calsync created
    /// (`calsync_core::sync::crm_create_marker`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_marker: Option<String>,
    /// The Outlook version (Graph `changeKey`) this copy was read at: a write carries it as
    /// `If-Match`, so it never lands on a newer version unseen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook_change_key: Option<String>,
}

/// When each side last changed the event, as that side reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct SideTimes {
    pub crm: Option<Timestamp>,
    pub outlook: Option<Timestamp>,
}

/// One calendar event. Content fields are compared by the merge; `ids` and `modified` are
/// bookkeeping and never count as a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarEvent {
    pub ids: SideIds,
    pub modified: SideTimes,
    pub subject: String,
    pub location: String,
    /// Plain text, `\n` line ends.
    pub description: String,
    pub time: EventTime,
    pub status: EventStatus,
    /// `None` when the side that produced the event has no such notion.
    pub show_as: Option<ShowAs>,
    pub sensitivity: Sensitivity,
    /// Minutes before the start; `None` = no reminder.
    pub reminder_minutes: Option<u32>,
    /// The CRM's activity type (vtiger: Call, Meeting, ...).
    pub activity_type: Option<String>,
    pub categories: Vec<String>,
    pub organizer: Option<Organizer>,
    /// Whether the calendar's owner organises it; `None` when unknown.
    pub is_organizer: Option<bool>,
    /// Whether people are invited (Outlook): a change the organizer's calendar announces, or
    /// a deletion, mails every one of them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_attendees: bool,
}

/// The content fields of [`CalendarEvent`], the unit of the three-way merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventField {
    Subject,
    Location,
    Description,
    /// Start, end and all-day-ness move together: splitting them would produce nonsense.
    Time,
    Status,
    ShowAs,
    Sensitivity,
    Reminder,
    ActivityType,
    Categories,
    Organizer,
}

impl EventField {
    pub const ALL: [EventField; 11] = [
        EventField::Subject,
        EventField::Location,
        EventField::Description,
        EventField::Time,
        EventField::Status,
        EventField::ShowAs,
        EventField::Sensitivity,
        EventField::Reminder,
        EventField::ActivityType,
        EventField::Categories,
        EventField::Organizer,
    ];
}

impl CalendarEvent {
    /// A timed event with neutral defaults, handy for building events in code.
    pub fn timed(subject: impl Into<String>, start: Timestamp, end: Timestamp) -> Self {
        Self::new(subject, EventTime::Timed { start, end })
    }

    /// An all-day event from `start` to `end` (exclusive).
    pub fn all_day(subject: impl Into<String>, start: Date, end: Date) -> Self {
        Self::new(subject, EventTime::AllDay { start, end })
    }

    fn new(subject: impl Into<String>, time: EventTime) -> Self {
        Self {
            ids: SideIds::default(),
            modified: SideTimes::default(),
            subject: subject.into(),
            location: String::new(),
            description: String::new(),
            time,
            status: EventStatus::Scheduled,
            show_as: None,
            sensitivity: Sensitivity::Normal,
            reminder_minutes: None,
            activity_type: None,
            categories: Vec::new(),
            organizer: None,
            is_organizer: None,
            has_attendees: false,
        }
    }

    /// Whether `field` has the same value in both.
    pub fn same_field(&self, other: &Self, field: EventField) -> bool {
        match field {
            EventField::Subject => self.subject == other.subject,
            EventField::Location => self.location == other.location,
            EventField::Description => self.description == other.description,
            EventField::Time => self.time == other.time,
            EventField::Status => self.status == other.status,
            EventField::ShowAs => self.show_as == other.show_as,
            EventField::Sensitivity => self.sensitivity == other.sensitivity,
            EventField::Reminder => self.reminder_minutes == other.reminder_minutes,
            EventField::ActivityType => self.activity_type == other.activity_type,
            EventField::Categories => self.categories == other.categories,
            EventField::Organizer => {
                self.organizer == other.organizer
                    && self.is_organizer == other.is_organizer
                    && self.has_attendees == other.has_attendees
            }
        }
    }

    /// The content fields whose values differ, in [`EventField::ALL`] order.
    pub fn differing_fields(&self, other: &Self) -> Vec<EventField> {
        EventField::ALL
            .into_iter()
            .filter(|field| !self.same_field(other, *field))
            .collect()
    }

    /// Same content, ignoring ids and modification times.
    pub fn same_content(&self, other: &Self) -> bool {
        self.differing_fields(other).is_empty()
    }

    /// Whether a change to the meeting on the organizer's calendar would mail people: the
    /// user organises it and has invited someone.
    pub fn mails_attendees(&self) -> bool {
        self.has_attendees && self.is_organizer != Some(false)
    }

    /// Whether the field holds nothing a person entered: an empty text (or the CRM's
    /// placeholder subject), no categories, no reminder. Other fields always hold a value.
    pub fn is_blank(&self, field: EventField) -> bool {
        match field {
            EventField::Subject => {
                let subject = self.subject.trim();
                subject.is_empty() || subject == EMPTY_SUBJECT
            }
            EventField::Location => self.location.trim().is_empty(),
            EventField::Description => self.description.trim().is_empty(),
            EventField::Categories => self.categories.is_empty(),
            EventField::Reminder => self.reminder_minutes.is_none(),
            _ => false,
        }
    }

    /// Overwrite one content field with its value in `from`.
    pub fn copy_field(&mut self, from: &Self, field: EventField) {
        match field {
            EventField::Subject => self.subject.clone_from(&from.subject),
            EventField::Location => self.location.clone_from(&from.location),
            EventField::Description => self.description.clone_from(&from.description),
            EventField::Time => self.time = from.time.clone(),
            EventField::Status => self.status = from.status,
            EventField::ShowAs => self.show_as = from.show_as,
            EventField::Sensitivity => self.sensitivity = from.sensitivity,
            EventField::Reminder => self.reminder_minutes = from.reminder_minutes,
            EventField::ActivityType => self.activity_type.clone_from(&from.activity_type),
            EventField::Categories => self.categories.clone_from(&from.categories),
            EventField::Organizer => {
                self.organizer.clone_from(&from.organizer);
                self.is_organizer = from.is_organizer;
                self.has_attendees = from.has_attendees;
            }
        }
    }
}

/// What a side that requires a subject (vtiger) stores for an event without one.
pub const EMPTY_SUBJECT: &str = "(no subject)";

/// Normalise text to what the model stores: `\n` line ends, no trailing whitespace at the end.
pub fn plain_text(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CalendarEvent {
        let start: Timestamp = "2026-12-01T09:00:00Z".parse().unwrap();
        let end: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        CalendarEvent::timed("Review", start, end)
    }

    #[test]
    fn differing_fields_ignores_bookkeeping() {
        let a = sample();
        let mut b = sample();
        b.ids.crm = Some("18x1".into());
        b.modified.crm = Some(Timestamp::UNIX_EPOCH);
        assert!(a.same_content(&b));
        b.subject = "Other".into();
        b.reminder_minutes = Some(15);
        assert_eq!(
            a.differing_fields(&b),
            vec![EventField::Subject, EventField::Reminder]
        );
    }

    #[test]
    fn copy_field_makes_fields_equal() {
        let mut a = sample();
        let mut b = sample();
        b.location = "Room 2".into();
        b.time = EventTime::AllDay {
            start: "2026-12-01".parse().unwrap(),
            end: "2026-12-02".parse().unwrap(),
        };
        for field in a.differing_fields(&b) {
            a.copy_field(&b, field);
        }
        assert!(a.same_content(&b));
    }

    #[test]
    fn serde_round_trip() {
        let mut a = sample();
        a.categories = vec!["CRM".into()];
        a.show_as = Some(ShowAs::Busy);
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"kind\":\"timed\""), "{json}");
        let back: CalendarEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(a, back);
    }

    #[test]
    fn plain_text_normalises_line_ends() {
        assert_eq!(plain_text("a\r\nb\rc\n\n"), "a\nb\nc");
    }
}
