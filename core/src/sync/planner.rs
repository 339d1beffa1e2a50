//! `plan`: from the links, both sides' changes and the tenant's policy to the steps that bring
//! the two calendars together. Pure and O(n): hash maps over the inputs, one pass per list.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::journal::{field_value, Conflict, ConflictKind, Reason};
use super::matching::MatchKey;
use super::merge::{merge, Merged};
use super::model::{
    differing, AsStored, CrmChanges, FieldSet, Link, LinkKey, LinkState, Occurrence, Origin,
    OutlookChanges, OutlookItem, Side,
};
use super::pending::PendingUpdate;
use super::policy::{crm_create_marker, outlook_transaction_id, Policy, ORGANIZER_OWNED};
use crate::crm::{CrmEventId, GoneReason};
use crate::event::{CalendarEvent, EventField};
use crate::sync::ConflictPolicy;

/// One thing the runner does. See the runner contract in the module docs for the order and
/// the conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Put a journal entry (idempotent: its id is deterministic). Comes before the write that
    /// overwrites or discards the losing value.
    RecordConflict(Conflict),
    /// Store the link *before* the writes that follow: the intent of a create, so a crash
    /// after the create is recognised by the next run instead of creating again; or, before
    /// updates, the link with what they send ([`Link::pending`]), so an update that lands is
    /// recognised as calsync's own even if the link recording it is never stored.
    Remember(Link),
    /// Create the CRM record (owner = the synced user, no notifications, no invitees),
    /// carrying `marker` ([`crm_create_marker`](super::crm_create_marker)) so it can be found
    /// if the answer is lost.
    CreateInCrm {
        event: CalendarEvent,
        marker: String,
    },
    /// Create the Outlook event with this transactionId, stamped with `crm_id`, without
    /// attendees.
    CreateInOutlook {
        crm_id: CrmEventId,
        transaction_id: String,
        event: CalendarEvent,
    },
    /// Partial write of `fields` (vtiger `revise`), values taken from `event`.
    /// Write `fields` of `event` to the CRM record, unless it changed after
    /// `event.modified.crm` (the version the plan read).
    UpdateCrm {
        crm_id: CrmEventId,
        fields: Vec<EventField>,
        event: CalendarEvent,
        /// The link to store if this write lands and a later write of the step does not:
        /// the CRM holds the merged values, Outlook still its own.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partial: Option<Box<Link>>,
    },
    /// PATCH of `fields` on this exact event; for an occurrence that is the occurrence's own
    /// id (it becomes an exception), never the series master. `If-Match` is
    /// `event.ids.outlook_change_key`, the version the plan read.
    UpdateOutlook {
        outlook_id: String,
        fields: Vec<EventField>,
        event: CalendarEvent,
        occurrence: Option<Occurrence>,
    },
    DeleteInCrm {
        crm_id: CrmEventId,
    },
    /// Only ever planned for events the user organises (or whose organizer is unknown).
    /// `if_match`: the version the plan read (`None`: whatever is there).
    DeleteInOutlook {
        outlook_id: String,
        if_match: Option<String>,
    },
    /// Store the link as it stands after the writes before it in the step (a first-sync match
    /// or adoption when there are none). Ids returned by creates of the step are filled in
    /// with [`Link::fill_created`].
    Link(Link),
    /// Forget the link.
    Unlink,
}

impl Action {
    pub(crate) fn is_create(&self) -> bool {
        matches!(
            self,
            Action::CreateInCrm { .. } | Action::CreateInOutlook { .. }
        )
    }

    pub(crate) fn is_deletion(&self) -> bool {
        matches!(
            self,
            Action::DeleteInCrm { .. } | Action::DeleteInOutlook { .. }
        )
    }
}

/// The actions about one link, executed in order; nothing about another link depends on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub key: LinkKey,
    /// The stored version the step was planned from (`None`: no record). If the stored link
    /// is no longer at this version, the step was already applied or is stale: skip it.
    pub expect: Option<u64>,
    pub actions: Vec<Action>,
}

impl Step {
    /// The link record the step ends with (`None` when it forgets the link or stores nothing).
    pub fn final_link(&self) -> Option<&Link> {
        self.actions.iter().rev().find_map(|action| match action {
            Action::Link(link) => Some(link),
            _ => None,
        })
    }

    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.actions.iter().filter_map(|action| match action {
            Action::RecordConflict(conflict) => Some(conflict),
            _ => None,
        })
    }
}

/// The mass-deletion guard tripped: these deletions were held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardTrip {
    pub crm_deletions: usize,
    pub outlook_deletions: usize,
    /// Events the held deletions amount to, a series counting once (what the guard weighs).
    pub events: usize,
    /// Events linked before the run, a series counting once (the base of the percentage).
    pub linked: usize,
    pub floor: usize,
    pub max_percent: u32,
    /// What was held, for the operator to look at and confirm.
    pub held: Vec<HeldDeletion>,
}

/// One deletion the guard held back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDeletion {
    pub key: LinkKey,
    /// The side it would have been deleted from.
    pub side: Side,
    pub subject: String,
}

/// What a plan does, for status and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanCounts {
    pub create_crm: usize,
    pub create_outlook: usize,
    pub update_crm: usize,
    pub update_outlook: usize,
    pub delete_crm: usize,
    pub delete_outlook: usize,
    /// Links stored without a write (first-sync matches, adoptions, snapshot refreshes).
    pub links_stored: usize,
    pub unlinked: usize,
    pub conflicts: usize,
    /// Steps held back by the deletion guard.
    pub held: usize,
}

/// The result of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// Set when the deletion guard tripped: no deletion is in `steps`, the links they concern
    /// are untouched, and the cursors must not advance (the same deletions come back next run
    /// until an operator confirms them or they turn out to be a glitch).
    pub guard: Option<GuardTrip>,
    pub counts: PlanCounts,
    /// Input items without an id, ignored (and reported).
    pub skipped: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Whether the cursors read for this run may be committed once every step succeeded.
    pub fn may_commit_cursors(&self) -> bool {
        self.guard.is_none()
    }

    pub fn conflicts(&self) -> impl Iterator<Item = &Conflict> {
        self.steps.iter().flat_map(Step::conflicts)
    }
}

/// How strong the evidence must be in one pass of adopting interrupted CRM creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Adoption {
    Exact,
    SameKey,
    Closest,
}

/// What a side said about a linked event in this run.
#[derive(Debug)]
enum Seen<'a, T> {
    Nothing,
    Upsert(&'a T),
    Deleted,
    LeftOwner,
}

// Derives would demand `T: Copy`; only the reference is copied.
impl<T> Clone for Seen<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Seen<'_, T> {}

/// Plans one run. `snapshot` is every stored link of the user; the change sets are what each
/// side reported since the committed cursors (deletions confirmed, see [`OutlookChanges`]).
pub fn plan(
    snapshot: &[Link],
    outlook: &OutlookChanges,
    crm: &CrmChanges,
    policy: &Policy,
) -> Plan {
    let mut planner = Planner::new(snapshot, policy);
    planner.observe_outlook(outlook);
    planner.observe_crm(crm);
    planner.adopt_outlook_creates();
    planner.adopt_crm_creates(crm.created_by_sync.as_deref());
    planner.match_parked_pairs();
    if policy.first_sync {
        planner.match_first_sync();
    }
    for index in 0..snapshot.len() {
        planner.plan_link(index);
    }
    planner.plan_pairs();
    planner.plan_creates();
    planner.finish()
}

