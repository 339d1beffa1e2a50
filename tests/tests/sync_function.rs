//! The real `calsync-sync` binary, through the Runtime API stand-in: a dispatch round queues a
//! job for each connected user who is due, and no one else.

use calsync::store::now_epoch;
use calsync::users::{update_user, SyncSummary, UserStatus};
use calsync_tests::testbed::TestBed;
use calsync_tests::{binary_path, FunctionProcess};
use serde_json::json;

#[tokio::test]
async fn a_dispatch_round_queues_the_due_users() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap(); // the initial sync job from connecting

    let store = bed.app.store.as_ref();
    // Three more users: one synced a minute ago, one disconnected, one reconnect-required.
    for (name, status, last_run) in [
        ("recent", UserStatus::Connected, Some(now_epoch() - 60)),
        ("gone", UserStatus::Disconnected, None),
        ("stale", UserStatus::ReconnectRequired, None),
    ] {
        let mut record = calsync::users::get_user(store, &bed.tenant, &bed.user)
            .await
            .unwrap()
            .unwrap()
            .record;
        record.user = calsync::ids::CrmUserName::parse(name).unwrap();
        record.status = status;
        record.last_sync = Some(SyncSummary {
            last_run_at: last_run,
            ..SyncSummary::default()
        });
        store
            .put(
                &calsync::users::user_item(&record, 0).unwrap(),
                calsync::store::Precondition::Absent,
            )
            .await
            .unwrap();
    }
    // maria last ran an hour ago: due with the default 15-minute interval.
    update_user(store, &bed.tenant, &bed.user, |r| {
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
        matches!(refused, calsync_tests::Invocation::FunctionError { .. }),
        "{refused:?}"
    );
}
