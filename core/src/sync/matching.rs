//! Recognising one event on both sides without ids: the same subject (spacing and case aside)
//! and exactly the same times. All-day never matches timed: `EventTime` compares the kind too.

use crate::event::{CalendarEvent, EventTime, EMPTY_SUBJECT};

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
