//! Two-way sync scenarios against the sandbox Graph, the sandbox vtiger and moto: each test
//! changes one or both sides the way a person would, runs sync jobs as the sync function runs
//! them, and checks both calendars and the user's status.

use calsync::services::sync_run::RunOutcome;
use calsync_testkit::syncbed::{outlook_event, SyncBed};
use calsync_testkit::testbed::USER_OID;
use serde_json::json;

#[tokio::test]
async fn creates_flow_both_ways_and_a_second_run_is_quiet() {
    let bed = SyncBed::start().await.unwrap();
    bed.seed_crm("Demo for ACME", "2026-12-03", "09:00:00", "10:00:00");
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            outlook_event("Dentist", "2026-12-04T15:00:00", "2026-12-04T16:00:00"),
        )
        .unwrap();

    let first = bed.sync().await.unwrap();
    assert_eq!(first.outcome, RunOutcome::Synced, "{first:?}");
    assert_eq!(bed.outlook_subjects(), ["Demo for ACME", "Dentist"]);
    assert_eq!(bed.crm_subjects(), ["Demo for ACME", "Dentist"]);
    let demo = bed.outlook_event("Demo for ACME").unwrap();
    assert_eq!(
        demo["start"]["dateTime"].as_str().unwrap()[..19],
        *"2026-12-03T09:00:00"
    );
    let dentist = bed.crm_event("Dentist").unwrap();
    assert_eq!(dentist.fields["date_start"], "2026-12-04");
    assert_eq!(dentist.fields["time_start"], "15:00:00");

    // The second run reads the echoes of the first run's writes: they change nothing.
    let second = bed.sync().await.unwrap();
    assert_eq!(second.outcome, RunOutcome::Quiet, "{second:?}");
    assert_eq!(second.counts.writes(), 0);
    let third = bed.sync().await.unwrap();
    assert_eq!(third.outcome, RunOutcome::Quiet, "{third:?}");
    assert_eq!(bed.outlook().len(), 2);
    assert_eq!(bed.crm().len(), 2);
    let record = bed.record().await.unwrap();
    let summary = record.last_sync.unwrap();
    assert!(summary.to_crm_at.is_some() && summary.to_outlook_at.is_some());
    assert_eq!(summary.total_counts.crm_created, 1);
    assert_eq!(summary.total_counts.outlook_created, 1);
    // The bed has no webhook, which is a problem of its own; the sync left none.
    assert!(
        record
            .problems
            .iter()
            .all(|p| p.code.as_str() == "notifications_unavailable"),
        "{:?}",
        record.problems
    );
}

/// Two linked events, "Demo for ACME" (made in the CRM) and "Dentist" (made in Outlook).
async fn linked_pair() -> SyncBed {
    let bed = SyncBed::start().await.unwrap();
    bed.seed_crm("Demo for ACME", "2026-12-03", "09:00:00", "10:00:00");
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            outlook_event("Dentist", "2026-12-04T15:00:00", "2026-12-04T16:00:00"),
        )
        .unwrap();
    settle(&bed).await;
    bed
}

async fn settle(bed: &SyncBed) {
    bed.settle().await.unwrap();
}

fn crm_id(bed: &SyncBed, subject: &str) -> String {
    format!("18x{}", bed.crm_event(subject).unwrap().crmid)
}