struct Planner<'a> {
    snapshot: &'a [Link],
    policy: &'a Policy,
    by_crm: HashMap<&'a str, usize>,
    outlook_seen: Vec<Seen<'a, OutlookItem>>,
    crm_seen: Vec<Seen<'a, CalendarEvent>>,
    /// Outlook items with no link yet, in arrival order (`None` once consumed).
    new_outlook: Vec<Option<&'a OutlookItem>>,
    new_crm: Vec<Option<&'a CalendarEvent>>,
    /// Events found on both sides without a link: (CRM, Outlook, origin).
    pairs: Vec<(&'a CalendarEvent, &'a OutlookItem, Origin)>,
    steps: Vec<Step>,
    skipped: Vec<String>,
    /// Links of single events made recurring whose occurrence at the event's time is gone
    /// before the link moved onto it: they are deleted as that occurrence.
    lost_heirs: HashSet<LinkKey>,
    /// Links stored with a pending update: planned as settled, and stored again without it.
    settled: HashSet<LinkKey>,
}

impl<'a> Planner<'a> {
    fn new(snapshot: &'a [Link], policy: &'a Policy) -> Self {
        let mut by_crm = HashMap::with_capacity(snapshot.len());
        for (index, link) in snapshot.iter().enumerate() {
            if let Some(id) = &link.crm_id {
                by_crm.insert(id.as_str(), index);
            }
        }
        Self {
            snapshot,
            policy,
            by_crm,
            outlook_seen: vec![Seen::Nothing; snapshot.len()],
            crm_seen: vec![Seen::Nothing; snapshot.len()],
            new_outlook: Vec::new(),
            new_crm: Vec::new(),
            pairs: Vec::new(),
            steps: Vec::new(),
            skipped: Vec::new(),
            lost_heirs: HashSet::new(),
            settled: HashSet::new(),
        }
    }

    fn observe_outlook(&mut self, changes: &'a OutlookChanges) {
        let mut by_outlook = HashMap::with_capacity(self.snapshot.len());
        for (index, link) in self.snapshot.iter().enumerate() {
            if let Some(id) = &link.outlook_id {
                by_outlook.insert(id.as_str(), index);
            }
        }
        let policy = self.policy;
        // Links whose occurrence is known by an alias: their heir needs no looking for.
        let mut aliased = HashSet::new();
        for (id, master) in &policy.outlook_aliases {
            if let Some(&index) = by_outlook.get(master.as_str()) {
                if self.snapshot[index].occurrence.is_none() {
                    by_outlook.entry(id.as_str()).or_insert(index);
                    aliased.insert(index);
                }
            }
        }
        let deleted: HashSet<&str> = changes.deleted.iter().map(String::as_str).collect();
        let deleted_series: HashSet<&str> =
            changes.deleted_series.iter().map(String::as_str).collect();
        for id in &deleted {
            if let Some(&index) = by_outlook.get(id) {
                self.outlook_seen[index] = Seen::Deleted;
            }
        }
        if !deleted_series.is_empty() {
            for (index, link) in self.snapshot.iter().enumerate() {
                // A linked single event may have become the series now deleted.
                let was_master = link
                    .outlook_id
                    .as_deref()
                    .is_some_and(|id| link.occurrence.is_none() && deleted_series.contains(id));
                if was_master || in_series(link.occurrence.as_ref(), &deleted_series) {
                    self.outlook_seen[index] = Seen::Deleted;
                }
            }
        }
        let (heirs, lost) = self.series_heirs(changes, &by_outlook, &deleted, &aliased);
        for index in lost {
            self.outlook_seen[index] = Seen::Deleted;
            self.lost_heirs.insert(self.snapshot[index].key.clone());
        }
        // Pages may repeat an item: the last version of an id wins.
        let mut new_at: HashMap<&str, usize> = HashMap::new();
        for item in &changes.upserts {
            let Some(id) = item.id() else {
                self.skipped
                    .push(format!("Outlook item without id: {:?}", item.event.subject));
                continue;
            };
            if deleted.contains(id) || in_series(item.occurrence.as_ref(), &deleted_series) {
                continue;
            }
            if let Some(&index) = by_outlook.get(id) {
                if !matches!(self.outlook_seen[index], Seen::Deleted) {
                    self.outlook_seen[index] = Seen::Upsert(item);
                }
            } else if let Some(&index) = heirs.get(id) {
                // The single event it was linked to became this series' master: the link
                // follows the occurrence at the event's old time.
                self.outlook_seen[index] = Seen::Upsert(item);
            } else if let Some(&at) = new_at.get(id) {
                self.new_outlook[at] = Some(item);
            } else {
                new_at.insert(id, self.new_outlook.len());
                self.new_outlook.push(Some(item));
            }
        }
    }

    /// Single events the user made recurring: Graph keeps the event's id for the new series
    /// master, so its link must follow one occurrence — the one at the event's own time, or,
    /// when the event was moved too, the series' first. Occurrence id → link index; and the
    /// links whose heir is gone.
    ///
    /// A link still naming the master after a run saw the series failed to move (a refused
    /// step keeps an alias instead). That run saw every occurrence in the window, as this one
    /// does (the cursors stayed before the series), and linked the others; so an heir that
    /// another link already names means the occurrence that was the event is gone — deleted
    /// before the link could move onto it, which the feeds report only by its own id.
    fn series_heirs(
        &self,
        changes: &'a OutlookChanges,
        by_outlook: &HashMap<&str, usize>,
        deleted: &HashSet<&str>,
        aliased: &HashSet<usize>,
    ) -> (HashMap<&'a str, usize>, Vec<usize>) {
        let mut candidates: HashMap<usize, Vec<&'a OutlookItem>> = HashMap::new();
        for item in &changes.upserts {
            let Some(occurrence) = &item.occurrence else {
                continue;
            };
            if item.id().is_some_and(|id| deleted.contains(id)) {
                continue;
            }
            let Some(&index) = by_outlook.get(occurrence.series_master_id.as_str()) else {
                continue;
            };
            let link = &self.snapshot[index];
            if link.occurrence.is_none() && self.outlook_seen[index].is_nothing() {
                candidates.entry(index).or_default().push(item);
            }
        }
        let mut heirs = HashMap::new();
        let mut lost = Vec::new();
        for (index, items) in candidates {
            let start = start_instant(&self.snapshot[index].base.time);
            let original = |item: &&OutlookItem| item.occurrence.as_ref().map(|o| o.original_start);
            let heir = items
                .iter()
                .find(|item| start.is_some() && original(item) == start)
                .or_else(|| items.iter().min_by_key(|item| original(item)));
            let Some(id) = heir.and_then(|item| item.id()) else {
                continue;
            };
            match by_outlook.get(id) {
                Some(&other) if other != index => {
                    if !aliased.contains(&index) {
                        lost.push(index);
                    }
                }
                _ => {
                    heirs.insert(id, index);
                }
            }
        }
        lost.sort_unstable();
        (heirs, lost)
    }

