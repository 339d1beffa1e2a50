//! Events a side refused for good (a CRM rule such as a mandatory custom field, data Graph will
//! not take). A refusal must not pin the cursors — every run would then read everything again —
//! so the run moves on and keeps the refused step's inputs on the user ([`ParkedEvent`]).
//! The runner (and the simulation) keep the list; [`Parking`] decides what it becomes. Its
//! next try comes with growing delays (or at once on a full resync), when the kept inputs are
//! fed to the planner again — unless a side reported the event meanwhile: then that newer
//! report is planned instead, and the parked inputs are spent.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::execute::Execution;
use super::model::{CrmChanges, Link, LinkKey, Origin, OutlookChanges, OutlookItem, Side};
use super::planner::{Action, Plan, Step};
use super::policy::Policy;
use crate::crm::Gone;
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
    /// The event's ids on each side, to recognise a newer report of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook_id: Option<String>,
    /// What each side reported that the refused step was planned from: the cursors have moved
    /// past it, so the next try feeds it to the planner again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm: Option<CalendarEvent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_gone: Option<Gone>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook: Option<OutlookItem>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub outlook_deleted: bool,
    /// The refused step was a first sync's match of `crm_id` with `outlook_id`, which no link
    /// records yet: the next try pairs them again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub matched: bool,
    /// The series the Outlook event is an occurrence of: its deletion reports the event too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_master: Option<String>,
}

impl ParkedEvent {
    /// Whether a side reported this event in the run's changes.
    fn reported(&self, outlook: &OutlookChanges, crm: &CrmChanges) -> bool {
        self.outlook_reported(outlook) || self.crm_reported(crm)
    }

    /// Whether the Outlook feed reports the event: itself, or its series' deletion.
    fn outlook_reported(&self, outlook: &OutlookChanges) -> bool {
        let series_gone = self
            .series_master
            .as_ref()
            .is_some_and(|master| outlook.deleted_series.contains(master));
        series_gone
            || self
                .outlook_id
                .as_deref()
                .is_some_and(|id| outlook_mentions(outlook, id))
    }

    fn crm_reported(&self, crm: &CrmChanges) -> bool {
        self.crm_id
            .as_deref()
            .is_some_and(|id| crm_mentions(crm, id))
    }
}

/// Whether the Outlook feed reports the event `id`: itself, or, for a single event made
/// recurring, the occurrences of the series it became.
fn outlook_mentions(outlook: &OutlookChanges, id: &str) -> bool {
    outlook.upserts.iter().any(|item| {
        item.id() == Some(id)
            || item
                .occurrence
                .as_ref()
                .is_some_and(|o| o.series_master_id == id)
    }) || outlook
        .deleted
        .iter()
        .chain(&outlook.deleted_series)
        .any(|d| d == id)
}

