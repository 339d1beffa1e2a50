//! Events a side refused for good (a CRM rule such as a mandatory custom field, data Graph will
//! not take). A refusal must not pin the cursors — every run would then read everything again —
//! so the run moves on and keeps the refused step's inputs on the user ([`ParkedEvent`]).
//! The runner (and the simulation) keep the list; [`Parking`] decides what it becomes. Its
//! next try comes with growing delays (or at once on a full resync), when the kept versions are
//! fed to the planner again, unless a side has reported something newer meanwhile.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::execute::Execution;
use super::model::{CrmChanges, Link, LinkKey, OutlookChanges, OutlookItem, Side};
use super::planner::Plan;
use crate::event::CalendarEvent;

/// An event whose sync a side refused for good (a CRM rule, data it will not take). The run
/// moves on without it; it is tried again at `next_at`, with growing delays, or at once on a
/// full resync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParkedEvent {
    pub key: LinkKey,
    pub subject: String,
    /// Why it was refused, the last time.
    pub why: String,
    pub attempts: u32,
    /// When it was first refused (epoch seconds).
    pub since: i64,
    /// When it is tried again (epoch seconds).
    pub next_at: i64,
    /// The versions the refused step was planned from: the cursors have moved past them, so
    /// the next try feeds them to the planner again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CalendarEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook: Option<OutlookItem>,
}

/// The first wait after a refusal; each further refusal doubles it, up to [`MAX_WAIT_SECS`].
const FIRST_WAIT_SECS: i64 = 30 * 60;
const MAX_WAIT_SECS: i64 = 24 * 3600;

/// How long to wait before try `attempts + 1`.
fn wait_after(attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(16);
    (FIRST_WAIT_SECS << doublings).min(MAX_WAIT_SECS)
}

/// The parked events of one run: which wait, which are tried now.
pub struct Parking {
    before: Vec<ParkedEvent>,
    /// Keys tried in this run.
    due: HashSet<LinkKey>,
}

impl Parking {
    /// `retry_all`: a full resync tries every parked event at once.
    pub fn new(parked: &[ParkedEvent], now: i64, retry_all: bool) -> Self {
        let due = parked
            .iter()
            .filter(|p| retry_all || p.next_at <= now)
            .map(|p| p.key.clone())
            .collect();
        Self {
            before: parked.to_vec(),
            due,
        }
    }

    /// Whether some parked event is tried in this run.
    pub fn has_due(&self) -> bool {
        !self.due.is_empty()
    }

    /// The events parked before the run.
    pub fn before(&self) -> &[ParkedEvent] {
        &self.before
    }

    /// The links the planner leaves alone this run (parked, not due).
    pub fn waiting(&self) -> HashSet<LinkKey> {
        self.before
            .iter()
            .filter(|p| !self.due.contains(&p.key))
            .map(|p| p.key.clone())
            .collect()
    }

    /// Feeds the due events' kept versions to the planner, unless a side reported the same
    /// event in this run (its report is newer).
    pub fn feed_due(&self, outlook: &mut OutlookChanges, crm: &mut CrmChanges) {
        for parked in self.before.iter().filter(|p| self.due.contains(&p.key)) {
            if let Some(item) = &parked.outlook {
                let reported = outlook.upserts.iter().any(|i| i.id() == item.id())
                    || item
                        .id()
                        .is_some_and(|id| outlook.deleted.iter().any(|d| d == id));
                if !reported {
                    outlook.upserts.push(item.clone());
                }
            }
            if let Some(event) = &parked.crm {
                let id = event.ids.crm.as_deref();
                let reported = crm.upserts.iter().any(|e| e.ids.crm.as_deref() == id)
                    || crm.gone.iter().any(|g| Some(g.id.as_str()) == id);
                if !reported {
                    crm.upserts.push(event.clone());
                }
            }
        }
    }

    /// The parked events after the run: refused steps are parked (again, waiting longer); a
    /// due event whose step ended early for another reason stays, due at once, because the
    /// feeds will not report it again; every other due event went through and is dropped.
    #[allow(clippy::too_many_arguments)]
    pub fn after(
        &self,
        plan: &Plan,
        execution: &Execution,
        snapshot: &[Link],
        outlook: &OutlookChanges,
        crm: &CrmChanges,
        now: i64,
    ) -> Vec<ParkedEvent> {
        let unfinished: HashSet<&LinkKey> = execution
            .failed
            .iter()
            .map(|(key, _)| key)
            .chain(
                plan.steps
                    .iter()
                    .skip(plan.steps.len().saturating_sub(execution.postponed))
                    .map(|step| &step.key),
            )
            .collect();
        let mut out: Vec<ParkedEvent> = self
            .before
            .iter()
            .filter(|p| !execution.refused.iter().any(|(key, _)| key == &p.key))
            .filter(|p| !self.due.contains(&p.key) || unfinished.contains(&p.key))
            .cloned()
            .map(|mut p| {
                if self.due.contains(&p.key) {
                    p.next_at = now;
                }
                p
            })
            .collect();
        for (key, why) in &execution.refused {
            let previous = self.before.iter().find(|p| &p.key == key);
            let attempts = previous.map_or(0, |p| p.attempts) + 1;
            let (crm_version, outlook_version) = inputs(key, snapshot, outlook, crm);
            let subject = crm_version
                .as_ref()
                .map(|e| e.subject.clone())
                .or_else(|| outlook_version.as_ref().map(|i| i.event.subject.clone()))
                .or_else(|| previous.map(|p| p.subject.clone()))
                .unwrap_or_default();
            out.push(ParkedEvent {
                key: key.clone(),
                subject,
                why: why.clone(),
                attempts,
                since: previous.map_or(now, |p| p.since),
                next_at: now + wait_after(attempts),
                crm: crm_version.or_else(|| previous.and_then(|p| p.crm.clone())),
                outlook: outlook_version.or_else(|| previous.and_then(|p| p.outlook.clone())),
            });
        }
        out
    }
}

/// The versions of the event behind `key` that this run's plan was made from.
fn inputs(
    key: &LinkKey,
    snapshot: &[Link],
    outlook: &OutlookChanges,
    crm: &CrmChanges,
) -> (Option<CalendarEvent>, Option<OutlookItem>) {
    let link = snapshot.iter().find(|link| &link.key == key);
    let first_seen = |side: Side| {
        key.origin()
            .filter(|(origin, _)| *origin == side)
            .map(|(_, id)| id.to_owned())
    };
    let crm_id = link
        .and_then(|link| link.crm_id.as_ref().map(|id| id.as_str().to_owned()))
        .or_else(|| first_seen(Side::Crm));
    let outlook_id = link
        .and_then(|link| link.outlook_id.clone())
        .or_else(|| first_seen(Side::Outlook));
    let crm_version = crm_id.and_then(|id| {
        crm.upserts
            .iter()
            .find(|e| e.ids.crm.as_deref() == Some(id.as_str()))
            .cloned()
    });
    let outlook_version = outlook_id.and_then(|id| {
        outlook
            .upserts
            .iter()
            .find(|item| item.id() == Some(id.as_str()))
            .cloned()
    });
    (crm_version, outlook_version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_a_day() {
        assert_eq!(wait_after(1), 30 * 60);
        assert_eq!(wait_after(2), 60 * 60);
        assert_eq!(wait_after(3), 2 * 3600);
        assert_eq!(wait_after(7), 24 * 3600);
        assert_eq!(wait_after(40), 24 * 3600);
    }
}