    fn observe_crm(&mut self, changes: &'a CrmChanges) {
        let mut gone: HashMap<&str, GoneReason> = HashMap::with_capacity(changes.gone.len());
        for entry in &changes.gone {
            gone.insert(entry.id.as_str(), entry.reason);
            if let Some(&index) = self.by_crm.get(entry.id.as_str()) {
                self.crm_seen[index] = match entry.reason {
                    GoneReason::Deleted => Seen::Deleted,
                    GoneReason::LeftOwner => Seen::LeftOwner,
                };
            }
        }
        let mut new_at: HashMap<&str, usize> = HashMap::new();
        for event in &changes.upserts {
            let Some(id) = event.ids.crm.as_deref() else {
                self.skipped
                    .push(format!("CRM event without id: {:?}", event.subject));
                continue;
            };
            if gone.contains_key(id) {
                continue;
            }
            if let Some(&index) = self.by_crm.get(id) {
                self.crm_seen[index] = Seen::Upsert(event);
            } else if let Some(&at) = new_at.get(id) {
                self.new_crm[at] = Some(event);
            } else {
                new_at.insert(id, self.new_crm.len());
                self.new_crm.push(Some(event));
            }
        }
    }

    /// New Outlook items that calsync itself created: found by transactionId or CRM stamp.
    /// An interrupted create is adopted; a second copy of a linked event is removed.
    fn adopt_outlook_creates(&mut self) {
        let tagged =
            |item: &&OutlookItem| item.transaction_id.is_some() || item.crm_stamp.is_some();
        if !self.new_outlook.iter().flatten().any(tagged) {
            return;
        }
        let by_tx: HashMap<&str, usize> = self
            .snapshot
            .iter()
            .enumerate()
            .filter_map(|(index, link)| Some((link.outlook_tx.as_deref()?, index)))
            .collect();
        let mut new_crm_at: HashMap<&str, usize> = HashMap::new();
        for (at, event) in self.new_crm.iter().enumerate() {
            if let Some(id) = event.and_then(|event| event.ids.crm.as_deref()) {
                new_crm_at.insert(id, at);
            }
        }
        for slot in 0..self.new_outlook.len() {
            let Some(item) = self.new_outlook[slot].filter(tagged) else {
                continue;
            };
            let Some(id) = item.id() else { continue };
            let target = item
                .transaction_id
                .as_deref()
                .and_then(|tx| by_tx.get(tx))
                .or_else(|| {
                    let stamp = item.crm_stamp.as_ref()?;
                    self.by_crm.get(stamp.as_str())
                })
                .copied();
            match target {
                Some(index) => {
                    let link = &self.snapshot[index];
                    if let Some(occurrence) = &item.occurrence {
                        // The event calsync made became a series, whose occurrences all carry
                        // its stamp: the one at the event's own time is it; the others are the
                        // user's new events, never duplicates to remove.
                        let heir = link.outlook_id.is_none()
                            && self.outlook_seen[index].is_nothing()
                            && start_instant(&link.base.time) == Some(occurrence.original_start);
                        if heir {
                            self.outlook_seen[index] = Seen::Upsert(item);
                            self.new_outlook[slot] = None;
                        }
                        continue;
                    }
                    if link.outlook_id.is_none() && self.outlook_seen[index].is_nothing() {
                        self.outlook_seen[index] = Seen::Upsert(item);
                        self.new_outlook[slot] = None;
                    } else if link.outlook_id.as_deref() != Some(id)
                        && item.event.is_organizer != Some(false)
                        && !item.event.has_attendees
                    {
                        // A second Outlook copy of a CRM record that already has one: calsync
                        // made it, so removing it loses nothing and notifies no one.
                        self.steps.push(Step {
                            key: LinkKey::for_outlook(id),
                            expect: None,
                            actions: vec![Action::DeleteInOutlook {
                                outlook_id: id.to_owned(),
                                if_match: item.event.ids.outlook_change_key.clone(),
                            }],
                        });
                        self.new_outlook[slot] = None;
                    }
                }
                None => {
                    // Links were lost (not expected, but cheap to survive): pair by the stamp.
                    let stamp = item.crm_stamp.as_ref().map(CrmEventId::as_str);
                    if let Some(&crm_at) = stamp.and_then(|stamp| new_crm_at.get(stamp)) {
                        if let Some(event) = self.new_crm[crm_at].take() {
                            self.pairs.push((event, item, Origin::Crm));
                            self.new_outlook[slot] = None;
                        }
                    }
                }
            }
        }
    }

    /// New CRM records that are the result of an interrupted create, matched to the intent by
    /// the Outlook id the CRM stamped, else identical content, else subject and times. When
    /// the CRM says which records calsync created, only those are candidates, and one that a
    /// user already edited goes to the intent it resembles most.
    fn adopt_crm_creates(&mut self, created_by_sync: Option<&[CrmEventId]>) {
        let pending: Vec<usize> = self
            .snapshot
            .iter()
            .enumerate()
            .filter(|(_, link)| link.state == LinkState::CreatingInCrm && link.crm_id.is_none())
            .map(|(index, _)| index)
            .collect();
        if pending.is_empty() || self.new_crm.is_empty() {
            return;
        }
        let ours: Option<HashSet<&str>> =
            created_by_sync.map(|ids| ids.iter().map(CrmEventId::as_str).collect());
        let candidate = |event: &CalendarEvent| match (&ours, event.ids.crm.as_deref()) {
            (None, _) => true,
            (Some(ours), Some(id)) => ours.contains(id),
            (Some(_), None) => false,
        };
        // The marker the create carried is proof: those first, whatever the content now.
        let by_marker: HashMap<&str, usize> = pending
            .iter()
            .filter_map(|&index| Some((self.snapshot[index].crm_marker.as_deref()?, index)))
            .collect();
        for slot in 0..self.new_crm.len() {
            let Some(event) = self.new_crm[slot] else {
                continue;
            };
            let found = event
                .ids
                .crm_marker
                .as_deref()
                .and_then(|marker| by_marker.get(marker))
                .copied()
                .filter(|index| self.crm_seen[*index].is_nothing());
            if let Some(index) = found {
                self.crm_seen[index] = Seen::Upsert(event);
                self.new_crm[slot] = None;
            }
        }
        let mut by_outlook: HashMap<&str, usize> = HashMap::new();
        let mut by_key: HashMap<MatchKey, Vec<usize>> = HashMap::new();
        for &index in &pending {
            let link = &self.snapshot[index];
            if let Some(id) = &link.outlook_id {
                by_outlook.insert(id.as_str(), index);
            }
            by_key
                .entry(MatchKey::of(&link.base))
                .or_default()
                .push(index);
        }
        let crm_fields = self.policy.crm_fields;
        // Strongest evidence first, so a look-alike never takes a create's place.
        for pass in [Adoption::Exact, Adoption::SameKey, Adoption::Closest] {
            if pass == Adoption::Closest && ours.is_none() {
                break;
            }
            for slot in 0..self.new_crm.len() {
                let Some(event) = self.new_crm[slot].filter(|event| candidate(event)) else {
                    continue;
                };
                let free = |index: &usize| self.crm_seen[*index].is_nothing();
                let stamped = event
                    .ids
                    .outlook
                    .as_deref()
                    .and_then(|id| by_outlook.get(id))
                    .copied()
                    .filter(free);
                let found = stamped.or_else(|| match pass {
                    Adoption::Exact | Adoption::SameKey => by_key
                        .get(&MatchKey::of(event))?
                        .iter()
                        .copied()
                        .find(|index| {
                            free(index)
                                && (pass == Adoption::SameKey
                                    || differing(event, &self.snapshot[*index].base, crm_fields)
                                        .is_empty())
                        }),
                    Adoption::Closest => pending.iter().copied().filter(free).min_by_key(|index| {
                        differing(event, &self.snapshot[*index].base, crm_fields)
                            .iter()
                            .count()
                    }),
                });
                if let Some(index) = found {
                    self.crm_seen[index] = Seen::Upsert(event);
                    self.new_crm[slot] = None;
                }
            }
        }
    }

