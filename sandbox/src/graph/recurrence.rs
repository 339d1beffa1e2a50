//! Graph's `patternedRecurrence`: parsing with Graph's rules, the normalised echo Graph returns
//! (unused fields as zeros and defaults, lower-case day names), and expansion into dates.

use jiff::civil::{Date, Weekday};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatternKind {
    Daily,
    Weekly,
    AbsoluteMonthly,
    RelativeMonthly,
    AbsoluteYearly,
    RelativeYearly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeKind {
    EndDate,
    NoEnd,
    Numbered,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Recurrence {
    kind: PatternKind,
    interval: i64,
    days_of_week: Vec<Weekday>,
    first_day_of_week: Weekday,
    day_of_month: i8,
    month: i8,
    /// 1..=4 for first..fourth, 5 for last.
    index: u8,
    range: RangeKind,
    pub start_date: Date,
    end_date: Option<Date>,
    count: Option<u32>,
    zone: String,
}

/// No series is expanded further than this many days from its start.
const MAX_SPAN_DAYS: i64 = 366 * 30;

const DAY_NAMES: [(&str, Weekday); 7] = [
    ("sunday", Weekday::Sunday),
    ("monday", Weekday::Monday),
    ("tuesday", Weekday::Tuesday),
    ("wednesday", Weekday::Wednesday),
    ("thursday", Weekday::Thursday),
    ("friday", Weekday::Friday),
    ("saturday", Weekday::Saturday),
];

const INDEX_NAMES: [&str; 5] = ["first", "second", "third", "fourth", "last"];

fn weekday(name: &str) -> Option<Weekday> {
    DAY_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, d)| *d)
}

fn day_name(day: Weekday) -> &'static str {
    DAY_NAMES
        .iter()
        .find(|(_, d)| *d == day)
        .map(|(n, _)| *n)
        .unwrap_or("sunday")
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn number(value: &Value, key: &str) -> Option<i64> {
    value.get(key).and_then(Value::as_i64)
}

impl Recurrence {
    /// Parses a recurrence for an event starting on `event_start` in `event_zone`.
    pub fn parse(value: &Value, event_start: Date, event_zone: &str) -> Result<Self, String> {
        let pattern = value
            .get("pattern")
            .ok_or("recurrence.pattern is required")?;
        let range = value.get("range").ok_or("recurrence.range is required")?;
        let kind = match text(pattern, "type")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("daily") => PatternKind::Daily,
            Some("weekly") => PatternKind::Weekly,
            Some("absolutemonthly") => PatternKind::AbsoluteMonthly,
            Some("relativemonthly") => PatternKind::RelativeMonthly,
            Some("absoluteyearly") => PatternKind::AbsoluteYearly,
            Some("relativeyearly") => PatternKind::RelativeYearly,
            other => return Err(format!("unsupported recurrence pattern type {other:?}")),
        };
        let interval = number(pattern, "interval").unwrap_or(1);
        if !(1..=999).contains(&interval) {
            return Err("recurrence.pattern.interval must be between 1 and 999".into());
        }
        let days_of_week = match pattern.get("daysOfWeek").and_then(Value::as_array) {
            Some(days) => days
                .iter()
                .map(|d| d.as_str().and_then(weekday).ok_or("unknown day of week"))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let needs_days = matches!(
            kind,
            PatternKind::Weekly | PatternKind::RelativeMonthly | PatternKind::RelativeYearly
        );
        if needs_days && days_of_week.is_empty() {
            return Err("recurrence.pattern.daysOfWeek is required for this pattern".into());
        }
        let first_day_of_week = match text(pattern, "firstDayOfWeek") {
            Some(name) => weekday(name).ok_or("unknown firstDayOfWeek")?,
            None => Weekday::Sunday,
        };
        let day_of_month = number(pattern, "dayOfMonth").unwrap_or(0);
        if matches!(
            kind,
            PatternKind::AbsoluteMonthly | PatternKind::AbsoluteYearly
        ) && !(1..=31).contains(&day_of_month)
        {
            return Err("recurrence.pattern.dayOfMonth must be between 1 and 31".into());
        }
        let month = number(pattern, "month").unwrap_or(0);
        if matches!(
            kind,
            PatternKind::AbsoluteYearly | PatternKind::RelativeYearly
        ) && !(1..=12).contains(&month)
        {
            return Err("recurrence.pattern.month must be between 1 and 12".into());
        }
        let index = match text(pattern, "index") {
            Some(name) => {
                INDEX_NAMES
                    .iter()
                    .position(|n| n.eq_ignore_ascii_case(name))
                    .ok_or("unknown recurrence index")? as u8
                    + 1
            }
            None => 1,
        };
        let start_date: Date = text(range, "startDate")
            .ok_or("recurrence.range.startDate is required")?
            .parse()
            .map_err(|_| "recurrence.range.startDate is not a date")?;
        if start_date != event_start {
            return Err(
                "recurrence.range.startDate must be the date of the event's start".to_owned(),
            );
        }
        let (range_kind, end_date, count) =
            match text(range, "type").map(str::to_ascii_lowercase).as_deref() {
                Some("enddate") => {
                    let end: Date = text(range, "endDate")
                        .ok_or("recurrence.range.endDate is required")?
                        .parse()
                        .map_err(|_| "recurrence.range.endDate is not a date")?;
                    if end < start_date {
                        return Err("recurrence.range.endDate is before startDate".into());
                    }
                    (RangeKind::EndDate, Some(end), None)
                }
                Some("noend") => (RangeKind::NoEnd, None, None),
                Some("numbered") => {
                    let n = number(range, "numberOfOccurrences").unwrap_or(0);
                    if n < 1 {
                        return Err("recurrence.range.numberOfOccurrences must be positive".into());
                    }
                    (RangeKind::Numbered, None, Some(n as u32))
                }
                other => return Err(format!("unsupported recurrence range type {other:?}")),
            };
        Ok(Self {
            kind,
            interval,
            days_of_week,
            first_day_of_week,
            day_of_month: day_of_month as i8,
            month: month as i8,
            index,
            range: range_kind,
            start_date,
            end_date,
            count,
            zone: text(range, "recurrenceTimeZone")
                .unwrap_or(event_zone)
                .to_owned(),
        })
    }