fn crm_mentions(crm: &CrmChanges, id: &str) -> bool {
    crm.upserts.iter().any(|e| e.ids.crm.as_deref() == Some(id))
        || crm.gone.iter().any(|g| g.id.as_str() == id)
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

    /// The links the planner leaves alone this run unless a side reports them (parked, not
    /// due).
    fn waiting(&self) -> HashSet<LinkKey> {
        self.before
            .iter()
            .filter(|p| !self.due.contains(&p.key))
            .map(|p| p.key.clone())
            .collect()
    }

    /// Readies a run's planning: the links that wait (parked, not due) are named in the
    /// policy, with the occurrence a parked event was moving its link onto; every event in
    /// play (due, or reported by a side) has its kept inputs fed to the planner — each side's
    /// unless that side reported the event again (that report is newer) — and its first-sync
    /// pair, if it had one, is matched again.
    pub fn prepare(&self, policy: &mut Policy, outlook: &mut OutlookChanges, crm: &mut CrmChanges) {
        policy.parked = self.waiting();
        policy.rematch.clear();
        policy.outlook_aliases.clear();
        for parked in &self.before {
            // The occurrence a single event became, which the refused step was to move its
            // link onto.
            if let Some((id, occurrence)) = parked
                .outlook
                .as_ref()
                .and_then(|item| Some((item.id()?, item.occurrence.as_ref()?)))
            {
                if parked.outlook_id.as_deref() == Some(id) {
                    policy
                        .outlook_aliases
                        .push((id.to_owned(), occurrence.series_master_id.clone()));
                }
            }
            let outlook_fresh = parked.outlook_reported(outlook);
            let crm_fresh = parked.crm_reported(crm);
            if !self.due.contains(&parked.key) && !outlook_fresh && !crm_fresh {
                continue;
            }
            if !outlook_fresh {
                if let Some(item) = &parked.outlook {
                    outlook.upserts.push(item.clone());
                }
                if let (true, Some(id)) = (parked.outlook_deleted, &parked.outlook_id) {
                    outlook.deleted.push(id.clone());
                }
            }
            if !crm_fresh {
                if let Some(event) = &parked.crm {
                    crm.upserts.push(event.clone());
                }
                if let Some(gone) = &parked.crm_gone {
                    crm.gone.push(gone.clone());
                }
            }
            if let (true, Some(crm_id), Some(outlook_id)) =
                (parked.matched, &parked.crm_id, &parked.outlook_id)
            {
                policy.rematch.push((crm_id.clone(), outlook_id.clone()));
            }
        }
    }

    /// The parked events after the run. An event that was in play — due, or reported by a
    /// side — is parked again if refused again (waiting longer), stays due at once if its step
    /// ended early or the guard held it (the feeds will not report it again), and is dropped
    /// otherwise: its step went through. An event not in play stays as it was.
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
            // A deletion the guard held never ran: it waits for the confirmation.
            .chain(
                plan.guard
                    .iter()
                    .flat_map(|trip| trip.held.iter().map(|held| &held.key)),
            )
            .collect();
        let refused = |key: &LinkKey| execution.refused.iter().any(|(k, _)| k == key);
        let mut out: Vec<ParkedEvent> = Vec::new();
        for parked in &self.before {
            if refused(&parked.key) {
                continue;
            }
            let in_play = self.due.contains(&parked.key) || parked.reported(outlook, crm);
            if !in_play {
                out.push(parked.clone());
            } else if unfinished.contains(&parked.key) {
                let mut again = parked.clone();
                again.next_at = now;
                out.push(again);
            }
        }
        for (key, why) in &execution.refused {
            let previous = self.before.iter().find(|p| &p.key == key);
            let attempts = previous.map_or(0, |p| p.attempts) + 1;
            let step = plan.steps.iter().find(|step| &step.key == key);
            let planned = step.and_then(|step| step.final_link());
            let stored = snapshot.iter().find(|l| &l.key == key);
            let mut parked = inputs(key, step, stored, outlook, crm);
            parked.matched = previous.is_some_and(|p| p.matched)
                || (stored.is_none() && planned.is_some_and(|l| l.origin == Origin::Matched));
            // Inputs this run did not see are those the previous try was fed.
            if let Some(previous) = previous {
                parked.crm = parked.crm.or_else(|| previous.crm.clone());
                parked.crm_gone = parked.crm_gone.or_else(|| previous.crm_gone.clone());
                parked.outlook = parked.outlook.or_else(|| previous.outlook.clone());
                parked.outlook_deleted |= previous.outlook_deleted;
                parked.series_master = parked
                    .series_master
                    .or_else(|| previous.series_master.clone());
            }
            parked.subject = parked
                .crm
                .as_ref()
                .map(|e| e.subject.clone())
                .or_else(|| parked.outlook.as_ref().map(|i| i.event.subject.clone()))
                .or_else(|| previous.map(|p| p.subject.clone()))
                .unwrap_or_default();
            parked.why = why.clone();
            parked.attempts = attempts;
            parked.since = previous.map_or(now, |p| p.since);
            parked.next_at = now + wait_after(attempts);
            out.push(parked);
        }
        out
    }
}

