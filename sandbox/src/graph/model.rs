//! Stored events and how they read back: single events, series masters with their exceptions
//! and cancelled dates, and the JSON Graph renders for each kind (full events, occurrence
//! stubs, tombstones).

use std::collections::BTreeMap;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::recurrence::Recurrence;
use super::time::{graph_datetime, graph_instant, in_zone, LocalTime};

/// The writable content of an event (or of one exception of a series).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventFields {
    pub subject: String,
    pub body_type: String,
    pub body: String,
    pub start: LocalTime,
    pub end: LocalTime,
    pub all_day: bool,
    pub location: Value,
    pub show_as: String,
    pub sensitivity: String,
    pub importance: String,
    pub reminder_on: bool,
    pub reminder_minutes: i64,
    pub categories: Vec<String>,
    pub organizer: Value,
    pub attendees: Vec<Value>,
    pub is_organizer: bool,
    pub is_cancelled: bool,
}

/// A series' per-date deviations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exception {
    pub fields: EventFields,
    pub change_key: String,
    pub modified: Timestamp,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub recurrence: Recurrence,
    /// Keyed by the occurrence's original date.
    pub exceptions: BTreeMap<Date, Exception>,
    /// Deleted occurrences, with the change number of the deletion.
    pub cancelled: BTreeMap<Date, u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEvent {
    /// The immutable id (what `Prefer: IdType="ImmutableId"` shows).
    pub id: String,
    /// The default REST id.
    pub rest_id: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub change_key: String,
    /// The mailbox change number of the last change.
    pub version: u64,
    pub ical_uid: String,
    pub fields: EventFields,
    pub transaction_id: Option<String>,
    pub extended: BTreeMap<String, String>,
    pub series: Option<Series>,
}

pub(crate) fn new_change_key() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A fresh pair of ids: immutable (`AAkALg…`) and REST (`AAMkA…`), URL-safe base64 with
/// padding, like Exchange's.
pub(crate) fn new_ids() -> (String, String) {
    let mut a = [0u8; 30];
    let mut b = [0u8; 30];
    rand::thread_rng().fill_bytes(&mut a);
    rand::thread_rng().fill_bytes(&mut b);
    (
        format!("AAkALg{}", URL_SAFE.encode(a)),
        format!("AAMkA{}=", URL_SAFE.encode(b)),
    )
}

pub(crate) fn new_ical_uid() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "040000008200E00074C5B7101A82E00800000000{}",
        hex::encode_upper(bytes)
    )
}

const OCCURRENCE_PREFIX: &str = "AAMkOc";

/// An occurrence's id: derived from the (displayed) master id and its original date, so it is
/// stable across rounds and decodable.
pub(crate) fn occurrence_id(master_id: &str, date: Date) -> String {
    format!(
        "{OCCURRENCE_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(format!("{master_id}|{date}"))
    )
}

/// The master id and date of an occurrence id.
pub(crate) fn parse_occurrence_id(id: &str) -> Option<(String, Date)> {
    let encoded = id.strip_prefix(OCCURRENCE_PREFIX)?;
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(encoded).ok()?).ok()?;
    let (master, date) = decoded.rsplit_once('|')?;
    Some((master.to_owned(), date.parse().ok()?))
}

/// Each occurrence has its own `iCalUId` in Graph.
fn occurrence_ical_uid(master_uid: &str, date: Date) -> String {
    let digest = Sha256::digest(format!("{master_uid}|{date}"));
    format!(
        "040000008200E00074C5B7101A82E008{}",
        hex::encode_upper(&digest[..20])
    )
}

/// What a client asked for with `Prefer`.
#[derive(Debug, Clone)]
pub(crate) struct RenderPrefs {
    /// `outlook.timezone`: the name as asked and the zone; UTC by default.
    pub zone_name: String,
    pub zone: TimeZone,
    pub immutable_ids: bool,
    /// `outlook.body-content-type`: Some("text") or Some("html").
    pub body_type: Option<String>,
}

impl Default for RenderPrefs {
    fn default() -> Self {
        Self {
            zone_name: "UTC".into(),
            zone: TimeZone::UTC,
            immutable_ids: false,
            body_type: None,
        }
    }
}

/// One visible instance in a window: a single event, an occurrence or an exception.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    /// Canonical id (immutable form).
    pub id: String,
    /// The single event's or master's immutable id.
    pub event_id: String,
    pub date: Option<Date>,
    pub start: Timestamp,
    pub end: Timestamp,
    pub version: u64,
    pub kind: InstanceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InstanceKind {
    Single,
    Occurrence,
    Exception,
}

