//! Graph event ↔ canonical [`CalendarEvent`], as pure functions. Times become UTC instants
//! (Windows zone names go through the CLDR table); all-day events become floating dates, since
//! Graph returns them midnight to midnight whatever zone was asked for.

use jiff::civil::{Date, DateTime};
use jiff::Timestamp;

use super::events::{EventDraft, LocationDraft, CRM_ID_PROPERTY};
use super::types::{DateTimeTimeZone, GraphEvent};
use calsync_core::event::{
    plain_text, CalendarEvent, EventField, EventStatus, EventTime, Organizer, Sensitivity, ShowAs,
    SideIds, SideTimes,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("the event has no start or end")]
    MissingTimes,
    #[error("unreadable dateTime {value:?}")]
    BadDateTime { value: String },
    #[error("unknown time zone {name:?}")]
    UnknownZone { name: String },
    #[error("a tombstone or occurrence stub has no content to map")]
    NoContent,
}

fn civil(value: &DateTimeTimeZone) -> Result<DateTime, MappingError> {
    let text = value.date_time.trim();
    text.parse::<DateTime>()
        .or_else(|_| {
            text.parse::<Date>()
                .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
        })
        .map_err(|_| MappingError::BadDateTime {
            value: text.to_owned(),
        })
}

/// The instant a `dateTimeTimeZone` names.
pub fn instant(value: &DateTimeTimeZone) -> Result<Timestamp, MappingError> {
    let zone_name = value.time_zone.as_deref().unwrap_or("UTC");
    let zone =
        calsync_core::time::resolve_zone(zone_name).ok_or_else(|| MappingError::UnknownZone {
            name: zone_name.to_owned(),
        })?;
    let civil = civil(value)?;
    calsync_core::time::wall_clock_instant(civil.date(), civil.time(), &zone).map_err(|_| {
        MappingError::BadDateTime {
            value: value.date_time.clone(),
        }
    })
}

fn show_as(value: Option<&str>) -> Option<ShowAs> {
    match value?.to_ascii_lowercase().as_str() {
        "free" => Some(ShowAs::Free),
        "tentative" => Some(ShowAs::Tentative),
        "busy" => Some(ShowAs::Busy),
        "oof" => Some(ShowAs::OutOfOffice),
        "workingelsewhere" => Some(ShowAs::WorkingElsewhere),
        _ => None,
    }
}

fn show_as_name(value: ShowAs) -> &'static str {
    match value {
        ShowAs::Free => "free",
        ShowAs::Tentative => "tentative",
        ShowAs::Busy => "busy",
        ShowAs::OutOfOffice => "oof",
        ShowAs::WorkingElsewhere => "workingElsewhere",
    }
}

fn sensitivity_name(value: Sensitivity) -> &'static str {
    match value {
        Sensitivity::Normal => "normal",
        Sensitivity::Personal => "personal",
        Sensitivity::Private => "private",
        Sensitivity::Confidential => "confidential",
    }
}

/// The Graph write of `fields` of `event` (all writable fields for a create). Timed events are
/// written as UTC instants. All-day events are written as bare dates (Graph ignores the time
/// of an all-day event) in `all_day_zone`, the user's own zone: Outlook shows an all-day event
/// kept in another zone across the wrong days. Read back, both map to the same canonical
/// values. Fields Graph does not
/// carry (status, activity type) and the organizer (Graph's own) are never written, and there
/// is no attendees field at all: calsync never sends invitations.
pub fn draft_from_event(
    event: &CalendarEvent,
    fields: &[EventField],
    all_day_zone: &str,
) -> EventDraft {
    let mut draft = EventDraft::default();
    for field in fields {
        match field {
            EventField::Subject => draft.subject = Some(event.subject.clone()),
            EventField::Location => {
                draft.location = Some(LocationDraft {
                    display_name: event.location.clone(),
                })
            }
            EventField::Description => {
                draft.body = Some(EventDraft::text_body(event.description.clone()))
            }
            EventField::Time => match &event.time {
                EventTime::Timed { start, end } => {
                    draft.start = Some(EventDraft::utc(*start));
                    draft.end = Some(EventDraft::utc(*end));
                    draft.is_all_day = Some(false);
                }
                EventTime::AllDay { start, end } => {
                    draft.start = Some(whole_day(*start, all_day_zone));
                    draft.end = Some(whole_day(*end, all_day_zone));
                    draft.is_all_day = Some(true);
                }
            },
            EventField::ShowAs => draft.show_as = event.show_as.map(|v| show_as_name(v).into()),
            EventField::Sensitivity => {
                draft.sensitivity = Some(sensitivity_name(event.sensitivity).into())
            }
            EventField::Reminder => {
                draft.is_reminder_on = Some(event.reminder_minutes.is_some());
                if let Some(minutes) = event.reminder_minutes {
                    draft.reminder_minutes_before_start = Some(minutes.min(i32::MAX as u32) as i32);
                }
            }
            EventField::Categories => draft.categories = Some(event.categories.clone()),
            EventField::Status | EventField::ActivityType | EventField::Organizer => {}
        }
    }
    draft
}

