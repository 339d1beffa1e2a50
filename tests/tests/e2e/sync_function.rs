//! The real `calsync-sync` binary, through the Runtime API stand-in: a dispatch round queues a
//! job for each connected user who is due, and no one else.

use calsync::adapters::store::now_epoch;
use calsync::services::users::{SyncSummary, UserStatus};
use calsync_testkit::testbed::edit_user;
use calsync_testkit::testbed::TestBed;
use calsync_testkit::{binary_path, FunctionProcess};
use serde_json::json;

/// The sync function's binary, set up for `bed`.
async fn sync_binary(bed: &TestBed) -> FunctionProcess {
    FunctionProcess::spawn(&binary_path("calsync-sync"), "calsync-sync", &bed.env())
        .await
        .unwrap()
}

/// One dispatch round of `bed`'s tenant through the binary; its answer.
async fn dispatch_round(function: &FunctionProcess, bed: &TestBed) -> serde_json::Value {
    function
        .invoke(json!({"action": "dispatch", "tenant": bed.tenant.as_str()}))
        .await
        .unwrap()
        .into_ok()
        .unwrap()
}

#[tokio::test]
async fn a_dispatch_round_queues_the_due_users() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap(); // the initial sync job from connecting

    // Three more users: one synced a minute ago, one disconnected, one reconnect-required.
    for (name, status, last_run) in [
        ("recent", UserStatus::Connected, Some(now_epoch() - 60)),
        ("gone", UserStatus::Disconnected, None),
        ("stale", UserStatus::ReconnectRequired, None),
    ] {
        let mut record = bed.stored_user().await.unwrap().record;
        record.user = calsync_core::ids::CrmUserName::parse(name).unwrap();
        record.status = status;
        record.last_sync = Some(SyncSummary {
            last_run_at: last_run,
            ..SyncSummary::default()
        });
        calsync_testkit::testbed::put_user(&bed.app, &record)
            .await
            .unwrap();
    }
    // maria last ran an hour ago: due with the default 15-minute interval.
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.last_sync = Some(SyncSummary {
            last_run_at: Some(now_epoch() - 3600),
            ..SyncSummary::default()
        })
    })
    .await
    .unwrap();

    let function = sync_binary(&bed).await;
    let answer = dispatch_round(&function, &bed).await;
    assert_eq!(answer["jobs_queued"], 1, "{answer}");
    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(
        jobs,
        vec![(
            format!("{}#maria", bed.tenant),
            json!({"tenant": bed.tenant, "user": "maria", "reason": "schedule", "full": false})
        )]
    );

    // A malformed event is an error, not a silent success.
    let refused = function.invoke(json!({"action": "explode"})).await.unwrap();
    assert!(
        matches!(refused, calsync_testkit::Invocation::FunctionError { .. }),
        "{refused:?}"
    );
}

/// An SQS batch through the real binary: maria syncs, a user the CRM does not know fails, and
/// only that message comes back in `batchItemFailures`.
#[tokio::test]
async fn an_sqs_batch_returns_exactly_the_failed_user() {
    let bed = calsync_testkit::syncbed::SyncBed::start().await.unwrap();
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            calsync_testkit::testbed::USER_OID,
            json!({
                "subject": "Kick-off",
                "start": {"dateTime": "2026-12-09T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-09T10:00:00", "timeZone": "UTC"},
            }),
        )
        .unwrap();
    // "ghost" is connected with credentials that are not its own (sealed for maria), so its
    // run cannot start.
    let mut ghost = bed
        .bed
        .app
        .users
        .get(&bed.bed.tenant, &bed.bed.user)
        .await
        .unwrap()
        .unwrap()
        .record;
    ghost.user = calsync_core::ids::CrmUserName::parse("ghost").unwrap();
    ghost.progress = None;
    calsync_testkit::testbed::put_user(&bed.bed.app, &ghost)
        .await
        .unwrap();
    let body = |user: &str| {
        json!({"tenant": bed.bed.tenant, "user": user, "reason": "notification", "full": false})
            .to_string()
    };
    let (maria, ghost_body) = (body("maria"), body("ghost"));
    let maria_group = format!("{}#maria", bed.bed.tenant);
    let ghost_group = format!("{}#ghost", bed.bed.tenant);
    // ghost's second job must not overtake its first: it goes back with it.
    let event = calsync_testkit::events::sqs_fifo_event(&[
        (&maria, &maria_group, "m-1"),
        (&ghost_body, &ghost_group, "m-2"),
        (&ghost_body, &ghost_group, "m-3"),
    ]);

    // Metrics by tenant as well as fleet-wide, as a deployment may ask.
    let mut env = bed.bed.env();
    env.push(("CALSYNC_METRICS_BY_TENANT".into(), "true".into()));
    let function = FunctionProcess::spawn(&binary_path("calsync-sync"), "calsync-sync", &env)
        .await
        .unwrap();
    let answer = function.invoke(event).await.unwrap().into_ok().unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-3"}]})
    );
    assert_eq!(bed.crm_subjects(), ["Kick-off"], "maria was synced");
    // Each job that ran left one metric document on stdout, by tenant, never by user.
    let documents: Vec<serde_json::Value> = function
        .logs()
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
        .collect();
    assert_eq!(documents.len(), 2, "maria's and ghost's first job");
    for doc in &documents {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "calsync");
        assert_eq!(directive["Dimensions"], json!([["Tenant"], []]));
        assert_eq!(doc["Tenant"], bed.bed.tenant.as_str());
        assert!(!doc.to_string().contains("maria") && !doc.to_string().contains("ghost"));
    }
    let crm_writes: Vec<u64> = documents
        .iter()
        .map(|d| d["CrmWrites"].as_u64().unwrap())
        .collect();
    assert!(crm_writes.contains(&1), "maria's create: {crm_writes:?}");
    assert_eq!(
        documents
            .iter()
            .map(|d| d["JobFailures"].as_u64().unwrap())
            .sum::<u64>(),
        1,
        "ghost's job failed"
    );
    let ghost = bed
        .bed
        .app
        .users
        .get(
            &bed.bed.tenant,
            &calsync_core::ids::CrmUserName::parse("ghost").unwrap(),
        )
        .await
        .unwrap()
        .unwrap()
        .record;
    assert!(
        ghost
            .problems
            .iter()
            .any(|p| p.code.as_str() == "sync_failed"),
        "{:?}",
        ghost.problems
    );
}