    /// A first sync's pair whose link a refusal kept from being stored: paired again.
    fn match_parked_pairs(&mut self) {
        for (crm_id, outlook_id) in &self.policy.rematch {
            let crm = self
                .new_crm
                .iter()
                .position(|e| e.is_some_and(|e| e.ids.crm.as_deref() == Some(crm_id.as_str())));
            let outlook = self
                .new_outlook
                .iter()
                .position(|i| i.is_some_and(|i| i.id() == Some(outlook_id.as_str())));
            if let (Some(crm), Some(outlook)) = (crm, outlook) {
                if let (Some(event), Some(item)) =
                    (self.new_crm[crm].take(), self.new_outlook[outlook].take())
                {
                    self.pairs.push((event, item, Origin::Matched));
                }
            }
        }
    }

    /// First sync: an event already on both sides (same subject and times) is linked.
    fn match_first_sync(&mut self) {
        let mut by_key: HashMap<MatchKey, VecDeque<usize>> = HashMap::new();
        for (slot, event) in self.new_crm.iter().enumerate() {
            if let Some(event) = event {
                by_key
                    .entry(MatchKey::of(event))
                    .or_default()
                    .push_back(slot);
            }
        }
        if by_key.is_empty() {
            return;
        }
        for slot in 0..self.new_outlook.len() {
            let Some(item) = self.new_outlook[slot] else {
                continue;
            };
            let Some(queue) = by_key.get_mut(&MatchKey::of(&item.event)) else {
                continue;
            };
            if let Some(event) = queue.pop_front().and_then(|at| self.new_crm[at].take()) {
                self.pairs.push((event, item, Origin::Matched));
                self.new_outlook[slot] = None;
            }
        }
    }

    fn plan_link(&mut self, index: usize) {
        let stored = &self.snapshot[index];
        let outlook = self.outlook_seen[index];
        let crm = self.crm_seen[index];
        // Updates sent before their link was recorded: what landed is calsync's own.
        let settled;
        let link = match &stored.pending {
            Some(pending) => {
                let crm_now = match crm {
                    Seen::Upsert(event) => Some(event),
                    _ => None,
                };
                let outlook_now = match outlook {
                    Seen::Upsert(item) => Some(&item.event),
                    _ => None,
                };
                settled = pending.settle(stored, crm_now, outlook_now, self.policy);
                self.settled.insert(stored.key.clone());
                &settled
            }
            None => stored,
        };
        if self.policy.parked.contains(&link.key) && outlook.is_nothing() && crm.is_nothing() {
            // Refused for good last time and not due yet: nothing new to try.
            return;
        }
        match link.state {
            LinkState::Linked if outlook.is_nothing() && crm.is_nothing() => {}
            LinkState::Detached => match (outlook, crm) {
                (Seen::Deleted, _) => self.unlink(link),
                // The record came back to this owner: link it again.
                (_, Seen::Upsert(_)) => self.plan_linked(link, outlook, crm),
                // The detached event became a series: it stays detached, as its occurrence.
                _ if became_occurrence(link, outlook).is_some() => {
                    let mut next = next_version(link);
                    follow_occurrence(&mut next, link, outlook);
                    self.steps.push(Step {
                        key: link.key.clone(),
                        expect: Some(link.version),
                        actions: vec![Action::Link(next)],
                    });
                }
                _ => {}
            },
            LinkState::CreatingInCrm if !matches!(crm, Seen::Upsert(_)) => {
                self.resume_crm_create(link, outlook)
            }
            LinkState::CreatingInOutlook if !matches!(outlook, Seen::Upsert(_)) => {
                self.resume_outlook_create(link, crm)
            }
            _ => self.plan_linked(link, outlook, crm),
        }
    }

    /// An intent to create in the CRM with no record found: the create never happened.
    fn resume_crm_create(&mut self, link: &Link, outlook: Seen<'a, OutlookItem>) {
        match outlook {
            Seen::Deleted | Seen::LeftOwner => self.unlink(link),
            Seen::Nothing => self.create_in_crm(link, link.base.clone(), None),
            Seen::Upsert(item) => {
                self.create_in_crm(link, item.event.clone(), item.occurrence.clone())
            }
        }
    }

    /// An intent to create in Outlook with no event found: create again with the same key.
    fn resume_outlook_create(&mut self, link: &Link, crm: Seen<'a, CalendarEvent>) {
        let content = match crm {
            Seen::Deleted | Seen::LeftOwner => return self.unlink(link),
            Seen::Nothing => link.base.clone(),
            Seen::Upsert(event) => event.clone(),
        };
        let Some(crm_id) = link.crm_id.clone() else {
            return self.unlink(link);
        };
        let transaction_id = match &link.outlook_tx {
            Some(tx) => tx.clone(),
            None => outlook_transaction_id(
                &self.policy.mailbox,
                &crm_id,
                link.outlook_creates.saturating_sub(1),
            ),
        };
        let mut intent = next_version(link);
        intent.base = content;
        intent.base.ids.outlook = None;
        intent.outlook_tx = Some(transaction_id.clone());
        self.push_outlook_create(link, intent, crm_id, transaction_id, Vec::new());
    }