    /// The recurrence as Graph echoes it: every field present, unused ones zero or default.
    pub fn render(&self) -> Value {
        let kind = match self.kind {
            PatternKind::Daily => "daily",
            PatternKind::Weekly => "weekly",
            PatternKind::AbsoluteMonthly => "absoluteMonthly",
            PatternKind::RelativeMonthly => "relativeMonthly",
            PatternKind::AbsoluteYearly => "absoluteYearly",
            PatternKind::RelativeYearly => "relativeYearly",
        };
        let range = match self.range {
            RangeKind::EndDate => "endDate",
            RangeKind::NoEnd => "noEnd",
            RangeKind::Numbered => "numbered",
        };
        json!({
            "pattern": {
                "type": kind,
                "interval": self.interval,
                "month": self.month,
                "dayOfMonth": self.day_of_month,
                "daysOfWeek": self.days_of_week.iter().map(|d| day_name(*d)).collect::<Vec<_>>(),
                "firstDayOfWeek": day_name(self.first_day_of_week),
                "index": INDEX_NAMES[usize::from(self.index.clamp(1, 5)) - 1],
            },
            "range": {
                "type": range,
                "startDate": self.start_date.to_string(),
                "endDate": self.end_date.map(|d| d.to_string()).unwrap_or_else(|| "0001-01-01".into()),
                "recurrenceTimeZone": self.zone,
                "numberOfOccurrences": self.count.unwrap_or(0),
            }
        })
    }

    /// Occurrence dates from the start up to and including `until`.
    pub fn dates_until(&self, until: Date) -> Vec<Date> {
        let mut dates = Vec::new();
        let mut day = self.start_date;
        let mut span = 0;
        while day <= until && span <= MAX_SPAN_DAYS {
            if self.end_date.is_some_and(|end| day > end) {
                break;
            }
            if self.count.is_some_and(|n| dates.len() as u32 >= n) {
                break;
            }
            if self.matches(day) {
                dates.push(day);
            }
            day = match day.tomorrow() {
                Ok(next) => next,
                Err(_) => break,
            };
            span += 1;
        }
        dates
    }