/// Two users' jobs in one batch: maria's Outlook answers slowly (her delta request hangs for
/// seconds), pedro's does not. The jobs of a batch run side by side, so pedro's job does not
/// wait for maria's.
#[tokio::test]
async fn a_slow_user_in_a_batch_does_not_hold_up_the_others() {
    use calsync_sandbox::graph::{FaultRate, FaultRoute, FaultRule, GraphFault};
    let bed = calsync_testkit::syncbed::SyncBed::start().await.unwrap();
    let (pedro_oid, pedro_email) = ("5c6d7e8f-1a2b-4c3d-8e9f-0a1b2c3d4e5f", "pedro@acme.example");
    let identity = bed.bed.sandbox.identity();
    identity
        .add_user(
            calsync_testkit::testbed::AZURE_TENANT,
            pedro_oid,
            pedro_email,
            "Pedro",
        )
        .unwrap();
    identity
        .set_auto_approve(calsync_testkit::testbed::AZURE_TENANT, Some(pedro_email))
        .unwrap();
    let graph = bed.bed.sandbox.graph();
    graph.add_mailbox(pedro_oid, "Pedro", pedro_email);
    let connected = calsync_testkit::testbed::connect_user(
        &bed.bed.app,
        &bed.bed.tenant,
        &bed.bed.link_key,
        "pedro",
    )
    .await
    .unwrap();
    assert_eq!(connected.status, 200, "{}", connected.body);
    graph
        .insert_event(
            pedro_oid,
            json!({
                "subject": "Pedro's visit",
                "start": {"dateTime": "2026-12-09T09:00:00", "timeZone": "UTC"},
                "end": {"dateTime": "2026-12-09T10:00:00", "timeZone": "UTC"},
            }),
        )
        .unwrap();
    graph.add_fault(FaultRule {
        route: FaultRoute::Delta,
        mailbox: Some(calsync_testkit::testbed::USER_OID.to_owned()),
        fault: GraphFault::Slow(std::time::Duration::from_secs(6)),
        rate: FaultRate::Next(1),
    });
    let body = |user: &str| {
        json!({"tenant": bed.bed.tenant, "user": user, "reason": "notification", "full": false})
            .to_string()
    };
    let (maria, pedro) = (body("maria"), body("pedro"));
    let (maria_group, pedro_group) = (
        format!("{}#maria", bed.bed.tenant),
        format!("{}#pedro", bed.bed.tenant),
    );
    let event = calsync_testkit::events::sqs_fifo_event(&[
        (&maria, &maria_group, "m-1"),
        (&pedro, &pedro_group, "m-2"),
    ]);
    let app = bed.bed.app.clone();
    let batch =
        tokio::spawn(async move { calsync::entry::jobs::handle_event(&app, event, None).await });
    let crm = bed.bed.sandbox.crm();
    let pedro_number = crm.user_id("pedro").unwrap();
    let mut synced = false;
    for _ in 0..100 {
        if !crm.events_of(pedro_number).is_empty() {
            synced = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(synced, "pedro's event reached the CRM");
    // Side by side, pedro's job starts with maria's; one after the other, it could only start
    // once maria's request had given up (the bed's HTTP timeout is 2 s).
    let first = |oid: &str| {
        graph
            .requests()
            .iter()
            .filter(|r| r.mailbox.as_deref() == Some(oid))
            .map(|r| r.started)
            .min()
            .unwrap()
    };
    let maria_start = first(calsync_testkit::testbed::USER_OID);
    let pedro_start = first(pedro_oid);
    assert!(
        pedro_start < maria_start + std::time::Duration::from_secs(1),
        "pedro started at {pedro_start:?}, maria at {maria_start:?}"
    );
    let answer = batch.await.unwrap().unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}));
}

