//! The tenant's rules for one run: conflict policy, deletion guard, which fields each side
//! carries, and the scope of the deterministic create keys.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::collections::HashSet;

use super::model::{AsStored, FieldSet, LinkKey, Side};
use crate::crm::CrmEventId;
use crate::event::{CalendarEvent, EventField};
use crate::time::TimeWindow;

/// What Graph events carry in calsync's mapping. `Status` is left out on purpose: Outlook can
/// show "cancelled" but cannot store "held", and a cancellation can only be sent as e-mail to
/// attendees; treating it as a synced field would make the two sides undo each other.
/// `ActivityType` is a CRM notion. `Organizer` is read, never written.
pub const OUTLOOK_FIELDS: &[EventField] = &[
    EventField::Subject,
    EventField::Location,
    EventField::Description,
    EventField::Time,
    EventField::ShowAs,
    EventField::Sensitivity,
    EventField::Reminder,
    EventField::Categories,
    EventField::Organizer,
];

/// Read-only everywhere: Graph sets the organizer itself, and the CRM has no such field.
pub const NEVER_WRITTEN: &[EventField] = &[EventField::Organizer];

/// On a meeting the user only attends, these belong to the organizer: an attendee's copy
/// cannot meaningfully be changed, so a CRM edit of them is reverted (with a journal entry).
/// They are also what Exchange announces: on a meeting the user organises with attendees, a
/// change to them would mail every attendee, so there too Outlook's values stand.
pub const ORGANIZER_OWNED: &[EventField] = &[
    EventField::Subject,
    EventField::Location,
    EventField::Description,
    EventField::Time,
];

/// How a real same-field conflict is settled: the tenant's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ConflictPolicy {
    /// The CRM's value wins.
    CrmWins,
    /// Outlook's value wins.
    OutlookWins,
    /// The later modification wins; a tie or a missing time goes to the CRM.
    #[default]
    Latest,
}

/// The mass-deletion guard (vdirsyncer's empty-side guard, generalised): a run that would
/// delete more than `max_percent` % of the linked events, and at least `floor` of them,
/// deletes nothing and says so. The share scales with the calendar; the floor keeps the
/// ordinary deletion of a few events in a small calendar from tripping it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionGuard {
    pub floor: usize,
    pub max_percent: u32,
    /// Deletions an operator confirmed (`calsync resync --confirm-deletions`), by link key:
    /// exactly the ones they were shown. These pass and do not count.
    pub confirmed: HashSet<LinkKey>,
}

impl Default for DeletionGuard {
    fn default() -> Self {
        Self {
            floor: 5,
            max_percent: 10,
            confirmed: HashSet::new(),
        }
    }
}

impl DeletionGuard {
    /// Whether `deletions` (not confirmed) out of `linked` events is too many.
    pub fn trips(&self, deletions: usize, linked: usize) -> bool {
        deletions >= self.floor
            && deletions as u128 * 100 > u128::from(self.max_percent) * linked as u128
    }
}

/// How the CRM stores an event it is given (vtiger cuts a subject at 255 characters, keeps no
/// 0-minute reminder…): the CRM adapter's own rule, applied in place. The merge uses it to see
/// that the CRM already holds all it can of a value (no write, which on vtiger would also
/// clear the invitees) and that a CRM value that is the stored form of Outlook's agrees with it.
#[derive(Clone, Copy)]
pub struct CrmStorage(pub fn(&mut CalendarEvent));

impl CrmStorage {
    /// A CRM that stores every value as given.
    pub const LOSSLESS: CrmStorage = CrmStorage(|_| {});

    /// What the CRM would hold after being given `event`.
    pub fn form(&self, event: &CalendarEvent) -> CalendarEvent {
        let mut stored = event.clone();
        (self.0)(&mut stored);
        stored
    }
}

impl Default for CrmStorage {
    fn default() -> Self {
        Self::LOSSLESS
    }
}

impl std::fmt::Debug for CrmStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrmStorage(..)")
    }
}

