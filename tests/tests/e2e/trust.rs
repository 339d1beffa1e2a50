//! The stories a sync must survive with real meetings (the trust issue): overlapping runs,
//! attendees and invitees, answers lost after a write, values the CRM stores differently,
//! writes refused for good, series that change shape, revoked access. Each test is a story a
//! user would live through, against the sandbox Graph and vtiger and moto.

use std::time::Duration;

use calsync::services::sync_run::RunOutcome;
use calsync_sandbox::vtiger::Fault;
use calsync_testkit::syncbed::{outlook_event, SyncBed};
use calsync_testkit::testbed::{LinkRoute, USER_OID};
use serde_json::{json, Value};

async fn settle(bed: &SyncBed) {
    bed.settle().await.unwrap();
}

#[tokio::test]
async fn two_runs_of_one_user_at_once_never_create_twice() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    for n in 0..9 {
        graph
            .insert_event(
                USER_OID,
                outlook_event(
                    &format!("Visit {n}"),
                    &format!("2026-12-1{n}T09:00:00"),
                    &format!("2026-12-1{n}T10:00:00"),
                ),
            )
            .unwrap();
    }
    // The first run's first CRM create hangs for a while; the second run starts meanwhile,
    // as a redelivered message or a `resync --now` would.
    bed.bed
        .sandbox
        .crm()
        .inject("create", Fault::Delay(Duration::from_millis(1500)), Some(1));
    let (first, second) = tokio::join!(bed.sync(), async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        bed.sync().await
    });
    eprintln!(
        "first: {:?}\nsecond: {:?}",
        first.as_ref().map(|r| (r.outcome, r.counts)),
        second.as_ref().map(|r| (r.outcome, r.counts))
    );
    // The first run did the work; the second found the user busy, started nothing, and comes
    // back later (its message returns to the queue).
    let first = first.unwrap();
    assert_eq!(first.outcome, RunOutcome::Synced, "{first:?}");
    let second = second.unwrap_err();
    assert!(format!("{second:#}").contains("busy"), "{second:#}");
    settle(&bed).await;
    let subjects = bed.crm_subjects();
    assert_eq!(
        subjects,
        (0..9).map(|n| format!("Visit {n}")).collect::<Vec<_>>(),
        "every Outlook event exactly once in the CRM"
    );
    assert_eq!(bed.outlook().len(), 9);
}

fn crm_ids(bed: &SyncBed) -> Vec<String> {
    bed.crm()
        .iter()
        .map(|event| format!("18x{}", event.crmid))
        .collect()
}

#[tokio::test]
async fn a_small_calendar_wiped_in_the_crm_is_held_not_wiped_in_outlook() {
    let bed = SyncBed::start().await.unwrap();
    for n in 0..8 {
        bed.seed_crm(&format!("Call {n}"), "2026-12-15", "10:00:00", "10:30:00");
    }
    settle(&bed).await;
    assert_eq!(bed.outlook().len(), 8);
    let crm = bed.bed.sandbox.crm();
    for id in crm_ids(&bed) {
        assert!(crm.ui_delete(&id));
    }
    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::GuardTripped, "{report:?}");
    assert_eq!(bed.outlook().len(), 8, "nothing deleted in Outlook");
}

#[tokio::test]
async fn a_confirmation_lets_through_the_deletions_shown_and_no_others() {
    let bed = SyncBed::start().await.unwrap();
    for n in 0..60 {
        bed.seed_crm(
            &format!("Visit {n:02}"),
            "2026-12-14",
            "08:00:00",
            "08:30:00",
        );
    }
    settle(&bed).await;
    let graph = bed.bed.sandbox.graph();
    let outlook = bed.outlook();
    let ids: Vec<&str> = outlook.iter().map(|e| e["id"].as_str().unwrap()).collect();
    for id in &ids[..30] {
        graph.delete_event(USER_OID, id).unwrap();
    }
    assert_eq!(bed.sync().await.unwrap().outcome, RunOutcome::GuardTripped);
    let shown = bed.record().await.unwrap().held_deletions;
    assert_eq!(shown.len(), 30);
    assert_eq!(bed.confirm_deletions().await.unwrap(), 30);

    // More go before the confirmed run: they were not shown, so they stay held.
    for id in &ids[30..50] {
        graph.delete_event(USER_OID, id).unwrap();
    }
    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::GuardTripped, "{report:?}");
    assert_eq!(report.counts.crm_deleted, 30, "{report:?}");
    assert_eq!(bed.crm().len(), 30);
    let record = bed.record().await.unwrap();
    assert_eq!(record.held_deletions.len(), 20);
    assert!(record
        .held_deletions
        .iter()
        .all(|held| !shown.iter().any(|s| s.key == held.key)));
}

