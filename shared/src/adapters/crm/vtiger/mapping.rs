//! vtiger Events record ↔ canonical event. Pure functions: no I/O, no clock.
//!
//! The quirks that live here:
//! - date/time fields are wall-clock values in the CRM server's zone, for every user;
//! - `reminder_time` is written in seconds and read in minutes, and a zero minute part is
//!   stored as 1 (3600 s → 61 min), so a read of N·60+1 minutes is taken as N whole hours;
//! - there is no all-day flag: all-day events are whole days in the owner's zone, marked with
//!   the legacy `notime` field.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::wire::Record;
use calsync_core::event::{
    plain_text, CalendarEvent, EventField, EventStatus, EventTime, Sensitivity,
};
use calsync_core::sync::CRM_MARKER_PREFIX;

/// The content fields vtiger Events carry.
pub const CARRIED_FIELDS: &[EventField] = &[
    EventField::Subject,
    EventField::Location,
    EventField::Description,
    EventField::Time,
    EventField::Status,
    EventField::Sensitivity,
    EventField::Reminder,
    EventField::ActivityType,
];

/// The activity type written when the event has none.
pub const DEFAULT_ACTIVITY_TYPE: &str = "Meeting";

/// vtiger refuses an empty subject (it is mandatory): this is written instead.
pub use calsync_core::event::EMPTY_SUBJECT;

#[derive(Debug, thiserror::Error)]
#[error("field {field} has an unusable value {value:?}")]
pub struct MappingError {
    pub field: &'static str,
    pub value: String,
    #[source]
    pub source: jiff::Error,
}

/// The zones a mapping needs.
#[derive(Debug, Clone)]
pub struct Zones {
    /// The CRM server's zone: what every date/time field is expressed in.
    pub server: TimeZone,
    /// The owner's zone, which decides what "a whole day" is.
    pub all_day: TimeZone,
}

impl Zones {
    pub fn new(server: TimeZone, all_day: TimeZone) -> Self {
        Self { server, all_day }
    }
}

fn invalid(field: &'static str, value: &str, source: jiff::Error) -> MappingError {
    MappingError {
        field,
        value: value.to_owned(),
        source,
    }
}

/// `YYYY-MM-DD`, as the API writes dates.
pub fn parse_date(field: &'static str, value: &str) -> Result<Date, MappingError> {
    Date::strptime("%Y-%m-%d", value.trim()).map_err(|err| invalid(field, value, err))
}

/// `HH:MM:SS` (or `HH:MM`); empty means midnight.
pub fn parse_time(field: &'static str, value: &str) -> Result<Time, MappingError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(Time::midnight());
    }
    Time::strptime("%H:%M:%S", value)
        .or_else(|_| Time::strptime("%H:%M", value))
        .map_err(|err| invalid(field, value, err))
}

/// A `YYYY-MM-DD HH:MM:SS` value in the server's zone (createdtime, modifiedtime).
pub fn parse_server_datetime(
    field: &'static str,
    value: &str,
    server: &TimeZone,
) -> Result<Timestamp, MappingError> {
    let civil = DateTime::strptime("%Y-%m-%d %H:%M:%S", value.trim())
        .map_err(|err| invalid(field, value, err))?;
    server
        .to_timestamp(civil)
        .map_err(|err| invalid(field, value, err))
}

