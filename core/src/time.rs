//! Time rules both sides share: the synced window, which zone a name means, and how a
//! wall-clock time in a zone becomes an instant. Graph reports Windows zone names and the CRM
//! speaks in its server's zone (IANA names); both adapters resolve names and convert wall-clock
//! times through here, so the rules are the same.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde::{Deserialize, Serialize};

/// The span of time being synced: `[start, end)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeWindow {
    pub fn new(start: Timestamp, end: Timestamp) -> Self {
        Self { start, end }
    }

    /// Whether `at` falls inside the window.
    pub fn contains(&self, at: Timestamp) -> bool {
        self.start <= at && at < self.end
    }
}

/// A zone by IANA or Windows name (CLDR's default territory for Windows names); empty and
/// `UTC` in any letter case mean UTC. `None` for a name neither table knows.
pub fn resolve_zone(name: &str) -> Option<TimeZone> {
    let name = name.trim();
    if name.is_empty() || name.eq_ignore_ascii_case("utc") {
        return Some(TimeZone::UTC);
    }
    if let Ok(zone) = TimeZone::get(name) {
        return Some(zone);
    }
    let iana = localzone::win_zone_to_iana(name, Some("001"))?;
    TimeZone::get(iana).ok()
}

/// The instant a wall-clock date and time in `zone` names. A time the clocks skipped (spring
/// forward) is read with the offset before the gap, so it lands as far after the gap as it was
/// meant into it; a time that happened twice (fall back) is the first of the two, as calendar
/// applications read it.
pub fn wall_clock_instant(
    date: Date,
    time: Time,
    zone: &TimeZone,
) -> Result<Timestamp, jiff::Error> {
    zone.to_timestamp(date.to_datetime(time))
}

/// The other instant with the same wall-clock time in `zone`, when `at` falls in a repeated
/// hour (the clocks went back): a side that keeps only wall clocks cannot tell the two apart.
pub fn fold_twin(at: Timestamp, zone: &TimeZone) -> Option<Timestamp> {
    let ambiguous = zone.to_ambiguous_timestamp(zone.to_datetime(at));
    if !ambiguous.is_ambiguous() {
        return None;
    }
    let earlier = ambiguous.earlier().ok()?;
    let later = ambiguous.later().ok()?;
    Some(if at == earlier { later } else { earlier })
}

/// `at` moved by whole days on the wall clock of `zone` (a day across a DST change is 23 or 25
/// hours long); `at` itself if that leaves jiff's range.
pub fn shift_days(at: Timestamp, days: i64, zone: &TimeZone) -> Timestamp {
    zone.to_datetime(at)
        .checked_add(days.days())
        .ok()
        .and_then(|shifted| zone.to_timestamp(shifted).ok())
        .unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_by_iana_and_windows_names() {
        assert_eq!(resolve_zone("UTC"), Some(TimeZone::UTC));
        assert_eq!(resolve_zone(""), Some(TimeZone::UTC));
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        assert_eq!(resolve_zone("Europe/Madrid"), Some(madrid.clone()));
        assert_eq!(
            resolve_zone("Romance Standard Time").map(|z| z.iana_name().map(str::to_owned)),
            Some(Some("Europe/Paris".to_owned()))
        );
        assert_eq!(resolve_zone("Mars/Olympus"), None);
    }

    #[test]
    fn the_twin_of_a_repeated_wall_time() {
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        let first: Timestamp = "2027-10-31T00:30:00Z".parse().unwrap();
        let second: Timestamp = "2027-10-31T01:30:00Z".parse().unwrap();
        assert_eq!(fold_twin(first, &madrid), Some(second));
        assert_eq!(fold_twin(second, &madrid), Some(first));
        let plain: Timestamp = "2027-10-31T03:00:00Z".parse().unwrap();
        assert_eq!(fold_twin(plain, &madrid), None);
        assert_eq!(fold_twin(first, &TimeZone::UTC), None);
    }

    #[test]
    fn skipped_and_repeated_wall_times() {
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        // 2026-03-29 02:30 does not exist in Madrid: it is read as 03:30 CEST (01:30 UTC).
        let gap = wall_clock_instant(
            "2026-03-29".parse().unwrap(),
            Time::new(2, 30, 0, 0).unwrap(),
            &madrid,
        )
        .unwrap();
        assert_eq!(gap.to_string(), "2026-03-29T01:30:00Z");
        // 2026-10-25 02:30 happens twice: the first one, still CEST (00:30 UTC).
        let fold = wall_clock_instant(
            "2026-10-25".parse().unwrap(),
            Time::new(2, 30, 0, 0).unwrap(),
            &madrid,
        )
        .unwrap();
        assert_eq!(fold.to_string(), "2026-10-25T00:30:00Z");
    }

    #[test]
    fn days_shift_on_the_wall_clock() {
        let madrid = TimeZone::get("Europe/Madrid").unwrap();
        let before: Timestamp = "2026-10-24T08:00:00Z".parse().unwrap();
        // 10:00 in Madrid stays 10:00 a day later, across the change to winter time.
        assert_eq!(
            shift_days(before, 1, &madrid).to_string(),
            "2026-10-25T09:00:00Z"
        );
    }

    #[test]
    fn windows_are_half_open() {
        let start: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let end: Timestamp = "2026-02-01T00:00:00Z".parse().unwrap();
        let window = TimeWindow::new(start, end);
        assert!(window.contains(start));
        assert!(!window.contains(end));
    }
}
