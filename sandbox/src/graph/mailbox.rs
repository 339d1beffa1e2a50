//! One user's calendar: its events, its change counter and change log (what delta reads), its
//! delta sync states, and the edits Graph allows — with `changeKey`/`If-Match`, immutable and
//! REST ids, `transactionId` dedupe and occurrence edits that become exceptions.

use std::collections::{BTreeMap, HashMap, VecDeque};

use jiff::civil::Date;
use jiff::Timestamp;
use serde_json::Value;

use super::delta::{PagedRound, SyncState};
use super::errors::GraphErr;
use super::model::{
    new_change_key, new_ical_uid, new_ids, parse_occurrence_id, EventFields, Exception, Instance,
    Series, StoredEvent,
};
use super::recurrence::Recurrence;
use super::time::LocalTime;

/// Delta sync states kept per mailbox; older ones are evicted, as Exchange's cache does.
pub(crate) const MAX_SYNC_STATES: usize = 16;
const MAX_CHANGE_LOG: usize = 200_000;

/// What a change notification will say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChangeNote {
    pub change_type: &'static str,
    /// The immutable and REST forms of the changed item's id.
    pub immutable_id: String,
    pub rest_id: String,
    pub etag: String,
}

/// What an id in a URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// A single event or a series master, by immutable id.
    Event(String),
    /// One instance of a series: master immutable id and original date.
    Instance(String, Date),
}

/// Answers for delta tokens the mailbox no longer knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeltaExpiry {
    /// 410 Gone with `SyncStateNotFound` (what Exchange sends after evicting a state).
    #[default]
    Gone,
    /// 400 with `resyncRequired`.
    ResyncRequired,
    /// 400 with `InvalidDeltaToken`.
    InvalidDeltaToken,
}

/// Delta misbehaviours seen in the wild, off by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeltaQuirks {
    /// nextLinks that never advance: the same page and link forever.
    pub stall: bool,
    /// Every page after the first repeats the previous page's last item.
    pub repeat_items: bool,
    /// List series masters in delta (with their first occurrence's times), as some see.
    pub list_masters: bool,
    /// Report a deleted occurrence with a tombstone; by default it is silent, as reported.
    pub tombstone_cancelled_occurrences: bool,
}

pub(crate) struct MailboxState {
    pub oid: String,
    pub display_name: String,
    pub address: String,
    pub events: BTreeMap<String, StoredEvent>,
    rest_index: HashMap<String, String>,
    /// REST ids of deleted events, for tombstones that name them.
    pub graveyard: HashMap<String, String>,
    pub seq: u64,
    /// (change number, immutable event id) of every change, for out-of-window tombstones.
    pub change_log: VecDeque<(u64, String)>,
    pub sync_states: VecDeque<SyncState>,
    pub rounds: HashMap<String, PagedRound>,
    pub lost_token_answer: DeltaExpiry,
    pub quirks: DeltaQuirks,
    pub notes: Vec<ChangeNote>,
    pub creates: u64,
    pub transaction_dedupes: u64,
    pub invitations_sent: u64,
    pub cancellations_sent: u64,
    pub updates_sent: u64,
}

/// The properties whose change Exchange announces to a meeting's attendees: an organizer's
/// PATCH that sets any of them sends every attendee an update. The rest (categories,
/// reminders, show-as, sensitivity) are the organizer's own.
const ANNOUNCED: [&str; 8] = [
    "subject",
    "body",
    "start",
    "end",
    "isAllDay",
    "location",
    "locations",
    "recurrence",
];