    /// A link whose two copies exist (or are being adopted): deletions, departures, merge.
    fn plan_linked(
        &mut self,
        link: &Link,
        outlook: Seen<'a, OutlookItem>,
        crm: Seen<'a, CalendarEvent>,
    ) {
        let base = &link.base;
        // A side that reported nothing still holds what it held: its own form of the base.
        let outlook_event = match outlook {
            Seen::Upsert(item) => &item.event,
            _ => link.as_stored.on(Side::Outlook, base),
        };
        let crm_held = self.policy.crm_held(&link.as_stored, base);
        let crm_event = match crm {
            Seen::Upsert(event) => event,
            _ => &crm_held,
        };
        let outlook_changed = differing(
            outlook_event,
            link.as_stored.on(Side::Outlook, base),
            self.policy.outlook_fields,
        );
        let crm_changed = differing(crm_event, &crm_held, self.policy.crm_fields);
        // The common case, echoes included: neither side changed anything this link tracks.
        if link.state == LinkState::Linked
            && !self.settled.contains(&link.key)
            && outlook_changed.is_empty()
            && crm_changed.is_empty()
            && same_versions(base, crm_event, outlook_event)
            && matches!(outlook, Seen::Nothing | Seen::Upsert(_))
            && matches!(crm, Seen::Nothing | Seen::Upsert(_))
            && occurrence_unchanged(link, outlook)
        {
            return;
        }
        let crm_id = link
            .crm_id
            .clone()
            .or_else(|| crm_event.ids.crm.as_deref().map(CrmEventId::new));
        // A single event that became a series: the link moves to its occurrence.
        let outlook_id = became_occurrence(link, outlook)
            .and_then(|item| item.id().map(str::to_owned))
            .or_else(|| link.outlook_id.clone())
            .or_else(|| outlook_event.ids.outlook.clone());
        let not_organizer = outlook_event.is_organizer == Some(false);

        match (outlook, crm) {
            (Seen::Deleted, Seen::Deleted | Seen::LeftOwner) => self.unlink(link),
            (Seen::Deleted, _) => {
                let Some(crm_id) = crm_id else {
                    return self.unlink(link);
                };
                if crm_changed.is_empty() {
                    return self.delete(link, Action::DeleteInCrm { crm_id });
                }
                let (deletion_wins, reason) =
                    if link.occurrence.is_some() || self.lost_heirs.contains(&link.key) {
                        (true, Reason::Occurrence)
                    } else if not_organizer {
                        (true, Reason::NotOrganizer)
                    } else {
                        match self.policy.conflict {
                            ConflictPolicy::OutlookWins => (true, policy_reason(self.policy)),
                            ConflictPolicy::CrmWins => (false, policy_reason(self.policy)),
                            ConflictPolicy::Latest => (false, Reason::EditKept),
                        }
                    };
                let conflict = Conflict::new(
                    &link.key,
                    Some(&crm_id),
                    outlook_id.as_deref(),
                    &crm_event.subject,
                    ConflictKind::EditVsDelete,
                    None,
                    Some(fields_value(crm_event, crm_changed)),
                    None,
                    if deletion_wins {
                        Side::Outlook
                    } else {
                        Side::Crm
                    },
                    reason,
                );
                if deletion_wins {
                    self.steps.push(Step {
                        key: link.key.clone(),
                        expect: Some(link.version),
                        actions: vec![
                            Action::RecordConflict(conflict),
                            Action::DeleteInCrm { crm_id },
                            Action::Unlink,
                        ],
                    });
                } else {
                    // The CRM's edit survives: its event comes back in Outlook, as calsync's.
                    let generation = link.outlook_creates;
                    let transaction_id =
                        outlook_transaction_id(&self.policy.mailbox, &crm_id, generation);
                    let mut intent = next_version(link);
                    intent.base = apply_fields(base, crm_event, crm_changed);
                    // The CRM version read is the one a later write expects.
                    intent.base.modified.crm = crm_event.modified.crm;
                    intent.base.ids.outlook = None;
                    intent.outlook_id = None;
                    intent.state = LinkState::CreatingInOutlook;
                    intent.origin = Origin::Crm;
                    intent.occurrence = None;
                    intent.outlook_tx = Some(transaction_id.clone());
                    intent.outlook_creates = generation + 1;
                    intent.crm_id = Some(crm_id.clone());
                    intent.as_stored =
                        stored_forms(&intent.base, crm_event, outlook_event, self.policy);
                    self.push_outlook_create(
                        link,
                        intent,
                        crm_id,
                        transaction_id,
                        vec![Action::RecordConflict(conflict)],
                    );
                }
            }
            (_, Seen::LeftOwner) => {
                // Reassigned in the CRM: never deleted there. Its Outlook copy goes only if
                // calsync made it and nobody touched it; otherwise it stays, detached.
                match outlook_id {
                    Some(outlook_id)
                        if link.origin == Origin::Crm
                            && !not_organizer
                            && !outlook_event.mails_attendees()
                            && outlook_changed.is_empty() =>
                    {
                        self.delete(
                            link,
                            Action::DeleteInOutlook {
                                outlook_id,
                                if_match: outlook_event.ids.outlook_change_key.clone(),
                            },
                        )
                    }
                    _ => self.detach(link, outlook, outlook_event),
                }
            }
            (_, Seen::Deleted) => {
                let Some(outlook_id) = outlook_id else {
                    return self.unlink(link);
                };
                if not_organizer {
                    // Deleting an attendee's copy would decline the meeting: keep it, detached.
                    return self.detach(link, outlook, outlook_event);
                }
                if outlook_event.mails_attendees() {
                    // Deleting it would send every attendee a cancellation: keep it, detached,
                    // and say so in the journal.
                    let conflict = Conflict::new(
                        &link.key,
                        crm_id.as_ref(),
                        Some(&outlook_id),
                        &outlook_event.subject,
                        ConflictKind::EditVsDelete,
                        None,
                        None,
                        Some(fields_value(outlook_event, FieldSet::of(ORGANIZER_OWNED))),
                        Side::Outlook,
                        Reason::HasAttendees,
                    );
                    return self.detach_noting(link, outlook, outlook_event, Some(conflict));
                }
                if outlook_changed.is_empty() {
                    return self.delete(
                        link,
                        Action::DeleteInOutlook {
                            outlook_id,
                            if_match: outlook_event.ids.outlook_change_key.clone(),
                        },
                    );
                }
                let (deletion_wins, reason) = match self.policy.conflict {
                    ConflictPolicy::CrmWins => (true, policy_reason(self.policy)),
                    ConflictPolicy::OutlookWins => (false, policy_reason(self.policy)),
                    ConflictPolicy::Latest => (false, Reason::EditKept),
                };
                let conflict = Conflict::new(
                    &link.key,
                    crm_id.as_ref(),
                    Some(&outlook_id),
                    &outlook_event.subject,
                    ConflictKind::EditVsDelete,
                    None,
                    None,
                    Some(fields_value(outlook_event, outlook_changed)),
                    if deletion_wins {
                        Side::Crm
                    } else {
                        Side::Outlook
                    },
                    reason,
                );
                if deletion_wins {
                    self.steps.push(Step {
                        key: link.key.clone(),
                        expect: Some(link.version),
                        actions: vec![
                            Action::RecordConflict(conflict),
                            Action::DeleteInOutlook {
                                outlook_id,
                                if_match: outlook_event.ids.outlook_change_key.clone(),
                            },
                            Action::Unlink,
                        ],
                    });
                } else {
                    // Outlook's edit survives: the event comes back in the CRM.
                    let mut intent = next_version(link);
                    intent.base = apply_fields(base, outlook_event, outlook_changed);
                    // The Outlook version read is the one a later write expects.
                    intent.base.ids.outlook_change_key =
                        outlook_event.ids.outlook_change_key.clone();
                    intent.base.ids.crm = None;
                    intent.crm_id = None;
                    intent.state = LinkState::CreatingInCrm;
                    intent.origin = Origin::Outlook;
                    intent.outlook_id = Some(outlook_id);
                    follow_occurrence(&mut intent, link, outlook);
                    // The new record will hold the CRM's form of the base, not the old one's.
                    intent.as_stored =
                        stored_forms(&intent.base, &intent.base, outlook_event, self.policy);
                    self.push_crm_create(link, intent, vec![Action::RecordConflict(conflict)]);
                }
            }
            _ => self.merge_linked(link, outlook, crm, crm_id, outlook_id),
        }
    }

