//! A first sync writes many events at once (docs/design.md §3, "Pipelined execution"): Graph
//! never sees more than four requests of one mailbox in flight, the CRM never more sessions
//! than the tenant's cap, and the bookkeeping of many events shares few DynamoDB requests.
//! Counted by the sandbox and by an interceptor on the App's DynamoDB client, not timed.

use std::time::Duration;

use calsync::services::sync_run::RunOutcome;
use calsync_sandbox::graph::{FaultRate, FaultRoute, FaultRule, GraphFault};
use calsync_testkit::moto::{aws_config, counted_dynamodb};
use calsync_testkit::syncbed::{outlook_event, SyncBed};
use calsync_testkit::testbed::{BedOptions, USER_OID};

/// `n` Outlook events and `n` CRM events of maria's, none on the other side yet.
fn seed_both_sides(bed: &SyncBed, n: usize) {
    let graph = bed.bed.sandbox.graph();
    for i in 0..n {
        let day = 1 + i % 28;
        let hour = 8 + (i / 28) % 10;
        graph
            .insert_event(
                USER_OID,
                outlook_event(
                    &format!("Outlook visit {i}"),
                    &format!("2027-01-{day:02}T{hour:02}:00:00"),
                    &format!("2027-01-{day:02}T{hour:02}:30:00"),
                ),
            )
            .unwrap();
        bed.seed_crm(
            &format!("CRM call {i}"),
            &format!("2027-02-{day:02}"),
            &format!("{hour:02}:00:00"),
            &format!("{hour:02}:30:00"),
        );
    }
}

#[tokio::test]
async fn a_first_sync_keeps_each_side_within_its_limits() {
    let bed = SyncBed::start().await.unwrap();
    let graph = bed.bed.sandbox.graph();
    let crm = bed.bed.sandbox.crm();
    // Nothing refuses a request beyond the limits here: what calsync sends is what is counted.
    graph.set_mailbox_concurrency_limit(None);
    graph.add_fault(FaultRule::new(
        FaultRoute::EventWrites,
        GraphFault::Slow(Duration::from_millis(25)),
        FaultRate::Always,
    ));
    crm.set_operation_latency("create", Duration::from_millis(25));
    bed.bed
        .app
        .tenants
        .update_settings(&bed.bed.tenant, |settings| settings.crm_sessions = 3)
        .await
        .unwrap();
    seed_both_sides(&bed, 60);
    graph.reset_peak_in_flight();
    crm.reset_peak_sessions_busy();

    let report = bed.sync().await.unwrap();
    assert_eq!(report.outcome, RunOutcome::Synced, "{report:?}");
    assert_eq!(
        (report.counts.crm_created, report.counts.outlook_created),
        (60, 60)
    );
    let graph_peak = graph.peak_in_flight(USER_OID);
    let crm_peak = crm.peak_sessions_busy();
    eprintln!("Graph in flight at most {graph_peak}, CRM sessions serving at most {crm_peak}");
    assert!(
        (2..=4).contains(&graph_peak),
        "Graph requests in flight for the mailbox: {graph_peak}"
    );
    assert!(
        (2..=3).contains(&crm_peak),
        "CRM sessions serving at once: {crm_peak}"
    );
    assert!(
        crm.session_count() <= 3,
        "{} CRM sessions open",
        crm.session_count()
    );
    bed.settle().await.unwrap();
    assert_eq!(bed.crm_subjects().len(), 120);
    assert_eq!(bed.outlook().len(), 120);
}

#[tokio::test]
async fn a_first_sync_shares_its_bookkeeping() {
    let sdk = aws_config().await.unwrap();
    let (dynamodb, count) = counted_dynamodb(&sdk);
    let bed = SyncBed::start_with(
        "UTC",
        BedOptions {
            dynamodb: Some(dynamodb),
            ..BedOptions::default()
        },
    )
    .await
    .unwrap();
    let graph = bed.bed.sandbox.graph();
    for i in 0..300 {
        let day = 1 + i % 28;
        let hour = 8 + (i / 28) % 10;
        graph
            .insert_event(
                USER_OID,
                outlook_event(
                    &format!("Visit {i}"),
                    &format!("2027-01-{day:02}T{hour:02}:00:00"),
                    &format!("2027-01-{day:02}T{hour:02}:30:00"),
                ),
            )
            .unwrap();
    }
    let before = count.get();
    let report = bed.sync().await.unwrap();
    let requests = count.get() - before;
    assert_eq!(report.outcome, RunOutcome::Synced, "{report:?}");
    assert_eq!(report.counts.crm_created, 300);
    eprintln!("{requests} DynamoDB requests for 300 events");
    // Each event's intent and link, written one by one, would be 600 requests.
    assert!(
        requests <= 60,
        "{requests} DynamoDB requests for 300 events: more than 0.2 each"
    );
}