fn outlook_id(bed: &SyncBed, subject: &str) -> String {
    bed.outlook_event(subject).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn updates_and_deletions_flow_both_ways() {
    let bed = linked_pair().await;
    let graph = bed.bed.sandbox.graph();
    let crm = bed.bed.sandbox.crm();

    assert!(crm.ui_edit(
        &crm_id(&bed, "Demo for ACME"),
        &[("subject", "Demo for ACME (v2)"), ("location", "Sala 3")]
    ));
    graph
        .update_event(
            USER_OID,
            &outlook_id(&bed, "Dentist"),
            json!({"location": {"displayName": "Calle Mayor 1"}}),
        )
        .unwrap();
    let report = bed.sync().await.unwrap();
    assert_eq!(report.counts.outlook_updated, 1, "{report:?}");
    assert_eq!(report.counts.crm_updated, 1, "{report:?}");
    let demo = bed.outlook_event("Demo for ACME (v2)").unwrap();
    assert_eq!(demo["location"]["displayName"], "Sala 3");
    assert_eq!(
        bed.crm_event("Dentist").unwrap().fields["location"],
        "Calle Mayor 1"
    );
    settle(&bed).await;

    assert!(crm.ui_delete(&crm_id(&bed, "Demo for ACME (v2)")));
    graph
        .delete_event(USER_OID, &outlook_id(&bed, "Dentist"))
        .unwrap();
    let report = bed.sync().await.unwrap();
    assert_eq!(report.counts.outlook_deleted, 1, "{report:?}");
    assert_eq!(report.counts.crm_deleted, 1, "{report:?}");
    assert!(bed.outlook().is_empty(), "{:?}", bed.outlook_subjects());
    assert!(bed.crm().is_empty(), "{:?}", bed.crm_subjects());
    settle(&bed).await;
    assert_eq!(graph.counters(USER_OID).invitations_sent, 0);
}

#[tokio::test]
async fn different_fields_edited_on_both_sides_are_merged() {
    let bed = linked_pair().await;
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&crm_id(&bed, "Dentist"), &[("location", "Clínica Sol")]));
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            &outlook_id(&bed, "Dentist"),
            json!({"subject": "Dentist (check-up)"}),
        )
        .unwrap();
    bed.sync().await.unwrap();
    let outlook = bed.outlook_event("Dentist (check-up)").unwrap();
    assert_eq!(outlook["location"]["displayName"], "Clínica Sol");
    let crm = bed.crm_event("Dentist (check-up)").unwrap();
    assert_eq!(crm.fields["location"], "Clínica Sol");
    let journal = calsync::services::sync_run::LinkStore::new(
        bed.bed.app.store.as_ref(),
        &bed.bed.tenant,
        &bed.bed.user,
    )
    .journal()
    .await
    .unwrap();
    assert!(journal.is_empty(), "a merge is not a conflict: {journal:?}");
    settle(&bed).await;
}

#[tokio::test]
async fn the_same_field_edited_on_both_sides_follows_the_policy_and_is_journalled() {
    let bed = linked_pair().await;
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&crm_id(&bed, "Dentist"), &[("subject", "Dentist (CRM)")]));
    // Outlook's edit is the later one; the default policy is `latest`.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            &outlook_id(&bed, "Dentist"),
            json!({"subject": "Dentist (Outlook)"}),
        )
        .unwrap();
    bed.sync().await.unwrap();
    assert!(
        bed.crm_event("Dentist (Outlook)").is_ok(),
        "{:?}",
        bed.crm_subjects()
    );
    assert!(
        bed.outlook_event("Dentist (Outlook)").is_ok(),
        "{:?}",
        bed.outlook_subjects()
    );
    let journal = calsync::services::sync_run::LinkStore::new(
        bed.bed.app.store.as_ref(),
        &bed.bed.tenant,
        &bed.bed.user,
    )
    .journal()
    .await
    .unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    let entry = &journal[0].conflict;
    assert_eq!(entry.field, Some(calsync_core::event::EventField::Subject));
    assert_eq!(entry.winner, calsync_core::sync::Side::Outlook);
    assert_eq!(entry.crm_value, Some(json!("Dentist (CRM)")));
    settle(&bed).await;
}

#[tokio::test]
async fn an_all_day_event_stays_whole_days_on_both_sides() {
    let bed = SyncBed::start().await.unwrap();
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            json!({
                "subject": "Holiday",
                "isAllDay": true,
                "start": {"dateTime": "2026-12-08T00:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-09T00:00:00", "timeZone": "UTC"},
            }),
        )
        .unwrap();
    settle(&bed).await;
    let tenant = bed.bed.app.tenants.context(&bed.bed.tenant).await.unwrap();
    let crm = bed.bed.app.runner.crm_for(&tenant).unwrap();
    use calsync::adapters::crm::CrmPort;
    let owner = crm.resolve_user("maria").await.unwrap();
    let id = calsync::adapters::crm::CrmEventId::new(crm_id(&bed, "Holiday"));
    let stored = crm.get(&owner, &id).await.unwrap().unwrap();
    assert_eq!(
        stored.time,
        calsync_core::event::EventTime::AllDay {
            start: "2026-12-08".parse().unwrap(),
            end: "2026-12-09".parse().unwrap(),
        }
    );
    // A CRM edit of the subject comes back to Outlook without touching the days.
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(id.as_str(), &[("subject", "Holiday (Inmaculada)")]));
    bed.sync().await.unwrap();
    let outlook = bed.outlook_event("Holiday (Inmaculada)").unwrap();
    assert_eq!(outlook["isAllDay"], true);
    assert_eq!(
        outlook["start"]["dateTime"].as_str().unwrap()[..10],
        *"2026-12-08"
    );
    assert_eq!(
        outlook["end"]["dateTime"].as_str().unwrap()[..10],
        *"2026-12-09"
    );
    settle(&bed).await;
}

