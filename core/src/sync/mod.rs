//! The sync engine: what to do to bring a user's Outlook calendar and CRM events together.
//!
//! Planning is pure: no I/O, no clock. [`plan`] takes the stored links (the snapshot), both
//! sides' changes since the last committed cursors and the tenant's [`Policy`], and returns a
//! [`Plan`]: ordered [`Step`]s of [`Action`]s, conflict journal entries, and the links to store.
//! [`execute()`] carries a plan out against any [`SyncTarget`] by the contract below; the live
//! runner (`calsync::services::sync_run`) reads the changes, plans, executes against Graph, the
//! CRM and the store, and commits the cursors.
//!
//! # Semantics (docs/design.md §3)
//!
//! - **Three-way merge.** Each link keeps `base`, the content both sides had after the last
//!   sync. A side changed a field when it carries it (`Policy::crm_fields`/`outlook_fields`)
//!   and its value differs from the base. One side changed → copied to the other; both
//!   changed different fields → both kept; both changed the same field to different values →
//!   the tenant's [`ConflictPolicy`] decides and a
//!   [`Conflict`] is journalled. Our own writes come back equal to the base and are no-ops
//!   (echo suppression needs no tags).
//! - **Deletions** propagate, unless the other side edited the event meanwhile: then `latest`
//!   keeps the edit (the event is re-created, journalled), `crm-wins`/`outlook-wins` let
//!   that side decide. A cancelled occurrence, or a meeting the user does not organise that
//!   was removed from Outlook, always deletes its CRM copy (journalled if that had edits).
//! - **Mass-deletion guard.** A run that would delete more than 10 % of the linked events and
//!   at least five of them (a series counts once) deletes nothing, reports
//!   [`GuardTrip`] with the deletions it held, and its cursors must not advance. An operator
//!   confirms exactly the deletions they were shown ([`DeletionGuard::confirmed`]); those
//!   pass, and any others still count.
//! - **Reassigned in the CRM** ([`GoneReason::LeftOwner`](crate::crm::GoneReason)): never
//!   deleted from the CRM. The Outlook copy is deleted only if calsync created it (origin
//!   CRM), the user organises it and did not edit it — it was a mirror of a record that is
//!   now someone else's, and the new owner's sync gives them their own copy. Any other Outlook
//!   event (the user's own, a meeting they attend, or one they edited) is kept and the link
//!   becomes [`LinkState::Detached`], so it is never imported back into the CRM.
//! - **Not the organizer** (`is_organizer == Some(false)`): never deleted in Outlook (that
//!   would decline the meeting); a CRM deletion only detaches it. Its subject, place,
//!   description and times belong to the organizer: a CRM edit of them is reverted and
//!   journalled. Attendees are not part of the model, so calsync never adds any.
//! - **First sync** ([`Policy::first_sync`]): an unlinked event on both sides with the same
//!   subject (case and spacing aside) and exactly the same times (all-day ≠ timed) is linked,
//!   not copied; differing fields are settled by the policy and journalled.
//! - **Recurrence.** Outlook occurrences and exceptions arrive as items with an
//!   [`Occurrence`]; each becomes its own CRM record (as vtiger stores them). A CRM edit of
//!   one patches that occurrence's own id ([`Action::UpdateOutlook`] carries the occurrence),
//!   never the master. A cancelled occurrence (its id in `deleted`) or a deleted series
//!   (`deleted_series`) deletes the CRM copies.
//! - **Times** are compared exactly as UTC instants or dates; the engine copies them without
//!   arithmetic, so wall-clock times survive DST changes as long as the side mappings convert
//!   with the right zone (tests cover a Europe/Madrid meeting across the October change).
//!
//! # Runner contract
//!
//! One run per user at a time: the runner holds the user's run lease for the whole run (the
//! job queue's FIFO group also keeps a user's queued jobs apart).
//!
//! 1. **Read** the Outlook delta from the committed delta link and the CRM feed from the
//!    committed cursor, and the links when either side reports something (or on a
//!    reconciliation, a full listing or a series check). Keep the new cursors in memory.
//!    Tombstones go into [`OutlookChanges::deleted`] only once confirmed (a GET says 404);
//!    after a full listing (a 410 resync, a CRM reconciliation) [`absent_from_listing`] gives
//!    the ids to confirm.
//!    Fill [`CrmChanges::created_by_sync`] when the CRM can tell which records the
//!    integration user created. `first_sync` stays true until a first run has committed its
//!    cursors (a per-user flag stored with them).
//! 2. **Plan.** An empty plan costs nothing more: commit the cursors and stop.
//! 3. **Execute each step**, in waves of consecutive steps that run at once (never two about
//!    one link or event, never a deletion beside a create); one step's actions stay in order,
//!    and steps are independent, so a failed step does not stop the others. The wave's link
//!    and journal writes go together ([`SyncTarget::store_all`]) once every step still running
//!    waits on one, so each is durable before its step goes on.
//!    - Before the first external write, check that the stored link is at `step.expect`
//!      (absent for `None`); if not, the step was applied already or is stale: skip it (and
//!      count it as not done when deciding about the cursors).
//!    - `RecordConflict`: put the entry by its id (a repeat overwrites the same entry). It
//!      is written before the write that overwrites the losing value.
//!    - `Remember(link)` and `Link(link)`: put the link only if the stored version is
//!      `link.version - 1` (absent when that is 0). `Remember` comes *before* a create, so a
//!      crash after the create leaves an intent the next run resolves: a CRM intent is
//!      matched to the record that appears in the CRM feed (by stamped Outlook id, else
//!      identical content, else subject and times, else — among records the integration user
//!      created — the closest); an Outlook intent to the event carrying its transactionId (or
//!      CRM stamp). Without a match the next plan creates again, with the same transactionId
//!      for Outlook. A `Remember` before updates stores the link with what they send
//!      ([`Link::pending`]): if it cannot be stored, no update is sent; if an update lands and
//!      the link recording it is never stored, the next plan settles it by what that side
//!      shows ([`PendingUpdate`]). A step that ends knowing none of its updates landed stores
//!      the link back without it. Journal entries and an update's intent go to the store
//!      together; a create's intent only after the entries before it are stored.
//!    - Creates: fill the returned id into the step's final link with
//!      [`Link::fill_created`]; optionally [`Link::absorb`] the response's side-only fields.
//!      A Graph create may be retried (the transactionId deduplicates); a CRM create whose
//!      answer was lost must NOT be retried in the same run: end the step, and let the next
//!      run adopt the record.
//!    - Updates and deletes are idempotent: retry on 429/503/timeouts with backoff. A delete
//!      that finds nothing has reached its goal. An update that finds nothing (404,
//!      vtiger `ACCESS_DENIED`) means that side deleted the event meanwhile: end the step
//!      and keep the cursors, so the next run reads the deletion from its feed. An update
//!      whose answer was lost and that then ends without success is read back
//!      ([`SyncTarget::read_crm`], [`SyncTarget::read_outlook`]): holding what was sent, it
//!      landed. A step that ends after its CRM write landed stores the `partial` link that
//!      write carries; a step whose writes landed but whose link could not be stored has the
//!      link tried again at the end of the run.
//!    - `Unlink`: delete the link record if it is still at `step.expect`.
//! 4. **Commit the cursors** read in step 1 only if every step succeeded and
//!    [`Plan::may_commit_cursors`]. A cursor therefore never passes a change whose writes
//!    did not all happen: after a crash anywhere, the next run reads the same changes again;
//!    what was already done comes back as echoes equal to the stored bases (no-ops), intents
//!    are adopted, and the rest is planned again. Steps that keep failing are reported in
//!    status, and the cursors wait for them.
//!
//! A redelivered job is a new run from the committed cursors: if the first run finished, it
//! finds nothing to do; if it crashed, it resumes as above. Replaying an already executed
//! plan is harmless too: every step's stored version moved on, so each step is skipped.
//!
//! The transactionId of an Outlook create is [`outlook_transaction_id`] of the mailbox, the
//! CRM id and the link's create count: the one function that makes them.

mod books;
mod execute;
mod journal;
mod matching;
mod merge;
mod model;
mod parking;
mod pending;
mod planner;
mod policy;
mod progress;

#[cfg(test)]
mod tests;

pub use books::Record;
pub use execute::{execute, Execution, Stopped, SyncTarget, Tally, WriteFailure, ATTEMPTS};
pub use journal::{field_value, Conflict, ConflictKind, Reason};
pub use matching::settle_folds;
pub use matching::{normalise_subject, MatchKey};
pub use model::{
    absent_from_listing, differing, AsStored, CrmChanges, FieldSet, Link, LinkKey, LinkState,
    Occurrence, Origin, OutlookChanges, OutlookItem, Side,
};
pub use parking::{ParkedEvent, Parking};
pub use pending::PendingUpdate;
pub use planner::{plan, Action, GuardTrip, HeldDeletion, Plan, PlanCounts, Step};
pub use policy::{
    crm_create_marker, outlook_transaction_id, ConflictPolicy, CrmStorage, DeletionGuard, Policy,
    CRM_MARKER_PREFIX, NEVER_WRITTEN, ORGANIZER_OWNED, OUTLOOK_FIELDS,
};
pub use progress::SyncProgress;