fn whole_day(day: Date, zone: &str) -> DateTimeTimeZone {
    DateTimeTimeZone {
        date_time: day.to_string(),
        time_zone: Some(zone.to_owned()),
    }
}

fn sensitivity(value: Option<&str>) -> Sensitivity {
    match value.map(str::to_ascii_lowercase).as_deref() {
        Some("personal") => Sensitivity::Personal,
        Some("private") => Sensitivity::Private,
        Some("confidential") => Sensitivity::Confidential,
        _ => Sensitivity::Normal,
    }
}

/// Text of an HTML body, for the rare answer that ignores `outlook.body-content-type`.
fn html_text(html: &str) -> String {
    let mut text = String::with_capacity(html.len());
    let mut in_tag = false;
    let mut tag = String::new();
    let mut hidden = false;
    for c in html.chars() {
        match (in_tag, c) {
            (false, '<') => {
                in_tag = true;
                tag.clear();
            }
            (true, '>') => {
                in_tag = false;
                let closing = tag.starts_with('/');
                let name = tag
                    .trim_start_matches('/')
                    .split(|c: char| c.is_whitespace() || c == '/')
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if matches!(name.as_str(), "head" | "style" | "script") {
                    hidden = !closing;
                } else if !hidden
                    && (name == "br"
                        || (closing && matches!(name.as_str(), "p" | "div" | "li" | "tr")))
                {
                    text.push('\n');
                }
            }
            (true, c) => tag.push(c),
            (false, c) if !hidden => text.push(c),
            _ => {}
        }
    }
    let decoded = text
        .replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&");
    let lines: Vec<&str> = decoded.lines().map(str::trim).collect();
    let mut out = lines.join("\n");
    while out.contains("\n\n\n") {
        out = out.replace("\n\n\n", "\n\n");
    }
    out.trim().to_owned()
}