#[tokio::test]
async fn a_madrid_meeting_keeps_its_wall_clock_time_across_the_october_change() {
    let bed = SyncBed::start_in_zone("Europe/Madrid").await.unwrap();
    // The window reaches 30 days back; move the meetings next year's October.
    bed.seed_crm("Before the change", "2027-10-29", "10:00:00", "11:00:00");
    bed.seed_crm("After the change", "2027-11-02", "10:00:00", "11:00:00");
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            USER_OID,
            json!({
                "subject": "Made in Outlook",
                "start": {"dateTime": "2027-11-01T10:00:00", "timeZone": "Romance Standard Time"},
                "end": {"dateTime": "2027-11-01T11:00:00", "timeZone": "Romance Standard Time"},
            }),
        )
        .unwrap();
    settle(&bed).await;
    // 10:00 in Madrid is 08:00 UTC in summer time and 09:00 UTC after 31 October 2027.
    let before = bed.outlook_event("Before the change").unwrap();
    assert_eq!(
        before["start"]["dateTime"].as_str().unwrap()[..19],
        *"2027-10-29T08:00:00"
    );
    let after = bed.outlook_event("After the change").unwrap();
    assert_eq!(
        after["start"]["dateTime"].as_str().unwrap()[..19],
        *"2027-11-02T09:00:00"
    );
    let made = bed.crm_event("Made in Outlook").unwrap();
    assert_eq!(
        (
            made.fields["date_start"].as_str(),
            made.fields["time_start"].as_str()
        ),
        ("2027-11-01", "10:00:00")
    );
    assert_eq!(made.fields["time_end"], "11:00:00");
}

#[tokio::test]
async fn an_outlook_series_with_an_exception_and_a_cancelled_occurrence() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let master = graph
        .insert_event(
            USER_OID,
            json!({
                "subject": "Weekly sync",
                "start": {"dateTime": "2026-12-07T10:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-07T10:30:00", "timeZone": "UTC"},
                "recurrence": {
                    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"]},
                    "range": {"type": "numbered", "startDate": "2026-12-07", "numberOfOccurrences": 4}
                }
            }),
        )
        .unwrap();
    let occurrences = graph.occurrence_ids(
        USER_OID,
        &master,
        "2026-12-01T00:00:00Z".parse().unwrap(),
        "2027-01-15T00:00:00Z".parse().unwrap(),
    );
    assert_eq!(occurrences.len(), 4);
    graph
        .update_event(USER_OID, &occurrences[1], json!({"subject": "Weekly sync (moved)", "start": {"dateTime": "2026-12-15T11:00:00", "timeZone": "UTC"}, "end": {"dateTime": "2026-12-15T11:30:00", "timeZone": "UTC"}}))
        .unwrap();
    graph.delete_event(USER_OID, &occurrences[2]).unwrap();
    settle(&bed).await;

    let mut starts: Vec<(String, String)> = bed
        .crm()
        .iter()
        .map(|e| (e.fields["date_start"].clone(), e.fields["subject"].clone()))
        .collect();
    starts.sort();
    assert_eq!(
        starts,
        [
            ("2026-12-07".to_owned(), "Weekly sync".to_owned()),
            ("2026-12-15".to_owned(), "Weekly sync (moved)".to_owned()),
            ("2026-12-28".to_owned(), "Weekly sync".to_owned()),
        ]
    );
    let moved = bed.crm_event("Weekly sync (moved)").unwrap();
    assert_eq!(moved.fields["time_start"], "11:00:00");

    // A CRM edit of one occurrence patches that occurrence, never the series.
    let last = bed
        .crm()
        .into_iter()
        .find(|e| e.fields["date_start"] == "2026-12-28")
        .unwrap();
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&format!("18x{}", last.crmid), &[("location", "Sala 4")]));
    bed.sync().await.unwrap();
    let patched = graph.event(USER_OID, &occurrences[3]).unwrap();
    assert_eq!(patched["location"]["displayName"], "Sala 4");
    let first = graph.event(USER_OID, &occurrences[0]).unwrap();
    assert_ne!(first["location"]["displayName"], "Sala 4");
    assert_eq!(
        graph.event(USER_OID, &master).unwrap()["subject"],
        "Weekly sync"
    );
    settle(&bed).await;

    // Cancelling another occurrence deletes its CRM copy only. Delta says nothing about it;
    // the runner's periodic listing of linked series finds it (made due here).
    graph.delete_event(USER_OID, &occurrences[0]).unwrap();
    calsync_testkit::testbed::edit_user(&bed.bed.app, &bed.bed.tenant, &bed.bed.user, |r| {
        if let Some(state) = &mut r.progress {
            state.series_checked_at = Some(0);
        }
    })
    .await
    .unwrap();
    bed.sync().await.unwrap();
    assert_eq!(bed.crm().len(), 2, "{:?}", bed.crm_subjects());
}

