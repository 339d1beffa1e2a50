//! The real `calsync-sync` binary, through the Runtime API stand-in: a dispatch round queues a
//! job for each connected user who is due, and no one else.

use calsync::adapters::store::now_epoch;
use calsync::services::users::{SyncSummary, UserStatus};
use calsync_testkit::testbed::edit_user;
use calsync_testkit::testbed::TestBed;
use calsync_testkit::{binary_path, FunctionProcess};
use serde_json::json;

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
        let mut record = bed
            .app
            .users
            .get(&bed.tenant, &bed.user)
            .await
            .unwrap()
            .unwrap()
            .record;
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

    let function = FunctionProcess::spawn(&binary_path("calsync-sync"), "calsync-sync", &bed.env())
        .await
        .unwrap();
    let answer = function
        .invoke(json!({"action": "dispatch", "tenant": bed.tenant.as_str()}))
        .await
        .unwrap()
        .into_ok()
        .unwrap();
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
    let event = calsync_testkit::events::sqs_fifo_event(&[
        (&maria, &maria_group, "m-1"),
        (&ghost_body, &ghost_group, "m-2"),
    ]);

    let function =
        FunctionProcess::spawn(&binary_path("calsync-sync"), "calsync-sync", &bed.bed.env())
            .await
            .unwrap();
    let answer = function.invoke(event).await.unwrap().into_ok().unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}]})
    );
    assert_eq!(bed.crm_subjects(), ["Kick-off"], "maria was synced");
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