/// How many attendees an organizer's PATCH of `fields` with `body` sends an update to.
fn updates_for(fields: &EventFields, body: &Value) -> u64 {
    let announced = ANNOUNCED.iter().any(|key| body.get(*key).is_some());
    if fields.is_organizer && announced {
        fields.attendees.len() as u64
    } else {
        0
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn parse_time(value: &Value, key: &str) -> Result<LocalTime, GraphErr> {
    let time = value.get(key).ok_or_else(|| {
        GraphErr::bad_request("ErrorInvalidRequest", &format!("{key} is required"))
    })?;
    let date_time = text(time, "dateTime").unwrap_or_default();
    let zone = text(time, "timeZone").unwrap_or("UTC");
    LocalTime::parse(date_time, zone).map_err(|m| {
        if m.contains("TimeZone") {
            GraphErr::bad_request("TimeZoneNotSupportedException", &m)
        } else {
            GraphErr::bad_request("ErrorInvalidRequest", &m)
        }
    })
}

/// Applies the writable properties present in `body` to `fields`.
pub(crate) fn apply_fields(fields: &mut EventFields, body: &Value) -> Result<(), GraphErr> {
    if let Some(subject) = body.get("subject") {
        fields.subject = subject.as_str().unwrap_or_default().to_owned();
    }
    if let Some(b) = body.get("body") {
        fields.body_type = text(b, "contentType")
            .unwrap_or("text")
            .to_ascii_lowercase();
        fields.body = text(b, "content").unwrap_or_default().to_owned();
    }
    if body.get("start").is_some() {
        fields.start = parse_time(body, "start")?;
    }
    if body.get("end").is_some() {
        fields.end = parse_time(body, "end")?;
    }
    if let Some(all_day) = body.get("isAllDay").and_then(Value::as_bool) {
        fields.all_day = all_day;
    }
    if let Some(location) = body.get("location") {
        fields.location = location.clone();
    }
    for (key, slot) in [
        ("showAs", &mut fields.show_as),
        ("sensitivity", &mut fields.sensitivity),
        ("importance", &mut fields.importance),
    ] {
        if let Some(value) = text(body, key) {
            *slot = value.to_owned();
        }
    }
    if let Some(on) = body.get("isReminderOn").and_then(Value::as_bool) {
        fields.reminder_on = on;
    }
    if let Some(minutes) = body
        .get("reminderMinutesBeforeStart")
        .and_then(Value::as_i64)
    {
        fields.reminder_minutes = minutes;
    }
    if let Some(categories) = body.get("categories").and_then(Value::as_array) {
        fields.categories = categories
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
    }
    if let Some(attendees) = body.get("attendees").and_then(Value::as_array) {
        fields.attendees = attendees
            .iter()
            .map(|a| {
                let mut a = a.clone();
                if let Some(map) = a.as_object_mut() {
                    map.entry("status").or_insert_with(
                        || serde_json::json!({"response": "none", "time": "0001-01-01T00:00:00Z"}),
                    );
                    map.entry("type").or_insert_with(|| "required".into());
                }
                a
            })
            .collect();
    }
    if let Some(cancelled) = body.get("isCancelled").and_then(Value::as_bool) {
        fields.is_cancelled = cancelled;
    }
    check_times(fields)
}

/// Graph's rules: the end is not before the start; all-day events run midnight to midnight in
/// one zone.
fn check_times(fields: &EventFields) -> Result<(), GraphErr> {
    let (Some(start), Some(end)) = (fields.start.instant(), fields.end.instant()) else {
        return Err(GraphErr::bad_request(
            "TimeZoneNotSupportedException",
            "A valid TimeZone value must be specified.",
        ));
    };
    if end < start {
        return Err(GraphErr::bad_request(
            "ErrorInvalidRequest",
            "The event's end is before its start.",
        ));
    }
    if fields.all_day {
        let midnight = jiff::civil::Time::midnight();
        if fields.start.civil.time() != midnight
            || fields.end.civil.time() != midnight
            || fields.start.zone != fields.end.zone
            || fields.start.civil.date() == fields.end.civil.date()
        {
            return Err(GraphErr::bad_request(
                "ErrorPropertyValidationFailure",
                "An all-day event must start and end at midnight, in the same time zone, at least a day apart.",
            ));
        }
    }
    Ok(())
}

impl MailboxState {
    pub fn new(oid: &str, display_name: &str, address: &str) -> Self {
        Self {
            oid: oid.to_owned(),
            display_name: display_name.to_owned(),
            address: address.to_owned(),
            events: BTreeMap::new(),
            rest_index: HashMap::new(),
            graveyard: HashMap::new(),
            seq: 0,
            change_log: VecDeque::new(),
            sync_states: VecDeque::new(),
            rounds: HashMap::new(),
            lost_token_answer: DeltaExpiry::default(),
            quirks: DeltaQuirks::default(),
            notes: Vec::new(),
            creates: 0,
            transaction_dedupes: 0,
            invitations_sent: 0,
            updates_sent: 0,
            cancellations_sent: 0,
        }
    }

    fn bump(&mut self, event_id: &str) -> u64 {
        self.seq += 1;
        self.change_log.push_back((self.seq, event_id.to_owned()));
        if self.change_log.len() > MAX_CHANGE_LOG {
            self.change_log.pop_front();
        }
        self.seq
    }

    fn note(
        &mut self,
        change_type: &'static str,
        immutable_id: String,
        rest_id: String,
        key: &str,
    ) {
        self.notes.push(ChangeNote {
            change_type,
            immutable_id,
            rest_id,
            etag: format!("W/\"{key}\""),
        });
    }

    fn organizer(&self) -> Value {
        serde_json::json!({"emailAddress": {"name": self.display_name, "address": self.address}})
    }

    /// Finds what an id (immutable, REST or occurrence) points at.
    pub fn resolve(&self, id: &str) -> Option<Target> {
        if self.events.contains_key(id) {
            return Some(Target::Event(id.to_owned()));
        }
        if let Some(immutable) = self.rest_index.get(id) {
            return Some(Target::Event(immutable.clone()));
        }
        let (master, date) = parse_occurrence_id(id)?;
        let Some(Target::Event(master)) = self.resolve(&master) else {
            return None;
        };
        let series = self.events.get(&master)?.series.as_ref()?;
        if series.cancelled.contains_key(&date) || !series.recurrence.matches(date) {
            return None;
        }
        Some(Target::Instance(master, date))
    }

    /// `POST /events`. Returns the event's immutable id and whether a repeated
    /// `transactionId` made it a no-op.
    pub fn create(&mut self, body: &Value, now: Timestamp) -> Result<(String, bool), GraphErr> {
        let transaction_id = text(body, "transactionId").map(str::to_owned);
        if let Some(tx) = &transaction_id {
            if let Some(existing) = self
                .events
                .values()
                .find(|e| e.transaction_id.as_deref() == Some(tx))
            {
                self.transaction_dedupes += 1;
                return Ok((existing.id.clone(), true));
            }
        }
        let mut fields = EventFields {
            subject: String::new(),
            body_type: "html".into(),
            body: String::new(),
            start: parse_time(body, "start")?,
            end: parse_time(body, "end")?,
            all_day: false,
            location: serde_json::json!({"displayName": ""}),
            show_as: "busy".into(),
            sensitivity: "normal".into(),
            importance: "normal".into(),
            reminder_on: true,
            reminder_minutes: 15,
            categories: Vec::new(),
            organizer: self.organizer(),
            attendees: Vec::new(),
            is_organizer: true,
            is_cancelled: false,
        };
        apply_fields(&mut fields, body)?;
        if let Some(organizer) = body.get("organizer") {
            // Seeding an attendee's copy of someone else's meeting.
            fields.organizer = organizer.clone();
            fields.is_organizer = text(&organizer["emailAddress"], "address")
                .is_some_and(|a| a.eq_ignore_ascii_case(&self.address));
        }
        if let Some(is_organizer) = body.get("isOrganizer").and_then(Value::as_bool) {
            fields.is_organizer = is_organizer;
        }
        let series = match body.get("recurrence").filter(|r| !r.is_null()) {
            Some(recurrence) => Some(Series {
                recurrence: Recurrence::parse(
                    recurrence,
                    fields.start.civil.date(),
                    &fields.start.zone,
                )
                .map_err(|m| GraphErr::bad_request("ErrorPropertyValidationFailure", &m))?,
                exceptions: BTreeMap::new(),
                cancelled: BTreeMap::new(),
            }),
            None => None,
        };
        let mut extended = BTreeMap::new();
        if let Some(props) = body
            .get("singleValueExtendedProperties")
            .and_then(Value::as_array)
        {
            for prop in props {
                if let (Some(id), Some(value)) = (text(prop, "id"), text(prop, "value")) {
                    extended.insert(id.to_owned(), value.to_owned());
                }
            }
        }
        if fields.is_organizer {
            self.invitations_sent += fields.attendees.len() as u64;
        }
        let (id, rest_id) = new_ids();
        let version = self.bump(&id);
        let change_key = new_change_key();
        let event = StoredEvent {
            id: id.clone(),
            rest_id: rest_id.clone(),
            created: now,
            modified: now,
            change_key: change_key.clone(),
            version,
            ical_uid: new_ical_uid(),
            fields,
            transaction_id,
            extended,
            series,
        };
        self.rest_index.insert(rest_id.clone(), id.clone());
        self.events.insert(id.clone(), event);
        self.creates += 1;
        self.note("created", id.clone(), rest_id, &change_key);
        Ok((id, false))
    }

    fn check_if_match(current_key: &str, if_match: Option<&str>) -> Result<(), GraphErr> {
        let Some(tag) = if_match else {
            return Ok(());
        };
        let tag = tag.trim();
        let tag = tag.strip_prefix("W/").unwrap_or(tag).trim_matches('"');
        if tag == "*" || tag == current_key {
            return Ok(());
        }
        Err(GraphErr::new(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed in the request does not match the current change key for the item.",
        ))
    }

    /// `PATCH /events/{id}`; an occurrence becomes an exception.
    pub fn update(
        &mut self,
        target: &Target,
        body: &Value,
        if_match: Option<&str>,
        now: Timestamp,
    ) -> Result<(), GraphErr> {
        let event_id = match target {
            Target::Event(id) | Target::Instance(id, _) => id.clone(),
        };
        let Some(current) = self.events.get(&event_id) else {
            return Err(GraphErr::not_found());
        };
        let before = current.fields.attendees.len();
        let mut event = current.clone();
        let change_key = new_change_key();
        match target {
            Target::Event(_) => {
                Self::check_if_match(&event.change_key, if_match)?;
                apply_fields(&mut event.fields, body)?;
                if let Some(recurrence) = body.get("recurrence") {
                    event.series = match recurrence {
                        Value::Null => None,
                        r => Some(Series {
                            recurrence: Recurrence::parse(
                                r,
                                event.fields.start.civil.date(),
                                &event.fields.start.zone,
                            )
                            .map_err(|m| {
                                GraphErr::bad_request("ErrorPropertyValidationFailure", &m)
                            })?,
                            exceptions: BTreeMap::new(),
                            cancelled: BTreeMap::new(),
                        }),
                    };
                }
                if event.fields.is_organizer && event.fields.attendees.len() > before {
                    self.invitations_sent += (event.fields.attendees.len() - before) as u64;
                }
                self.updates_sent += updates_for(&event.fields, body);
                let version = self.bump(&event_id);
                event.version = version;
                event.change_key = change_key.clone();
                event.modified = now;
            }
            Target::Instance(_, date) => {
                let view_key = event
                    .series
                    .as_ref()
                    .and_then(|s| s.exceptions.get(date))
                    .map(|e| e.change_key.clone())
                    .unwrap_or_else(|| event.change_key.clone());
                Self::check_if_match(&view_key, if_match)?;
                let mut fields = event.instance_fields(Some(*date));
                apply_fields(&mut fields, body)?;
                self.updates_sent += updates_for(&fields, body);
                let version = self.bump(&event_id);
                if let Some(series) = event.series.as_mut() {
                    series.exceptions.insert(
                        *date,
                        Exception {
                            fields,
                            change_key: change_key.clone(),
                            modified: now,
                            version,
                        },
                    );
                }
            }
        }
        let rest_id = event.rest_id.clone();
        self.events.insert(event_id.clone(), event);
        self.note("updated", event_id, rest_id, &change_key);
        Ok(())
    }

    /// `DELETE /events/{id}`; deleting an occurrence cancels that date.
    pub fn delete(&mut self, target: &Target, if_match: Option<&str>) -> Result<(), GraphErr> {
        match target {
            Target::Event(id) => {
                let Some(event) = self.events.get(id) else {
                    return Err(GraphErr::not_found());
                };
                Self::check_if_match(&event.change_key, if_match)?;
                if event.fields.is_organizer {
                    self.cancellations_sent += event.fields.attendees.len() as u64;
                }
                let key = event.change_key.clone();
                let rest_id = event.rest_id.clone();
                self.events.remove(id);
                self.rest_index.remove(&rest_id);
                self.graveyard.insert(id.clone(), rest_id.clone());
                self.bump(id);
                self.note("deleted", id.clone(), rest_id, &key);
            }
            Target::Instance(id, date) => {
                let seq = self.seq + 1;
                let Some(event) = self.events.get_mut(id) else {
                    return Err(GraphErr::not_found());
                };
                Self::check_if_match(&event.change_key, if_match).or_else(|e| {
                    match event.series.as_ref().and_then(|s| s.exceptions.get(date)) {
                        Some(x) => Self::check_if_match(&x.change_key, if_match),
                        None => Err(e),
                    }
                })?;
                if event.fields.is_organizer {
                    // Cancelling one date of one's own series tells its attendees too.
                    self.cancellations_sent += event.fields.attendees.len() as u64;
                }
                if let Some(series) = event.series.as_mut() {
                    series.exceptions.remove(date);
                    series.cancelled.insert(*date, seq);
                }
                let key = event.change_key.clone();
                let rest_id = event.rest_id.clone();
                self.bump(id);
                self.note("updated", id.clone(), rest_id, &key);
            }
        }
        Ok(())
    }

    /// Every instance overlapping `[from, to)`.
    pub fn visible(&self, from: Timestamp, to: Timestamp) -> Vec<Instance> {
        self.events
            .values()
            .flat_map(|e| e.instances(from, to))
            .collect()
    }

    pub fn drain_notes(&mut self) -> Vec<ChangeNote> {
        std::mem::take(&mut self.notes)
    }

    pub fn remember_state(&mut self, state: SyncState) {
        self.sync_states.push_back(state);
        while self.sync_states.len() > MAX_SYNC_STATES {
            self.sync_states.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mailbox() -> MailboxState {
        MailboxState::new("oid", "Ada", "ada@example.test")
    }

    fn body(subject: &str) -> Value {
        json!({
            "subject": subject,
            "start": {"dateTime": "2026-01-05T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-05T11:00:00", "timeZone": "UTC"},
        })
    }

    #[test]
    fn a_repeated_transaction_id_creates_nothing() {
        let mut mb = mailbox();
        let mut b = body("x");
        b["transactionId"] = json!("tx-1");
        let (first, dup) = mb.create(&b, Timestamp::now()).unwrap();
        assert!(!dup);
        let (second, dup) = mb.create(&b, Timestamp::now()).unwrap();
        assert!(dup);
        assert_eq!(first, second);
        assert_eq!(mb.events.len(), 1);
        assert_eq!(mb.transaction_dedupes, 1);
    }

    #[test]
    fn stale_change_keys_are_refused() {
        let mut mb = mailbox();
        let (id, _) = mb.create(&body("x"), Timestamp::now()).unwrap();
        let key = mb.events[&id].change_key.clone();
        let target = Target::Event(id.clone());
        mb.update(
            &target,
            &json!({"subject": "y"}),
            Some(&format!("W/\"{key}\"")),
            Timestamp::now(),
        )
        .unwrap();
        let err = mb
            .update(
                &target,
                &json!({"subject": "z"}),
                Some(&key),
                Timestamp::now(),
            )
            .unwrap_err();
        assert_eq!(err.status, 412);
    }

    #[test]
    fn all_day_events_must_be_midnight_to_midnight() {
        let mut mb = mailbox();
        let mut b = body("x");
        b["isAllDay"] = json!(true);
        assert_eq!(mb.create(&b, Timestamp::now()).unwrap_err().status, 400);
        b["start"]["dateTime"] = json!("2026-01-05T00:00:00");
        b["end"]["dateTime"] = json!("2026-01-06T00:00:00");
        assert!(mb.create(&b, Timestamp::now()).is_ok());
    }

    #[test]
    fn rest_ids_resolve_too() {
        let mut mb = mailbox();
        let (id, _) = mb.create(&body("x"), Timestamp::now()).unwrap();
        let rest = mb.events[&id].rest_id.clone();
        assert_eq!(mb.resolve(&rest), Some(Target::Event(id)));
        assert_eq!(mb.resolve("nope"), None);
    }
}