/// Maps a full Graph event (a single event, a completed occurrence or an exception).
pub fn to_calendar_event(event: &GraphEvent) -> Result<CalendarEvent, MappingError> {
    if event.is_tombstone() || event.is_occurrence_stub() {
        return Err(MappingError::NoContent);
    }
    let (Some(start), Some(end)) = (&event.start, &event.end) else {
        return Err(MappingError::MissingTimes);
    };
    let time = if event.is_all_day == Some(true) {
        // Dates as written: all-day events float, whatever zone Graph labels them with.
        EventTime::AllDay {
            start: civil(start)?.date(),
            end: civil(end)?.date(),
        }
    } else {
        let (start, end) = (instant(start)?, instant(end)?);
        EventTime::Timed {
            start,
            end: end.max(start),
        }
    };
    let description = match &event.body {
        Some(body) => {
            let content = body.content.as_deref().unwrap_or_default();
            if body
                .content_type
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("html"))
            {
                html_text(content)
            } else {
                plain_text(content)
            }
        }
        None => String::new(),
    };
    let organizer = event
        .organizer
        .as_ref()
        .and_then(|o| o.email_address.as_ref())
        .map(|a| Organizer {
            name: a.name.clone().filter(|n| !n.is_empty()),
            email: a.address.clone().filter(|n| !n.is_empty()),
        });
    let reminder_minutes = match event.is_reminder_on {
        Some(false) => None,
        _ => event
            .reminder_minutes_before_start
            .and_then(|m| u32::try_from(m).ok()),
    };
    Ok(CalendarEvent {
        ids: SideIds {
            crm: event.extended_property(CRM_ID_PROPERTY).map(str::to_owned),
            outlook: Some(event.id.clone()),
            ical_uid: event.ical_uid.clone(),
            crm_marker: None,
            outlook_change_key: event.version().map(str::to_owned),
        },
        modified: SideTimes {
            crm: None,
            outlook: event
                .last_modified_date_time
                .as_deref()
                .and_then(|t| t.parse::<Timestamp>().ok()),
        },
        subject: event.subject.clone().unwrap_or_default(),
        location: event
            .location
            .as_ref()
            .and_then(|l| l.display_name.clone())
            .unwrap_or_default(),
        description,
        time,
        status: if event.is_cancelled == Some(true) {
            EventStatus::Cancelled
        } else {
            EventStatus::Scheduled
        },
        show_as: show_as(event.show_as.as_deref()),
        sensitivity: sensitivity(event.sensitivity.as_deref()),
        reminder_minutes,
        activity_type: None,
        categories: event.categories.clone().unwrap_or_default(),
        organizer,
        is_organizer: event.is_organizer,
        has_attendees: event.attendees.as_ref().is_some_and(|a| !a.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> serde_json::Value {
        let path = format!("{}/../fixtures/graph/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn drafts_read_back_as_the_same_event() {
        let mut timed = CalendarEvent::timed(
            "Madrid call",
            "2026-10-24T08:00:00Z".parse().unwrap(),
            "2026-10-25T09:30:00Z".parse().unwrap(),
        );
        timed.location = "Sala 2".into();
        timed.description = "line one\nline two".into();
        timed.show_as = Some(ShowAs::OutOfOffice);
        timed.sensitivity = Sensitivity::Private;
        timed.reminder_minutes = Some(15);
        timed.categories = vec!["CRM".into()];
        let all_day = CalendarEvent::all_day(
            "Holiday",
            "2026-10-25".parse().unwrap(),
            "2026-10-26".parse().unwrap(),
        );
        for event in [timed, all_day] {
            let draft = draft_from_event(&event, &EventField::ALL, "UTC");
            let mut body = serde_json::to_value(&draft).unwrap();
            body["id"] = json!("AAMk-1");
            let written: GraphEvent = serde_json::from_value(body).unwrap();
            let back = to_calendar_event(&written).unwrap();
            let differing: Vec<EventField> = back
                .differing_fields(&event)
                .into_iter()
                .filter(|f| *f != EventField::Organizer)
                .collect();
            assert!(differing.is_empty(), "{differing:?} differ for {event:?}");
        }
    }

    #[test]
    fn a_draft_writes_only_the_fields_asked_for() {
        let event = CalendarEvent::timed(
            "x",
            "2026-10-24T08:00:00Z".parse().unwrap(),
            "2026-10-24T09:00:00Z".parse().unwrap(),
        );
        let draft = draft_from_event(&event, &[EventField::Subject, EventField::Status], "UTC");
        assert_eq!(
            serde_json::to_value(&draft).unwrap(),
            json!({"subject": "x"})
        );
        let no_reminder = draft_from_event(&event, &[EventField::Reminder], "UTC");
        assert_eq!(
            serde_json::to_value(&no_reminder).unwrap(),
            json!({"isReminderOn": false})
        );
    }

    #[test]
    fn the_published_series_master_maps() {
        let event: GraphEvent =
            serde_json::from_value(fixture("event-recurring-series-master.json")).unwrap();
        let mapped = to_calendar_event(&event).unwrap();
        // 12:00 Pacific Daylight Time is 19:00 UTC.
        assert_eq!(
            mapped.time,
            EventTime::Timed {
                start: "2017-09-04T19:00:00Z".parse().unwrap(),
                end: "2017-09-04T21:00:00Z".parse().unwrap(),
            }
        );
        assert_eq!(mapped.subject, "Let's go for lunch");
        assert_eq!(mapped.location, "Harry's Bar");
        assert_eq!(mapped.description, "Does late morning work for you?");
        assert_eq!(mapped.reminder_minutes, Some(15));
        assert_eq!(mapped.show_as, Some(ShowAs::Busy));
        assert_eq!(mapped.is_organizer, Some(true));
        assert_eq!(
            mapped.organizer.unwrap().email.as_deref(),
            Some("AlexW@contoso.onmicrosoft.com")
        );
        assert_eq!(mapped.ids.outlook.as_deref(), Some("AAMkADQwMD"));
        assert!(mapped.modified.outlook.is_some());
        assert!(mapped.ids.crm.is_none());
    }

    #[test]
    fn delta_items_map_and_tombstones_do_not() {
        let page: crate::adapters::graph::types::DeltaPage = serde_json::from_value(fixture(
            "delta-calendarview-next-round-removed-deltalink.json",
        ))
        .unwrap();
        assert_eq!(
            to_calendar_event(&page.value[0]),
            Err(MappingError::NoContent)
        );
        let changed = to_calendar_event(&page.value[1]).unwrap();
        assert_eq!(changed.subject, "Attend service");
        assert_eq!(changed.location, "Chapel of Saint Ignatius");
        assert_eq!(
            changed.time,
            EventTime::Timed {
                start: "2016-12-25T06:00:00Z".parse().unwrap(),
                end: "2016-12-25T07:30:00Z".parse().unwrap(),
            }
        );
    }

    #[test]
    fn all_day_cancelled_private_and_stamped() {
        let event: GraphEvent = serde_json::from_value(json!({
            "id": "x",
            "subject": "Offsite",
            "isAllDay": true,
            "isCancelled": true,
            "isReminderOn": false,
            "reminderMinutesBeforeStart": 15,
            "sensitivity": "private",
            "showAs": "oof",
            "start": {"dateTime": "2026-05-04T00:00:00.0000000", "timeZone": "Tokyo Standard Time"},
            "end": {"dateTime": "2026-05-06T00:00:00.0000000", "timeZone": "Tokyo Standard Time"},
            "singleValueExtendedProperties": [{"id": CRM_ID_PROPERTY, "value": "18x42"}]
        }))
        .unwrap();
        let mapped = to_calendar_event(&event).unwrap();
        assert_eq!(
            mapped.time,
            EventTime::AllDay {
                start: "2026-05-04".parse().unwrap(),
                end: "2026-05-06".parse().unwrap(),
            }
        );
        assert_eq!(mapped.status, EventStatus::Cancelled);
        assert_eq!(mapped.sensitivity, Sensitivity::Private);
        assert_eq!(mapped.show_as, Some(ShowAs::OutOfOffice));
        assert_eq!(mapped.reminder_minutes, None);
        assert_eq!(mapped.ids.crm.as_deref(), Some("18x42"));
    }

    #[test]
    fn zones_and_bad_input() {
        let at = |dt: &str, tz: &str| {
            instant(&DateTimeTimeZone {
                date_time: dt.into(),
                time_zone: Some(tz.into()),
            })
        };
        assert_eq!(
            at("2026-01-15T10:00:00", "Romance Standard Time").unwrap(),
            "2026-01-15T09:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert_eq!(
            at("2026-07-15T10:00:00", "Europe/Madrid").unwrap(),
            "2026-07-15T08:00:00Z".parse::<Timestamp>().unwrap()
        );
        assert!(matches!(
            at("2026-01-15T10:00:00", "tzone://Microsoft/Custom"),
            Err(MappingError::UnknownZone { .. })
        ));
        assert!(matches!(
            at("yesterday", "UTC"),
            Err(MappingError::BadDateTime { .. })
        ));
        assert_eq!(
            html_text("<p>Hello&nbsp;<b>there</b></p><p>Bye &amp; thanks</p>"),
            "Hello there\nBye & thanks"
        );
    }
}