fn instant_of(time: &LocalTime) -> Timestamp {
    time.instant().unwrap_or(Timestamp::UNIX_EPOCH)
}

impl StoredEvent {
    pub fn display_id(&self, prefs: &RenderPrefs) -> &str {
        if prefs.immutable_ids {
            &self.id
        } else {
            &self.rest_id
        }
    }

    /// The instances of this event overlapping `[from, to)`, cancelled dates left out.
    pub fn instances(&self, from: Timestamp, to: Timestamp) -> Vec<Instance> {
        let overlaps = |start: Timestamp, end: Timestamp| {
            if start == end {
                start >= from && start < to
            } else {
                start < to && end > from
            }
        };
        let Some(series) = &self.series else {
            let (start, end) = (instant_of(&self.fields.start), instant_of(&self.fields.end));
            return if overlaps(start, end) {
                vec![Instance {
                    id: self.id.clone(),
                    event_id: self.id.clone(),
                    date: None,
                    start,
                    end,
                    version: self.version,
                    kind: InstanceKind::Single,
                }]
            } else {
                Vec::new()
            };
        };
        // Exceptions may have moved far from their date: look a year past the window too.
        let until = to
            .to_zoned_datetime(TimeZone::UTC)
            .date()
            .checked_add(jiff::Span::new().days(370))
            .unwrap_or(Date::MAX);
        let mut found = Vec::new();
        for date in series.recurrence.dates_until(until) {
            if series.cancelled.contains_key(&date) {
                continue;
            }
            let (start, end, version, kind) = match series.exceptions.get(&date) {
                Some(exception) => (
                    instant_of(&exception.fields.start),
                    instant_of(&exception.fields.end),
                    exception.version.max(self.version),
                    InstanceKind::Exception,
                ),
                None => {
                    let (start, end) = self.occurrence_times(date);
                    (
                        instant_of(&start),
                        instant_of(&end),
                        self.version,
                        InstanceKind::Occurrence,
                    )
                }
            };
            if overlaps(start, end) {
                found.push(Instance {
                    id: occurrence_id(&self.id, date),
                    event_id: self.id.clone(),
                    date: Some(date),
                    start,
                    end,
                    version,
                    kind,
                });
            }
        }
        found
    }

    /// An occurrence's wall-clock start and end: the master's times moved to `date`.
    pub fn occurrence_times(&self, date: Date) -> (LocalTime, LocalTime) {
        let start = &self.fields.start;
        let length = self.fields.end.civil.since(start.civil).unwrap_or_default();
        let civil = date.to_datetime(start.civil.time());
        let end_civil = civil.checked_add(length).unwrap_or(civil);
        (
            LocalTime {
                civil,
                zone: start.zone.clone(),
            },
            LocalTime {
                civil: end_civil,
                zone: self.fields.end.zone.clone(),
            },
        )
    }

    /// The fields of one instance: the exception's, or the master's at the occurrence's times.
    pub fn instance_fields(&self, date: Option<Date>) -> EventFields {
        let (Some(date), Some(series)) = (date, &self.series) else {
            return self.fields.clone();
        };
        if let Some(exception) = series.exceptions.get(&date) {
            return exception.fields.clone();
        }
        let (start, end) = self.occurrence_times(date);
        EventFields {
            start,
            end,
            ..self.fields.clone()
        }
    }
}

fn body_text(fields: &EventFields, prefs: &RenderPrefs) -> (String, String) {
    let stored_html = fields.body_type.eq_ignore_ascii_case("html");
    match prefs.body_type.as_deref() {
        Some("text") if stored_html => ("text".into(), html_to_text(&fields.body)),
        Some("html") if !stored_html => ("html".into(), text_to_html(&fields.body)),
        _ => (
            if stored_html { "html" } else { "text" }.into(),
            fields.body.clone(),
        ),
    }
}

/// Roughly what Exchange does: drop tags, keep line breaks, decode the common entities.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    let mut skip = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let name = name.to_ascii_lowercase();
                if name == "head" || name == "style" {
                    skip = !tag.starts_with('/');
                }
                if matches!(name.as_str(), "br" | "p" | "div" | "/p") && !skip {
                    text.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) if !skip => text.push(c),
            _ => {}
        }
    }
    text.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .replace("\r\n", "\n")
        .lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