    fn merge_linked(
        &mut self,
        link: &Link,
        outlook: Seen<'a, OutlookItem>,
        crm: Seen<'a, CalendarEvent>,
        crm_id: Option<CrmEventId>,
        outlook_id: Option<String>,
    ) {
        let base = &link.base;
        let (outlook_event, occurrence) = match outlook {
            Seen::Upsert(item) => (
                &item.event,
                item.occurrence.clone().or_else(|| link.occurrence.clone()),
            ),
            _ => (
                link.as_stored.on(Side::Outlook, base),
                link.occurrence.clone(),
            ),
        };
        let crm_held = self.policy.crm_held(&link.as_stored, base);
        let crm_event = match crm {
            Seen::Upsert(event) => event,
            _ => &crm_held,
        };
        let merged = merge(
            Some((base, &link.as_stored)),
            crm_event,
            outlook_event,
            self.policy,
        );
        let meta_changed = link.state != LinkState::Linked
            || self.settled.contains(&link.key)
            || link.crm_id != crm_id
            || link.outlook_id != outlook_id
            || link.occurrence != occurrence;
        if merged.conflicts.is_empty()
            && merged.crm_writes.is_empty()
            && merged.outlook_writes.is_empty()
            && !meta_changed
            && merged.event.same_content(base)
            && same_versions(base, crm_event, outlook_event)
            && stored_forms(&link.base, crm_event, outlook_event, self.policy) == link.as_stored
        {
            // Nothing new on either side, or the echo of our own writes.
            return;
        }
        let mut next = next_version(link);
        // Before any update the link is stored with what it is about to send (the intent,
        // completed in `merge_actions`), so an update that lands is known for calsync's own
        // even if the link recording it is never stored. The link of a single event that
        // became a series moves onto its occurrence there too: should a write fail, the next
        // run still knows which occurrence is the event (the feeds will not name the
        // occurrence again, even when it is deleted).
        let intent =
            (!(merged.crm_writes.is_empty() && merged.outlook_writes.is_empty())).then(|| {
                let mut intent = next_version(link);
                follow_occurrence(&mut intent, link, outlook);
                next.version = intent.version + 1;
                intent
            });
        next.state = LinkState::Linked;
        next.crm_id = crm_id;
        next.outlook_id = outlook_id;
        next.occurrence = occurrence;
        let actions = self.merge_actions(&link.key, next, merged, crm_event, outlook_event, intent);
        self.steps.push(Step {
            key: link.key.clone(),
            expect: Some(link.version),
            actions,
        });
    }

    /// Journal entries, the intent, writes, then the link: the order the runner executes
    /// them in. `intent`: the link as it stands before the writes, for a pair that has a base
    /// the sides last agreed on (`None` for a first match, which has no earlier link: a write
    /// that does not follow leaves the pair unlinked, and the next run matches it again).
    fn merge_actions(
        &self,
        key: &LinkKey,
        mut next: Link,
        merged: Merged,
        crm_event: &CalendarEvent,
        outlook_event: &CalendarEvent,
        intent: Option<Link>,
    ) -> Vec<Action> {
        let has_base = intent.is_some();
        let mut actions = Vec::new();
        for conflict in &merged.conflicts {
            actions.push(Action::RecordConflict(Conflict::new(
                key,
                next.crm_id.as_ref(),
                next.outlook_id.as_deref(),
                &merged.event.subject,
                conflict.kind,
                Some(conflict.field),
                Some(field_value(crm_event, conflict.field)),
                Some(field_value(outlook_event, conflict.field)),
                conflict.winner,
                conflict.reason.clone(),
            )));
        }
        let mut event = merged.event;
        event.ids.crm = next.crm_id.as_ref().map(|id| id.as_str().to_owned());
        event.ids.outlook.clone_from(&next.outlook_id);
        if event.ids.ical_uid.is_none() {
            event.ids.ical_uid.clone_from(&outlook_event.ids.ical_uid);
        }
        // The versions read: a write must not land on a newer one.
        event
            .ids
            .outlook_change_key
            .clone_from(&outlook_event.ids.outlook_change_key);
        let outlook_write = next.outlook_id.is_some() && !merged.outlook_writes.is_empty();
        let crm_write = next.crm_id.is_some() && !merged.crm_writes.is_empty();
        if let Some(mut intent) = intent {
            intent.pending = (crm_write || outlook_write).then(|| {
                Box::new(PendingUpdate {
                    sent: event.clone(),
                    crm: if crm_write {
                        merged.crm_writes
                    } else {
                        FieldSet::EMPTY
                    },
                    outlook: if outlook_write {
                        merged.outlook_writes
                    } else {
                        FieldSet::EMPTY
                    },
                })
            });
            actions.push(Action::Remember(intent));
        }
        if let (Some(crm_id), false) = (&next.crm_id, merged.crm_writes.is_empty()) {
            // Should the Outlook write not follow, the link records the CRM's write alone: the
            // fields Outlook was to be given keep their earlier base, so both sides' edits of
            // them are still seen as edits by the next run.
            let partial = (outlook_write && has_base).then(|| {
                let (old_base, old_forms) = (&next.base, &next.as_stored);
                let mut partial = next.clone();
                partial.base = apply_fields(&event, old_base, merged.outlook_writes);
                partial.base.modified = event.modified.clone();
                partial.base.ids = event.ids.clone();
                let crm_after = apply_fields(crm_event, &event, merged.crm_writes);
                let unsynced = merged.outlook_writes;
                partial.as_stored = stored_forms(
                    &partial.base,
                    &apply_fields(&crm_after, old_forms.on(Side::Crm, old_base), unsynced),
                    &apply_fields(
                        outlook_event,
                        old_forms.on(Side::Outlook, old_base),
                        unsynced,
                    ),
                    self.policy,
                );
                Box::new(partial)
            });
            actions.push(Action::UpdateCrm {
                crm_id: crm_id.clone(),
                fields: merged.crm_writes.to_vec(),
                event: event.clone(),
                partial,
            });
        }
        if let (Some(outlook_id), false) = (&next.outlook_id, merged.outlook_writes.is_empty()) {
            actions.push(Action::UpdateOutlook {
                outlook_id: outlook_id.clone(),
                fields: merged.outlook_writes.to_vec(),
                event: event.clone(),
                occurrence: next.occurrence.clone(),
            });
        }
        // What each side will hold, taking the writes as asked; the executor replaces that
        // with what a side returns from a write.
        next.as_stored = stored_forms(
            &event,
            &apply_fields(crm_event, &event, merged.crm_writes),
            &apply_fields(outlook_event, &event, merged.outlook_writes),
            self.policy,
        );
        next.base = event;
        actions.push(Action::Link(next));
        actions
    }

    /// Pairs found without a link (first-sync matches, stamps): link them, reconciling fields.
    fn plan_pairs(&mut self) {
        for (crm_event, item, origin) in std::mem::take(&mut self.pairs) {
            let (Some(crm_id), Some(outlook_id)) = (crm_event.ids.crm.as_deref(), item.id()) else {
                continue;
            };
            let crm_id = CrmEventId::new(crm_id);
            let key = LinkKey::for_crm(&crm_id);
            let merged = merge(None, crm_event, &item.event, self.policy);
            let link = Link {
                key: key.clone(),
                version: 1,
                state: LinkState::Linked,
                origin,
                crm_id: Some(crm_id),
                outlook_id: Some(outlook_id.to_owned()),
                outlook_tx: item.transaction_id.clone(),
                outlook_creates: 0,
                crm_marker: crm_event.ids.crm_marker.clone(),
                crm_creates: 0,
                occurrence: item.occurrence.clone(),
                base: merged.event.clone(),
                as_stored: AsStored::default(),
                pending: None,
            };
            // A first match has no earlier base to fall back on: a write that does not follow
            // leaves the pair unlinked, and the next run matches it again.
            let actions = self.merge_actions(&key, link, merged, crm_event, &item.event, None);
            self.steps.push(Step {
                key,
                expect: None,
                actions,
            });
        }
    }

