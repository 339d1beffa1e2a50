//! Times the Graph way: wall-clock `dateTime` strings with a zone name (Windows or IANA), UTC
//! instants with seven fractional digits, and query-string instants.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// A zone by Windows name (mapped with the CLDR table) or IANA name; `None` when unknown.
pub(crate) fn resolve_zone(name: &str) -> Option<TimeZone> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") || name.eq_ignore_ascii_case("tzone://Microsoft/Utc") {
        return Some(TimeZone::UTC);
    }
    if let Ok(zone) = TimeZone::get(name) {
        return Some(zone);
    }
    let iana = localzone::win_zone_to_iana(name, Some("001"))?;
    TimeZone::get(iana).ok()
}

/// A wall-clock time in a named zone, as events store their start and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub civil: DateTime,
    pub zone: String,
}

impl LocalTime {
    /// The instant, or None for an unknown zone (rejected when the event was written).
    pub fn instant(&self) -> Option<Timestamp> {
        let zone = resolve_zone(&self.zone)?;
        self.civil
            .to_zoned_datetime(zone)
            .ok()
            .map(|z| z.timestamp())
    }

    /// Parses Graph's `{dateTime, timeZone}`; a date alone means midnight.
    pub fn parse(date_time: &str, zone: &str) -> Result<Self, String> {
        let civil = parse_civil(date_time)
            .ok_or_else(|| format!("'{date_time}' is not a valid dateTime"))?;
        if resolve_zone(zone).is_none() {
            return Err(format!(
                "A valid TimeZone value must be specified. The following TimeZone value is not supported: '{zone}'."
            ));
        }
        Ok(Self {
            civil,
            zone: zone.trim().to_owned(),
        })
    }
}

pub(crate) fn parse_civil(text: &str) -> Option<DateTime> {
    let text = text.trim();
    if let Ok(dt) = text.parse::<DateTime>() {
        return Some(dt);
    }
    text.parse::<Date>()
        .ok()
        .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
}

/// `YYYY-MM-DDThh:mm:ss.fffffff`: Graph's `dateTime` form.
pub(crate) fn graph_datetime(dt: DateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:07}",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.subsec_nanosecond() / 100
    )
}

/// `YYYY-MM-DDThh:mm:ss.fffffffZ`: Graph's form for `lastModifiedDateTime` and the like.
pub(crate) fn graph_instant(at: Timestamp) -> String {
    format!(
        "{}Z",
        graph_datetime(at.to_zoned_datetime(TimeZone::UTC).datetime())
    )
}

/// A `startDateTime`/`endDateTime` value: with an offset it is honoured, without one it is UTC.
pub(crate) fn parse_query_instant(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Some(at);
    }
    parse_civil(text)?
        .to_zoned_datetime(TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// How an instant reads in the zone a client asked for (`Prefer: outlook.timezone`).
pub(crate) fn in_zone(at: Timestamp, zone: &TimeZone) -> DateTime {
    at.to_zoned_datetime(zone.clone()).datetime()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_iana_names_resolve() {
        assert!(resolve_zone("Pacific Standard Time").is_some());
        assert!(resolve_zone("Europe/Madrid").is_some());
        assert!(resolve_zone("UTC").is_some());
        assert!(resolve_zone("Mars Standard Time").is_none());
    }

    #[test]
    fn local_times_become_instants() {
        let t = LocalTime::parse("2017-09-04T12:00:00.0000000", "Pacific Standard Time").unwrap();
        assert_eq!(t.instant().unwrap().to_string(), "2017-09-04T19:00:00Z");
        assert!(LocalTime::parse("2017-09-04T12:00:00", "Nowhere").is_err());
    }

    #[test]
    fn formats_match_graph() {
        let dt: DateTime = "2016-12-09T20:30:00".parse().unwrap();
        assert_eq!(graph_datetime(dt), "2016-12-09T20:30:00.0000000");
        let at: Timestamp = "2017-10-07T04:59:13.8136423Z".parse().unwrap();
        assert_eq!(graph_instant(at), "2017-10-07T04:59:13.8136423Z");
        assert_eq!(
            parse_query_instant("2016-12-01T00:00:00")
                .unwrap()
                .to_string(),
            "2016-12-01T00:00:00Z"
        );
        assert_eq!(
            parse_query_instant("2016-12-01T02:00:00+02:00")
                .unwrap()
                .to_string(),
            "2016-12-01T00:00:00Z"
        );
    }
}
