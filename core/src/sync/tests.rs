//! One test per rule of the engine; the property test in `core/tests/sync_properties.rs`
//! checks them together under faults.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

use super::*;
use crate::crm::{CrmEventId, Gone, GoneReason};
use crate::event::{CalendarEvent, EventField, EventTime, Organizer};
use crate::sync::ConflictPolicy;

const MAILBOX: &str = "oid-1";

/// The fields a CRM like vtiger carries (no show-as, no categories, no organizer).
fn crm_fields() -> FieldSet {
    FieldSet::of(&[
        EventField::Subject,
        EventField::Location,
        EventField::Description,
        EventField::Time,
        EventField::Status,
        EventField::Sensitivity,
        EventField::Reminder,
        EventField::ActivityType,
    ])
}

/// The wall-clock time of `at` in `zone`, as a CRM server in that zone writes it.
fn wall_clock(at: Timestamp, zone: &TimeZone) -> String {
    zone.to_datetime(at)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string()
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn day(text: &str) -> Date {
    text.parse().unwrap()
}

fn event(subject: &str) -> CalendarEvent {
    CalendarEvent::timed(
        subject,
        at("2026-12-01T09:00:00Z"),
        at("2026-12-01T10:00:00Z"),
    )
}

fn crm_event(id: &str, mut event: CalendarEvent, modified: &str) -> CalendarEvent {
    event.ids.crm = Some(id.into());
    event.modified.crm = Some(at(modified));
    event
}

fn outlook_event(id: &str, mut event: CalendarEvent, modified: &str) -> CalendarEvent {
    event.ids.outlook = Some(id.into());
    event.modified.outlook = Some(at(modified));
    event
}

fn item(id: &str, event: CalendarEvent, modified: &str) -> OutlookItem {
    OutlookItem::new(outlook_event(id, event, modified))
}

fn policy(conflict: ConflictPolicy) -> Policy {
    Policy::new(conflict, MAILBOX, crm_fields())
}

fn linked(crm: &str, outlook: &str, mut base: CalendarEvent, origin: Origin) -> Link {
    base.ids.crm = Some(crm.into());
    base.ids.outlook = Some(outlook.into());
    Link {
        key: LinkKey::for_crm(&CrmEventId::new(crm)),
        version: 3,
        state: LinkState::Linked,
        origin,
        crm_id: Some(CrmEventId::new(crm)),
        outlook_id: Some(outlook.into()),
        outlook_tx: None,
        outlook_creates: 0,
        occurrence: None,
        base,
        as_stored: AsStored::default(),
        pending: None,
        crm_marker: None,
        crm_creates: 0,
    }
}

fn outlook_only(changes: Vec<OutlookItem>) -> OutlookChanges {
    OutlookChanges {
        upserts: changes,
        ..OutlookChanges::default()
    }
}

fn crm_only(upserts: Vec<CalendarEvent>) -> CrmChanges {
    CrmChanges {
        upserts,
        ..CrmChanges::default()
    }
}

fn gone(id: &str, reason: GoneReason) -> CrmChanges {
    CrmChanges {
        upserts: Vec::new(),
        gone: vec![Gone {
            id: CrmEventId::new(id),
            reason,
        }],
        created_by_sync: None,
    }
}

fn deleted(ids: &[&str]) -> OutlookChanges {
    OutlookChanges {
        deleted: ids.iter().map(|id| id.to_string()).collect(),
        ..OutlookChanges::default()
    }
}

fn only_step(plan: &Plan) -> &Step {
    assert_eq!(plan.steps.len(), 1, "{plan:#?}");
    &plan.steps[0]
}

fn kinds(step: &Step) -> Vec<&'static str> {
    step.actions
        .iter()
        .map(|action| match action {
            Action::RecordConflict(_) => "conflict",
            Action::Remember(_) => "remember",
            Action::CreateInCrm { .. } => "create_crm",
            Action::CreateInOutlook { .. } => "create_outlook",
            Action::UpdateCrm { .. } => "update_crm",
            Action::UpdateOutlook { .. } => "update_outlook",
            Action::DeleteInCrm { .. } => "delete_crm",
            Action::DeleteInOutlook { .. } => "delete_outlook",
            Action::Link(_) => "link",
            Action::Unlink => "unlink",
        })
        .collect()
}