#[tokio::test]
async fn a_first_sync_over_the_same_events_on_both_sides_links_them() {
    let bed = SyncBed::start().await.unwrap();
    for (subject, day) in [
        ("Board meeting", "2026-12-10"),
        ("Call with Pedro", "2026-12-11"),
    ] {
        bed.seed_crm(subject, day, "09:00:00", "10:00:00");
        bed.bed
            .sandbox
            .graph()
            .insert_event(
                USER_OID,
                outlook_event(
                    subject,
                    &format!("{day}T09:00:00"),
                    &format!("{day}T10:00:00"),
                ),
            )
            .unwrap();
    }
    settle(&bed).await;
    assert_eq!(bed.crm_subjects(), ["Board meeting", "Call with Pedro"]);
    assert_eq!(bed.outlook_subjects(), ["Board meeting", "Call with Pedro"]);
    assert_eq!(
        bed.bed.sandbox.graph().counters(USER_OID).creates,
        2,
        "only the two the user made"
    );
    // Linked, not merely left alone: an edit on one side reaches the other.
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&crm_id(&bed, "Board meeting"), &[("location", "Sala 1")]));
    bed.sync().await.unwrap();
    assert_eq!(
        bed.outlook_event("Board meeting").unwrap()["location"]["displayName"],
        "Sala 1"
    );
}

#[tokio::test]
async fn a_lost_delta_token_means_a_full_resync_without_duplicates() {
    let bed = linked_pair().await;
    let graph = bed.bed.sandbox.graph();
    graph
        .insert_event(
            USER_OID,
            outlook_event(
                "Made meanwhile",
                "2026-12-05T08:00:00",
                "2026-12-05T09:00:00",
            ),
        )
        .unwrap();
    graph
        .delete_event(USER_OID, &outlook_id(&bed, "Dentist"))
        .unwrap();
    graph.expire_delta_tokens(USER_OID, calsync_sandbox::graph::DeltaExpiry::Gone);
    let report = bed.sync().await.unwrap();
    assert!(report.outlook_full, "{report:?}");
    assert_eq!(bed.crm_subjects(), ["Demo for ACME", "Made meanwhile"]);
    assert_eq!(bed.outlook_subjects(), ["Demo for ACME", "Made meanwhile"]);
    settle(&bed).await;
    assert_eq!(bed.crm().len(), 2);
}

#[tokio::test]
async fn a_run_that_would_delete_fifty_events_deletes_nothing_until_confirmed() {
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
    assert_eq!(bed.outlook().len(), 60);
    let graph = bed.bed.sandbox.graph();
    for event in bed.outlook().iter().take(50) {
        graph
            .delete_event(USER_OID, event["id"].as_str().unwrap())
            .unwrap();
    }
    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::GuardTripped, "{report:?}");
    assert_eq!(bed.crm().len(), 60, "nothing deleted");
    let record = bed.record().await.unwrap();
    let problem = record
        .problems
        .iter()
        .find(|p| p.code.as_str() == "deletion_guard")
        .unwrap();
    assert!(problem.detail.contains("50 events"), "{}", problem.detail);
    assert!(
        problem.detail.contains("--confirm-deletions"),
        "{}",
        problem.detail
    );
    // The same deletions come back next run, still held.
    assert_eq!(bed.sync().await.unwrap().outcome, RunOutcome::GuardTripped);

    assert_eq!(bed.record().await.unwrap().held_deletions.len(), 50);
    assert_eq!(bed.confirm_deletions().await.unwrap(), 50);
    let confirmed = bed.sync().await.unwrap();
    assert_eq!(confirmed.counts.crm_deleted, 50, "{confirmed:?}");
    assert_eq!(bed.crm().len(), 10);
    let record = bed.record().await.unwrap();
    assert!(record
        .problems
        .iter()
        .all(|p| p.code.as_str() != "deletion_guard"));
    assert!(record.held_deletions.is_empty() && record.confirmed_deletions.is_empty());
}