fn text_to_html(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', "<br>\r\n");
    format!("<html>\r\n<head>\r\n<meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\">\r\n</head>\r\n<body>\r\n{escaped}\r\n</body>\r\n</html>\r\n")
}

fn time_json(time: &LocalTime, all_day: bool, prefs: &RenderPrefs) -> Value {
    // All-day events read as midnight-to-midnight whatever zone was asked for.
    let civil: DateTime = if all_day {
        time.civil.date().to_datetime(jiff::civil::Time::midnight())
    } else {
        in_zone(instant_of(time), &prefs.zone)
    };
    json!({ "dateTime": graph_datetime(civil), "timeZone": prefs.zone_name })
}

fn location_json(location: &Value) -> Value {
    let mut out = Map::new();
    out.insert("displayName".into(), json!(""));
    out.insert("locationType".into(), json!("default"));
    out.insert("uniqueIdType".into(), json!("unknown"));
    out.insert(
        "address".into(),
        json!({"street": "", "city": "", "state": "", "countryOrRegion": "", "postalCode": ""}),
    );
    out.insert("coordinates".into(), json!({}));
    if let Some(given) = location.as_object() {
        for (k, v) in given {
            out.insert(k.clone(), v.clone());
        }
        if let Some(name) = given.get("displayName").and_then(Value::as_str) {
            if !name.is_empty() && !given.contains_key("uniqueId") {
                out.insert("uniqueId".into(), json!(name));
                out.insert("uniqueIdType".into(), json!("private"));
            }
        }
    }
    Value::Object(out)
}

/// Everything needed to render one instance of a stored event.
pub(crate) struct View<'a> {
    pub event: &'a StoredEvent,
    pub date: Option<Date>,
}