fn update_fields(step: &Step, side: Side) -> Vec<EventField> {
    step.actions
        .iter()
        .find_map(|action| match (action, side) {
            (Action::UpdateCrm { fields, .. }, Side::Crm) => Some(fields.clone()),
            (Action::UpdateOutlook { fields, .. }, Side::Outlook) => Some(fields.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

// --- creates ---------------------------------------------------------------------------

#[test]
fn new_crm_event_is_created_in_outlook_with_a_deterministic_key() {
    let new = crm_event("18x1", event("Demo"), "2026-11-01T10:00:00Z");
    let plan = super::plan(
        &[],
        &OutlookChanges::default(),
        &crm_only(vec![new]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["remember", "create_outlook", "link"]);
    assert_eq!(step.expect, None);
    let Action::Remember(intent) = &step.actions[0] else {
        panic!()
    };
    assert_eq!(intent.state, LinkState::CreatingInOutlook);
    assert_eq!(intent.version, 1);
    let Action::CreateInOutlook {
        crm_id,
        transaction_id,
        ..
    } = &step.actions[1]
    else {
        panic!()
    };
    assert_eq!(crm_id.as_str(), "18x1");
    let expected = outlook_transaction_id(MAILBOX, &CrmEventId::new("18x1"), 0);
    assert_eq!(transaction_id, &expected);
    assert_eq!(intent.outlook_tx.as_ref(), Some(&expected));
    let Action::Link(done) = &step.actions[2] else {
        panic!()
    };
    assert_eq!((done.state, done.version), (LinkState::Linked, 2));
    assert_eq!(plan.counts.create_outlook, 1);
}

#[test]
fn new_outlook_event_is_created_in_the_crm() {
    let plan = super::plan(
        &[],
        &outlook_only(vec![item("AAA", event("Lunch"), "2026-11-01T10:00:00Z")]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["remember", "create_crm", "link"]);
    let Action::Remember(intent) = &step.actions[0] else {
        panic!()
    };
    assert_eq!(intent.key.as_str(), "outlook:AAA");
    assert_eq!(intent.state, LinkState::CreatingInCrm);
    assert_eq!(intent.origin, Origin::Outlook);
    let Action::Link(mut done) = step.actions[2].clone() else {
        panic!()
    };
    done.fill_created(Some(CrmEventId::new("18x9")), None);
    assert_eq!(done.crm_id.as_ref().map(CrmEventId::as_str), Some("18x9"));
    assert_eq!(done.base.ids.crm.as_deref(), Some("18x9"));
}

#[test]
fn transaction_ids_are_stable_and_change_with_generation_and_scope() {
    let id = CrmEventId::new("18x5");
    let first = outlook_transaction_id("oid-1", &id, 0);
    assert_eq!(first, outlook_transaction_id("oid-1", &id, 0));
    assert!(first.starts_with("calsync-") && first.len() == 48);
    assert_ne!(first, outlook_transaction_id("oid-1", &id, 1));
    assert_ne!(first, outlook_transaction_id("oid-2", &id, 0));
    assert_ne!(
        first,
        outlook_transaction_id("oid-1", &CrmEventId::new("18x6"), 0)
    );
}

// --- updates and echoes ----------------------------------------------------------------

#[test]
fn crm_change_is_copied_to_outlook() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let mut changed = event("Demo v2");
    changed.reminder_minutes = Some(15);
    let plan = super::plan(
        &[link],
        &OutlookChanges::default(),
        &crm_only(vec![crm_event("18x1", changed, "2026-11-02T10:00:00Z")]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["remember", "update_outlook", "link"]);
    assert_eq!(
        update_fields(step, Side::Outlook),
        [EventField::Subject, EventField::Reminder]
    );
    assert_eq!(step.expect, Some(3));
    // Before the update, the link is stored with what it sends; its base stays the last
    // agreement until the update is known to have landed.
    let Action::Remember(intent) = &step.actions[0] else {
        panic!("{step:#?}")
    };
    assert_eq!(intent.version, 4);
    assert_eq!(intent.base.subject, "Demo");
    let pending = intent.pending.as_deref().unwrap();
    assert_eq!(
        pending.outlook,
        FieldSet::of(&[EventField::Subject, EventField::Reminder])
    );
    assert!(pending.crm.is_empty());
    assert_eq!(pending.sent.subject, "Demo v2");
    let done = step.final_link().unwrap();
    assert_eq!(done.version, 5);
    assert_eq!(done.base.subject, "Demo v2");
    assert!(done.pending.is_none());
}

#[test]
fn outlook_change_is_copied_to_the_crm() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Outlook);
    let mut changed = event("Demo");
    changed.location = "Room 4".into();
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item("AAA", changed, "2026-11-02T10:00:00Z")]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["remember", "update_crm", "link"]);
    assert_eq!(update_fields(step, Side::Crm), [EventField::Location]);
    let Action::UpdateCrm { crm_id, event, .. } = &step.actions[1] else {
        panic!()
    };
    assert_eq!(crm_id.as_str(), "18x1");
    assert_eq!(event.location, "Room 4");
}

#[test]
fn echoes_of_our_own_writes_are_no_ops() {
    let mut link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    // Both sides report the event at the versions calsync's writes made (the executor keeps
    // the CRM's modification time a write returned), with the synced content.
    link.base.modified.crm = Some(at("2026-11-03T10:00:01Z"));
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item("AAA", event("Demo"), "2026-11-03T10:00:00Z")]),
        &crm_only(vec![crm_event(
            "18x1",
            event("Demo"),
            "2026-11-03T10:00:01Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(plan.may_commit_cursors());
}

#[test]
fn fields_a_side_does_not_carry_are_not_changes() {
    let mut base = event("Demo");
    base.categories = vec!["Blue".into()];
    base.activity_type = Some("Call".into());
    base.modified.crm = Some(at("2026-11-03T10:00:00Z"));
    let link = linked("18x1", "AAA", base, Origin::Crm);
    // The CRM never reports categories; Outlook never reports an activity type.
    let crm_view = crm_event(
        "18x1",
        {
            let mut e = event("Demo");
            e.activity_type = Some("Call".into());
            e
        },
        "2026-11-03T10:00:00Z",
    );
    let outlook_view = item(
        "AAA",
        {
            let mut e = event("Demo");
            e.categories = vec!["Blue".into()];
            e
        },
        "2026-11-03T10:00:00Z",
    );
    let plan = super::plan(
        &[link],
        &outlook_only(vec![outlook_view]),
        &crm_only(vec![crm_view]),
        &policy(ConflictPolicy::Latest),
    );
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn a_side_that_moved_on_without_a_carried_change_teaches_the_link_its_version() {
    let mut link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    link.base.modified.crm = Some(at("2026-11-03T10:00:00Z"));
    // An edit in the CRM of something calsync does not carry: same content, newer version.
    let plan = super::plan(
        &[link],
        &OutlookChanges::default(),
        &crm_only(vec![crm_event(
            "18x1",
            event("Demo"),
            "2026-11-04T09:00:00Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    assert_eq!(
        step.final_link().unwrap().base.modified.crm,
        Some(at("2026-11-04T09:00:00Z")),
        "the next write expects this version, not the old one"
    );
}

/// A link stored with an Outlook update of the sensitivity to private (a CRM edit made at
/// 10:00), whose final link was never stored.
fn link_with_pending_update() -> Link {
    let mut link = linked("18x1", "AAA", event("Demo"), Origin::Outlook);
    link.base.ids.outlook_change_key = Some("ck1".into());
    link.base.modified.crm = Some(at("2026-11-01T09:00:00Z"));
    let mut sent = link.base.clone();
    sent.sensitivity = crate::event::Sensitivity::Private;
    sent.modified.crm = Some(at("2026-11-02T10:00:00Z"));
    link.pending = Some(Box::new(PendingUpdate {
        sent,
        crm: FieldSet::EMPTY,
        outlook: FieldSet::of(&[EventField::Sensitivity]),
    }));
    link
}

fn outlook_at(key: &str, sensitivity: crate::event::Sensitivity) -> OutlookChanges {
    let mut changed = event("Demo");
    changed.sensitivity = sensitivity;
    let mut item = item("AAA", changed, "2026-11-02T10:00:05Z");
    item.event.ids.outlook_change_key = Some(key.into());
    outlook_only(vec![item])
}

fn crm_at(sensitivity: crate::event::Sensitivity, modified: &str) -> CrmChanges {
    let mut changed = event("Demo");
    changed.sensitivity = sensitivity;
    crm_only(vec![crm_event("18x1", changed, modified)])
}

#[test]
fn an_update_that_landed_before_its_link_was_stored_is_calsyncs_own() {
    use crate::event::Sensitivity::{Normal, Private};
    let link = link_with_pending_update();
    let latest = policy(ConflictPolicy::Latest);

    // Landed, and the user set the CRM back since: the CRM's edit goes to Outlook.
    let plan = super::plan(
        std::slice::from_ref(&link),
        &outlook_at("ck2", Private),
        &crm_at(Normal, "2026-11-02T11:00:00Z"),
        &latest,
    );
    let step = only_step(&plan);
    assert_eq!(plan.conflicts().count(), 0, "{plan:#?}");
    assert_eq!(
        update_fields(step, Side::Outlook),
        [EventField::Sensitivity]
    );
    let done = step.final_link().unwrap();
    assert_eq!(done.base.sensitivity, Normal);
    assert!(done.pending.is_none());

    // Landed, nothing since: the link is stored without the intent, recording the update.
    let plan = super::plan(
        std::slice::from_ref(&link),
        &outlook_at("ck2", Private),
        &crm_at(Private, "2026-11-02T10:00:00Z"),
        &latest,
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    let done = step.final_link().unwrap();
    assert_eq!(done.base.sensitivity, Private);
    assert!(done.pending.is_none());

    // Not landed (Outlook reported nothing): sent again.
    let plan = super::plan(
        std::slice::from_ref(&link),
        &OutlookChanges::default(),
        &crm_at(Private, "2026-11-02T10:00:00Z"),
        &latest,
    );
    assert_eq!(
        update_fields(only_step(&plan), Side::Outlook),
        [EventField::Sensitivity]
    );
    assert_eq!(plan.conflicts().count(), 0);

    // Outlook moved on and holds something else: a user's value against the CRM's, settled
    // by the policy and journalled, never decided silently.
    let plan = super::plan(
        &[link],
        &outlook_at("ck3", Normal),
        &crm_at(Private, "2026-11-02T10:00:00Z"),
        &latest,
    );
    let conflict = plan.conflicts().next().expect("a journalled conflict");
    assert_eq!(conflict.field, Some(EventField::Sensitivity));
}

#[test]
fn different_fields_changed_on_both_sides_are_merged() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let mut in_crm = event("Demo");
    in_crm.location = "Madrid office".into();
    let in_outlook = event("Demo with ACME");
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item("AAA", in_outlook, "2026-11-02T10:00:00Z")]),
        &crm_only(vec![crm_event("18x1", in_crm, "2026-11-02T11:00:00Z")]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(
        kinds(step),
        ["remember", "update_crm", "update_outlook", "link"]
    );
    assert_eq!(update_fields(step, Side::Crm), [EventField::Subject]);
    assert_eq!(update_fields(step, Side::Outlook), [EventField::Location]);
    let base = &step.final_link().unwrap().base;
    assert_eq!(
        (base.subject.as_str(), base.location.as_str()),
        ("Demo with ACME", "Madrid office")
    );
    assert_eq!(plan.conflicts().count(), 0);
}

fn same_field_conflict(policy_kind: ConflictPolicy, crm_at: &str, outlook_at: &str) -> Plan {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    super::plan(
        &[link],
        &outlook_only(vec![item("AAA", event("Outlook title"), outlook_at)]),
        &crm_only(vec![crm_event("18x1", event("CRM title"), crm_at)]),
        &policy(policy_kind),
    )
}

#[test]
fn same_field_conflict_follows_the_policy_and_is_journalled() {
    let cases = [
        (
            ConflictPolicy::CrmWins,
            "2026-11-02T10:00:00Z",
            "2026-11-02T12:00:00Z",
            Side::Crm,
        ),
        (
            ConflictPolicy::OutlookWins,
            "2026-11-02T12:00:00Z",
            "2026-11-02T10:00:00Z",
            Side::Outlook,
        ),
        (
            ConflictPolicy::Latest,
            "2026-11-02T10:00:00Z",
            "2026-11-02T12:00:00Z",
            Side::Outlook,
        ),
        (
            ConflictPolicy::Latest,
            "2026-11-02T12:00:00Z",
            "2026-11-02T10:00:00Z",
            Side::Crm,
        ),
        // A tie goes to the CRM.
        (
            ConflictPolicy::Latest,
            "2026-11-02T12:00:00Z",
            "2026-11-02T12:00:00Z",
            Side::Crm,
        ),
    ];
    for (policy_kind, crm_at, outlook_at, winner) in cases {
        let plan = same_field_conflict(policy_kind, crm_at, outlook_at);
        let step = only_step(&plan);
        let conflicts: Vec<_> = plan.conflicts().collect();
        assert_eq!(conflicts.len(), 1, "{policy_kind:?}");
        let conflict = conflicts[0];
        assert_eq!(conflict.kind, ConflictKind::SameField);
        assert_eq!(conflict.field, Some(EventField::Subject));
        assert_eq!(
            conflict.winner, winner,
            "{policy_kind:?} {crm_at} {outlook_at}"
        );
        assert_eq!(conflict.crm_value, Some("CRM title".into()));
        assert_eq!(conflict.outlook_value, Some("Outlook title".into()));
        match policy_kind {
            ConflictPolicy::Latest => assert!(matches!(conflict.reason, Reason::Latest { .. })),
            _ => assert_eq!(
                conflict.reason,
                Reason::Policy {
                    policy: policy_kind
                }
            ),
        }
        // The journal entry comes before the write that overwrites the loser.
        let (expected_kinds, subject) = match winner {
            Side::Crm => (
                ["conflict", "remember", "update_outlook", "link"],
                "CRM title",
            ),
            Side::Outlook => (
                ["conflict", "remember", "update_crm", "link"],
                "Outlook title",
            ),
        };
        assert_eq!(kinds(step), expected_kinds);
        assert_eq!(step.final_link().unwrap().base.subject, subject);
        // Same inputs, same entry id: a replay rewrites one entry.
        let again = same_field_conflict(policy_kind, crm_at, outlook_at);
        assert_eq!(again.conflicts().next().unwrap().id, conflict.id);
    }
}

#[test]
fn the_same_change_on_both_sides_is_not_a_conflict() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item("AAA", event("Renamed"), "2026-11-02T10:00:00Z")]),
        &crm_only(vec![crm_event(
            "18x1",
            event("Renamed"),
            "2026-11-02T11:00:00Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    assert_eq!(step.final_link().unwrap().base.subject, "Renamed");
}

// --- deletions ---------------------------------------------------------------------------

#[test]
fn crm_deletion_deletes_the_outlook_copy() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let plan = super::plan(
        &[link],
        &OutlookChanges::default(),
        &gone("18x1", GoneReason::Deleted),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["delete_outlook", "unlink"]);
    assert_eq!(plan.counts.delete_outlook, 1);
}

#[test]
fn outlook_deletion_deletes_the_crm_copy() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Outlook);
    let plan = super::plan(
        &[link],
        &deleted(&["AAA"]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(kinds(only_step(&plan)), ["delete_crm", "unlink"]);
}

#[test]
fn deleted_on_both_sides_only_forgets_the_link() {
    let link = linked("18x1", "AAA", event("Demo"), Origin::Outlook);
    let plan = super::plan(
        &[link],
        &deleted(&["AAA"]),
        &gone("18x1", GoneReason::Deleted),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(kinds(only_step(&plan)), ["unlink"]);
}

#[test]
fn an_edit_beats_a_deletion_under_latest_and_is_journalled() {
    let mut link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    link.outlook_creates = 1;
    let plan = super::plan(
        &[link],
        &deleted(&["AAA"]),
        &crm_only(vec![crm_event(
            "18x1",
            event("Demo moved"),
            "2026-11-02T10:00:00Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(
        kinds(step),
        ["conflict", "remember", "create_outlook", "link"]
    );
    let conflict = plan.conflicts().next().unwrap();
    assert_eq!(conflict.kind, ConflictKind::EditVsDelete);
    assert_eq!(
        (conflict.winner, &conflict.reason),
        (Side::Crm, &Reason::EditKept)
    );
    assert!(conflict.outlook_value.is_none());
    let Action::CreateInOutlook {
        transaction_id,
        event: recreated,
        ..
    } = &step.actions[2]
    else {
        panic!()
    };
    // A new generation: the deleted event's transactionId must not be reused.
    assert_eq!(
        transaction_id,
        &outlook_transaction_id(MAILBOX, &CrmEventId::new("18x1"), 1)
    );
    assert_eq!(recreated.subject, "Demo moved");

    // Under crm-wins the CRM's deletion beats an Outlook edit.
    let link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item(
            "AAA",
            event("Demo edited"),
            "2026-11-02T10:00:00Z",
        )]),
        &gone("18x1", GoneReason::Deleted),
        &policy(ConflictPolicy::CrmWins),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["conflict", "delete_outlook", "unlink"]);
    assert_eq!(plan.conflicts().next().unwrap().winner, Side::Crm);
}

fn many_links(count: usize) -> Vec<Link> {
    (0..count)
        .map(|n| {
            linked(
                &format!("18x{n}"),
                &format!("O{n}"),
                event("Demo"),
                Origin::Crm,
            )
        })
        .collect()
}

#[test]
fn the_guard_holds_back_a_mass_deletion() {
    let links = many_links(50);
    let ids: Vec<String> = (0..50).map(|n| format!("O{n}")).collect();
    let outlook = OutlookChanges {
        deleted: ids,
        // An unrelated change still goes through.
        upserts: vec![item("NEW", event("New"), "2026-11-02T10:00:00Z")],
        ..OutlookChanges::default()
    };
    let plan = super::plan(
        &links,
        &outlook,
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let trip = plan.guard.clone().expect("guard must trip");
    assert_eq!((trip.crm_deletions, trip.linked), (50, 50));
    assert!(!plan.may_commit_cursors());
    assert_eq!(plan.counts.held, 50);
    assert_eq!(plan.counts.delete_crm, 0);
    assert_eq!(plan.counts.create_crm, 1);
    assert!(!plan
        .steps
        .iter()
        .flat_map(|step| &step.actions)
        .any(|action| matches!(action, Action::DeleteInCrm { .. } | Action::Unlink)));

    // What was held is listed, for the operator to look at.
    assert_eq!(trip.held.len(), 50);
    assert!(trip.held.iter().all(|held| held.side == Side::Crm));

    // Confirmed by an operator, exactly those deletions go through.
    let mut confirmed = policy(ConflictPolicy::Latest);
    confirmed.guard.confirmed = trip.held.iter().map(|held| held.key.clone()).collect();
    let plan = super::plan(&links, &outlook, &CrmChanges::default(), &confirmed);
    assert!(plan.guard.is_none());
    assert_eq!(plan.counts.delete_crm, 50);

    // A confirmation covers the deletions shown, not others that came since.
    let mut partly = policy(ConflictPolicy::Latest);
    partly.guard.confirmed = trip
        .held
        .iter()
        .take(10)
        .map(|held| held.key.clone())
        .collect();
    let plan = super::plan(&links, &outlook, &CrmChanges::default(), &partly);
    assert_eq!(plan.counts.delete_crm, 10, "only the confirmed ten");
    assert_eq!(plan.guard.as_ref().map(|trip| trip.held.len()), Some(40));
}

#[test]
fn the_guard_weighs_the_share_with_a_floor_and_protects_small_calendars() {
    let guard = DeletionGuard::default();
    assert!(!guard.trips(4, 10), "under the floor of five");
    assert!(guard.trips(5, 10), "half of a small calendar");
    assert!(guard.trips(8, 8), "every event of a small calendar");
    assert!(!guard.trips(3, 3), "a calendar of three may be emptied");
    assert!(!guard.trips(10, 100), "10 % is not more than 10 %");
    assert!(guard.trips(11, 100));
    assert!(!guard.trips(21, 1000), "2.1 % is under 10 %");
    assert!(guard.trips(101, 1000));
}

// --- reassignment and meetings the user does not organise ------------------------------

#[test]
fn reassigned_crm_event_is_never_deleted_in_the_crm() {
    // calsync made the Outlook copy: it goes.
    let mine = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let plan = super::plan(
        &[mine],
        &OutlookChanges::default(),
        &gone("18x1", GoneReason::LeftOwner),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(kinds(only_step(&plan)), ["delete_outlook", "unlink"]);

    // The user's own Outlook event stays and is detached.
    let theirs = linked("18x2", "BBB", event("Own meeting"), Origin::Outlook);
    let plan = super::plan(
        std::slice::from_ref(&theirs),
        &OutlookChanges::default(),
        &gone("18x2", GoneReason::LeftOwner),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    let detached = step.final_link().unwrap().clone();
    assert_eq!(detached.state, LinkState::Detached);

    // A detached event is not imported again when it changes, and is forgotten when deleted.
    let plan = super::plan(
        std::slice::from_ref(&detached),
        &outlook_only(vec![item(
            "BBB",
            event("Own meeting v2"),
            "2026-11-05T10:00:00Z",
        )]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert!(plan.is_empty(), "{plan:#?}");
    let plan = super::plan(
        &[detached],
        &deleted(&["BBB"]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(kinds(only_step(&plan)), ["unlink"]);

    // A calsync copy the user edited stays too.
    let mine = linked("18x3", "CCC", event("Demo"), Origin::Crm);
    let plan = super::plan(
        &[mine],
        &outlook_only(vec![item(
            "CCC",
            event("Demo, notes"),
            "2026-11-05T10:00:00Z",
        )]),
        &gone("18x3", GoneReason::LeftOwner),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(
        only_step(&plan).final_link().unwrap().state,
        LinkState::Detached
    );
}

fn invitation(subject: &str) -> CalendarEvent {
    let mut invite = event(subject);
    invite.is_organizer = Some(false);
    invite.organizer = Some(Organizer {
        name: Some("Customer".into()),
        email: Some("boss@customer.example".into()),
    });
    invite
}

#[test]
fn a_meeting_the_user_does_not_organise_is_never_deleted_in_outlook() {
    let link = linked("18x1", "AAA", invitation("Kick-off"), Origin::Outlook);
    let plan = super::plan(
        &[link],
        &OutlookChanges::default(),
        &gone("18x1", GoneReason::Deleted),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    assert_eq!(step.final_link().unwrap().state, LinkState::Detached);
    assert_eq!(plan.counts.delete_outlook, 0);
}

#[test]
fn crm_edits_of_organizer_fields_are_reverted_with_a_journal_entry() {
    let link = linked("18x1", "AAA", invitation("Kick-off"), Origin::Outlook);
    let mut edited = event("Kick-off (moved)");
    edited.reminder_minutes = Some(30);
    let plan = super::plan(
        &[link],
        &OutlookChanges::default(),
        &crm_only(vec![crm_event("18x1", edited, "2026-11-02T10:00:00Z")]),
        &policy(ConflictPolicy::CrmWins),
    );
    let step = only_step(&plan);
    assert_eq!(
        kinds(step),
        [
            "conflict",
            "remember",
            "update_crm",
            "update_outlook",
            "link"
        ]
    );
    // The subject goes back to the organizer's; the reminder is the user's own.
    assert_eq!(update_fields(step, Side::Crm), [EventField::Subject]);
    assert_eq!(update_fields(step, Side::Outlook), [EventField::Reminder]);
    let conflict = plan.conflicts().next().unwrap();
    assert_eq!(conflict.kind, ConflictKind::OrganizerOwned);
    assert_eq!(
        (conflict.winner, &conflict.reason),
        (Side::Outlook, &Reason::NotOrganizer)
    );
}

// --- first sync --------------------------------------------------------------------------

#[test]
fn first_sync_links_identical_events_instead_of_copying() {
    let mut first = policy(ConflictPolicy::Latest);
    first.first_sync = true;
    let mut in_outlook = event("  weekly   SYNC ");
    in_outlook.location = "Teams".into();
    let in_crm = event("Weekly sync");
    let plan = super::plan(
        &[],
        &outlook_only(vec![item("AAA", in_outlook, "2026-11-01T10:00:00Z")]),
        &crm_only(vec![crm_event("18x1", in_crm, "2026-11-01T09:00:00Z")]),
        &first,
    );
    let step = only_step(&plan);
    assert_eq!(plan.counts.create_crm + plan.counts.create_outlook, 0);
    let link = step.final_link().unwrap();
    assert_eq!(link.origin, Origin::Matched);
    assert_eq!(link.outlook_id.as_deref(), Some("AAA"));
    assert_eq!(link.crm_id.as_ref().map(CrmEventId::as_str), Some("18x1"));
    // The copies disagreed on the subject's spelling: journalled. The location only Outlook
    // has is kept, and reaches the CRM, without a conflict.
    let fields: Vec<_> = plan.conflicts().map(|conflict| conflict.field).collect();
    assert_eq!(fields, [Some(EventField::Subject)]);
    assert_eq!(link.base.location, "Teams");
    assert!(update_fields(step, Side::Crm).contains(&EventField::Location));
    assert!(plan
        .conflicts()
        .all(|conflict| conflict.kind == ConflictKind::FirstSyncMatch));
}

#[test]
fn first_sync_does_not_match_all_day_with_timed_or_later_runs() {
    let mut first = policy(ConflictPolicy::Latest);
    first.first_sync = true;
    let all_day = CalendarEvent::all_day("Offsite", day("2026-12-01"), day("2026-12-02"));
    let timed = CalendarEvent::timed(
        "Offsite",
        at("2026-12-01T00:00:00Z"),
        at("2026-12-02T00:00:00Z"),
    );
    let outlook = outlook_only(vec![item("AAA", all_day, "2026-11-01T10:00:00Z")]);
    let crm = crm_only(vec![crm_event("18x1", timed, "2026-11-01T10:00:00Z")]);
    let plan = super::plan(&[], &outlook, &crm, &first);
    assert_eq!((plan.counts.create_crm, plan.counts.create_outlook), (1, 1));

    let same = crm_only(vec![crm_event(
        "18x1",
        event("Demo"),
        "2026-11-01T10:00:00Z",
    )]);
    let outlook = outlook_only(vec![item("AAA", event("Demo"), "2026-11-01T10:00:00Z")]);
    let later = super::plan(&[], &outlook, &same, &policy(ConflictPolicy::Latest));
    assert_eq!(
        (later.counts.create_crm, later.counts.create_outlook),
        (1, 1)
    );
}

// --- crash recovery ----------------------------------------------------------------------

fn crm_intent(outlook: &str, base: CalendarEvent) -> Link {
    let mut base = outlook_event(outlook, base, "2026-11-01T10:00:00Z");
    base.ids.crm = None;
    Link {
        key: LinkKey::for_outlook(outlook),
        version: 1,
        state: LinkState::CreatingInCrm,
        origin: Origin::Outlook,
        crm_id: None,
        outlook_id: Some(outlook.into()),
        outlook_tx: None,
        outlook_creates: 0,
        occurrence: None,
        base,
        as_stored: AsStored::default(),
        pending: None,
        crm_marker: None,
        crm_creates: 0,
    }
}

#[test]
fn an_interrupted_crm_create_is_adopted_not_repeated() {
    let intent = crm_intent("AAA", event("Lunch"));
    // The create happened: the record shows up in the CRM feed.
    let plan = super::plan(
        std::slice::from_ref(&intent),
        &OutlookChanges::default(),
        &crm_only(vec![crm_event(
            "18x7",
            event("Lunch"),
            "2026-11-01T10:00:05Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    let link = step.final_link().unwrap();
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(link.crm_id.as_ref().map(CrmEventId::as_str), Some("18x7"));

    // It did not: create again (one CRM create in total).
    let plan = super::plan(
        &[intent],
        &OutlookChanges::default(),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(kinds(only_step(&plan)), ["remember", "create_crm", "link"]);
}

#[test]
fn a_lookalike_does_not_take_the_place_of_the_created_record() {
    let mut original = event("Lunch");
    original.description = "with the team".into();
    let intent = crm_intent("AAA", original.clone());
    let lookalike = crm_event("18x6", event("Lunch"), "2026-11-01T10:00:04Z");
    let created = crm_event("18x7", original, "2026-11-01T10:00:05Z");
    let plan = super::plan(
        &[intent],
        &OutlookChanges::default(),
        &crm_only(vec![lookalike, created]),
        &policy(ConflictPolicy::Latest),
    );
    let adopted = plan
        .steps
        .iter()
        .filter_map(Step::final_link)
        .find(|link| link.key.as_str() == "outlook:AAA")
        .unwrap();
    assert_eq!(
        adopted.crm_id.as_ref().map(CrmEventId::as_str),
        Some("18x7")
    );
    // The look-alike is a user's event of its own and is copied to Outlook.
    assert_eq!(plan.counts.create_outlook, 1);
}

#[test]
fn an_interrupted_outlook_create_is_adopted_by_its_transaction_id() {
    let crm_id = CrmEventId::new("18x1");
    let tx = outlook_transaction_id(MAILBOX, &crm_id, 0);
    let mut base = crm_event("18x1", event("Demo"), "2026-11-01T10:00:00Z");
    base.ids.outlook = None;
    let intent = Link {
        key: LinkKey::for_crm(&crm_id),
        version: 1,
        state: LinkState::CreatingInOutlook,
        origin: Origin::Crm,
        crm_id: Some(crm_id.clone()),
        outlook_id: None,
        outlook_tx: Some(tx.clone()),
        outlook_creates: 1,
        occurrence: None,
        base,
        as_stored: AsStored::default(),
        pending: None,
        crm_marker: None,
        crm_creates: 0,
    };
    let mut created = item("AAA", event("Demo"), "2026-11-01T10:00:03Z");
    created.transaction_id = Some(tx.clone());
    let plan = super::plan(
        std::slice::from_ref(&intent),
        &outlook_only(vec![created.clone()]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["link"]);
    assert_eq!(
        step.final_link().unwrap().outlook_id.as_deref(),
        Some("AAA")
    );

    // Not there: the same transactionId again.
    let plan = super::plan(
        std::slice::from_ref(&intent),
        &OutlookChanges::default(),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    let Action::CreateInOutlook { transaction_id, .. } = &step.actions[1] else {
        panic!("{step:#?}")
    };
    assert_eq!(transaction_id, &tx);

    // A second copy of an already linked event is removed.
    let mut done = intent;
    done.state = LinkState::Linked;
    done.outlook_id = Some("AAA".into());
    let mut stray = created;
    stray.event.ids.outlook = Some("ZZZ".into());
    let plan = super::plan(
        &[done],
        &outlook_only(vec![stray]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert_eq!(kinds(step), ["delete_outlook"]);
    assert!(
        matches!(&step.actions[0], Action::DeleteInOutlook { outlook_id, .. } if outlook_id == "ZZZ")
    );
}

#[test]
fn repeated_items_in_a_change_set_count_once_last_wins() {
    let first = item("AAA", event("Draft"), "2026-11-01T10:00:00Z");
    let second = item("AAA", event("Final"), "2026-11-01T10:05:00Z");
    let plan = super::plan(
        &[],
        &outlook_only(vec![first, second]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    let Action::CreateInCrm { event, .. } = &step.actions[1] else {
        panic!()
    };
    assert_eq!(event.subject, "Final");
}

// --- recurrence, time zones, all-day -----------------------------------------------------

fn madrid_weekly(master: &str, local_days: &[&str]) -> Vec<OutlookItem> {
    let madrid = TimeZone::get("Europe/Madrid").unwrap();
    local_days
        .iter()
        .enumerate()
        .map(|(n, local_day)| {
            let start = madrid.to_timestamp(day(local_day).at(10, 0, 0, 0)).unwrap();
            let end = madrid.to_timestamp(day(local_day).at(11, 0, 0, 0)).unwrap();
            let mut occurrence = item(
                &format!("{master}-occ{n}"),
                CalendarEvent::timed("Team meeting", start, end),
                "2026-10-01T08:00:00Z",
            );
            occurrence.occurrence = Some(Occurrence {
                series_master_id: master.into(),
                original_start: start,
            });
            occurrence
        })
        .collect()
}

#[test]
fn occurrences_become_crm_records_and_a_madrid_series_keeps_its_wall_clock_across_dst() {
    // 10:00 in Madrid on both sides of the 25 October 2026 change: 08:00Z, then 09:00Z.
    let occurrences = madrid_weekly("M1", &["2026-10-19", "2026-10-26"]);
    let plan = super::plan(
        &[],
        &outlook_only(occurrences),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(plan.counts.create_crm, 2);
    let madrid = TimeZone::get("Europe/Madrid").unwrap();
    let mut starts = Vec::new();
    for step in &plan.steps {
        let Action::CreateInCrm { event, .. } = &step.actions[1] else {
            panic!()
        };
        let EventTime::Timed { start, .. } = event.time else {
            panic!()
        };
        starts.push(start);
        // What the vtiger mapping would write for a server in Madrid.
        assert!(wall_clock(start, &madrid).ends_with(" 10:00:00"));
        let link = step.final_link().unwrap();
        assert_eq!(
            link.occurrence
                .as_ref()
                .map(|o| o.series_master_id.as_str()),
            Some("M1")
        );
    }
    assert_eq!(
        starts,
        [at("2026-10-19T08:00:00Z"), at("2026-10-26T09:00:00Z")]
    );
}

fn occurrence_link(crm: &str, item: &OutlookItem) -> Link {
    let mut link = linked(crm, item.id().unwrap(), item.event.clone(), Origin::Outlook);
    link.occurrence = item.occurrence.clone();
    link
}

#[test]
fn a_crm_edit_of_one_occurrence_patches_that_occurrence_only() {
    let occurrences = madrid_weekly("M1", &["2026-10-19", "2026-10-26"]);
    let links = vec![
        occurrence_link("18x1", &occurrences[0]),
        occurrence_link("18x2", &occurrences[1]),
    ];
    // Moved to 12:00 Madrid (CET, after the change) in the CRM.
    let mut moved = occurrences[1].event.clone();
    moved.ids.crm = Some("18x2".into());
    moved.ids.outlook = None;
    moved.time = EventTime::Timed {
        start: at("2026-10-26T11:00:00Z"),
        end: at("2026-10-26T12:00:00Z"),
    };
    moved.modified.crm = Some(at("2026-10-20T10:00:00Z"));
    let plan = super::plan(
        &links,
        &OutlookChanges::default(),
        &crm_only(vec![moved]),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    let Action::UpdateOutlook {
        outlook_id,
        fields,
        occurrence,
        event,
    } = &step.actions[1]
    else {
        panic!("{step:#?}")
    };
    assert_eq!(outlook_id, "M1-occ1");
    assert_ne!(outlook_id, "M1");
    assert_eq!(fields, &[EventField::Time]);
    assert_eq!(occurrence.as_ref().unwrap().series_master_id, "M1");
    let madrid = TimeZone::get("Europe/Madrid").unwrap();
    let EventTime::Timed { start, .. } = event.time else {
        panic!()
    };
    assert!(wall_clock(start, &madrid).ends_with(" 12:00:00"));

    // The echo of that patch (an exception now) changes nothing.
    let mut echo = occurrences[1].clone();
    echo.event.time = event.time.clone();
    echo.event.modified.outlook = Some(at("2026-10-20T10:00:05Z"));
    let after = vec![links[0].clone(), step.final_link().unwrap().clone()];
    let plan = super::plan(
        &after,
        &outlook_only(vec![echo]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn cancelled_occurrences_and_deleted_series_delete_their_crm_copies() {
    let occurrences = madrid_weekly("M1", &["2026-10-19", "2026-10-26", "2026-11-02"]);
    let links: Vec<Link> = occurrences
        .iter()
        .enumerate()
        .map(|(n, item)| occurrence_link(&format!("18x{n}"), item))
        .collect();
    let plan = super::plan(
        &links,
        &deleted(&["M1-occ1"]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    let step = only_step(&plan);
    assert!(
        matches!(&step.actions[0], Action::DeleteInCrm { crm_id } if crm_id.as_str() == "18x1")
    );

    // Even with a CRM edit, a cancelled occurrence cannot come back: deletion wins, journalled.
    let edited = crm_event("18x1", event("Edited"), "2026-10-20T10:00:00Z");
    let plan = super::plan(
        &links,
        &deleted(&["M1-occ1"]),
        &crm_only(vec![edited]),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(
        kinds(only_step(&plan)),
        ["conflict", "delete_crm", "unlink"]
    );
    assert_eq!(plan.conflicts().next().unwrap().reason, Reason::Occurrence);

    let whole = OutlookChanges {
        deleted_series: vec!["M1".into()],
        ..OutlookChanges::default()
    };
    let plan = super::plan(
        &links,
        &whole,
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(plan.counts.delete_crm, 3);
}

/// A single event made recurring whose link did not move onto its occurrence (the step
/// failed), and that occurrence deleted before the next run: the feed shows the series' other
/// occurrences, which later links name, and the link still naming the master is deleted as the
/// occurrence it stood for.
#[test]
fn a_link_whose_occurrence_went_before_it_moved_onto_it_deletes_its_crm_copy() {
    let occurrences = madrid_weekly("M1", &["2026-10-19", "2026-10-26"]);
    let single = linked("18x1", "M1", occurrences[0].event.clone(), Origin::Outlook);
    let links = vec![single.clone(), occurrence_link("18x2", &occurrences[1])];
    let crm = CrmChanges::default();
    let latest = policy(ConflictPolicy::Latest);

    let plan = super::plan(
        &links,
        &outlook_only(vec![occurrences[1].clone()]),
        &crm,
        &latest,
    );
    let step = only_step(&plan);
    assert_eq!(step.key, single.key);
    assert_eq!(kinds(step), ["delete_crm", "unlink"]);

    // The occurrence still there: the link moves onto it.
    let plan = super::plan(&links, &outlook_only(occurrences.clone()), &crm, &latest);
    let moved = only_step(&plan).final_link().unwrap();
    assert_eq!(moved.outlook_id.as_deref(), Some("M1-occ0"));

    // A refused move keeps the occurrence as an alias: unreported, it is not taken for gone.
    let mut aliased = latest.clone();
    aliased.outlook_aliases = vec![("M1-occ0".into(), "M1".into())];
    let plan = super::plan(
        &links,
        &outlook_only(vec![occurrences[1].clone()]),
        &crm,
        &aliased,
    );
    assert!(plan.is_empty(), "{plan:#?}");
}

#[test]
fn all_day_events_travel_as_dates_and_differ_from_timed() {
    let all_day = CalendarEvent::all_day("Holiday", day("2026-12-24"), day("2026-12-26"));
    let plan = super::plan(
        &[],
        &OutlookChanges::default(),
        &crm_only(vec![crm_event(
            "18x1",
            all_day.clone(),
            "2026-11-01T10:00:00Z",
        )]),
        &policy(ConflictPolicy::Latest),
    );
    let Action::CreateInOutlook { event, .. } = &only_step(&plan).actions[1] else {
        panic!()
    };
    assert_eq!(
        event.time,
        EventTime::AllDay {
            start: day("2026-12-24"),
            end: day("2026-12-26")
        }
    );

    // Turning it into a timed event on the same days is a change of Time.
    let link = linked("18x1", "AAA", all_day, Origin::Crm);
    let timed = CalendarEvent::timed(
        "Holiday",
        at("2026-12-24T00:00:00Z"),
        at("2026-12-26T00:00:00Z"),
    );
    let plan = super::plan(
        &[link],
        &outlook_only(vec![item("AAA", timed, "2026-11-02T10:00:00Z")]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(
        update_fields(only_step(&plan), Side::Crm),
        [EventField::Time]
    );
}

#[test]
fn absorb_takes_only_fields_the_other_side_does_not_carry() {
    let policy = policy(ConflictPolicy::Latest);
    let mut link = linked("18x1", "AAA", event("Demo"), Origin::Crm);
    let mut returned = event("Changed by the server");
    returned.show_as = Some(crate::event::ShowAs::Busy);
    returned.is_organizer = Some(true);
    link.absorb(
        Side::Outlook,
        &returned,
        policy.crm_fields,
        policy.outlook_fields,
    );
    assert_eq!(link.base.subject, "Demo");
    assert_eq!(link.base.show_as, Some(crate::event::ShowAs::Busy));
    assert_eq!(link.base.is_organizer, Some(true));
}

#[test]
fn subjects_normalise_for_matching() {
    assert_eq!(normalise_subject("  Weekly\t SYNC \n"), "weekly sync");
    assert_eq!(normalise_subject("(no subject)"), "");
    assert_eq!(normalise_subject("Ñandú  Día"), "ñandú día");
}

#[test]
fn a_full_resync_over_unchanged_events_plans_nothing() {
    // After a 410 the delta starts over: every event in the window comes back as an upsert.
    let links: Vec<Link> = (0..5)
        .map(|n| {
            linked(
                &format!("18x{n}"),
                &format!("O{n}"),
                event("Demo"),
                Origin::Crm,
            )
        })
        .collect();
    let listing: Vec<OutlookItem> = (0..4)
        .map(|n| item(&format!("O{n}"), event("Demo"), "2026-11-10T10:00:00Z"))
        .collect();
    let plan = super::plan(
        &links,
        &outlook_only(listing.clone()),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert!(plan.is_empty(), "{plan:#?}");
    // The one the listing lacks is a candidate to confirm, not a deletion by itself.
    let absent = absent_from_listing(
        &links,
        Side::Outlook,
        listing.iter().filter_map(OutlookItem::id),
    );
    assert_eq!(absent, ["O4"]);
}

#[test]
fn a_second_event_with_a_pending_create_key_is_removed() {
    let crm_id = CrmEventId::new("18x1");
    let tx = outlook_transaction_id(MAILBOX, &crm_id, 0);
    let mut base = crm_event("18x1", event("Demo"), "2026-11-01T10:00:00Z");
    base.ids.outlook = None;
    let intent = Link {
        key: LinkKey::for_crm(&crm_id),
        version: 1,
        state: LinkState::CreatingInOutlook,
        origin: Origin::Crm,
        crm_id: Some(crm_id),
        outlook_id: None,
        outlook_tx: Some(tx.clone()),
        outlook_creates: 1,
        occurrence: None,
        base,
        as_stored: AsStored::default(),
        pending: None,
        crm_marker: None,
        crm_creates: 0,
    };
    let mut first = item("AAA", event("Demo"), "2026-11-01T10:00:03Z");
    first.transaction_id = Some(tx.clone());
    let mut second = item("BBB", event("Demo"), "2026-11-01T10:00:09Z");
    second.transaction_id = Some(tx);
    let plan = super::plan(
        &[intent],
        &outlook_only(vec![first, second]),
        &CrmChanges::default(),
        &policy(ConflictPolicy::Latest),
    );
    assert_eq!(plan.counts.create_crm, 0, "{plan:#?}");
    assert_eq!(plan.counts.delete_outlook, 1);
    let adopted = plan.steps.iter().find_map(Step::final_link).unwrap();
    assert_eq!(adopted.outlook_id.as_deref(), Some("AAA"));
}