#[tokio::test]
async fn a_revoked_token_asks_the_user_to_reconnect_without_a_retry_storm() {
    let bed = linked_pair().await;
    let identity = bed.bed.sandbox.identity();
    identity.revoke_user(USER_OID).unwrap();
    // Graph refuses the access token the run holds (continuous access evaluation), so the
    // run must refresh.
    identity.revoke_access_tokens(USER_OID);
    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::ReconnectRequired);
    let record = bed.record().await.unwrap();
    assert_eq!(
        record.status,
        calsync::services::users::UserStatus::ReconnectRequired
    );
    assert!(record
        .problems
        .iter()
        .any(|p| p.code.as_str() == "reconnect_required"));

    let asked = identity.token_request_counts().total();
    for _ in 0..3 {
        assert_eq!(
            bed.sync().await.unwrap().outcome,
            RunOutcome::ReconnectRequired
        );
    }
    assert_eq!(
        identity.token_request_counts().total(),
        asked,
        "no more token requests"
    );
    // Nor does the scheduler queue the user any more.
    let report = calsync::entry::dispatch::dispatch(&bed.bed.app, Some(&bed.bed.tenant))
        .await
        .unwrap();
    assert_eq!(report.jobs_queued, 0);
}

/// The CLI against the bed: whether it exited 0, and what it printed.
async fn cli(bed: &SyncBed, args: &[&str]) -> (bool, String) {
    let (code, out) = bed.cli(args).await.unwrap();
    (code == Some(0), out)
}

#[tokio::test]
async fn resync_dry_run_prints_the_plan_and_changes_nothing() {
    let bed = linked_pair().await;
    let tenant = bed.bed.tenant.to_string();
    bed.seed_crm("Quarterly review", "2026-12-16", "12:00:00", "13:00:00");
    let (ok, out) = cli(
        &bed,
        &[
            "resync",
            "--tenant",
            &tenant,
            "--user",
            "maria",
            "--dry-run",
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("create in Outlook: \"Quarterly review\""),
        "{out}"
    );
    assert_eq!(bed.outlook().len(), 2, "a dry run writes nothing");

    // On AWS a resync queues a job for the sync function.
    let (ok, out) = cli(
        &bed,
        &["resync", "--tenant", &tenant, "--user", "maria", "--full"],
    )
    .await;
    assert!(ok, "{out}");
    let jobs = bed.bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].1["reason"], "manual");
    assert_eq!(jobs[0].1["full"], true);

    // --now syncs in the CLI itself; status then shows the sync's health.
    let (ok, out) = cli(
        &bed,
        &["resync", "--tenant", &tenant, "--user", "maria", "--now"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("1 created"), "{out}");
    assert!(bed.outlook_event("Quarterly review").is_ok());
    let (code, out) = bed
        .cli(&["status", "--tenant", &tenant, "--user", "maria"])
        .await
        .unwrap();
    assert_eq!(
        code,
        Some(2),
        "notifications_unavailable on this bed: {out}"
    );
    assert!(out.contains("linked events: 3"), "{out}");
}