/// An instant as the server writes it: `YYYY-MM-DD HH:MM:SS` in its zone.
pub fn format_server_datetime(at: Timestamp, server: &TimeZone) -> String {
    server
        .to_datetime(at)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn local_to_instant(
    date: Date,
    time: Time,
    zone: &TimeZone,
    field: &'static str,
) -> Result<Timestamp, MappingError> {
    calsync_core::time::wall_clock_instant(date, time, zone)
        .map_err(|err| invalid(field, &date.to_string(), err))
}

/// Minutes as read from `reminder_time` → the reminder the user meant.
pub fn reminder_minutes_from_crm(value: &str) -> Option<u32> {
    let minutes: u32 = value.trim().parse().ok()?;
    match minutes {
        0 => None,
        // The server stores whole hours/days as N·60+1: undo that drift.
        m if m > 60 && m % 60 == 1 => Some(m - 1),
        m => Some(m),
    }
}

/// The `reminder_time` to send: seconds, and "0" for none. Sent on every write, since a write
/// without it deletes the reminder.
pub fn reminder_seconds_for_crm(minutes: Option<u32>) -> String {
    match minutes {
        None => "0".to_owned(),
        // vtiger cannot store "at the start"; one minute is the closest it keeps.
        Some(0) => "60".to_owned(),
        Some(m) => (u64::from(m) * 60).to_string(),
    }
}

fn status_from_crm(value: &str) -> EventStatus {
    match value.trim() {
        "Held" => EventStatus::Held,
        "Not Held" => EventStatus::Cancelled,
        _ => EventStatus::Scheduled,
    }
}

fn status_for_crm(status: EventStatus) -> &'static str {
    match status {
        EventStatus::Scheduled => "Planned",
        EventStatus::Held => "Held",
        EventStatus::Cancelled => "Not Held",
    }
}

fn sensitivity_from_crm(value: &str) -> Sensitivity {
    if value.trim().eq_ignore_ascii_case("private") {
        Sensitivity::Private
    } else {
        Sensitivity::Normal
    }
}

fn visibility_for_crm(sensitivity: Sensitivity) -> &'static str {
    if sensitivity.is_restricted() {
        "Private"
    } else {
        "Public"
    }
}

/// Read the start and end of a record.
fn time_from_record(record: &Record, zones: &Zones) -> Result<EventTime, MappingError> {
    let start_date = parse_date("date_start", &record.text("date_start"))?;
    let start_time = parse_time("time_start", &record.text("time_start"))?;
    let start = local_to_instant(start_date, start_time, &zones.server, "date_start")?;
    let due = record.text("due_date");
    let end = if due.trim().is_empty() {
        start
    } else {
        let end_date = parse_date("due_date", &due)?;
        let end_time = parse_time("time_end", &record.text("time_end"))?;
        local_to_instant(end_date, end_time, &zones.server, "due_date")?
    };
    let end = end.max(start);

    if record.text("notime").trim() != "1" {
        return Ok(EventTime::Timed { start, end });
    }
    let first_day = zones.all_day.to_datetime(start).date();
    let last = zones.all_day.to_datetime(end);
    // Written as 00:00 .. 23:59 of the last day; an end at midnight already is exclusive.
    let end_day = if last.time() == Time::midnight() {
        last.date()
    } else {
        last.date()
            .tomorrow()
            .map_err(|err| invalid("due_date", &due, err))?
    };
    let end_day = if end_day <= first_day {
        first_day
            .tomorrow()
            .map_err(|err| invalid("due_date", &due, err))?
    } else {
        end_day
    };
    Ok(EventTime::AllDay {
        start: first_day,
        end: end_day,
    })
}

/// A vtiger Events record → canonical event.
pub fn event_from_record(record: &Record, zones: &Zones) -> Result<CalendarEvent, MappingError> {
    let time = time_from_record(record, zones)?;
    let mut event =
        CalendarEvent::timed(String::new(), Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH);
    event.time = time;
    event.ids.crm = Some(record.id()).filter(|id| !id.is_empty());
    // calsync's creates set `source` to their marker (vtiger stores it in capitals).
    let source = record.text("source");
    event.ids.crm_marker = Some(source).filter(|source| source.starts_with(CRM_MARKER_PREFIX));
    let modified = record.text("modifiedtime");
    if !modified.trim().is_empty() {
        event.modified.crm = Some(parse_server_datetime(
            "modifiedtime",
            &modified,
            &zones.server,
        )?);
    }
    event.subject = record.text("subject");
    event.location = record.text("location");
    event.description = plain_text(&record.text("description"));
    event.status = status_from_crm(&record.text("eventstatus"));
    event.sensitivity = sensitivity_from_crm(&record.text("visibility"));
    event.reminder_minutes = reminder_minutes_from_crm(&record.text("reminder_time"));
    let activity = record.text("activitytype");
    event.activity_type = Some(activity).filter(|value| !value.trim().is_empty());
    Ok(event)
}