/// A CRM event of maria's that pedro (user 6) is invited to, synced to Outlook.
async fn invited_meeting(bed: &SyncBed) -> String {
    let id = bed.seed_crm("Board review", "2026-12-16", "09:00:00", "10:00:00");
    assert!(bed.bed.sandbox.crm().ui_invite(&id, &[6]));
    settle(bed).await;
    id
}

fn invitees(bed: &SyncBed, id: &str) -> Vec<u64> {
    let event = bed.bed.sandbox.crm().event(id).unwrap();
    event.invitees.into_iter().collect()
}

#[tokio::test]
async fn crm_invitees_survive_an_outlook_edit_when_the_crm_module_keeps_them() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed.sandbox.crm().set_invitee_module(true);
    let id = invited_meeting(&bed).await;
    let outlook = bed.outlook_event("Board review").unwrap();
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            outlook["id"].as_str().unwrap(),
            json!({"subject": "Board review (moved)"}),
        )
        .unwrap();
    settle(&bed).await;
    assert_eq!(bed.crm_subjects(), ["Board review (moved)"]);
    assert_eq!(
        invitees(&bed, &id),
        [6],
        "the module keeps what calsync does not name"
    );
}

#[tokio::test]
async fn an_outlook_edit_of_what_the_crm_does_not_hold_writes_nothing_to_the_crm() {
    let bed = SyncBed::start().await.unwrap();
    let id = invited_meeting(&bed).await;
    let crm = bed.bed.sandbox.crm();
    crm.reset_counts();
    let outlook = bed.outlook_event("Board review").unwrap();
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            outlook["id"].as_str().unwrap(),
            json!({"showAs": "tentative", "categories": ["Red category"]}),
        )
        .unwrap();
    settle(&bed).await;
    assert_eq!(crm.request_count("revise"), 0, "{:?}", crm.request_counts());
    assert_eq!(
        invitees(&bed, &id),
        [6],
        "stock vtiger keeps invitees only when left alone"
    );
}

#[tokio::test]
async fn values_the_crm_stores_differently_do_not_come_back_as_edits() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let long_subject = format!("Quarterly review {}", "x".repeat(280));
    let long_location = format!("Building 7, {}", "floor ".repeat(40));
    let edge = [
        json!({"subject": "", "reminderMinutesBeforeStart": 0, "isReminderOn": true}),
        json!({"subject": long_subject, "sensitivity": "personal"}),
        json!({"subject": "Lunch 🍱 with Ana", "location": long_location, "sensitivity": "confidential"}),
        json!({"subject": "会議 — café ñandú", "body": {"contentType": "text", "content": "Notes ✅ ready"}}),
    ];
    for (n, extra) in edge.iter().enumerate() {
        let mut body = outlook_event(
            "",
            &format!("2026-12-1{n}T09:00:00"),
            &format!("2026-12-1{n}T10:00:00"),
        );
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        graph.insert_event(USER_OID, body).unwrap();
    }
    let first = bed.sync().await.unwrap();
    assert_eq!(first.counts.crm_created, 4, "{first:?}");
    let before: Vec<Value> = bed.outlook();
    let crm = bed.bed.sandbox.crm();
    crm.reset_counts();
    graph.clear_requests();
    for _ in 0..2 {
        let again = bed.sync().await.unwrap();
        assert_eq!(again.counts.writes(), 0, "{again:?}");
    }
    assert_eq!(crm.request_count("revise"), 0, "{:?}", crm.request_counts());
    let outlook_writes: Vec<_> = graph
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(outlook_writes.is_empty(), "{outlook_writes:?}");
    assert_eq!(bed.outlook(), before, "Outlook keeps what the user typed");
}

/// `now` moved by `hours` (negative: the past), as a UTC date and time.
fn hours_from_now(hours: i64) -> (String, String) {
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours);
    (
        at.strftime("%Y-%m-%d").to_string(),
        at.strftime("%H:00:00").to_string(),
    )
}

