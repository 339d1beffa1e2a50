//! Recognising one event on both sides without ids: the same subject (spacing and case aside)
//! and exactly the same times. All-day never matches timed: `EventTime` compares the kind too.

use std::collections::HashSet;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::model::{CrmChanges, Link, OutlookChanges};
use crate::event::{CalendarEvent, EventTime, EMPTY_SUBJECT};
use crate::time::fold_twin;

/// What two copies of one event have in common however each side stored them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MatchKey {
    subject: String,
    time: EventTime,
}

impl MatchKey {
    pub fn of(event: &CalendarEvent) -> Self {
        Self {
            subject: normalise_subject(&event.subject),
            time: event.time.clone(),
        }
    }
}

/// Lower case, runs of whitespace as one space, no outer spaces. [`EMPTY_SUBJECT`] counts as
/// empty, since a side that requires a subject writes it in place of "".
pub fn normalise_subject(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for word in subject.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().flat_map(char::to_lowercase));
    }
    if out == EMPTY_SUBJECT {
        out.clear();
    }
    out
}

/// A CRM that keeps wall clocks in `zone` reads a time in a repeated hour (the clocks went
/// back) as the earlier of its two instants. Where the other one is what calsync already knows
/// (a link's base, either side's stored form, an Outlook event in this run), the user meant
/// that one: the CRM's times are taken as it. So a meeting in the repeated hour neither
/// moves by an hour nor fails to match its Outlook copy.
pub fn settle_folds(
    crm: &mut CrmChanges,
    snapshot: &[Link],
    outlook: &OutlookChanges,
    zone: &TimeZone,
) {
    let mut known: HashSet<Timestamp> = HashSet::new();
    let mut learn = |time: &EventTime| {
        if let EventTime::Timed { start, end } = time {
            known.insert(*start);
            known.insert(*end);
        }
    };
    for link in snapshot {
        learn(&link.base.time);
        for form in [&link.as_stored.crm, &link.as_stored.outlook]
            .into_iter()
            .flatten()
        {
            learn(&form.time);
        }
    }
    for item in &outlook.upserts {
        learn(&item.event.time);
    }
    let meant = |at: Timestamp| match fold_twin(at, zone) {
        Some(twin) if known.contains(&twin) && !known.contains(&at) => twin,
        _ => at,
    };
    for event in &mut crm.upserts {
        if let EventTime::Timed { start, end } = &mut event.time {
            *start = meant(*start);
            *end = meant(*end).max(*start);
        }
    }
}