impl View<'_> {
    fn kind(&self) -> &'static str {
        match (self.date, &self.event.series) {
            (None, Some(_)) => "seriesMaster",
            (None, None) => "singleInstance",
            (Some(date), Some(series)) if series.exceptions.contains_key(&date) => "exception",
            (Some(_), _) => "occurrence",
        }
    }

    pub fn id(&self, prefs: &RenderPrefs) -> String {
        match self.date {
            Some(date) => occurrence_id(self.event.display_id(prefs), date),
            None => self.event.display_id(prefs).to_owned(),
        }
    }

    fn change_key(&self) -> (String, Timestamp) {
        let exception = match (self.date, &self.event.series) {
            (Some(date), Some(series)) => series.exceptions.get(&date),
            _ => None,
        };
        match exception {
            Some(e) if e.version >= self.event.version => (e.change_key.clone(), e.modified),
            _ => (self.event.change_key.clone(), self.event.modified),
        }
    }

    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.change_key().0)
    }

    /// The full event, as `GET /events/{id}` and delta return it.
    pub fn full(&self, prefs: &RenderPrefs) -> Value {
        let event = self.event;
        let fields = event.instance_fields(self.date);
        let (change_key, modified) = self.change_key();
        let (body_type, body) = body_text(&fields, prefs);
        let preview: String = if body_type == "html" {
            html_to_text(&body)
        } else {
            body.clone()
        }
        .chars()
        .take(255)
        .collect();
        let id = self.id(prefs);
        let master_id = self
            .date
            .map(|_| Value::String(event.display_id(prefs).to_owned()))
            .unwrap_or(Value::Null);
        let ical_uid = match self.date {
            Some(date) => occurrence_ical_uid(&event.ical_uid, date),
            None => event.ical_uid.clone(),
        };
        let original_start = match self.date {
            Some(date) => {
                let (start, _) = event.occurrence_times(date);
                json!(graph_instant(instant_of(&start)))
            }
            None => Value::Null,
        };
        let recurrence = match (&event.series, self.date) {
            (Some(series), None) => series.recurrence.render(),
            _ => Value::Null,
        };
        let web_link = format!(
            "https://outlook.office365.com/owa/?itemid={}&exvsurl=1&path=/calendar/item",
            urlencoding::encode(&id)
        );
        let has_location = fields
            .location
            .get("displayName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let transaction_id = match self.date {
            None => json!(event.transaction_id),
            Some(_) => Value::Null,
        };
        // Keys in the order Graph sends them.
        let entries: Vec<(&str, Value)> = vec![
            ("@odata.type", json!("#microsoft.graph.event")),
            ("@odata.etag", json!(format!("W/\"{change_key}\""))),
            ("id", json!(id)),
            ("createdDateTime", json!(graph_instant(event.created))),
            ("lastModifiedDateTime", json!(graph_instant(modified))),
            ("changeKey", json!(change_key)),
            ("categories", json!(fields.categories)),
            ("transactionId", transaction_id),
            ("originalStartTimeZone", json!(fields.start.zone)),
            ("originalEndTimeZone", json!(fields.end.zone)),
            ("iCalUId", json!(ical_uid)),
            ("reminderMinutesBeforeStart", json!(fields.reminder_minutes)),
            ("isReminderOn", json!(fields.reminder_on)),
            ("hasAttachments", json!(false)),
            ("subject", json!(fields.subject)),
            ("bodyPreview", json!(preview)),
            ("importance", json!(fields.importance)),
            ("sensitivity", json!(fields.sensitivity)),
            ("isAllDay", json!(fields.all_day)),
            ("isCancelled", json!(fields.is_cancelled)),
            ("isOrganizer", json!(fields.is_organizer)),
            ("responseRequested", json!(true)),
            ("seriesMasterId", master_id),
            ("showAs", json!(fields.show_as)),
            ("type", json!(self.kind())),
            ("webLink", json!(web_link)),
            ("onlineMeetingUrl", Value::Null),
            ("isOnlineMeeting", json!(false)),
            ("onlineMeetingProvider", json!("unknown")),
            ("allowNewTimeProposals", json!(true)),
            ("isDraft", json!(false)),
            ("hideAttendees", json!(false)),
            ("originalStart", original_start),
            ("recurrence", recurrence),
            (
                "responseStatus",
                json!({
                    "response": if fields.is_organizer { "organizer" } else { "notResponded" },
                    "time": "0001-01-01T00:00:00Z"
                }),
            ),
            ("body", json!({ "contentType": body_type, "content": body })),
            ("start", time_json(&fields.start, fields.all_day, prefs)),
            ("end", time_json(&fields.end, fields.all_day, prefs)),
            ("location", location_json(&fields.location)),
            (
                "locations",
                if has_location {
                    json!([location_json(&fields.location)])
                } else {
                    json!([])
                },
            ),
            ("attendees", json!(fields.attendees)),
            ("organizer", fields.organizer.clone()),
            ("onlineMeeting", Value::Null),
        ];
        Value::Object(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<Map<String, Value>>(),
        )
    }

    /// What calendarView delta sends for a plain occurrence: identity and times only.
    pub fn stub(&self, prefs: &RenderPrefs) -> Value {
        let fields = self.event.instance_fields(self.date);
        json!({
            "@odata.type": "#microsoft.graph.event",
            "@odata.etag": self.etag(),
            "id": self.id(prefs),
            "type": "occurrence",
            "seriesMasterId": self.event.display_id(prefs),
            "start": time_json(&fields.start, fields.all_day, prefs),
            "end": time_json(&fields.end, fields.all_day, prefs),
        })
    }
}

/// A delta tombstone: only the id and `@removed`.
pub(crate) fn tombstone(id: &str) -> Value {
    json!({
        "@odata.type": "#microsoft.graph.event",
        "id": id,
        "@removed": { "reason": "deleted" }
    })
}

/// Extended properties asked for with `$expand=singleValueExtendedProperties($filter=id eq '…')`.
pub(crate) fn with_extended(mut rendered: Value, event: &StoredEvent, wanted: &[String]) -> Value {
    let props: Vec<Value> = wanted
        .iter()
        .filter_map(|id| {
            event
                .extended
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(id))
                .map(|(k, v)| json!({"id": k, "value": v}))
        })
        .collect();
    if let Some(map) = rendered.as_object_mut() {
        map.insert("singleValueExtendedProperties".into(), Value::Array(props));
    }
    rendered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrence_ids_round_trip() {
        let date: Date = "2026-03-02".parse().unwrap();
        let id = occurrence_id("AAkALgabc=", date);
        assert_eq!(parse_occurrence_id(&id), Some(("AAkALgabc=".into(), date)));
        assert_eq!(parse_occurrence_id("AAkALgabc="), None);
    }

    #[test]
    fn html_bodies_become_text() {
        let html = "<html>\r\n<head>\r\n<meta content=\"x\">\r\n</head>\r\n<body>\r\nDoes late morning &amp; noon work?\r\n</body>\r\n</html>\r\n";
        assert_eq!(html_to_text(html), "Does late morning & noon work?");
    }
}