#[tokio::test]
async fn faults_in_mid_run_end_in_the_same_calendars_without_duplicates() {
    use calsync_sandbox::graph::{FaultRate, FaultRoute, FaultRule, GraphFault};
    use calsync_sandbox::vtiger::Fault;
    let bed = linked_pair().await;
    let graph = bed.bed.sandbox.graph();
    let crm = bed.bed.sandbox.crm();
    for n in 0..3 {
        bed.seed_crm(
            &format!("CRM call {n}"),
            "2026-12-17",
            &format!("{:02}:00:00", n + 8),
            &format!("{:02}:30:00", n + 8),
        );
        graph
            .insert_event(
                USER_OID,
                outlook_event(
                    &format!("Outlook slot {n}"),
                    &format!("2026-12-18T{:02}:00:00", n + 8),
                    &format!("2026-12-18T{:02}:30:00", n + 8),
                ),
            )
            .unwrap();
    }
    // Graph refuses writes for a while (503, then 429); the CRM answers one create too late
    // (the record is made, the answer lost) and fails another with a PHP fatal error.
    graph.add_fault(FaultRule::new(
        FaultRoute::EventWrites,
        GraphFault::Unavailable {
            retry_after: Some(0),
        },
        FaultRate::Next(2),
    ));
    graph.add_fault(FaultRule::new(
        FaultRoute::EventWrites,
        GraphFault::Throttle {
            retry_after: Some(0),
        },
        FaultRate::Next(1),
    ));
    crm.inject(
        "create",
        Fault::Delay(std::time::Duration::from_secs(3)),
        Some(1),
    );
    crm.inject("create", Fault::Fatal, Some(1));
    let first = bed.sync().await.unwrap();
    eprintln!("first run under faults: {first:?}");
    assert_eq!(first.outcome, RunOutcome::Partial, "{first:?}");
    graph.clear_faults();
    crm.clear_faults();
    // A redelivered job runs again from the same cursors.
    let _ = bed.sync().await.unwrap();
    settle(&bed).await;
    let expected = [
        "CRM call 0",
        "CRM call 1",
        "CRM call 2",
        "Demo for ACME",
        "Dentist",
        "Outlook slot 0",
        "Outlook slot 1",
        "Outlook slot 2",
    ];
    assert_eq!(bed.crm_subjects(), expected, "first run: {first:?}");
    assert_eq!(bed.outlook_subjects(), expected, "first run: {first:?}");
    assert_eq!(graph.counters(USER_OID).invitations_sent, 0);
}

#[tokio::test]
async fn a_run_out_of_time_leaves_the_rest_to_a_follow_up_job() {
    let bed = SyncBed::start().await.unwrap();
    for n in 0..5 {
        bed.seed_crm(&format!("Visit {n}"), "2026-12-21", "09:00:00", "09:30:00");
    }
    // The invocation is already at its end: the run reads and plans, but starts no write.
    let job = bed.job(false);
    let report =
        calsync::entry::jobs::run_job_until(&bed.bed.app, &job, Some(std::time::Instant::now()))
            .await
            .unwrap();
    assert_eq!(report.outcome, RunOutcome::Partial, "{report:?}");
    assert_eq!(report.postponed, 5);
    assert!(bed.outlook().is_empty());
    let queued = bed.bed.take_jobs().await.unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].1["reason"], "continue");
    // The follow-up job does the rest.
    let follow_up: calsync::adapters::queue::SyncJob =
        serde_json::from_value(queued[0].1.clone()).unwrap();
    let report = bed.run(follow_up).await.unwrap();
    assert_eq!(report.counts.outlook_created, 5, "{report:?}");
    settle(&bed).await;
    assert_eq!(bed.outlook().len(), 5);
}

#[tokio::test]
async fn removing_a_tenant_leaves_nothing_of_it() {
    let bed = linked_pair().await;
    // A conflict, so there is a journal entry too.
    let crm = bed.bed.sandbox.crm();
    assert!(crm.ui_edit(&crm_id(&bed, "Demo for ACME"), &[("location", "Sala 1")]));
    bed.bed
        .sandbox
        .graph()
        .update_event(
            USER_OID,
            &outlook_id(&bed, "Demo for ACME"),
            json!({"location": {"displayName": "Sala 2"}}),
        )
        .unwrap();
    settle(&bed).await;
    let tenant = bed.bed.tenant.clone();
    assert!(bed
        .bed
        .snapshot()
        .await
        .unwrap()
        .iter()
        .any(|r| r.contains(&format!("SYNC#{tenant}"))));
    assert!(bed.bed.app.remove_tenant(&tenant).await.unwrap());
    let rows = bed.bed.snapshot().await.unwrap();
    assert!(
        !rows.iter().any(|r| r.contains(tenant.as_str())),
        "nothing of the tenant is left: {rows:#?}"
    );
}