#[tokio::test]
async fn a_tenants_crm_sessions_are_capped_across_runs() {
    use calsync::services::crm_sessions::CrmSessions;
    use calsync::services::sync_run::{RunError, RunOptions, RunOutcome};
    let bed = calsync_testkit::syncbed::SyncBed::start().await.unwrap();
    let app = &bed.bed.app;
    let tenant = &bed.bed.tenant;
    app.tenants
        .update_settings(tenant, |s| s.crm_sessions = 1)
        .await
        .unwrap();
    let context = app.tenants.context(tenant).await.unwrap();
    // Another run, on another instance, has the tenant's only CRM session.
    let sessions = CrmSessions::new(app.store.clone());
    let now = now_epoch();
    let elsewhere = sessions
        .try_take(tenant, 1, 0, "another-run", now + 120, now)
        .await
        .unwrap()
        .expect("the only session");
    bed.settle().await.unwrap();
    // A new Outlook event: the next run has a CRM write to make.
    seed_meeting(&bed, "Board meeting");
    let crm_before = bed.crm().len();
    let waiting = RunOptions {
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(3)),
        ..RunOptions::default()
    };
    let busy = app.runner.sync_user(&context, &bed.bed.user, waiting).await;
    assert!(
        matches!(busy, Err(RunError::CrmBusy { cap: 1 })),
        "{busy:?}"
    );
    assert_eq!(
        bed.crm().len(),
        crm_before,
        "a run without a session writes nothing to the CRM"
    );
    // Once the session is back, the user's run goes ahead (the waiting run let the user go)
    // and gives its own session back at its end.
    sessions
        .give_back(tenant, &elsewhere, now_epoch())
        .await
        .unwrap();
    let report = app
        .runner
        .sync_user(&context, &bed.bed.user, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(report.outcome, RunOutcome::Synced, "{report:?}");
    assert_eq!(bed.crm().len(), crm_before + 1, "the event reached the CRM");
    let now = now_epoch();
    assert!(sessions
        .try_take(tenant, 1, 0, "next-run", now + 120, now)
        .await
        .unwrap()
        .is_some());
}

/// A meeting a user adds in Outlook, in a week's time.
fn seed_meeting(bed: &calsync_testkit::syncbed::SyncBed, subject: &str) {
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(7 * 24);
    let end = start + jiff::SignedDuration::from_hours(1);
    let at = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:00:00").to_string();
    bed.bed
        .sandbox
        .graph()
        .insert_event(
            calsync_testkit::testbed::USER_OID,
            calsync_testkit::syncbed::outlook_event(subject, &at(start), &at(end)),
        )
        .unwrap();
}

