//! The field-level three-way merge of one event pair.

use jiff::Timestamp;

use super::journal::{ConflictKind, Reason};
use super::model::{differing, AsStored, FieldSet, Side};
use super::policy::{Policy, ORGANIZER_OWNED};
use crate::event::{CalendarEvent, EventField};
use crate::sync::ConflictPolicy;

/// A field both sides want different values for, and how it was settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldConflict {
    pub field: EventField,
    pub kind: ConflictKind,
    pub winner: Side,
    pub reason: Reason,
}

/// The outcome of merging one pair.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    /// The content both sides should have (ids and times are the caller's business).
    pub event: CalendarEvent,
    pub conflicts: Vec<FieldConflict>,
    /// Fields to write to each side: where the side's current value differs from `event`.
    pub crm_writes: FieldSet,
    pub outlook_writes: FieldSet,
}

/// Merges the current CRM and Outlook versions against `base` (the last-synced content) and
/// each side's own stored form of it.
///
/// A side changed a field when it carries the field and its value differs from what that side
/// is known to hold ([`AsStored::on`]); an unchanged side is passed as that form itself. With
/// no base (a first-sync match) every field a side carries counts as changed by it, so real
/// disagreements become journalled conflicts.
pub(crate) fn merge(
    base: Option<(&CalendarEvent, &AsStored)>,
    crm: &CalendarEvent,
    outlook: &CalendarEvent,
    policy: &Policy,
) -> Merged {
    let (crm_changed, outlook_changed) = match base {
        Some((base, stored)) => (
            differing(crm, &policy.crm_held(stored, base), policy.crm_fields),
            differing(
                outlook,
                stored.on(Side::Outlook, base),
                policy.outlook_fields,
            ),
        ),
        None => (policy.crm_fields, policy.outlook_fields),
    };
    let base = base.map(|(base, _)| base);
    let outlook_stored = policy.crm_storage.form(outlook);
    // On a meeting the user only attends, the organizer's values stand; on one the user
    // organises with attendees, Outlook's announced values do (writing them would mail people).
    let (organizer_owned, owned_reason) = if outlook.is_organizer == Some(false) {
        (
            FieldSet::of(ORGANIZER_OWNED).intersection(policy.outlook_fields),
            Reason::NotOrganizer,
        )
    } else if outlook.mails_attendees() {
        (
            FieldSet::of(ORGANIZER_OWNED).intersection(policy.outlook_fields),
            Reason::HasAttendees,
        )
    } else {
        (FieldSet::EMPTY, Reason::NotOrganizer)
    };
    let both_kind = if base.is_some() {
        ConflictKind::SameField
    } else {
        ConflictKind::FirstSyncMatch
    };

    let mut event = base.unwrap_or(crm).clone();
    let mut conflicts = Vec::new();
    for field in crm_changed.union(outlook_changed).iter() {
        match (crm_changed.contains(field), outlook_changed.contains(field)) {
            (false, true) => event.copy_field(outlook, field),
            (true, false) => {
                if organizer_owned.contains(field) && !crm.same_field(outlook, field) {
                    event.copy_field(outlook, field);
                    conflicts.push(FieldConflict {
                        field,
                        kind: ConflictKind::OrganizerOwned,
                        winner: Side::Outlook,
                        reason: owned_reason.clone(),
                    });
                } else {
                    event.copy_field(crm, field);
                }
            }
            _ => {
                if crm.same_field(outlook, field) {
                    // Both made the same change (or a replayed write already landed).
                    event.copy_field(crm, field);
                    continue;
                }
                if crm.same_field(&outlook_stored, field) {
                    // The CRM holds all it can keep of Outlook's value (a write of it that
                    // was cut, say): they agree, and Outlook's fuller value stands.
                    event.copy_field(outlook, field);
                    continue;
                }
                if base.is_none() && !organizer_owned.contains(field) {
                    // Two copies matched: what one side has beats nothing on the other (but
                    // a meeting's announced values are not the CRM's to fill in).
                    if outlook.is_blank(field) {
                        event.copy_field(crm, field);
                        continue;
                    }
                    if crm.is_blank(field) {
                        event.copy_field(outlook, field);
                        continue;
                    }
                }
                let (winner, reason) = if organizer_owned.contains(field) {
                    (Side::Outlook, owned_reason.clone())
                } else if base.is_none() && field == EventField::Description {
                    (Side::Outlook, Reason::OutlookBody)
                } else {
                    decide(policy.conflict, crm.modified.crm, outlook.modified.outlook)
                };
                match winner {
                    Side::Crm => event.copy_field(crm, field),
                    Side::Outlook => event.copy_field(outlook, field),
                }
                conflicts.push(FieldConflict {
                    field,
                    kind: both_kind,
                    winner,
                    reason,
                });
            }
        }
    }
    event.modified.crm = crm.modified.crm;
    event.modified.outlook = outlook.modified.outlook;
    // A side that did not change a field whose merged value is still the base's holds its own
    // form of it already: writing again would only be stored the same way.
    let unchanged_base = match base {
        Some(base) => FieldSet::all().without(differing(&event, base, FieldSet::all())),
        None => FieldSet::EMPTY,
    };
    // What the CRM would hold after the write: a field it holds that way already needs none.
    let crm_writes = differing(
        &policy.crm_storage.form(&event),
        crm,
        policy.writable(Side::Crm),
    )
    .without(unchanged_base.without(crm_changed));
    let outlook_writes = differing(&event, outlook, policy.writable(Side::Outlook))
        .without(unchanged_base.without(outlook_changed));
    Merged {
        event,
        conflicts,
        crm_writes,
        outlook_writes,
    }
}

/// Who wins a real same-field conflict under the tenant's policy.
pub(crate) fn decide(
    policy: ConflictPolicy,
    crm_at: Option<Timestamp>,
    outlook_at: Option<Timestamp>,
) -> (Side, Reason) {
    match policy {
        ConflictPolicy::CrmWins => (Side::Crm, Reason::Policy { policy }),
        ConflictPolicy::OutlookWins => (Side::Outlook, Reason::Policy { policy }),
        ConflictPolicy::Latest => {
            let winner = match (crm_at, outlook_at) {
                (Some(crm), Some(outlook)) if outlook > crm => Side::Outlook,
                _ => Side::Crm,
            };
            (
                winner,
                Reason::Latest {
                    crm: crm_at,
                    outlook: outlook_at,
                },
            )
        }
    }
}