    /// Whether `date` (on or after the start) is an occurrence date.
    pub fn matches(&self, date: Date) -> bool {
        if date < self.start_date {
            return false;
        }
        let start = self.start_date;
        match self.kind {
            PatternKind::Daily => days_between(start, date) % self.interval == 0,
            PatternKind::Weekly => {
                self.days_of_week.contains(&date.weekday())
                    && (days_between(self.week_start(start), self.week_start(date)) / 7)
                        % self.interval
                        == 0
            }
            PatternKind::AbsoluteMonthly => {
                date.day() == self.day_of_month && months_between(start, date) % self.interval == 0
            }
            PatternKind::RelativeMonthly => {
                months_between(start, date) % self.interval == 0 && self.is_relative_day(date)
            }
            PatternKind::AbsoluteYearly => {
                date.month() == self.month
                    && date.day() == self.day_of_month
                    && i64::from(date.year() - start.year()) % self.interval == 0
            }
            PatternKind::RelativeYearly => {
                date.month() == self.month
                    && i64::from(date.year() - start.year()) % self.interval == 0
                    && self.is_relative_day(date)
            }
        }
    }

    fn week_start(&self, date: Date) -> Date {
        let back = (date.weekday().to_sunday_zero_offset()
            - self.first_day_of_week.to_sunday_zero_offset()
            + 7)
            % 7;
        date.checked_sub(jiff::Span::new().days(i64::from(back)))
            .unwrap_or(date)
    }

    /// The `index`-th day of the month whose weekday is one of `days_of_week` (5 = last).
    fn is_relative_day(&self, date: Date) -> bool {
        if !self.days_of_week.contains(&date.weekday()) {
            return false;
        }
        let matching: Vec<i8> = (1..=date.days_in_month())
            .filter(|d| {
                Date::new(date.year(), date.month(), *d)
                    .map(|x| self.days_of_week.contains(&x.weekday()))
                    .unwrap_or(false)
            })
            .collect();
        let wanted = if self.index >= 5 {
            matching.last()
        } else {
            matching.get(usize::from(self.index) - 1)
        };
        wanted == Some(&date.day())
    }
}

fn days_between(a: Date, b: Date) -> i64 {
    (b.to_jiff_days() - a.to_jiff_days()).abs()
}

fn months_between(a: Date, b: Date) -> i64 {
    i64::from(b.year() - a.year()) * 12 + i64::from(b.month() - a.month())
}

/// Day numbers, for differences between dates.
trait DayNumber {
    fn to_jiff_days(self) -> i64;
}

impl DayNumber for Date {
    fn to_jiff_days(self) -> i64 {
        self.since(Date::constant(1970, 1, 1))
            .map(|span| i64::from(span.get_days()))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value, start: &str) -> Recurrence {
        Recurrence::parse(&value, start.parse().unwrap(), "UTC").unwrap()
    }

    #[test]
    fn weekly_mondays_until_an_end_date() {
        let r = parse(
            json!({"pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
                   "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"}}),
            "2017-09-04",
        );
        let dates = r.dates_until("2018-06-01".parse().unwrap());
        assert_eq!(dates.len(), 17);
        assert!(dates.iter().all(|d| d.weekday() == Weekday::Monday));
        // Graph echoes unused fields and lower-cases day names.
        let echo = r.render();
        assert_eq!(echo["pattern"]["daysOfWeek"][0], "monday");
        assert_eq!(echo["pattern"]["month"], 0);
        assert_eq!(echo["range"]["numberOfOccurrences"], 0);
    }

    #[test]
    fn numbered_daily_every_other_day() {
        let r = parse(
            json!({"pattern": {"type": "daily", "interval": 2},
                   "range": {"type": "numbered", "startDate": "2026-01-01", "numberOfOccurrences": 3}}),
            "2026-01-01",
        );
        let dates: Vec<String> = r
            .dates_until("2026-12-31".parse().unwrap())
            .iter()
            .map(Date::to_string)
            .collect();
        assert_eq!(dates, ["2026-01-01", "2026-01-03", "2026-01-05"]);
    }

    #[test]
    fn relative_monthly_last_friday() {
        let r = parse(
            json!({"pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
                   "range": {"type": "noEnd", "startDate": "2026-01-30"}}),
            "2026-01-30",
        );
        let dates: Vec<String> = r
            .dates_until("2026-03-31".parse().unwrap())
            .iter()
            .map(Date::to_string)
            .collect();
        assert_eq!(dates, ["2026-01-30", "2026-02-27", "2026-03-27"]);
    }

    #[test]
    fn start_date_must_match_the_event() {
        let value = json!({"pattern": {"type": "daily"}, "range": {"type": "noEnd", "startDate": "2026-01-02"}});
        assert!(Recurrence::parse(&value, "2026-01-01".parse().unwrap(), "UTC").is_err());
    }
}