/// Two tenants' jobs in one batch, the first tenant's CRM answering slowly: the second
/// tenant's user is synced while the first's run still waits on its CRM.
#[tokio::test]
async fn a_slow_crm_of_one_tenant_does_not_hold_up_another_tenants_job() {
    use calsync_sandbox::vtiger::Fault;
    use calsync_testkit::syncbed::{point_at_sandbox_crm, seed_crm_users, MARIA};
    let bed = calsync_testkit::syncbed::SyncBed::start().await.unwrap();
    let app = &bed.bed.app;
    // A second customer, with a CRM of its own whose every answer takes 1.8 s (under the
    // bed's 2 s timeout); its maria connects the same Outlook mailbox.
    let slow_crm = calsync_sandbox::Sandbox::start().await.unwrap();
    seed_crm_users(&slow_crm, "UTC").unwrap();
    for operation in [
        "getchallenge",
        "login",
        "sync",
        "query",
        "create",
        "retrieve",
        "describe",
    ] {
        slow_crm.crm().inject(
            operation,
            Fault::Delay(std::time::Duration::from_millis(1800)),
            None,
        );
    }
    let slow =
        calsync_core::ids::TenantId::parse(&calsync_testkit::moto::unique("globex")).unwrap();
    let mut secret = app.tenants.secret(&bed.bed.tenant).await.unwrap();
    let settings = calsync::services::tenants::TenantSettings::new(
        slow.clone(),
        "Globex".into(),
        &slow_crm.base_url(),
        now_epoch(),
    )
    .unwrap();
    secret.crm_url = slow_crm.base_url();
    app.tenants.add(&settings, &secret).await.unwrap();
    point_at_sandbox_crm(app, &slow, &slow_crm.base_url(), "UTC")
        .await
        .unwrap();
    let connected = calsync_testkit::testbed::connect_user(app, &slow, &secret.link_key, "maria")
        .await
        .unwrap();
    assert_eq!(connected.status, 200, "{}", connected.body);
    bed.bed.take_jobs().await.unwrap();
    seed_meeting(&bed, "Quarterly review");

    // The slow tenant's job comes first in the batch.
    let job = |tenant: &calsync_core::ids::TenantId| {
        json!({"tenant": tenant, "user": "maria", "reason": "notification", "full": false})
            .to_string()
    };
    let (slow_job, quick_job) = (job(&slow), job(&bed.bed.tenant));
    let (slow_group, quick_group) = (format!("{slow}#maria"), format!("{}#maria", bed.bed.tenant));
    let event = calsync_testkit::events::sqs_fifo_event(&[
        (&slow_job, &slow_group, "s-1"),
        (&quick_job, &quick_group, "q-1"),
    ]);
    let batch_app = app.clone();
    let batch =
        tokio::spawn(
            async move { calsync::entry::jobs::handle_event(&batch_app, event, None).await },
        );
    let quick_crm = bed.bed.sandbox.crm();
    let mut quick_done = false;
    for _ in 0..200 {
        if !quick_crm.events_of(MARIA).is_empty() {
            quick_done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(quick_done, "the quick tenant's event reached its CRM");
    assert!(
        slow_crm.crm().events_of(MARIA).is_empty(),
        "the quick tenant's job did not wait for the slow tenant's CRM"
    );
    let answer = batch.await.unwrap().unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "both jobs succeed"
    );
    assert_eq!(
        slow_crm.crm().events_of(MARIA).len(),
        1,
        "the slow CRM got it too"
    );
}

/// A user nothing has synced for hours, with no problem to say why, is overdue: the dispatch
/// round counts them in `UsersOverdue` (the alarm's metric) and `calsync status` marks them and
/// counts them among what needs attention. A quiet look is a sync: once one is noted, they are
/// no longer overdue.
#[tokio::test]
async fn a_user_nothing_synced_for_hours_is_overdue_until_a_quiet_look() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap();
    let hours_ago = now_epoch() - 4 * 3600;
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.connected_at = hours_ago - 3600;
        r.problems.clear();
        r.last_sync = Some(SyncSummary {
            to_crm_at: Some(hours_ago),
            to_outlook_at: Some(hours_ago),
            last_run_at: Some(hours_ago),
            ..SyncSummary::default()
        });
    })
    .await
    .unwrap();

    let function = sync_binary(&bed).await;
    let dispatch_overdue = || async {
        dispatch_round(&function, &bed).await;
        let last_round = function
            .logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .rfind(|doc| doc.get("DispatchRounds").is_some())
            .expect("the round wrote its metrics");
        let directive = &last_round["_aws"]["CloudWatchMetrics"][0];
        assert!(
            directive["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == "UsersOverdue"),
            "{last_round}"
        );
        last_round["UsersOverdue"].as_u64().unwrap()
    };
    let status = || {
        let out = calsync_testkit::testbed::run_cli(
            &["status", "--tenant", bed.tenant.as_str(), "--json"],
            &bed.env(),
            None,
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), json)
    };

    assert_eq!(dispatch_overdue().await, 1);
    let (code, before) = status();
    assert_eq!(code, Some(2), "{before}");
    assert_eq!(before["users"][0]["overdue"], true, "{before}");
    bed.take_jobs().await.unwrap();

    // The sweep's look found both sides quiet just now.
    bed.app
        .users
        .note_quiet_look(&bed.tenant, &bed.user, now_epoch())
        .await
        .unwrap();
    assert_eq!(dispatch_overdue().await, 0);
    let (_, after) = status();
    assert_eq!(after["users"][0]["overdue"], false, "{after}");
    assert!(
        bed.stored_user().await.unwrap().record.problems.is_empty(),
        "no problem stands in for the look"
    );
    assert_eq!(
        after["needs_attention"].as_u64().unwrap() + 1,
        before["needs_attention"].as_u64().unwrap()
    );
}