#[tokio::test]
async fn an_event_just_outside_the_window_on_both_sides_is_not_copied() {
    let bed = SyncBed::start().await.unwrap();
    // The window reaches 30 days back; this meeting ended 13 hours before its start.
    let (day, start) = hours_from_now(-30 * 24 - 14);
    let (end_day, end) = hours_from_now(-30 * 24 - 13);
    bed.seed_crm("Old review", &day, &start, &end);
    let graph = bed.bed.sandbox.graph();
    graph
        .insert_event(
            USER_OID,
            outlook_event(
                "Old review",
                &format!("{day}T{start}"),
                &format!("{end_day}T{end}"),
            ),
        )
        .unwrap();
    settle(&bed).await;
    assert_eq!(bed.outlook().len(), 1, "{:?}", bed.outlook_subjects());
    assert_eq!(bed.crm().len(), 1);
    assert_eq!(graph.counters(USER_OID).creates, 1, "only the user's own");
}

#[tokio::test]
async fn a_crm_event_outside_the_window_stays_out_when_it_is_edited() {
    let bed = SyncBed::start().await.unwrap();
    let (day, start) = hours_from_now(-40 * 24);
    let (_, end) = hours_from_now(-40 * 24 + 1);
    let id = bed.seed_crm("Long ago", &day, &start, &end);
    settle(&bed).await;
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&id, &[("location", "Archive")]));
    settle(&bed).await;
    assert!(bed.outlook().is_empty(), "{:?}", bed.outlook_subjects());
}

#[tokio::test]
async fn matching_copies_keeps_what_either_side_has_and_the_outlook_body() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let mut teams = outlook_event("Kick-off", "2026-12-17T15:00:00", "2026-12-17T16:00:00");
    teams["body"] = json!({
        "contentType": "html",
        "content": "<html><body><p><b>Agenda</b></p><p>Join Microsoft Teams Meeting</p></body></html>",
    });
    graph.insert_event(USER_OID, teams).unwrap();
    let mut room = outlook_event("Budget", "2026-12-18T15:00:00", "2026-12-18T16:00:00");
    room["location"] = json!({"displayName": ""});
    graph.insert_event(USER_OID, room).unwrap();
    // The CRM copies were edited after the Outlook ones, so "latest" would pick the CRM's.
    let kickoff = bed.seed_crm("Kick-off", "2026-12-17", "15:00:00", "16:00:00");
    let budget = bed.seed_crm("Budget", "2026-12-18", "15:00:00", "16:00:00");
    let crm = bed.bed.sandbox.crm();
    crm.advance_clock(Duration::from_secs(3600));
    assert!(crm.ui_edit(&kickoff, &[("description", "Bring the slides")]));
    assert!(crm.ui_edit(&budget, &[("location", "Room 4")]));
    settle(&bed).await;

    let body = bed.outlook_event("Kick-off").unwrap()["body"].clone();
    assert_eq!(body["contentType"], "html", "{body}");
    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .contains("Join Microsoft Teams Meeting"),
        "{body}"
    );
    assert_eq!(
        bed.outlook_event("Budget").unwrap()["location"]["displayName"],
        "Room 4",
        "a value beats an empty one"
    );
    assert_eq!(
        bed.crm_event("Budget").unwrap().fields["location"],
        "Room 4"
    );
    assert_eq!(bed.outlook().len(), 2);
    assert_eq!(bed.crm().len(), 2);
}

#[tokio::test]
async fn a_crm_create_whose_answer_is_cut_off_makes_one_record() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            outlook_event("Site visit", "2026-12-15T08:00:00", "2026-12-15T09:00:00"),
        )
        .unwrap();
    let crm = bed.bed.sandbox.crm();
    crm.inject("create", Fault::CutAfterWrite, Some(1));
    let report = bed.sync().await.unwrap();
    assert_eq!(bed.crm().len(), 1, "{:?} {report:?}", bed.crm_subjects());
    assert_eq!(
        report.outcome,
        RunOutcome::Synced,
        "found by its marker at once: {report:?}"
    );
    settle(&bed).await;
    assert_eq!(bed.crm().len(), 1);
    assert_eq!(crm.request_count("create"), 1, "never sent twice");
    // Linked: a CRM edit reaches Outlook.
    let id = format!("18x{}", bed.crm()[0].crmid);
    assert!(crm.ui_edit(&id, &[("location", "Gate 3")]));
    settle(&bed).await;
    assert_eq!(
        bed.outlook_event("Site visit").unwrap()["location"]["displayName"],
        "Gate 3"
    );
}

#[tokio::test]
async fn an_outlook_create_whose_answer_is_lost_makes_one_event() {
    let bed = SyncBed::start().await.unwrap();
    bed.seed_crm("Supplier call", "2026-12-15", "11:00:00", "11:30:00");
    let graph = bed.bed.sandbox.graph();
    graph.add_fault(calsync_sandbox::FaultRule {
        route: calsync_sandbox::FaultRoute::EventWrites,
        mailbox: None,
        fault: calsync_sandbox::GraphFault::Drop,
        rate: calsync_sandbox::FaultRate::Next(1),
    });
    bed.sync().await.unwrap();
    settle(&bed).await;
    assert_eq!(bed.outlook_subjects(), ["Supplier call"]);
    assert_eq!(graph.counters(USER_OID).creates, 1);
}

