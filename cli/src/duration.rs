//! Durations as operators type them: `90s`, `30m`, `1h`, `7d`, or plain seconds.

use anyhow::{bail, Result};

pub fn parse(text: &str) -> Result<i64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let Ok(value) = digits.parse::<i64>() else {
        bail!("{text:?} is not a duration (try 30m, 1h or 7d)");
    };
    let seconds = match unit {
        "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        "d" => value * 86_400,
        _ => bail!("{text:?} has an unknown unit (use s, m, h or d)"),
    };
    if seconds <= 0 {
        bail!("a duration must be positive");
    }
    Ok(seconds)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn units() {
        assert_eq!(parse("90s").unwrap(), 90);
        assert_eq!(parse("30m").unwrap(), 1800);
        assert_eq!(parse("1h").unwrap(), 3600);
        assert_eq!(parse("7d").unwrap(), 604_800);
        assert_eq!(parse("120").unwrap(), 120);
        assert!(parse("1w").is_err());
        assert!(parse("h").is_err());
        assert!(parse("0m").is_err());
    }
}