    /// Whatever is still new on one side gets created on the other.
    fn plan_creates(&mut self) {
        let window = |time: &crate::event::EventTime| self.policy.in_window(time);
        let new_outlook: Vec<&OutlookItem> = std::mem::take(&mut self.new_outlook)
            .into_iter()
            .flatten()
            .filter(|item| window(&item.event.time))
            .collect();
        let new_crm: Vec<&CalendarEvent> = std::mem::take(&mut self.new_crm)
            .into_iter()
            .flatten()
            .filter(|event| window(&event.time))
            .collect();
        for item in new_outlook {
            let Some(outlook_id) = item.id() else {
                continue;
            };
            let mut intent = Link {
                key: LinkKey::for_outlook(outlook_id),
                version: 1,
                state: LinkState::CreatingInCrm,
                origin: Origin::Outlook,
                crm_id: None,
                outlook_id: Some(outlook_id.to_owned()),
                outlook_tx: item.transaction_id.clone(),
                outlook_creates: 0,
                crm_marker: None,
                crm_creates: 0,
                occurrence: item.occurrence.clone(),
                base: item.event.clone(),
                as_stored: AsStored::default(),
                pending: None,
            };
            let create = self.crm_create(&mut intent, true);
            self.push_create(None, Vec::new(), intent, create);
        }
        for event in new_crm {
            let Some(crm_id) = event.ids.crm.as_deref().map(CrmEventId::new) else {
                continue;
            };
            let transaction_id = outlook_transaction_id(&self.policy.mailbox, &crm_id, 0);
            let mut base = event.clone();
            base.ids.outlook = None;
            let intent = Link {
                key: LinkKey::for_crm(&crm_id),
                version: 1,
                state: LinkState::CreatingInOutlook,
                origin: Origin::Crm,
                crm_id: Some(crm_id.clone()),
                outlook_id: None,
                outlook_tx: Some(transaction_id.clone()),
                outlook_creates: 1,
                crm_marker: None,
                crm_creates: 0,
                occurrence: None,
                base,
                as_stored: AsStored::default(),
                pending: None,
            };
            let create = Action::CreateInOutlook {
                crm_id,
                transaction_id,
                event: intent.base.clone(),
            };
            self.push_create(None, Vec::new(), intent, create);
        }
    }

    /// An intent to create in the CRM with no record found: create again with the same marker,
    /// so a record that turns up later is still recognised as this one.
    fn create_in_crm(&mut self, link: &Link, base: CalendarEvent, occurrence: Option<Occurrence>) {
        let mut intent = next_version(link);
        intent.base = base;
        intent.base.ids.crm = None;
        if occurrence.is_some() {
            // An event made recurring before its create finished: the create is now for its
            // occurrence, whose id the link takes.
            if link.occurrence.is_none() {
                intent.outlook_id = intent.base.ids.outlook.clone().or(intent.outlook_id);
            }
            intent.occurrence = occurrence;
        }
        let create = self.crm_create(&mut intent, false);
        self.push_create(Some(link.version), Vec::new(), intent, create);
    }

    /// A CRM create that replaces a deleted record: a new marker generation.
    fn push_crm_create(&mut self, link: &Link, mut intent: Link, before: Vec<Action>) {
        let create = self.crm_create(&mut intent, true);
        self.push_create(Some(link.version), before, intent, create);
    }

    /// The create action for `intent`, with its marker: the intent's own unless `fresh` (or it
    /// has none), otherwise the next generation's.
    fn crm_create(&self, intent: &mut Link, fresh: bool) -> Action {
        let marker = match (&intent.crm_marker, fresh) {
            (Some(marker), false) => marker.clone(),
            _ => {
                let marker =
                    crm_create_marker(&self.policy.mailbox, &intent.key, intent.crm_creates);
                intent.crm_creates += 1;
                intent.crm_marker = Some(marker.clone());
                marker
            }
        };
        Action::CreateInCrm {
            event: intent.base.clone(),
            marker,
        }
    }

    fn push_outlook_create(
        &mut self,
        link: &Link,
        intent: Link,
        crm_id: CrmEventId,
        transaction_id: String,
        before: Vec<Action>,
    ) {
        let create = Action::CreateInOutlook {
            crm_id,
            transaction_id,
            event: intent.base.clone(),
        };
        self.push_create(Some(link.version), before, intent, create);
    }

    /// `before` (journal entries), the stored intent, the create, the finished link.
    fn push_create(
        &mut self,
        expect: Option<u64>,
        mut actions: Vec<Action>,
        intent: Link,
        create: Action,
    ) {
        let key = intent.key.clone();
        let mut done = intent.clone();
        done.version = intent.version + 1;
        done.state = LinkState::Linked;
        actions.push(Action::Remember(intent));
        actions.push(create);
        actions.push(Action::Link(done));
        self.steps.push(Step {
            key,
            expect,
            actions,
        });
    }

    fn delete(&mut self, link: &Link, deletion: Action) {
        self.steps.push(Step {
            key: link.key.clone(),
            expect: Some(link.version),
            actions: vec![deletion, Action::Unlink],
        });
    }

    fn unlink(&mut self, link: &Link) {
        self.steps.push(Step {
            key: link.key.clone(),
            expect: Some(link.version),
            actions: vec![Action::Unlink],
        });
    }

    fn detach(
        &mut self,
        link: &Link,
        outlook: Seen<'a, OutlookItem>,
        outlook_event: &CalendarEvent,
    ) {
        self.detach_noting(link, outlook, outlook_event, None);
    }

    /// Detaches, journalling `why` first when given.
    fn detach_noting(
        &mut self,
        link: &Link,
        outlook: Seen<'a, OutlookItem>,
        outlook_event: &CalendarEvent,
        why: Option<Conflict>,
    ) {
        if link.state == LinkState::Detached {
            return;
        }
        let mut next = next_version(link);
        next.state = LinkState::Detached;
        // A single event that became a series: what stays detached is its occurrence. A create
        // whose answer was lost learns its event's id only now.
        follow_occurrence(&mut next, link, outlook);
        if next.outlook_id.is_none() {
            next.outlook_id = outlook_event.ids.outlook.clone();
        }
        // Remember who organises it, so a later look at the link explains the choice.
        next.base.copy_field(outlook_event, EventField::Organizer);
        self.steps.push(Step {
            key: link.key.clone(),
            expect: Some(link.version),
            actions: why
                .map(Action::RecordConflict)
                .into_iter()
                .chain([Action::Link(next)])
                .collect(),
        });
    }