#[tokio::test]
async fn an_event_the_crm_refuses_is_parked_and_the_rest_moves_on() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    graph
        .insert_event(
            USER_OID,
            outlook_event("Refused", "2026-12-15T08:00:00", "2026-12-15T09:00:00"),
        )
        .unwrap();
    let crm = bed.bed.sandbox.crm();
    // A mandatory custom field the integration cannot fill: refused for good.
    crm.inject(
        "create",
        Fault::error("MANDATORY_FIELDS_MISSING", "cf_851 does not have a value"),
        Some(1),
    );
    bed.sync().await.unwrap();
    assert!(bed.crm().is_empty());
    let record = bed.record().await.unwrap();
    let problem = record
        .problems
        .iter()
        .find(|p| p.code.as_str() == "events_parked")
        .unwrap_or_else(|| panic!("{:?}", record.problems));
    assert!(problem.detail.contains("Refused"), "{}", problem.detail);
    assert_eq!(record.parked.len(), 1);

    // Everything else moves on: a new event syncs, the cursors advance past the refusal, and
    // the refused create is not sent again on every run.
    graph
        .insert_event(
            USER_OID,
            outlook_event("Accepted", "2026-12-16T08:00:00", "2026-12-16T09:00:00"),
        )
        .unwrap();
    crm.reset_counts();
    let report = bed.sync().await.unwrap();
    assert!(!report.outlook_full, "{report:?}");
    assert_eq!(bed.crm_subjects(), ["Accepted"]);
    assert_eq!(crm.request_count("create"), 1, "only the new one");
    let quiet = bed.sync().await.unwrap();
    assert_eq!(quiet.counts.writes(), 0, "{quiet:?}");

    // Once it is due (or on a full resync), it is tried again; now it goes through.
    let retried = bed.run(bed.job(true)).await.unwrap();
    assert_eq!(retried.counts.crm_created, 1, "{retried:?}");
    assert_eq!(bed.crm_subjects(), ["Accepted", "Refused"]);
    let record = bed.record().await.unwrap();
    assert!(record.parked.is_empty());
    assert!(record
        .problems
        .iter()
        .all(|p| p.code.as_str() != "events_parked"));
}

/// maria's meeting with two customers, organised by her in Outlook and synced to the CRM.
async fn meeting_with_customers(bed: &SyncBed) -> (String, String) {
    let mut meeting = outlook_event(
        "Contract review",
        "2026-12-17T10:00:00",
        "2026-12-17T11:00:00",
    );
    meeting["attendees"] = json!([
        {"emailAddress": {"address": "ana@customer.example", "name": "Ana"}},
        {"emailAddress": {"address": "luis@customer.example", "name": "Luis"}},
    ]);
    let outlook_id = bed
        .bed
        .sandbox
        .graph()
        .insert_event(USER_OID, meeting)
        .unwrap();
    settle(bed).await;
    let crm_id = format!("18x{}", bed.crm_event("Contract review").unwrap().crmid);
    (outlook_id, crm_id)
}

fn mail_to_attendees(bed: &SyncBed) -> (u64, u64, u64) {
    let counters = bed.bed.sandbox.graph().counters(USER_OID);
    (
        counters.invitations_sent,
        counters.updates_sent,
        counters.cancellations_sent,
    )
}

#[tokio::test]
async fn a_crm_deletion_of_a_meeting_with_attendees_detaches_it_and_mails_no_one() {
    let bed = SyncBed::start().await.unwrap();
    let (outlook_id, crm_id) = meeting_with_customers(&bed).await;
    let before = mail_to_attendees(&bed);
    assert!(bed.bed.sandbox.crm().ui_delete(&crm_id));
    settle(&bed).await;
    assert_eq!(mail_to_attendees(&bed), before, "no cancellation went out");
    assert!(bed
        .bed
        .sandbox
        .graph()
        .event(USER_OID, &outlook_id)
        .is_some());
    assert!(
        bed.crm().is_empty(),
        "and it is not brought back to the CRM"
    );
    let journal = bed
        .bed
        .app
        .runner
        .journal(&bed.bed.tenant, &bed.bed.user, 10)
        .await
        .unwrap();
    assert!(
        journal
            .iter()
            .any(|entry| entry.conflict.subject == "Contract review"),
        "{journal:?}"
    );
}

