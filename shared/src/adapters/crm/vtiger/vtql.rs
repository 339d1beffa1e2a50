//! VTQL text for the few queries calsync sends. VTQL has no parameters: values are pasted into
//! SQL by the server, so every value goes through [`quote`].

/// vtiger caps every page at 100 rows.
pub const PAGE: usize = 100;

/// A single-quoted VTQL string; a quote inside is doubled.
pub fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// One CRM user by login name.
pub fn user_by_name(user_name: &str) -> String {
    format!(
        "SELECT id, user_name, time_zone, status, email1 FROM Users WHERE user_name = {};",
        quote(user_name)
    )
}

/// A page of an owner's events changed after (or at) `since` (server-zone text), oldest first.
pub fn changed_since(owner_id: &str, since: &str, inclusive: bool) -> String {
    format!(
        "SELECT * FROM Events WHERE assigned_user_id = {} AND modifiedtime {} {} ORDER BY modifiedtime, id LIMIT {PAGE};",
        quote(owner_id),
        if inclusive { ">=" } else { ">" },
        quote(since)
    )
}

/// The event a calsync create marked with `marker` (kept in `source`; VTQL compares it
/// without regard to case).
pub fn by_marker(marker: &str) -> String {
    format!(
        "SELECT * FROM Events WHERE source = {} LIMIT 2;",
        quote(marker)
    )
}

/// One page of the owner's events changed exactly at `at`, when more than a page share it.
pub fn changed_at(owner_id: &str, at: &str, offset: usize) -> String {
    format!(
        "SELECT * FROM Events WHERE assigned_user_id = {} AND modifiedtime = {} ORDER BY id LIMIT {offset}, {PAGE};",
        quote(owner_id),
        quote(at)
    )
}

/// A page of the owner's events overlapping `[first_day, last_day]` (server-zone dates), by id
/// so that records created or deleted meanwhile cannot shift the pages.
pub fn window_page(
    owner_id: &str,
    first_day: &str,
    last_day: &str,
    after_id: Option<&str>,
) -> String {
    let after = after_id
        .map(|id| format!(" AND id > {}", quote(id)))
        .unwrap_or_default();
    format!(
        "SELECT * FROM Events WHERE assigned_user_id = {} AND due_date >= {} AND date_start <= {}{after} ORDER BY id LIMIT {PAGE};",
        quote(owner_id),
        quote(first_day),
        quote(last_day)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(quote("o'brien"), "'o''brien'");
        assert_eq!(
            user_by_name("x' OR '1'='1"),
            "SELECT id, user_name, time_zone, status, email1 FROM Users WHERE user_name = 'x'' OR ''1''=''1';"
        );
    }

    #[test]
    fn queries_end_with_a_semicolon_and_order() {
        for query in [
            changed_since("19x5", "2026-01-01 00:00:00", false),
            changed_at("19x5", "2026-01-01 00:00:00", 100),
            window_page("19x5", "2026-01-01", "2026-12-31", Some("18x9")),
        ] {
            assert!(query.ends_with(';'), "{query}");
            assert!(query.contains("ORDER BY"), "{query}");
        }
        assert!(changed_at("19x5", "t", 200).contains("LIMIT 200, 100"));
    }
}