/// Start/end fields (and the durations vtiger wants) for a write.
fn time_fields(
    time: &EventTime,
    zones: &Zones,
) -> Result<Vec<(&'static str, String)>, MappingError> {
    let (start, end, all_day) = match time {
        EventTime::Timed { start, end } => (*start, (*end).max(*start), false),
        EventTime::AllDay { start, end } => {
            let last_day = if end > start {
                end.yesterday()
                    .map_err(|err| invalid("due_date", &end.to_string(), err))?
            } else {
                *start
            };
            let first = local_to_instant(*start, Time::midnight(), &zones.all_day, "date_start")?;
            let last_minute =
                Time::new(23, 59, 0, 0).map_err(|err| invalid("time_end", "", err))?;
            let last = local_to_instant(last_day, last_minute, &zones.all_day, "due_date")?;
            (first, last.max(first), true)
        }
    };
    let start_local = zones.server.to_datetime(start);
    let end_local = zones.server.to_datetime(end);
    let length = end.duration_since(start).max(SignedDuration::ZERO);
    let minutes = length.as_secs() / 60;
    Ok(vec![
        ("date_start", start_local.date().to_string()),
        ("time_start", start_local.strftime("%H:%M:%S").to_string()),
        ("due_date", end_local.date().to_string()),
        ("time_end", end_local.strftime("%H:%M:%S").to_string()),
        // The server recomputes both from start/end on every save; `duration_hours` is
        // mandatory all the same.
        ("duration_hours", (minutes / 60).to_string()),
        ("duration_minutes", (minutes % 60).to_string()),
        ("notime", if all_day { "1" } else { "0" }.to_owned()),
    ])
}

/// The longest subject and location vtiger keeps (its columns' widths, in characters).
const SUBJECT_MAX: usize = 255;
const LOCATION_MAX: usize = 150;

/// What vtiger 8 holds after being given `event` (measured on 8.2.0): texts in a 3-byte UTF-8
/// table, so each 4-byte character (an emoji) becomes "????"; subject and location cut to their
/// columns; an empty subject replaced; a 0-minute reminder kept as 1 minute; personal and
/// confidential both "Private".
pub fn stored_form(event: &mut CalendarEvent) {
    fn three_byte(text: &str) -> String {
        let mut kept = String::with_capacity(text.len());
        for c in text.chars() {
            if c.len_utf8() == 4 {
                kept.push_str("????");
            } else {
                kept.push(c);
            }
        }
        kept
    }
    let subject = three_byte(&event.subject);
    event.subject = if subject.trim().is_empty() {
        EMPTY_SUBJECT.to_owned()
    } else {
        subject.chars().take(SUBJECT_MAX).collect()
    };
    event.location = three_byte(&event.location)
        .chars()
        .take(LOCATION_MAX)
        .collect();
    event.description = three_byte(&event.description);
    if event.reminder_minutes == Some(0) {
        event.reminder_minutes = Some(1);
    }
    if matches!(
        event.sensitivity,
        Sensitivity::Personal | Sensitivity::Confidential
    ) {
        event.sensitivity = Sensitivity::Private;
    }
}