#[tokio::test]
async fn a_reassigned_crm_meeting_with_attendees_stays_in_outlook() {
    let bed = SyncBed::start().await.unwrap();
    // Made in the CRM, so calsync made the Outlook copy; then maria invited people to it.
    let crm_id = bed.seed_crm("Demo", "2026-12-18", "10:00:00", "11:00:00");
    settle(&bed).await;
    let graph = bed.bed.sandbox.graph();
    let outlook_id = bed.outlook_event("Demo").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    graph
        .update_event(
            USER_OID,
            &outlook_id,
            json!({"attendees": [{"emailAddress": {"address": "ana@customer.example"}}]}),
        )
        .unwrap();
    settle(&bed).await;
    let before = mail_to_attendees(&bed);
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&crm_id, &[("assigned_user_id", "19x6")]));
    settle(&bed).await;
    assert_eq!(mail_to_attendees(&bed), before);
    assert!(graph.event(USER_OID, &outlook_id).is_some());
}

#[tokio::test]
async fn crm_edits_of_a_meeting_with_attendees_never_send_them_an_update() {
    let bed = SyncBed::start().await.unwrap();
    let (outlook_id, crm_id) = meeting_with_customers(&bed).await;
    let before = mail_to_attendees(&bed);
    let crm = bed.bed.sandbox.crm();
    // Announced fields: the Outlook meeting's stand; the CRM edit is undone and journalled.
    assert!(crm.ui_edit(
        &crm_id,
        &[
            ("subject", "Contract review (internal)"),
            ("time_start", "10:30:00")
        ]
    ));
    settle(&bed).await;
    assert_eq!(mail_to_attendees(&bed), before, "no update went out");
    assert_eq!(bed.crm_subjects(), ["Contract review"]);
    let outlook = bed
        .bed
        .sandbox
        .graph()
        .event(USER_OID, &outlook_id)
        .unwrap();
    assert_eq!(outlook["subject"], "Contract review");
    // A field only the organizer sees goes through.
    assert!(crm.ui_edit(&crm_id, &[("visibility", "Private")]));
    settle(&bed).await;
    assert_eq!(mail_to_attendees(&bed), before);
    let outlook = bed
        .bed
        .sandbox
        .graph()
        .event(USER_OID, &outlook_id)
        .unwrap();
    assert_eq!(outlook["sensitivity"], "private");
}

/// One event on both sides, linked: (CRM id, Outlook id).
async fn one_linked_event(bed: &SyncBed) -> (String, String) {
    let crm_id = bed.seed_crm("Planning", "2026-12-21", "09:00:00", "10:00:00");
    settle(bed).await;
    let outlook_id = bed.outlook_event("Planning").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (crm_id, outlook_id)
}

async fn journal_fields(bed: &SyncBed) -> Vec<String> {
    bed.bed
        .app
        .runner
        .journal(&bed.bed.tenant, &bed.bed.user, 50)
        .await
        .unwrap()
        .iter()
        .map(|entry| format!("{:?}", entry.conflict.field))
        .collect()
}

#[tokio::test]
async fn an_outlook_edit_made_during_a_run_is_not_overwritten_silently() {
    let bed = SyncBed::start().await.unwrap();
    let (crm_id, outlook_id) = one_linked_event(&bed).await;
    let crm = bed.bed.sandbox.crm();
    assert!(crm.ui_edit(&crm_id, &[("location", "Room A")]));
    // maria moves the meeting to Room B in Outlook while calsync is writing Room A.
    let graph = bed.bed.sandbox.graph();
    graph.add_fault(calsync_sandbox::FaultRule {
        route: calsync_sandbox::FaultRoute::EventWrites,
        mailbox: None,
        fault: calsync_sandbox::GraphFault::UserEditsFirst(
            json!({"location": {"displayName": "Room B"}}),
        ),
        rate: calsync_sandbox::FaultRate::Next(1),
    });
    bed.sync().await.unwrap();
    settle(&bed).await;
    let location = graph.event(USER_OID, &outlook_id).unwrap()["location"]["displayName"].clone();
    assert_eq!(location, "Room B", "the later edit stands");
    assert_eq!(
        bed.crm_event("Planning").unwrap().fields["location"],
        "Room B"
    );
    assert!(
        journal_fields(&bed)
            .await
            .iter()
            .any(|f| f.contains("Location")),
        "the value that lost is journalled"
    );
}

