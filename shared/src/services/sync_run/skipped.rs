//! Events calsync could not read. They are not synced, and status says so: an entry stays on
//! the user until a run reads that event again (fixed, changed or deleted), because the feeds
//! report an event only when it changes, so one run's list alone would forget it.

use calsync_core::sync::{CrmChanges, OutlookChanges, Side};

use crate::services::users::SkippedEvent;

/// The skipped events after a run: `before`, less those this run read or saw go, plus
/// `found` (what this run could not read; an entry without id lasts one run).
pub fn after(
    before: &[SkippedEvent],
    found: Vec<(Side, String, String)>,
    outlook: &OutlookChanges,
    crm: &CrmChanges,
    now: i64,
) -> Vec<SkippedEvent> {
    let read_now = |side: Side, id: &str| match side {
        Side::Outlook => {
            outlook.upserts.iter().any(|item| item.id() == Some(id))
                || outlook.deleted.iter().any(|d| d == id)
        }
        Side::Crm => {
            crm.upserts
                .iter()
                .any(|event| event.ids.crm.as_deref() == Some(id))
                || crm.gone.iter().any(|gone| gone.id.as_str() == id)
        }
    };
    let mut out: Vec<SkippedEvent> = before
        .iter()
        .filter(|s| !s.id.is_empty() && !read_now(s.side, &s.id))
        .filter(|s| {
            !found
                .iter()
                .any(|(side, id, _)| *side == s.side && *id == s.id)
        })
        .cloned()
        .collect();
    for (side, id, why) in found {
        let since = before
            .iter()
            .find(|s| s.side == side && s.id == id && !id.is_empty())
            .map_or(now, |s| s.since);
        out.push(SkippedEvent {
            side,
            id,
            why,
            since,
        });
    }
    out
}

/// One line of a run report.
pub fn describe(skipped: &SkippedEvent) -> String {
    let side = match skipped.side {
        Side::Crm => "CRM",
        Side::Outlook => "Outlook",
    };
    format!("{side} event {}: {}", skipped.id, skipped.why)
}
