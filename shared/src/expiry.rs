//! Credentials that expire (client secrets, certificates): the warning an operator gets ahead
//! of time, and the date form they are given in.

/// A warning about a credential that expires on `expires`: from 30 days ahead, and once it
/// has expired. `action` says what to do ahead of time.
pub fn expiry_warning(
    what: &str,
    expires: jiff::civil::Date,
    now: i64,
    action: &str,
) -> Option<String> {
    let today = jiff::Timestamp::from_second(now)
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
        .ok()?;
    let days_left = (expires - today).get_days();
    if days_left < 0 {
        Some(format!(
            "{what} expired on {expires}: Microsoft refuses it; {}",
            action.replace("before then", "now")
        ))
    } else if days_left <= 30 {
        Some(format!(
            "{what} expires on {expires}, in {days_left} days: {action}"
        ))
    } else {
        None
    }
}

/// `YYYY-MM-DD`.
pub fn is_iso_date(value: &str) -> bool {
    value.len() == 10 && value.parse::<jiff::civil::Date>().is_ok()
}