#[tokio::test]
async fn a_crm_edit_made_during_a_run_is_not_overwritten_silently() {
    let bed = SyncBed::start().await.unwrap();
    let (crm_id, outlook_id) = one_linked_event(&bed).await;
    let graph = bed.bed.sandbox.graph();
    graph
        .update_event(
            USER_OID,
            &outlook_id,
            json!({"location": {"displayName": "Room A"}}),
        )
        .unwrap();
    let crm = bed.bed.sandbox.crm();
    // A second later someone sets Room B in the CRM, while calsync is about to write Room A.
    crm.advance_clock(Duration::from_secs(2));
    crm.inject(
        "retrieve",
        Fault::UserEditsFirst(vec![("location".into(), "Room B".into())]),
        Some(1),
    );
    crm.inject(
        "revise",
        Fault::UserEditsFirst(vec![("location".into(), "Room B".into())]),
        Some(1),
    );
    bed.sync().await.unwrap();
    settle(&bed).await;
    assert_eq!(
        bed.crm_event("Planning").unwrap().fields["location"],
        "Room B"
    );
    let location = graph.event(USER_OID, &outlook_id).unwrap()["location"]["displayName"].clone();
    assert_eq!(location, "Room B");
    assert!(journal_fields(&bed)
        .await
        .iter()
        .any(|f| f.contains("Location")));
    let _ = crm_id;
}

#[tokio::test]
async fn an_outlook_event_edited_while_its_crm_deletion_syncs_is_kept() {
    let bed = SyncBed::start().await.unwrap();
    let (crm_id, outlook_id) = one_linked_event(&bed).await;
    assert!(bed.bed.sandbox.crm().ui_delete(&crm_id));
    let graph = bed.bed.sandbox.graph();
    graph.add_fault(calsync_sandbox::FaultRule {
        route: calsync_sandbox::FaultRoute::EventWrites,
        mailbox: None,
        fault: calsync_sandbox::GraphFault::UserEditsFirst(json!({"subject": "Planning (keep!)"})),
        rate: calsync_sandbox::FaultRate::Next(1),
    });
    bed.sync().await.unwrap();
    settle(&bed).await;
    assert!(
        graph.event(USER_OID, &outlook_id).is_some(),
        "the edited event was not deleted"
    );
    assert_eq!(
        bed.crm_subjects(),
        ["Planning (keep!)"],
        "the edit wins over the deletion"
    );
}

#[tokio::test]
async fn a_revoked_grant_asks_for_a_new_connection_at_once() {
    let bed = SyncBed::start().await.unwrap();
    one_linked_event(&bed).await;
    // An admin revokes maria's sessions; under continuous access evaluation Graph refuses
    // her current token at once, although it has not expired.
    let identity = bed.bed.sandbox.identity();
    identity.revoke_user(USER_OID).unwrap();
    identity.revoke_access_tokens(USER_OID);
    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::ReconnectRequired, "{report:?}");
    let record = bed.record().await.unwrap();
    let codes: Vec<&str> = record.problems.iter().map(|p| p.code.as_str()).collect();
    assert!(codes.contains(&"reconnect_required"), "{codes:?}");
    assert!(!codes.contains(&"outlook_unreachable"), "{codes:?}");
}

#[tokio::test]
async fn a_token_graph_refuses_early_is_replaced_once() {
    let bed = SyncBed::start().await.unwrap();
    one_linked_event(&bed).await;
    bed.seed_crm("After the event", "2026-12-22", "09:00:00", "10:00:00");
    // A critical event that does not revoke the grant: a new token is all it takes.
    bed.bed.sandbox.identity().revoke_access_tokens(USER_OID);
    let report = bed.sync().await.unwrap();
    assert_eq!(report.counts.outlook_created, 1, "{report:?}");
    let record = bed.record().await.unwrap();
    let codes: Vec<&str> = record.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(
        codes,
        ["notifications_unavailable"],
        "the bed has no webhook; nothing else"
    );
}