#[tokio::test]
async fn a_nudge_brings_a_crm_deletion_at_once_even_when_the_feed_is_blind() {
    let bed = SyncBed::start().await.unwrap();
    // Stock vtiger 8 on PHP 8: `sync` fails, so the CRM feed cannot see deletions.
    bed.bed.sandbox.crm().set_php8_stock(true);
    bed.seed_crm("Kept", "2026-12-10", "09:00:00", "10:00:00");
    let gone = bed.seed_crm("Cancelled", "2026-12-11", "09:00:00", "10:00:00");
    settle(&bed).await;
    assert_eq!(bed.outlook().len(), 2);
    assert!(bed.bed.sandbox.crm().ui_delete(&gone));
    // The scheduled sweep would not see it for a while (it reconciles every 30 minutes).
    let mut scheduled = bed.job(false);
    scheduled.reason = calsync::adapters::queue::JobReason::Schedule;
    bed.run(scheduled).await.unwrap();
    assert_eq!(bed.outlook_subjects(), ["Cancelled", "Kept"]);
    // The module's nudge after the delete does.
    let mut nudged = bed.job(false);
    nudged.reason = calsync::adapters::queue::JobReason::Nudge;
    bed.run(nudged).await.unwrap();
    assert_eq!(bed.outlook_subjects(), ["Kept"]);
}

/// A scheduled run looks before it runs: with nothing new on either side it writes nothing at
/// all (the user's item keeps its version); news on either side makes it a run that syncs it.
#[tokio::test]
async fn a_quiet_scheduled_run_only_looks_shows_as_fresh_and_syncs_what_it_finds() {
    use calsync::adapters::queue::{JobReason, SyncJob};
    let bed = linked_pair().await;
    let scheduled = || SyncJob {
        reason: JobReason::Schedule,
        ..bed.job(false)
    };
    async fn version(bed: &SyncBed) -> u64 {
        bed.bed.stored_user().await.unwrap().version
    }
    let before = version(&bed).await;
    let recorded = bed.bed.stored_user().await.unwrap().record;
    let synced_at = recorded
        .last_sync
        .as_ref()
        .and_then(|s| s.to_crm_at)
        .unwrap();
    // A second on, so the look's moment differs from the recorded run's.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let report = bed.run(scheduled()).await.unwrap();
    assert!(report.looked_only, "{report:?}");
    assert_eq!(
        version(&bed).await,
        before,
        "a look leaves the user's item alone"
    );
    // Status shows the quiet look as the moment both sides were last known in sync.
    let users = &bed.bed.app.users;
    let (tenant, user) = (&bed.bed.tenant, &bed.bed.user);
    let shown = users.get_for_status(tenant, user).await.unwrap().unwrap();
    let shown = shown.last_sync.unwrap();
    let looked_at = shown.to_crm_at.unwrap();
    assert!(looked_at > synced_at, "{looked_at} > {synced_at}");
    assert_eq!(shown.to_outlook_at, Some(looked_at));
    assert_eq!(shown.last_success_at, Some(looked_at));
    assert_eq!(
        shown.last_run_at,
        recorded.last_sync.as_ref().unwrap().last_run_at,
        "the last recorded run stays what it was"
    );
    let listed = users.list_for_status(tenant).await.unwrap();
    assert_eq!(
        listed[0].last_sync.as_ref().unwrap().to_crm_at,
        Some(looked_at)
    );

    // An Outlook edit that no notification announced (this bed has no webhook).
    let dentist = outlook_id(&bed, "Dentist");
    bed.bed
        .sandbox
        .graph()
        .update_event(USER_OID, &dentist, json!({"subject": "Dentist (moved)"}))
        .unwrap();
    let report = bed.run(scheduled()).await.unwrap();
    assert!(!report.looked_only, "{report:?}");
    assert_eq!(report.counts.crm_updated, 1, "{report:?}");
    bed.crm_event("Dentist (moved)").unwrap();

    // A CRM edit that no nudge announced.
    let demo = crm_id(&bed, "Demo for ACME");
    assert!(bed
        .bed
        .sandbox
        .crm()
        .ui_edit(&demo, &[("subject", "Demo for ACME (moved)")]));
    let mut written = 0;
    for _ in 0..3 {
        let report = bed.run(scheduled()).await.unwrap();
        written += report.counts.outlook_updated;
        if report.looked_only {
            break;
        }
    }
    assert_eq!(written, 1);
    bed.outlook_event("Demo for ACME (moved)").unwrap();
    // Once the echoes are read, looks find nothing again.
    let settled = version(&bed).await;
    assert!(bed.run(scheduled()).await.unwrap().looked_only);
    assert_eq!(version(&bed).await, settled);
}