impl PartialEq for CrmStorage {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

impl Eq for CrmStorage {}

/// Everything `plan` needs to know about the tenant and the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub conflict: ConflictPolicy,
    pub guard: DeletionGuard,
    /// The first run for this user (no links yet): events found on both sides with the same
    /// subject and times are linked instead of copied.
    pub first_sync: bool,
    /// Fields the CRM carries (`CrmPort::carried_fields`).
    pub crm_fields: FieldSet,
    /// Fields Outlook carries ([`OUTLOOK_FIELDS`] unless the Graph mapping says otherwise).
    pub outlook_fields: FieldSet,
    /// Scopes the Outlook create keys: the mailbox (Entra object id) being synced.
    pub mailbox: String,
    /// The window the Outlook listing covers. An unlinked event of either side that falls
    /// outside it is left alone: the other side's copy, if any, is outside every listing too,
    /// so copying it would duplicate it. `None`: no bound.
    pub window: Option<TimeWindow>,
    /// Links whose last step a side refused for good, waiting for their next try: left alone
    /// unless a side reports something new about them.
    pub parked: HashSet<LinkKey>,
    /// Pairs a first sync matched whose link was never stored (the step was refused), as
    /// (CRM id, Outlook id): paired again when both are fed, since no later run matches.
    pub rematch: Vec<(String, String)>,
    /// Outlook ids that stand for the link of another, as (occurrence, series master): the
    /// occurrence a single event became, when the step that was to move the event's link
    /// onto it was refused. Used while the link still names the single event.
    pub outlook_aliases: Vec<(String, String)>,
    /// How the CRM stores what it is given.
    pub crm_storage: CrmStorage,
}

impl Policy {
    /// The CRM's fields, the default Outlook fields, the default guard, not a first sync.
    pub fn new(conflict: ConflictPolicy, mailbox: impl Into<String>, crm_fields: FieldSet) -> Self {
        Self {
            conflict,
            guard: DeletionGuard::default(),
            first_sync: false,
            crm_fields,
            outlook_fields: FieldSet::of(OUTLOOK_FIELDS),
            mailbox: mailbox.into(),
            window: None,
            parked: HashSet::new(),
            rematch: Vec::new(),
            outlook_aliases: Vec::new(),
            crm_storage: CrmStorage::LOSSLESS,
        }
    }

    /// What the CRM holds of a link's `base`: the CRM's stored form of what it was last known
    /// to hold (a create whose answer was lost leaves only the base, which the CRM cut or
    /// merged as it stores everything).
    pub fn crm_held(&self, stored: &AsStored, base: &CalendarEvent) -> CalendarEvent {
        self.crm_storage.form(stored.on(Side::Crm, base))
    }

    /// Whether a new (unlinked) event at `time` is in the synced window.
    pub fn in_window(&self, time: &crate::event::EventTime) -> bool {
        self.window.is_none_or(|window| time.overlaps(&window))
    }

    pub fn fields(&self, side: super::Side) -> FieldSet {
        match side {
            super::Side::Crm => self.crm_fields,
            super::Side::Outlook => self.outlook_fields,
        }
    }

    /// The fields calsync may write on a side.
    pub fn writable(&self, side: super::Side) -> FieldSet {
        self.fields(side).without(FieldSet::of(NEVER_WRITTEN))
    }
}

/// The transactionId of the `generation`-th Outlook create for a CRM record in a mailbox.
/// The same inputs always give the same id, so a create retried after a timeout or a crash is
/// answered with the event made the first time. Generation 0 (a first create) keeps the
/// shape it always had, so events created before generations existed are still recognised.
pub fn outlook_transaction_id(mailbox: &str, crm_id: &CrmEventId, generation: u32) -> String {
    let input = if generation == 0 {
        format!("calsync\0create\0{mailbox}\0{crm_id}")
    } else {
        format!("calsync\0create\0{mailbox}\0{crm_id}\0{generation}")
    };
    let digest = Sha256::digest(input);
    format!("calsync-{}", &hex::encode(digest)[..40])
}

/// The prefix of every [`crm_create_marker`].
pub const CRM_MARKER_PREFIX: &str = "CALSYNC-";

/// The marker the `generation`-th CRM create for a link carries (vtiger keeps it in the
/// record's `source`, in capitals, at most 100 characters): the create can be found again
/// after its answer was lost, and the record is known to be calsync's.
pub fn crm_create_marker(mailbox: &str, key: &LinkKey, generation: u32) -> String {
    let digest = Sha256::digest(format!(
        "calsync\0crm-create\0{mailbox}\0{key}\0{generation}"
    ));
    format!(
        "{CRM_MARKER_PREFIX}{}",
        hex::encode_upper(digest).get(..32).unwrap_or_default()
    )
}