#[tokio::test]
async fn the_journal_shows_on_the_status_page_and_in_the_cli() {
    let bed = SyncBed::start().await.unwrap();
    let (crm_id, outlook_id) = one_linked_event(&bed).await;
    // Both sides change the place at once; the later one (Outlook) wins.
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&crm_id, &[("location", "Sala Norte")]));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            &outlook_id,
            json!({"location": {"displayName": "Sala Sur"}}),
        )
        .unwrap();
    settle(&bed).await;

    let query = bed
        .bed
        .link_query(LinkRoute::Status, Some("maria"), 600, None);
    let page = calsync_testkit::web::auth(
        &bed.bed.app,
        &calsync_testkit::web::WebRequest {
            method: "GET".into(),
            path: "/status".into(),
            query,
            headers: vec![("accept-language".into(), "en".into())],
            body: Vec::new(),
        },
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Changes calsync had to settle"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<code>location</code>"), "{}", page.body);
    assert!(
        page.body.contains("Sala Norte"),
        "the value not kept is shown"
    );

    let tenant = bed.bed.tenant.to_string();
    let (code, out) = bed
        .cli(&["status", "--tenant", &tenant, "--user", "maria"])
        .await
        .unwrap();
    // The bed has no webhook (notifications_unavailable): status exits 2, "look at this".
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("location") && out.contains("Sala Norte"),
        "{out}"
    );
}

#[tokio::test]
async fn an_all_day_crm_event_is_written_in_the_users_own_zone_and_keeps_its_days() {
    let bed = SyncBed::start_in_zone("Europe/Madrid").await.unwrap();
    let id = bed
        .bed
        .sandbox
        .crm()
        .seed_event(calsync_sandbox::vtiger::SeedEvent {
            owner: calsync_testkit::syncbed::MARIA,
            fields: [
                ("subject", "Nochebuena"),
                ("date_start", "2026-12-24"),
                ("time_start", "00:00:00"),
                ("due_date", "2026-12-24"),
                ("time_end", "23:59:00"),
                ("notime", "1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        });
    settle(&bed).await;
    let outlook = bed.outlook_event("Nochebuena").unwrap();
    assert_eq!(outlook["isAllDay"], true);
    // Written in maria's zone (from the CRM), so her Outlook shows it on the 24th.
    assert_eq!(
        outlook["originalStartTimeZone"], "Europe/Madrid",
        "{outlook}"
    );
    assert_eq!(
        &outlook["start"]["dateTime"].as_str().unwrap()[..10],
        "2026-12-24"
    );
    assert_eq!(
        &outlook["end"]["dateTime"].as_str().unwrap()[..10],
        "2026-12-25"
    );
    // A round trip through Outlook leaves the CRM's days alone.
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            outlook["id"].as_str().unwrap(),
            json!({"subject": "Nochebuena 🎄"}),
        )
        .unwrap();
    settle(&bed).await;
    let stored = bed.bed.sandbox.crm().event(&id).unwrap();
    assert_eq!(stored.fields["date_start"], "2026-12-24");
    assert_eq!(stored.fields["due_date"], "2026-12-24");
}

#[tokio::test]
async fn a_meeting_in_the_repeated_hour_is_matched_not_copied() {
    let bed = SyncBed::start_in_zone("Europe/Madrid").await.unwrap();
    // 31 October 2027, Madrid: 02:00–03:00 happens twice. The CRM keeps only the wall clock;
    // the Outlook copy is the second 02:30 (CET, 01:30 UTC).
    bed.seed_crm("Night shift handover", "2027-10-31", "02:30:00", "03:00:00");
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            outlook_event(
                "Night shift handover",
                "2027-10-31T01:30:00",
                "2027-10-31T02:00:00",
            ),
        )
        .unwrap();
    settle(&bed).await;
    assert_eq!(bed.outlook().len(), 1, "{:?}", bed.outlook_subjects());
    assert_eq!(bed.crm().len(), 1, "{:?}", bed.crm_subjects());
    let outlook = bed.outlook_event("Night shift handover").unwrap();
    assert_eq!(
        &outlook["start"]["dateTime"].as_str().unwrap()[..19],
        "2027-10-31T01:30:00"
    );
}

fn weekly(count: u32, start_date: &str) -> Value {
    json!({
        "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["thursday"]},
        "range": {"type": "numbered", "startDate": start_date, "numberOfOccurrences": count}
    })
}

#[tokio::test]
async fn an_all_day_series_reaches_the_crm_day_by_day() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            json!({
                "subject": "Office day",
                "isAllDay": true,
                "start": {"dateTime": "2026-12-10T00:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-11T00:00:00", "timeZone": "UTC"},
                "recurrence": weekly(3, "2026-12-10"),
            }),
        )
        .unwrap();
    let report = bed.sync().await.unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    settle(&bed).await;
    // Read as the CRM user sees them (whole days in maria's zone).
    let tenant = bed.bed.app.tenants.context(&bed.bed.tenant).await.unwrap();
    let crm = bed.bed.app.runner.crm_for(&tenant).unwrap();
    use calsync::adapters::crm::CrmPort;
    let owner = crm.resolve_user("maria").await.unwrap();
    let mut days = Vec::new();
    for record in bed.crm() {
        let id = calsync::adapters::crm::CrmEventId::new(format!("18x{}", record.crmid));
        let event = crm.get(&owner, &id).await.unwrap().unwrap();
        let calsync_core::event::EventTime::AllDay { start, end } = event.time else {
            panic!("not all day: {event:?}")
        };
        assert_eq!(end, start.tomorrow().unwrap());
        days.push(start.to_string());
    }
    days.sort();
    assert_eq!(days, ["2026-12-10", "2026-12-17", "2026-12-24"]);
}

