//! Executing a [`Plan`] by the runner contract (module docs, "Runner contract" step 3), against
//! any [`SyncTarget`]: the live one (Graph, the CRM, the item store) or a simulated world. The
//! order of actions, the conditional link writes, which writes may be retried and when a step
//! ends are decided here once, so every target gets the same guarantees.

use std::collections::HashSet;

use async_trait::async_trait;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::books::{Books, Record};
use super::journal::Conflict;
use super::model::{FieldSet, Link, LinkKey, Occurrence, Side};
use super::pending::PendingUpdate;
use super::planner::{Action, Plan, Step};
use super::policy::Policy;
use crate::cause::Cause;
use crate::crm::CrmEventId;
use crate::event::{CalendarEvent, EventField};

/// How a write to a target failed, with the target's own error as the cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteFailure {
    /// Nothing happened (throttled, unavailable, refused connection): safe to try again.
    #[error("temporarily unavailable")]
    Transient(#[source] Cause),
    /// It may have happened but the answer was lost (a timeout).
    #[error("no answer")]
    Ambiguous(#[source] Cause),
    /// The record changed on its side since the plan read it (a `changeKey` that no longer
    /// matches, a newer CRM modification time): nothing was written, and the next run plans
    /// again from the newer version.
    #[error("changed since it was read")]
    Stale(#[source] Cause),
    /// Refused for good (invalid data, no permission): trying again will not help.
    #[error("refused")]
    Rejected(#[source] Cause),
    /// The run cannot go on (token revoked, storage down): stop before any further write.
    #[error("the run cannot go on")]
    Fatal(#[source] Cause),
}

impl WriteFailure {
    /// What happened, causes included, for reports.
    fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(inner) = cause {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            cause = inner.source();
        }
        text
    }
}

/// What a run writes to. Every method is one attempt; [`execute`] decides about retries.
#[async_trait]
pub trait SyncTarget: Send + Sync {
    /// The version of the stored link (`None`: no record).
    async fn stored_version(&self, key: &LinkKey) -> Result<Option<u64>, WriteFailure>;
    /// Stores the link if the stored version is `link.version - 1` (absent for 0); `false`
    /// when that did not hold.
    async fn put_link(&self, link: &Link) -> Result<bool, WriteFailure>;
    /// Forgets the link if it is still at `expect`.
    async fn delete_link(&self, key: &LinkKey, expect: Option<u64>) -> Result<(), WriteFailure>;
    /// Puts the journal entry by its id.
    async fn record_conflict(&self, conflict: &Conflict) -> Result<(), WriteFailure>;
    /// Returns the record as the CRM stored it (`ids.crm` set). The record carries `marker`.
    async fn create_in_crm(
        &self,
        event: &CalendarEvent,
        marker: &str,
    ) -> Result<CalendarEvent, WriteFailure>;
    /// The record a CRM create with `marker` made, if there is one: how a create whose answer
    /// was lost is resolved.
    async fn find_crm_created(&self, marker: &str) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// Returns the event as Outlook stored it (`ids.outlook` set).
    async fn create_in_outlook(
        &self,
        crm_id: &CrmEventId,
        transaction_id: &str,
        event: &CalendarEvent,
    ) -> Result<CalendarEvent, WriteFailure>;
    /// The Outlook event stamped with `crm_id`, if there is one: how an Outlook create whose
    /// answer was lost is resolved before it is sent again.
    async fn find_outlook_created(
        &self,
        crm_id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// `None` when the record is gone.
    async fn update_crm(
        &self,
        crm_id: &CrmEventId,
        fields: &[EventField],
        event: &CalendarEvent,
    ) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// `None` when the event is gone.
    async fn update_outlook(
        &self,
        outlook_id: &str,
        fields: &[EventField],
        event: &CalendarEvent,
        occurrence: Option<&Occurrence>,
    ) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// The record as the CRM holds it now (`None`: gone): how an update whose answer was lost
    /// is told apart from a user's edit once the record's version has moved.
    async fn read_crm(&self, crm_id: &CrmEventId) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// The event as Outlook holds it now (`None`: gone), for the same purpose.
    async fn read_outlook(&self, outlook_id: &str) -> Result<Option<CalendarEvent>, WriteFailure>;
    /// Succeeds when the record is gone afterwards, deleted now or before.
    async fn delete_in_crm(&self, crm_id: &CrmEventId) -> Result<(), WriteFailure>;
    /// Succeeds when the event is gone afterwards; with `if_match`, only the version read.
    async fn delete_in_outlook(
        &self,
        outlook_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), WriteFailure>;
    /// Stores the records, in as few requests as the target can, each on its own condition
    /// (as [`Self::put_link`], [`Self::record_conflict`] and [`Self::delete_link`] would): one
    /// answer per record, in order; for a link whether it was stored, `true` for the others.
    /// By default one at a time.
    async fn store_all(&self, records: &[Record]) -> Vec<Result<bool, WriteFailure>> {
        let mut answers = Vec::with_capacity(records.len());
        for record in records {
            answers.push(record.store_alone(self).await);
        }
        answers
    }
    /// How many steps may run at once (a wave; see [`execute`]). The target itself keeps each
    /// side's requests in flight within that side's limits. 1: one step after another.
    fn parallel_steps(&self) -> usize {
        1
    }
    /// Waits before the `attempt`-th retry (1-based). The live target backs off; a simulation
    /// need not wait.
    async fn pause(&self, _attempt: u32) {}
    /// Whether the run must stop starting steps (its invocation is about to end). The steps
    /// left are postponed, not failed: the cursors wait and the next run plans them again.
    fn out_of_time(&self) -> bool {
        false
    }
}

/// How many times one write is tried before its step is given up for this run.
pub const ATTEMPTS: u32 = 3;

/// What an execution did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    /// Steps carried out to the end.
    pub completed: usize,
    /// Steps skipped because the stored link was no longer where the plan expected it.
    pub stale: usize,
    /// Steps that ended early, with why; tried again by the next run.
    pub failed: Vec<(LinkKey, String)>,
    /// Steps a side refused for good (invalid data, a rule of the CRM), with why. They do not
    /// hold the cursors back: the runner parks them and tries them again later.
    pub refused: Vec<(LinkKey, String)>,
    /// Updates that found the event gone on that side (the next run's feed reports it).
    pub gone: Vec<(Side, String)>,
    /// Steps not started because the run ran out of time.
    pub postponed: usize,
    /// Writes done on each side, for status.
    pub crm: Tally,
    pub outlook: Tally,
}

/// Writes done on one side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
    }
}

impl Execution {
    /// Whether every step ran to its end: the condition for committing the cursors.
    pub fn all_done(&self) -> bool {
        self.stale == 0 && self.failed.is_empty() && self.gone.is_empty() && self.postponed == 0
    }
}

/// The run stopped on a [`WriteFailure::Fatal`]; `so_far` is what was done before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the run stopped")]
pub struct Stopped {
    #[source]
    pub reason: Cause,
    pub so_far: Box<Execution>,
}

/// Executes the plan's steps in waves: up to [`SyncTarget::parallel_steps`] consecutive steps
/// run at once, and their bookkeeping is written together ([`Books`]). A wave never holds two
/// steps about the same link or event, nor a deletion beside a create (a delete never
/// overtakes the create it follows); one step's actions stay in order. A failed step does not
/// stop the others; a fatal failure stops everything at once, as a crash would.
pub async fn execute(
    plan: &Plan,
    target: &dyn SyncTarget,
    policy: &Policy,
) -> Result<Execution, Stopped> {
    let mut done = Execution::default();
    // Links whose step's writes landed but which could not be stored: tried once more at the
    // end, since a next run that does not know of those writes would take them for edits.
    let mut unsaved: Vec<Link> = Vec::new();
    let width = target.parallel_steps().max(1);
    let mut next = 0;
    while next < plan.steps.len() {
        if target.out_of_time() {
            done.postponed = plan.steps.len() - next;
            break;
        }
        let wave = wave_at(&plan.steps, next, width);
        next += wave.len();
        let books = Books::new(target, wave.len());
        let mut running: FuturesUnordered<_> = wave
            .iter()
            .enumerate()
            .map(|(index, step)| {
                let books = &books;
                async move {
                    let outcome = run_step(step, books, policy).await;
                    books.finish().await;
                    (index, outcome)
                }
            })
            .collect();
        let mut outcomes: Vec<Option<StepOutcome>> = vec![None; wave.len()];
        let mut fatal = None;
        while let Some((index, outcome)) = running.next().await {
            match outcome {
                Ok(outcome) => outcomes[index] = Some(outcome),
                Err(reason) => {
                    fatal = Some(reason);
                    break;
                }
            }
        }
        drop(running);
        for (step, outcome) in wave.iter().zip(outcomes) {
            let Some(outcome) = outcome else { continue };
            done.crm.add(outcome.crm);
            done.outlook.add(outcome.outlook);
            match outcome.end {
                StepEnd::Completed => done.completed += 1,
                StepEnd::Stale => done.stale += 1,
                StepEnd::Gone(side, id) => done.gone.push((side, id)),
                StepEnd::Failed(why) => {
                    tracing::warn!(link = %step.key, reason = %why, "sync step failed");
                    done.failed.push((step.key.clone(), why));
                    unsaved.extend(outcome.unsaved);
                }
                StepEnd::Refused(why) => {
                    tracing::warn!(link = %step.key, reason = %why, "sync step refused");
                    done.refused.push((step.key.clone(), why));
                }
            }
        }
        if let Some(reason) = fatal {
            return Err(Stopped {
                reason,
                so_far: Box::new(done),
            });
        }
    }
    let books = Books::new(target, 1);
    for link in unsaved {
        match store_link(&books, &link).await {
            Ok(Tried::Done(true)) => {
                done.failed.retain(|(key, _)| key != &link.key);
                done.completed += 1;
            }
            Ok(_) => {}
            Err(reason) => {
                return Err(Stopped {
                    reason,
                    so_far: Box::new(done),
                })
            }
        }
    }
    Ok(done)
}

/// The steps from `start` that may run together: at most `width`, each about links and
/// events no earlier step of the wave touches, and no deletion beside a create.
fn wave_at(steps: &[Step], start: usize, width: usize) -> &[Step] {
    let mut touched: HashSet<String> = HashSet::new();
    let (mut creates, mut deletes) = (false, false);
    let mut end = start;
    for step in steps[start..].iter().take(width) {
        let ids = touches(step);
        let creating = step.actions.iter().any(Action::is_create);
        let deleting = step.actions.iter().any(Action::is_deletion);
        let clash = ids.iter().any(|id| touched.contains(id))
            || (creating && deletes)
            || (deleting && creates);
        if clash && end > start {
            break;
        }
        touched.extend(ids);
        creates |= creating;
        deletes |= deleting;
        end += 1;
    }
    &steps[start..end]
}

/// Every link key and event id a step's actions name.
fn touches(step: &Step) -> Vec<String> {
    let mut ids = vec![format!("link:{}", step.key)];
    let mut link = |link: &Link| {
        ids.push(format!("link:{}", link.key));
        ids.extend(link.crm_id.iter().map(|id| format!("crm:{id}")));
        ids.extend(link.outlook_id.iter().map(|id| format!("outlook:{id}")));
    };
    let mut events: Vec<String> = Vec::new();
    for action in &step.actions {
        match action {
            Action::Remember(l) | Action::Link(l) => link(l),
            Action::CreateInOutlook { crm_id, .. }
            | Action::UpdateCrm { crm_id, .. }
            | Action::DeleteInCrm { crm_id } => events.push(format!("crm:{crm_id}")),
            Action::UpdateOutlook { outlook_id, .. }
            | Action::DeleteInOutlook { outlook_id, .. } => {
                events.push(format!("outlook:{outlook_id}"))
            }
            Action::CreateInCrm { .. } | Action::RecordConflict(_) | Action::Unlink => {}
        }
    }
    ids.extend(events);
    ids
}

/// How one step ended, with the writes it did.
#[derive(Clone)]
struct StepOutcome {
    end: StepEnd,
    /// The link it could not store after its writes landed.
    unsaved: Option<Link>,
    crm: Tally,
    outlook: Tally,
}

#[derive(Clone)]
enum StepEnd {
    Completed,
    Stale,
    Gone(Side, String),
    Failed(String),
    Refused(String),
}

/// A write's outcome after retries.
enum Tried<T> {
    Done(T),
    Failed(String),
    /// Refused for good: trying again now cannot help.
    Refused(String),
}

/// Tries an idempotent write (or a read) up to [`ATTEMPTS`] times. `Err` is a fatal failure's
/// cause.
async fn attempt<T, F, Fut>(target: &dyn SyncTarget, mut write: F) -> Result<Tried<T>, Cause>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, WriteFailure>>,
{
    let mut last = String::new();
    for n in 0..ATTEMPTS {
        if n > 0 {
            target.pause(n).await;
        }
        match write().await {
            Ok(value) => return Ok(Tried::Done(value)),
            Err(failure) => match give_up(failure) {
                Ok(end) => return end,
                Err(failure) => last = failure.describe(),
            },
        }
    }
    Ok(Tried::Failed(format!("{ATTEMPTS} attempts: {last}")))
}

/// How a failure ends a write: `Ok` with the end when no retry can mend it (fatal, refused,
/// stale), `Err` with the failure when another attempt may succeed.
fn give_up<T>(failure: WriteFailure) -> Result<Result<Tried<T>, Cause>, WriteFailure> {
    match failure {
        WriteFailure::Fatal(reason) => Ok(Err(reason)),
        failure @ WriteFailure::Rejected(_) => Ok(Ok(Tried::Refused(failure.describe()))),
        failure @ WriteFailure::Stale(_) => Ok(Ok(Tried::Failed(format!(
            "{} (planned again by the next run)",
            failure.describe()
        )))),
        other => Err(other),
    }
}

/// Tries a create up to [`ATTEMPTS`] times. A create that surely did nothing is sent again;
/// once one may have happened (its answer was lost), it is never sent blind: `look` finds
/// what it made. Found, that is the answer. Not found, it is sent again only if `resend` (the
/// side deduplicates, as Graph's transactionId does); otherwise the step ends and the next run,
/// which reads the record from the CRM's feed, adopts it by its marker.
async fn create<T, C, CF, L, LF>(
    target: &dyn SyncTarget,
    resend: bool,
    mut write: C,
    mut look: L,
) -> Result<Tried<T>, Cause>
where
    C: FnMut() -> CF,
    CF: std::future::Future<Output = Result<T, WriteFailure>>,
    L: FnMut() -> LF,
    LF: std::future::Future<Output = Result<Option<T>, WriteFailure>>,
{
    let mut last = String::new();
    for n in 0..ATTEMPTS {
        if n > 0 {
            target.pause(n).await;
        }
        let failure = match write().await {
            Ok(value) => return Ok(Tried::Done(value)),
            Err(failure) => match give_up(failure) {
                Ok(end) => return end,
                Err(failure) => failure,
            },
        };
        match failure {
            WriteFailure::Ambiguous(_) => match attempt(target, &mut look).await? {
                Tried::Done(Some(found)) => return Ok(Tried::Done(found)),
                Tried::Done(None) if resend => last = failure.describe(),
                Tried::Done(None) => {
                    return Ok(Tried::Failed(format!(
                        "{}; nothing it made is visible yet (left for the next run)",
                        failure.describe()
                    )))
                }
                Tried::Failed(why) | Tried::Refused(why) => {
                    return Ok(Tried::Failed(format!(
                        "{}; looking for what it made failed: {why}",
                        failure.describe()
                    )))
                }
            },
            failure => last = failure.describe(),
        }
    }
    Ok(Tried::Failed(format!("{ATTEMPTS} attempts: {last}")))
}

/// Tries an update up to [`ATTEMPTS`] times. Updates carry the version they were planned from,
/// so once an attempt's answer was lost, a later one finds the version moved — by that
/// attempt, or by a user. Whenever the update would end without success after such a loss
/// (the version moved, a refusal, the attempts spent), `read` tells whether it landed: the
/// record holding every written field as `sent` (in the form the side stores it) means it did,
/// and its current form is the answer; anything else leaves the step to the next run. When
/// the record cannot be read, `uncertain` is set: the update may have landed, so its intent
/// stays for the next run to settle, and a refusal is not taken as final (the cursors must
/// wait for that run).
async fn update<W, WF, R, RF>(
    target: &dyn SyncTarget,
    fields: &[EventField],
    sent: &CalendarEvent,
    uncertain: &mut bool,
    mut write: W,
    mut read: R,
) -> Result<Tried<Option<CalendarEvent>>, Cause>
where
    W: FnMut() -> WF,
    WF: std::future::Future<Output = Result<Option<CalendarEvent>, WriteFailure>>,
    R: FnMut() -> RF,
    RF: std::future::Future<Output = Result<Option<CalendarEvent>, WriteFailure>>,
{
    let mut last = String::new();
    let mut maybe_landed = false;
    for n in 0..ATTEMPTS {
        if n > 0 {
            target.pause(n).await;
        }
        let failure = match write().await {
            Ok(value) => return Ok(Tried::Done(value)),
            Err(failure) => failure,
        };
        let fatal = matches!(failure, WriteFailure::Fatal(_));
        maybe_landed |= matches!(failure, WriteFailure::Ambiguous(_));
        match give_up(failure) {
            // The version moved, or the side refuses now: an earlier attempt may have landed.
            Ok(end) if maybe_landed && !fatal => {
                return Ok(match landed(target, &mut read, fields, sent).await? {
                    Landing::Landed(found) => Tried::Done(found.map(|found| *found)),
                    Landing::Not => end?,
                    Landing::Unknown => {
                        *uncertain = true;
                        match end? {
                            Tried::Refused(why) => Tried::Failed(why),
                            other => other,
                        }
                    }
                })
            }
            Ok(end) => return end,
            Err(failure) => last = failure.describe(),
        }
    }
    if maybe_landed {
        match landed(target, &mut read, fields, sent).await? {
            Landing::Landed(found) => return Ok(Tried::Done(found.map(|found| *found))),
            Landing::Not => {}
            Landing::Unknown => *uncertain = true,
        }
    }
    Ok(Tried::Failed(format!("{ATTEMPTS} attempts: {last}")))
}

/// Whether an update whose answer was lost took effect.
enum Landing {
    /// The record read back holds every written field as sent: its current form (`None`: it
    /// is gone).
    Landed(Option<Box<CalendarEvent>>),
    /// It holds something else.
    Not,
    /// It could not be read.
    Unknown,
}

async fn landed<R, RF>(
    target: &dyn SyncTarget,
    read: &mut R,
    fields: &[EventField],
    sent: &CalendarEvent,
) -> Result<Landing, Cause>
where
    R: FnMut() -> RF,
    RF: std::future::Future<Output = Result<Option<CalendarEvent>, WriteFailure>>,
{
    Ok(match attempt(target, read).await? {
        Tried::Done(Some(now)) if fields.iter().all(|f| now.same_field(sent, *f)) => {
            Landing::Landed(Some(Box::new(now)))
        }
        Tried::Done(Some(_)) => Landing::Not,
        Tried::Done(None) => Landing::Landed(None),
        Tried::Failed(_) | Tried::Refused(_) => Landing::Unknown,
    })
}

macro_rules! tried {
    ($e:expr) => {
        match $e? {
            Tried::Done(value) => value,
            Tried::Failed(why) => return Ok(StepEnd::Failed(why)),
            Tried::Refused(why) => return Ok(StepEnd::Refused(why)),
        }
    };
}

/// Stores a link with the wave's bookkeeping.
async fn store_link(books: &Books<'_>, link: &Link) -> Result<Tried<bool>, Cause> {
    Ok(
        match store_records(books, vec![Record::Link(Box::new(link.clone()))]).await? {
            Tried::Done(stored) => Tried::Done(stored.first().copied().unwrap_or(false)),
            Tried::Failed(why) => Tried::Failed(why),
            Tried::Refused(why) => Tried::Refused(why),
        },
    )
}

/// Stores one step's records together with the wave's bookkeeping, each tried up to
/// [`ATTEMPTS`] times; for each, whether it was stored (a link whose condition did not hold
/// was not). A retried put whose first answer was lost finds its own write in place; that
/// counts as stored (one user's runs never overlap).
async fn store_records(books: &Books<'_>, records: Vec<Record>) -> Result<Tried<Vec<bool>>, Cause> {
    let target = books.target();
    let mut answers: Vec<Option<bool>> = vec![None; records.len()];
    let mut last = String::new();
    for n in 0..ATTEMPTS {
        let todo: Vec<usize> = (0..records.len())
            .filter(|&at| answers[at].is_none())
            .collect();
        if todo.is_empty() {
            break;
        }
        if n > 0 {
            target.pause(n).await;
        }
        let sent = todo.iter().map(|&at| records[at].clone()).collect();
        for (&at, answer) in todo.iter().zip(books.write_all(sent).await) {
            match answer {
                Ok(stored) => answers[at] = Some(stored),
                Err(failure) => match give_up::<Vec<bool>>(failure) {
                    Ok(end) => return end,
                    Err(failure) => last = failure.describe(),
                },
            }
        }
    }
    let mut stored = Vec::with_capacity(records.len());
    for (record, answer) in records.iter().zip(answers) {
        let Some(answer) = answer else {
            return Ok(Tried::Failed(format!("{ATTEMPTS} attempts: {last}")));
        };
        stored.push(match (record, answer) {
            (Record::Link(link), false) => {
                match attempt(target, || target.stored_version(&link.key)).await? {
                    Tried::Done(version) => version == Some(link.version),
                    Tried::Failed(why) => return Ok(Tried::Failed(why)),
                    Tried::Refused(why) => return Ok(Tried::Refused(why)),
                }
            }
            (_, answer) => answer,
        });
    }
    Ok(Tried::Done(stored))
}

/// What a step's writes have done so far.
#[derive(Default)]
struct Progress {
    created_crm: Option<CrmEventId>,
    created_outlook: Option<String>,
    /// Each write's answer: the event as that side stored it.
    returned: Vec<(Side, CalendarEvent)>,
    /// The link that records the writes that landed, should the step end before its own link
    /// is stored.
    partial: Option<Link>,
    /// The step's own link, when its writes landed and storing it failed.
    unsaved: Option<Link>,
    /// The link stored with the updates the step is sending ([`Link::pending`]).
    intent: Option<Link>,
    /// Updates of each side that may have landed without the step learning so.
    uncertain_crm: bool,
    uncertain_outlook: bool,
    /// Writes done on each side.
    crm: Tally,
    outlook: Tally,
}

impl Progress {
    /// `link` with what this step's writes made and returned. `unsynced`: fields whose
    /// returned values are a side's own edits still to carry, not its form of the base.
    fn settle(&self, link: &Link, policy: &Policy, unsynced: FieldSet) -> Link {
        let mut link = link.clone();
        link.fill_created(self.created_crm.clone(), self.created_outlook.clone());
        for (side, event) in &self.returned {
            let fields = match side {
                Side::Crm => policy.crm_fields,
                Side::Outlook => policy.outlook_fields,
            };
            link.absorb(*side, event, policy.crm_fields, policy.outlook_fields);
            // The version this run's write made is the one the next write expects.
            match side {
                Side::Crm => link.base.modified.crm = event.modified.crm,
                Side::Outlook => {
                    link.base.ids.outlook_change_key = event.ids.outlook_change_key.clone()
                }
            }
            // What the side stored is its form of the base from now on.
            let base = link.base.clone();
            let mut held = event.clone();
            for field in unsynced.iter() {
                held.copy_field(&base, field);
            }
            link.as_stored.note(*side, &held, &base, fields);
        }
        link
    }
}

/// Runs one step.
async fn run_step(step: &Step, books: &Books<'_>, policy: &Policy) -> Result<StepOutcome, Cause> {
    let mut progress = Progress::default();
    let end = run_actions(step, books, policy, &mut progress).await?;
    if matches!(
        end,
        StepEnd::Stale | StepEnd::Failed(_) | StepEnd::Refused(_)
    ) {
        if let Some(link) = settle_early_end(step, &progress) {
            let _ = store_link(books, &link).await?;
        }
    }
    Ok(StepOutcome {
        end,
        unsaved: progress.unsaved,
        crm: progress.crm,
        outlook: progress.outlook,
    })
}

/// The records at the head of `actions` that go to the store together before the next write:
/// journal entries with an update's intent. A create's intent goes alone, after the entries
/// before it are durable: it changes what the next run plans (a resumed create), which would
/// not plan an entry the intent got ahead of; an update's intent leaves the base as it was, so
/// the next run plans the same entries again.
fn bookkeeping_at(actions: &[Action]) -> Vec<Record> {
    let mut records = Vec::new();
    for action in actions {
        match action {
            Action::RecordConflict(conflict) => records.push(Record::Conflict(conflict.clone())),
            Action::Remember(link) if link.pending.is_some() => {
                records.push(Record::Link(Box::new(link.clone())))
            }
            Action::Remember(link) if records.is_empty() => {
                records.push(Record::Link(Box::new(link.clone())));
                break;
            }
            _ => break,
        }
    }
    records
}

/// What a step that ends early stores. After its CRM write landed: the link recording that
/// write, so the next run does not take the written value for a fresh edit of that side (with
/// the Outlook update still pending if it may have landed). Otherwise, when none of the updates
/// its intent announced can have landed: the link as it was, without the intent, so that a
/// later edit of a side is not mistaken for an update that landed. An intent whose update may
/// have landed stays for the next run to settle.
fn settle_early_end(step: &Step, progress: &Progress) -> Option<Link> {
    if let Some(partial) = &progress.partial {
        let mut partial = partial.clone();
        if progress.uncertain_outlook {
            partial.pending = step.actions.iter().find_map(|action| match action {
                Action::UpdateOutlook { fields, event, .. } => Some(Box::new(PendingUpdate {
                    sent: event.clone(),
                    crm: FieldSet::EMPTY,
                    outlook: FieldSet::of(fields),
                })),
                _ => None,
            });
        }
        return Some(partial);
    }
    let intent = progress.intent.as_ref()?;
    if !progress.returned.is_empty() || progress.uncertain_crm || progress.uncertain_outlook {
        return None;
    }
    let mut cleared = intent.clone();
    cleared.version += 1;
    cleared.pending = None;
    Some(cleared)
}

async fn run_actions(
    step: &Step,
    books: &Books<'_>,
    policy: &Policy,
    progress: &mut Progress,
) -> Result<StepEnd, Cause> {
    let target = books.target();
    let stored = tried!(attempt(target, || target.stored_version(&step.key)).await);
    if stored != step.expect {
        return Ok(StepEnd::Stale);
    }
    let mut at = 0;
    while at < step.actions.len() {
        let before = bookkeeping_at(&step.actions[at..]);
        if !before.is_empty() {
            at += before.len();
            let stored = tried!(store_records(books, before.clone()).await);
            for (record, stored) in before.into_iter().zip(stored) {
                if let Record::Link(link) = record {
                    if !stored {
                        return Ok(StepEnd::Stale);
                    }
                    if link.pending.is_some() {
                        progress.intent = Some(*link);
                    }
                }
            }
            continue;
        }
        let action = &step.actions[at];
        at += 1;
        match action {
            Action::RecordConflict(_) | Action::Remember(_) => {}
            Action::Link(link) => {
                progress.partial = None;
                let link = progress.settle(link, policy, FieldSet::EMPTY);
                match store_link(books, &link).await? {
                    Tried::Done(true) => {}
                    Tried::Done(false) => return Ok(StepEnd::Stale),
                    Tried::Failed(why) => {
                        if !progress.returned.is_empty() {
                            progress.unsaved = Some(link);
                        }
                        return Ok(StepEnd::Failed(why));
                    }
                    Tried::Refused(why) => return Ok(StepEnd::Refused(why)),
                }
            }
            Action::Unlink => {
                tried!(
                    attempt(target, || books.write(Record::Unlink {
                        key: step.key.clone(),
                        expect: step.expect,
                    }))
                    .await
                );
            }
            Action::CreateInCrm { event, marker } => {
                let stored = tried!(
                    create(
                        target,
                        false,
                        || target.create_in_crm(event, marker),
                        || target.find_crm_created(marker),
                    )
                    .await
                );
                progress.crm.created += 1;
                progress.created_crm = stored.ids.crm.clone().map(CrmEventId::new);
                progress.returned.push((Side::Crm, stored));
            }
            Action::CreateInOutlook {
                crm_id,
                transaction_id,
                event,
            } => {
                // Graph answers a repeated transactionId with the event it made, so a create
                // that left nothing visible may be sent again.
                let stored = tried!(
                    create(
                        target,
                        true,
                        || target.create_in_outlook(crm_id, transaction_id, event),
                        || target.find_outlook_created(crm_id),
                    )
                    .await
                );
                progress.outlook.created += 1;
                progress.created_outlook = stored.ids.outlook.clone();
                progress.returned.push((Side::Outlook, stored));
            }
            Action::UpdateCrm {
                crm_id,
                fields,
                event,
                partial,
            } => {
                let stored_form = policy.crm_storage.form(event);
                match tried!(
                    update(
                        target,
                        fields,
                        &stored_form,
                        &mut progress.uncertain_crm,
                        || target.update_crm(crm_id, fields, event),
                        || target.read_crm(crm_id),
                    )
                    .await
                ) {
                    Some(stored) => progress.returned.push((Side::Crm, stored)),
                    None => return Ok(StepEnd::Gone(Side::Crm, crm_id.to_string())),
                }
                progress.crm.updated += 1;
                // The fields Outlook is still to be given are the CRM's edits.
                let unsynced = step
                    .actions
                    .iter()
                    .find_map(|action| match action {
                        Action::UpdateOutlook { fields, .. } => Some(FieldSet::of(fields)),
                        _ => None,
                    })
                    .unwrap_or(FieldSet::EMPTY);
                progress.partial = partial
                    .as_deref()
                    .map(|link| progress.settle(link, policy, unsynced));
            }
            Action::UpdateOutlook {
                outlook_id,
                fields,
                event,
                occurrence,
            } => {
                match tried!(
                    update(
                        target,
                        fields,
                        event,
                        &mut progress.uncertain_outlook,
                        || target.update_outlook(outlook_id, fields, event, occurrence.as_ref()),
                        || target.read_outlook(outlook_id),
                    )
                    .await
                ) {
                    Some(stored) => progress.returned.push((Side::Outlook, stored)),
                    None => return Ok(StepEnd::Gone(Side::Outlook, outlook_id.clone())),
                }
                progress.outlook.updated += 1;
            }
            Action::DeleteInCrm { crm_id } => {
                tried!(attempt(target, || target.delete_in_crm(crm_id)).await);
                progress.crm.deleted += 1;
            }
            Action::DeleteInOutlook {
                outlook_id,
                if_match,
            } => {
                tried!(
                    attempt(target, || target
                        .delete_in_outlook(outlook_id, if_match.as_deref()))
                    .await
                );
                progress.outlook.deleted += 1;
            }
        }
    }
    Ok(StepEnd::Completed)
}