/// What this run's changes said about the event behind `key`, as a fresh parked entry. The
/// refused `step` may name events the `stored` link does not yet (a first match, a create's
/// result found by its marker, the occurrence a single event became): the cursors will not
/// report those again, so its ids come first.
fn inputs(
    key: &LinkKey,
    step: Option<&Step>,
    stored: Option<&Link>,
    outlook: &OutlookChanges,
    crm: &CrmChanges,
) -> ParkedEvent {
    let planned = step.and_then(Step::final_link);
    let first_seen = |side: Side| {
        key.origin()
            .filter(|(origin, _)| *origin == side)
            .map(|(_, id)| id.to_owned())
    };
    let acted_on = |side: Side| {
        step.into_iter()
            .flat_map(|step| &step.actions)
            .find_map(|action| match (action, side) {
                (Action::UpdateCrm { crm_id, .. } | Action::DeleteInCrm { crm_id }, Side::Crm) => {
                    Some(crm_id.as_str().to_owned())
                }
                (
                    Action::UpdateOutlook { outlook_id, .. }
                    | Action::DeleteInOutlook { outlook_id, .. },
                    Side::Outlook,
                ) => Some(outlook_id.clone()),
                _ => None,
            })
    };
    let crm_id = planned
        .and_then(|link| link.crm_id.as_ref().map(|id| id.as_str().to_owned()))
        .or_else(|| acted_on(Side::Crm))
        .or_else(|| stored.and_then(|link| link.crm_id.as_ref().map(|id| id.as_str().to_owned())))
        .or_else(|| first_seen(Side::Crm));
    let outlook_id = planned
        .and_then(|link| link.outlook_id.clone())
        .or_else(|| acted_on(Side::Outlook))
        .or_else(|| stored.and_then(|link| link.outlook_id.clone()))
        .or_else(|| first_seen(Side::Outlook));
    let link = stored.or(planned);
    let crm_version = crm_id.as_deref().and_then(|id| {
        crm.upserts
            .iter()
            .find(|e| e.ids.crm.as_deref() == Some(id))
            .cloned()
    });
    let crm_gone = crm_id
        .as_deref()
        .and_then(|id| crm.gone.iter().find(|g| g.id.as_str() == id).cloned());
    let outlook_version = outlook_id.as_deref().and_then(|id| {
        outlook
            .upserts
            .iter()
            .find(|item| item.id() == Some(id))
            .cloned()
    });
    // The series of the occurrence a single event became counts too: a step refused before
    // the link moved onto that occurrence (a deletion of it, say) leaves the link naming the
    // master, and the series' deletion is then the only news of it.
    let series_master = planned
        .and_then(|link| link.occurrence.as_ref())
        .or_else(|| stored.and_then(|link| link.occurrence.as_ref()))
        .or_else(|| outlook_version.as_ref()?.occurrence.as_ref())
        .map(|o| o.series_master_id.clone());
    // Gone by itself or with its series (a whole series' deletion names only the master).
    let series_deleted = |master: &str| outlook.deleted_series.iter().any(|d| d == master);
    // A CRM deletion is planned only for an event Outlook reported gone, possibly under an
    // id the link does not name (the occurrence a single event became).
    let deletes_crm = step.is_some_and(|step| {
        step.actions
            .iter()
            .any(|action| matches!(action, Action::DeleteInCrm { .. }))
    });
    let outlook_deleted = deletes_crm
        || outlook_id
            .as_deref()
            .is_some_and(|id| outlook.deleted.iter().any(|d| d == id) || series_deleted(id))
        || link
            .and_then(|link| link.occurrence.as_ref())
            .is_some_and(|o| series_deleted(&o.series_master_id));
    ParkedEvent {
        key: key.clone(),
        subject: String::new(),
        why: String::new(),
        attempts: 0,
        since: 0,
        next_at: 0,
        crm_id,
        outlook_id,
        crm: crm_version,
        crm_gone,
        outlook: outlook_version,
        outlook_deleted,
        matched: false,
        series_master,
    }
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