#[tokio::test]
async fn a_single_event_made_a_series_keeps_its_crm_record() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let id = graph
        .insert_event(
            USER_OID,
            outlook_event("Stand-up", "2026-12-10T09:00:00", "2026-12-10T09:15:00"),
        )
        .unwrap();
    settle(&bed).await;
    assert_eq!(bed.crm().len(), 1);
    let first_record = bed.crm()[0].crmid;
    // maria makes it weekly: the event becomes the series master.
    graph
        .update_event(
            USER_OID,
            &id,
            json!({"recurrence": weekly(3, "2026-12-10")}),
        )
        .unwrap();
    settle(&bed).await;
    let mut crm = bed.crm();
    crm.sort_by_key(|e| e.fields["date_start"].clone());
    let days: Vec<&str> = crm
        .iter()
        .map(|e| e.fields["date_start"].as_str())
        .collect();
    assert_eq!(
        days,
        ["2026-12-10", "2026-12-17", "2026-12-24"],
        "one record per date"
    );
    assert_eq!(
        crm[0].crmid, first_record,
        "the first date keeps the record it had"
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_read_shows_in_status() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed
        .sandbox
        .crm()
        .seed_event(calsync_sandbox::vtiger::SeedEvent {
            owner: calsync_testkit::syncbed::MARIA,
            fields: [
                ("subject", "Broken"),
                ("date_start", "2026-12-15"),
                ("time_start", "25:61:00"),
                ("due_date", "2026-12-15"),
                ("time_end", "10:00:00"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            ..Default::default()
        });
    bed.sync().await.unwrap();
    let record = bed.record().await.unwrap();
    let problem = record
        .problems
        .iter()
        .find(|p| p.code.as_str() == "events_skipped")
        .unwrap_or_else(|| panic!("{:?}", record.problems));
    assert!(problem.detail.contains("time_start"), "{}", problem.detail);
}

#[tokio::test]
async fn a_series_moved_to_another_time_zone_moves_its_crm_records() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let master = graph
        .insert_event(
            USER_OID,
            json!({
                "subject": "Team sync",
                "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "Europe/Madrid"},
                "end": {"dateTime": "2026-12-10T10:30:00", "timeZone": "Europe/Madrid"},
                "recurrence": weekly(3, "2026-12-10"),
            }),
        )
        .unwrap();
    settle(&bed).await;
    let before: Vec<u64> = bed.crm().iter().map(|e| e.crmid).collect();
    assert_eq!(before.len(), 3);
    // The organizer moves the series to London time: the same wall clock, an hour later.
    graph
        .update_event(
            USER_OID,
            &master,
            json!({
                "start": {"dateTime": "2026-12-10T10:00:00", "timeZone": "Europe/London"},
                "end": {"dateTime": "2026-12-10T10:30:00", "timeZone": "Europe/London"},
            }),
        )
        .unwrap();
    settle(&bed).await;
    let after = bed.crm();
    let mut ids: Vec<u64> = after.iter().map(|e| e.crmid).collect();
    ids.sort();
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(ids, expected, "the same records, moved");
    assert!(
        after.iter().all(|e| e.fields["time_start"] == "10:00:00"),
        "10:00 London is 10:00 UTC: {:?}",
        after
            .iter()
            .map(|e| &e.fields["time_start"])
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_tenant_can_require_the_crm_users_own_microsoft_account() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed
        .app
        .tenants
        .update_settings(&bed.bed.tenant, |s| s.require_matching_email = true)
        .await
        .unwrap();
    // maria's CRM e-mail is not the Microsoft account she signs in with.
    let refused = bed.bed.connect().await.unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("maria.garcia@acme.example"),
        "{}",
        refused.body
    );
    assert!(bed
        .bed
        .sandbox
        .crm()
        .set_user_email("maria", "Maria.Garcia@acme.example"));
    let connected = bed.bed.connect().await.unwrap();
    assert_eq!(connected.status, 200, "{}", connected.body);
}