    fn finish(mut self) -> Plan {
        let confirmed = &self.policy.guard.confirmed;
        let is_held = |step: &Step| {
            step.actions.iter().any(Action::is_deletion) && !confirmed.contains(&step.key)
        };
        let by_key: HashMap<&LinkKey, &Link> =
            self.snapshot.iter().map(|link| (&link.key, link)).collect();
        // The guard weighs events as the user sees them: a series is one, however many of its
        // occurrences fall in the window.
        let linked = guard_units(&by_key, self.snapshot.iter().map(|link| &link.key));
        let deleted = guard_units(
            &by_key,
            self.steps
                .iter()
                .filter(|step| is_held(step))
                .map(|step| &step.key),
        );
        let mut guard = None;
        let mut held = 0;
        if self.policy.guard.trips(deleted, linked) {
            let (kept, dropped): (Vec<Step>, Vec<Step>) = std::mem::take(&mut self.steps)
                .into_iter()
                .partition(|step| !is_held(step));
            self.steps = kept;
            held = dropped.len();
            let held_deletions: Vec<HeldDeletion> = dropped
                .iter()
                .flat_map(|step| {
                    let subject = by_key
                        .get(&step.key)
                        .map(|link| link.base.subject.clone())
                        .unwrap_or_default();
                    step.actions.iter().filter_map(move |action| {
                        let side = match action {
                            Action::DeleteInCrm { .. } => Side::Crm,
                            Action::DeleteInOutlook { .. } => Side::Outlook,
                            _ => return None,
                        };
                        Some(HeldDeletion {
                            key: step.key.clone(),
                            side,
                            subject: subject.clone(),
                        })
                    })
                })
                .collect();
            let on = |side: Side| {
                held_deletions
                    .iter()
                    .filter(|held| held.side == side)
                    .count()
            };
            guard = Some(GuardTrip {
                crm_deletions: on(Side::Crm),
                outlook_deletions: on(Side::Outlook),
                events: deleted,
                linked,
                floor: self.policy.guard.floor,
                max_percent: self.policy.guard.max_percent,
                held: held_deletions,
            });
        }
        let mut counts = count(&self.steps);
        counts.held = held;
        Plan {
            steps: self.steps,
            guard,
            counts,
            skipped: self.skipped,
        }
    }
}

/// How many events `keys` amount to for the deletion guard, occurrences of one series
/// counting once.
fn guard_units<'k>(
    by_key: &HashMap<&LinkKey, &'k Link>,
    keys: impl Iterator<Item = &'k LinkKey>,
) -> usize {
    keys.map(
        |key| match by_key.get(key).and_then(|link| link.occurrence.as_ref()) {
            Some(occurrence) => occurrence.series_master_id.as_str(),
            None => key.as_str(),
        },
    )
    .collect::<HashSet<&str>>()
    .len()
}

impl<T> Seen<'_, T> {
    fn is_nothing(&self) -> bool {
        matches!(self, Seen::Nothing)
    }
}

fn count(steps: &[Step]) -> PlanCounts {
    let mut counts = PlanCounts::default();
    for step in steps {
        let mut wrote = false;
        for action in &step.actions {
            match action {
                Action::RecordConflict(_) => counts.conflicts += 1,
                Action::Remember(_) => {}
                Action::CreateInCrm { .. } => counts.create_crm += 1,
                Action::CreateInOutlook { .. } => counts.create_outlook += 1,
                Action::UpdateCrm { .. } => counts.update_crm += 1,
                Action::UpdateOutlook { .. } => counts.update_outlook += 1,
                Action::DeleteInCrm { .. } => counts.delete_crm += 1,
                Action::DeleteInOutlook { .. } => counts.delete_outlook += 1,
                Action::Link(_) => {
                    if !wrote {
                        counts.links_stored += 1;
                    }
                }
                Action::Unlink => counts.unlinked += 1,
            }
            wrote |= !matches!(
                action,
                Action::RecordConflict(_) | Action::Remember(_) | Action::Link(_) | Action::Unlink
            );
        }
    }
    counts
}

fn occurrence_unchanged(link: &Link, outlook: Seen<'_, OutlookItem>) -> bool {
    match outlook {
        Seen::Upsert(item) => item.occurrence.is_none() || item.occurrence == link.occurrence,
        _ => true,
    }
}

/// When an event starts, as an instant (an all-day event at midnight UTC, as Graph gives an
/// all-day occurrence's original start).
fn start_instant(time: &crate::event::EventTime) -> Option<jiff::Timestamp> {
    match time {
        crate::event::EventTime::Timed { start, .. } => Some(*start),
        crate::event::EventTime::AllDay { start, .. } => jiff::tz::TimeZone::UTC
            .to_timestamp(start.to_datetime(jiff::civil::Time::midnight()))
            .ok(),
    }
}

/// The occurrence a linked single event became, when Outlook reports the event as one (the
/// user made it recurring): the link moves onto it.
fn became_occurrence<'x>(link: &Link, outlook: Seen<'x, OutlookItem>) -> Option<&'x OutlookItem> {
    match outlook {
        Seen::Upsert(item) if item.occurrence.is_some() && link.occurrence.is_none() => Some(item),
        _ => None,
    }
}

/// Moves `next` (a version of `link`) onto the occurrence the event became, if it did.
fn follow_occurrence(next: &mut Link, link: &Link, outlook: Seen<'_, OutlookItem>) {
    if let Some(item) = became_occurrence(link, outlook) {
        next.outlook_id = item.id().map(str::to_owned).or(next.outlook_id.take());
        next.occurrence = item.occurrence.clone();
    }
}

fn in_series(occurrence: Option<&Occurrence>, deleted: &HashSet<&str>) -> bool {
    occurrence.is_some_and(|occurrence| deleted.contains(occurrence.series_master_id.as_str()))
}

/// Whether the sides are still at the versions the link knows. A side can move on without a
/// change calsync carries (an attendee answered, a field calsync does not sync): the link
/// then learns the new version, or the next write would be refused as if someone had edited.
fn same_versions(base: &CalendarEvent, crm: &CalendarEvent, outlook: &CalendarEvent) -> bool {
    base.modified.crm == crm.modified.crm
        && base.ids.outlook_change_key == outlook.ids.outlook_change_key
}

/// Each side's own form of `base`, from what the sides hold now.
fn stored_forms(
    base: &CalendarEvent,
    crm: &CalendarEvent,
    outlook: &CalendarEvent,
    policy: &Policy,
) -> AsStored {
    let mut forms = AsStored::default();
    forms.note(Side::Crm, crm, base, policy.crm_fields);
    forms.note(Side::Outlook, outlook, base, policy.outlook_fields);
    forms
}

fn next_version(link: &Link) -> Link {
    let mut next = link.clone();
    next.version = link.version + 1;
    next
}

/// `base` with `fields` taken from `from`.
fn apply_fields(base: &CalendarEvent, from: &CalendarEvent, fields: FieldSet) -> CalendarEvent {
    let mut out = base.clone();
    for field in fields.iter() {
        out.copy_field(from, field);
    }
    out.modified = from.modified.clone();
    out
}

/// The changed fields of an event as one JSON object, for an edit-vs-delete entry.
fn fields_value(event: &CalendarEvent, fields: FieldSet) -> Value {
    let mut map = Map::new();
    for field in fields.iter() {
        let name = serde_json::to_value(field)
            .ok()
            .and_then(|name| name.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{field:?}"));
        map.insert(name, field_value(event, field));
    }
    Value::Object(map)
}

fn policy_reason(policy: &Policy) -> Reason {
    Reason::Policy {
        policy: policy.conflict,
    }
}
