//! Two-way sync scenarios against the sandbox Graph, the sandbox vtiger and moto: each test
//! changes one or both sides the way a person would, runs sync jobs as the sync function runs
//! them, and checks both calendars and the user's status.

use calsync::runner::RunOutcome;
use calsync_sandbox::vtiger::SeedEvent;
use calsync_tests::syncbed::{SyncBed, MARIA};
use calsync_tests::testbed::USER_OID;
use serde_json::json;

fn seed_crm(bed: &SyncBed, subject: &str, date: &str, start: &str, end: &str) -> String {
    let fields = [
        ("subject", subject),
        ("date_start", date),
        ("time_start", start),
        ("due_date", date),
        ("time_end", end),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    bed.bed.sandbox.crm().seed_event(SeedEvent {
        owner: MARIA,
        fields,
        ..SeedEvent::default()
    })
}

fn outlook_event(subject: &str, start: &str, end: &str) -> serde_json::Value {
    json!({
        "subject": subject,
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
    })
}

#[tokio::test]
async fn creates_flow_both_ways_and_a_second_run_is_quiet() {
    let bed = SyncBed::start().await.unwrap();
    seed_crm(&bed, "Demo for ACME", "2026-12-03", "09:00:00", "10:00:00");
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
            .all(|p| p.code == "notifications_unavailable"),
        "{:?}",
        record.problems
    );
}