/// The element fields that write `fields` of `event` (the reminder is not among them: it is
/// added to every write by the caller, see [`reminder_seconds_for_crm`]).
pub fn fields_for_write(
    event: &CalendarEvent,
    fields: &[EventField],
    zones: &Zones,
) -> Result<Vec<(&'static str, String)>, MappingError> {
    let mut out = Vec::new();
    for field in CARRIED_FIELDS.iter().filter(|field| fields.contains(field)) {
        match field {
            EventField::Subject => {
                let subject = if event.subject.trim().is_empty() {
                    EMPTY_SUBJECT.to_owned()
                } else {
                    event.subject.clone()
                };
                out.push(("subject", subject));
            }
            EventField::Location => out.push(("location", event.location.clone())),
            EventField::Description => out.push(("description", event.description.clone())),
            EventField::Time => out.extend(time_fields(&event.time, zones)?),
            EventField::Status => out.push(("eventstatus", status_for_crm(event.status).into())),
            EventField::Sensitivity => out.push((
                "visibility",
                visibility_for_crm(event.sensitivity).to_owned(),
            )),
            EventField::ActivityType => out.push((
                "activitytype",
                event
                    .activity_type
                    .clone()
                    .filter(|value| !value.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_ACTIVITY_TYPE.to_owned()),
            )),
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn madrid() -> TimeZone {
        TimeZone::get("Europe/Madrid").unwrap()
    }

    fn zones_utc() -> Zones {
        Zones::new(TimeZone::UTC, TimeZone::UTC)
    }

    fn record(value: serde_json::Value) -> Record {
        serde_json::from_value(value).unwrap()
    }

    fn ts(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn base_record() -> serde_json::Value {
        json!({
            "subject": "Acceptance meeting", "assigned_user_id": "19x1",
            "date_start": "2026-12-01", "time_start": "09:00:00",
            "due_date": "2026-12-01", "time_end": "10:30:00",
            "eventstatus": "Planned", "activitytype": "Meeting", "location": "Room 1",
            "modifiedtime": "2026-11-27 00:43:03", "visibility": "Public",
            "description": "line 1\r\nline 2", "reminder_time": "15", "notime": "0", "id": "18x3"
        })
    }

    #[test]
    fn reads_a_timed_event_in_utc() {
        let event = event_from_record(&record(base_record()), &zones_utc()).unwrap();
        assert_eq!(
            event.time,
            EventTime::Timed {
                start: ts("2026-12-01T09:00:00Z"),
                end: ts("2026-12-01T10:30:00Z")
            }
        );
        assert_eq!(event.ids.crm.as_deref(), Some("18x3"));
        assert_eq!(event.modified.crm, Some(ts("2026-11-27T00:43:03Z")));
        assert_eq!(event.description, "line 1\nline 2");
        assert_eq!(event.reminder_minutes, Some(15));
        assert_eq!(event.status, EventStatus::Scheduled);
        assert_eq!(event.sensitivity, Sensitivity::Normal);
        assert_eq!(event.activity_type.as_deref(), Some("Meeting"));
    }

    #[test]
    fn reminder_drift_is_undone_on_read() {
        for (stored, meant) in [
            ("1", Some(1)),
            ("5", Some(5)),
            ("15", Some(15)),
            ("61", Some(60)),
            ("90", Some(90)),
            ("121", Some(120)),
            ("1441", Some(1440)),
            ("0", None),
            ("", None),
            ("garbage", None),
        ] {
            assert_eq!(reminder_minutes_from_crm(stored), meant, "{stored}");
        }
        assert_eq!(reminder_seconds_for_crm(Some(60)), "3600");
        assert_eq!(reminder_seconds_for_crm(Some(15)), "900");
        assert_eq!(reminder_seconds_for_crm(None), "0");
        assert_eq!(reminder_seconds_for_crm(Some(0)), "60");
    }

    #[test]
    fn stored_form_is_what_vtiger_keeps() {
        let mut event =
            CalendarEvent::timed("", ts("2026-03-01T10:00:00Z"), ts("2026-03-01T11:00:00Z"));
        event.location = "x".repeat(200);
        event.description = "ok 🎉".into();
        event.reminder_minutes = Some(0);
        event.sensitivity = Sensitivity::Confidential;
        stored_form(&mut event);
        assert_eq!(event.subject, EMPTY_SUBJECT);
        assert_eq!(event.location.chars().count(), LOCATION_MAX);
        assert_eq!(event.description, "ok ????");
        assert_eq!(event.reminder_minutes, Some(1));
        assert_eq!(event.sensitivity, Sensitivity::Private);
        let mut long = CalendarEvent::timed(
            "é".repeat(300),
            ts("2026-03-01T10:00:00Z"),
            ts("2026-03-01T11:00:00Z"),
        );
        stored_form(&mut long);
        assert_eq!(long.subject.chars().count(), SUBJECT_MAX);
        // Stored once, stored again the same.
        let again = long.clone();
        stored_form(&mut long);
        assert_eq!(long, again);
    }

    #[test]
    fn statuses_and_visibility() {
        for (crm, status) in [
            ("Planned", EventStatus::Scheduled),
            ("Held", EventStatus::Held),
            ("Not Held", EventStatus::Cancelled),
            ("Custom", EventStatus::Scheduled),
        ] {
            assert_eq!(status_from_crm(crm), status);
        }
        for status in [
            EventStatus::Scheduled,
            EventStatus::Held,
            EventStatus::Cancelled,
        ] {
            assert_eq!(status_from_crm(status_for_crm(status)), status);
        }
        assert_eq!(sensitivity_from_crm("Private"), Sensitivity::Private);
        assert_eq!(sensitivity_from_crm(""), Sensitivity::Normal);
        assert_eq!(visibility_for_crm(Sensitivity::Confidential), "Private");
        assert_eq!(visibility_for_crm(Sensitivity::Normal), "Public");
    }

    #[test]
    fn madrid_summer_and_winter_offsets() {
        let zones = Zones::new(madrid(), madrid());
        let mut rec = base_record();
        rec["date_start"] = json!("2026-07-01");
        rec["due_date"] = json!("2026-07-01");
        rec["modifiedtime"] = json!("2026-07-01 12:00:00");
        let summer = event_from_record(&record(rec), &zones).unwrap();
        assert_eq!(
            summer.time,
            EventTime::Timed {
                start: ts("2026-07-01T07:00:00Z"),
                end: ts("2026-07-01T08:30:00Z")
            }
        );
        assert_eq!(summer.modified.crm, Some(ts("2026-07-01T10:00:00Z")));
        let winter = event_from_record(&record(base_record()), &zones).unwrap();
        assert_eq!(
            winter.time,
            EventTime::Timed {
                start: ts("2026-12-01T08:00:00Z"),
                end: ts("2026-12-01T09:30:00Z")
            }
        );
    }

    #[test]
    fn writes_across_the_spring_forward_night() {
        // 2026-03-29: Madrid jumps from 02:00 CET to 03:00 CEST.
        let zones = Zones::new(madrid(), madrid());
        let event = CalendarEvent::timed(
            "night shift",
            ts("2026-03-28T23:30:00Z"),
            ts("2026-03-29T02:30:00Z"),
        );
        let fields: std::collections::BTreeMap<_, _> =
            fields_for_write(&event, &[EventField::Time], &zones)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(fields["date_start"], "2026-03-29");
        assert_eq!(fields["time_start"], "00:30:00");
        assert_eq!(fields["time_end"], "04:30:00");
        // Three real hours, although the wall clock says four.
        assert_eq!(fields["duration_hours"], "3");
        assert_eq!(fields["duration_minutes"], "0");
        let mut rec = base_record();
        for (key, value) in &fields {
            rec[*key] = json!(value);
        }
        let back = event_from_record(&record(rec), &zones).unwrap();
        assert_eq!(back.time, event.time);
    }

    #[test]
    fn fall_back_fold_reads_the_earlier_instant() {
        // 2026-10-25: 02:00-03:00 happens twice in Madrid.
        let zones = Zones::new(madrid(), madrid());
        let mut rec = base_record();
        rec["date_start"] = json!("2026-10-25");
        rec["time_start"] = json!("02:30:00");
        rec["due_date"] = json!("2026-10-25");
        rec["time_end"] = json!("04:00:00");
        let event = event_from_record(&record(rec), &zones).unwrap();
        assert_eq!(
            event.time,
            EventTime::Timed {
                start: ts("2026-10-25T00:30:00Z"),
                end: ts("2026-10-25T03:00:00Z")
            }
        );
    }

    #[test]
    fn all_day_round_trip_in_the_owners_zone() {
        // Server in UTC, owner in Madrid: a Madrid day starts at 23:00 UTC the day before.
        let zones = Zones::new(TimeZone::UTC, madrid());
        let start: Date = "2026-12-01".parse().unwrap();
        let end: Date = "2026-12-03".parse().unwrap();
        let event = CalendarEvent::all_day("Offsite", start, end);
        let fields: std::collections::BTreeMap<_, _> =
            fields_for_write(&event, &[EventField::Time], &zones)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(fields["date_start"], "2026-11-30");
        assert_eq!(fields["time_start"], "23:00:00");
        assert_eq!(fields["due_date"], "2026-12-02");
        assert_eq!(fields["time_end"], "22:59:00");
        assert_eq!(fields["notime"], "1");
        let mut rec = base_record();
        for (key, value) in &fields {
            rec[*key] = json!(value);
        }
        let back = event_from_record(&record(rec), &zones).unwrap();
        assert_eq!(back.time, EventTime::AllDay { start, end });
    }

    #[test]
    fn all_day_in_summer_madrid_server() {
        let zones = Zones::new(madrid(), madrid());
        let start: Date = "2026-07-10".parse().unwrap();
        let end: Date = "2026-07-11".parse().unwrap();
        let event = CalendarEvent::all_day("Holiday", start, end);
        let fields: std::collections::BTreeMap<_, _> =
            fields_for_write(&event, &[EventField::Time], &zones)
                .unwrap()
                .into_iter()
                .collect();
        assert_eq!(fields["date_start"], "2026-07-10");
        assert_eq!(fields["time_start"], "00:00:00");
        assert_eq!(fields["due_date"], "2026-07-10");
        assert_eq!(fields["time_end"], "23:59:00");
    }

    #[test]
    fn partial_write_sends_only_the_fields_asked_for() {
        let mut event =
            CalendarEvent::timed("x", ts("2026-12-01T09:00:00Z"), ts("2026-12-01T10:00:00Z"));
        event.location = "Room 9".into();
        let fields = fields_for_write(
            &event,
            &[EventField::Location, EventField::Categories],
            &zones_utc(),
        )
        .unwrap();
        assert_eq!(fields, vec![("location", "Room 9".to_owned())]);
        let subject = fields_for_write(
            &CalendarEvent::timed("", ts("2026-12-01T09:00:00Z"), ts("2026-12-01T10:00:00Z")),
            &[EventField::Subject, EventField::ActivityType],
            &zones_utc(),
        )
        .unwrap();
        assert_eq!(
            subject,
            vec![
                ("subject", EMPTY_SUBJECT.to_owned()),
                ("activitytype", DEFAULT_ACTIVITY_TYPE.to_owned())
            ]
        );
    }

    #[test]
    fn bad_values_are_errors_not_panics() {
        let mut rec = base_record();
        rec["date_start"] = json!("31/12/2026");
        let err = event_from_record(&record(rec), &zones_utc()).unwrap_err();
        assert_eq!(err.field, "date_start");
        let mut rec = base_record();
        rec["time_end"] = json!("25:99");
        assert!(event_from_record(&record(rec), &zones_utc()).is_err());
    }

    #[test]
    fn end_before_start_is_clamped() {
        let mut rec = base_record();
        rec["time_end"] = json!("08:00:00");
        let event = event_from_record(&record(rec), &zones_utc()).unwrap();
        assert_eq!(
            event.time,
            EventTime::Timed {
                start: ts("2026-12-01T09:00:00Z"),
                end: ts("2026-12-01T09:00:00Z")
            }
        );
    }
}
