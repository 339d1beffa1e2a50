//! Push end to end and the subscriptions' upkeep: the sandbox's Graph delivers to the real
//! `calsync-webhook` binary behind a local Function URL, jobs land on the moto FIFO queue, and
//! the dispatcher renews, replaces or deletes subscriptions as their users' state requires.

use std::time::Duration;

use calsync::entry::dispatch::dispatch;
use calsync::services::subscriptions::Upkeep;
use calsync::services::users::UserStatus;
use calsync_sandbox::LifecycleEvent;
use calsync_testkit::function_url::FunctionUrlServer;
use calsync_testkit::testbed::edit_user;
use calsync_testkit::testbed::{now, TestBed, USER_OID};
use calsync_testkit::{binary_path, FunctionProcess};
use serde_json::{json, Value};

/// A bed whose webhook URL is the real webhook binary.
async fn bed_with_webhook_binary() -> (TestBed, FunctionUrlServer) {
    let server = FunctionUrlServer::start_unattached().await.unwrap();
    let bed = TestBed::start_with_webhook(Some(server.base_url()))
        .await
        .unwrap();
    attach_webhook(&bed, &server).await;
    (bed, server)
}

/// Serves the real webhook binary, with the bed's environment, behind `server`.
async fn attach_webhook(bed: &TestBed, server: &FunctionUrlServer) {
    let function = FunctionProcess::spawn(
        &binary_path("calsync-webhook"),
        "calsync-webhook",
        &bed.env(),
    )
    .await
    .unwrap();
    server.attach(function).await;
}

fn event(subject: &str) -> Value {
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let end = start + jiff::SignedDuration::from_mins(30);
    let form = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    json!({"subject": subject, "start": {"dateTime": form(start), "timeZone": "UTC"}, "end": {"dateTime": form(end), "timeZone": "UTC"}})
}

fn reasons(jobs: &[(String, Value)]) -> Vec<String> {
    jobs.iter()
        .map(|(_, j)| j["reason"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn graph_pushes_through_the_real_webhook_binary_to_the_queue() {
    let (bed, _server) = bed_with_webhook_binary().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let graph = bed.sandbox.graph();
    // The handshake went through the binary: the subscription exists and was validated.
    assert_eq!(graph.subscriptions().len(), 1);
    assert!(graph.deliveries().iter().all(|d| d.status == Some(200)));
    assert_eq!(reasons(&bed.take_jobs().await.unwrap()), ["connected"]);

    graph
        .insert_event(USER_OID, event("Booked in Outlook"))
        .unwrap();
    let delivered = graph
        .wait_for_notifications(1, Duration::from_secs(10))
        .await;
    assert!(
        delivered.iter().any(|d| d.status == Some(202)),
        "{delivered:?}"
    );
    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0, format!("{}#maria", bed.tenant));
    assert_eq!(jobs[0].1["reason"], "notification");

    // Graph removes the subscription: the lifecycle event becomes a recreate + full-resync job.
    let id = graph.subscriptions()[0].id.clone();
    graph
        .send_lifecycle(&id, LifecycleEvent::SubscriptionRemoved)
        .await
        .unwrap();
    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1["reason"], "recreate-subscription");
    assert_eq!(jobs[0].1["full"], true);
}

#[tokio::test]
async fn the_dispatcher_renews_before_expiry_and_replaces_what_graph_removed() {
    let (bed, _server) = bed_with_webhook_binary().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let graph = bed.sandbox.graph();
    let first = bed.stored_user().await.unwrap().record;
    let first_id = first.subscription_id.clone().unwrap();

    // Far from expiry: nothing to do, and no call to anyone.
    let requests_before = graph.requests().len();
    let report = dispatch(&bed.app, Some(&bed.tenant)).await.unwrap();
    assert!(report.upkeep.is_empty());
    assert_eq!(graph.requests().len(), requests_before);

    // Within the renewal margin: renewed in place.
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.subscription_expires_at = Some(now() + 3600)
    })
    .await
    .unwrap();
    let report = dispatch(&bed.app, Some(&bed.tenant)).await.unwrap();
    assert_eq!(report.upkeep, vec![("maria".to_owned(), Upkeep::Renewed)]);
    let renewed = bed.stored_user().await.unwrap().record;
    assert_eq!(renewed.subscription_id.as_deref(), Some(first_id.as_str()));
    assert!(renewed.subscription_expires_at.unwrap() > now() + 86_400);

    // Graph dropped it: renewal fails, a new subscription replaces it.
    graph
        .send_lifecycle(&first_id, LifecycleEvent::SubscriptionRemoved)
        .await
        .unwrap();
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.subscription_expires_at = Some(now() + 3600)
    })
    .await
    .unwrap();
    let report = dispatch(&bed.app, Some(&bed.tenant)).await.unwrap();
    assert_eq!(report.upkeep, vec![("maria".to_owned(), Upkeep::Recreated)]);
    let replaced = bed.stored_user().await.unwrap().record;
    let new_id = replaced.subscription_id.clone().unwrap();
    assert_ne!(new_id, first_id);
    assert!(bed
        .app
        .subscriptions
        .record(&first_id)
        .await
        .unwrap()
        .is_none());
    assert!(bed
        .app
        .subscriptions
        .record(&new_id)
        .await
        .unwrap()
        .is_some());
    assert_eq!(graph.subscriptions().len(), 1);
}

#[tokio::test]
async fn a_user_who_must_reconnect_loses_the_subscription_instead_of_a_renewal() {
    let (bed, _server) = bed_with_webhook_binary().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let id = bed
        .stored_user()
        .await
        .unwrap()
        .record
        .subscription_id
        .unwrap();
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.status = UserStatus::ReconnectRequired;
        r.subscription_expires_at = Some(now() + 60);
    })
    .await
    .unwrap();
    let expiration_before = bed.sandbox.graph().subscriptions()[0].expiration;
    let report = dispatch(&bed.app, Some(&bed.tenant)).await.unwrap();
    assert_eq!(report.upkeep, vec![("maria".to_owned(), Upkeep::Deleted)]);
    assert_eq!(
        report.jobs_queued, 0,
        "no sync for a user who must reconnect"
    );
    let user = bed.stored_user().await.unwrap().record;
    assert!(user.subscription_id.is_none());
    assert!(
        bed.app.subscriptions.record(&id).await.unwrap().is_none(),
        "its notifications are now dropped"
    );
    // Not renewed at Graph.
    let still = bed.sandbox.graph().subscriptions();
    assert!(still.iter().all(|s| s.expiration == expiration_before));
}

#[tokio::test]
async fn a_subscription_to_an_old_address_is_replaced_at_its_renewal() {
    let (bed, _server) = bed_with_webhook_binary().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let graph = bed.sandbox.graph();
    let old_address = graph.subscriptions()[0].notification_url.clone();

    // The service moves to another address (a domain of its own, a rebuilt stack): its
    // webhook answers there, and the functions are told so.
    let moved = FunctionUrlServer::start_unattached().await.unwrap();
    attach_webhook(&bed, &moved).await;
    let mut config = bed.app.config.clone();
    config.webhook_url = Some(url::Url::parse(moved.base_url()).unwrap());
    let app = calsync::app::App::with_parts(
        config,
        bed.app.store.clone(),
        bed.app.secret_store.clone(),
        bed.app.queue.clone(),
    )
    .unwrap();

    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.subscription_expires_at = Some(now() + 3600)
    })
    .await
    .unwrap();
    let report = dispatch(&app, Some(&bed.tenant)).await.unwrap();
    assert_eq!(report.upkeep, vec![("maria".to_owned(), Upkeep::Recreated)]);
    let subscriptions = graph.subscriptions();
    assert_eq!(subscriptions.len(), 1, "the old one is deleted");
    assert_ne!(subscriptions[0].notification_url, old_address);
    assert!(
        subscriptions[0]
            .notification_url
            .starts_with(moved.base_url().trim_end_matches('/')),
        "{} is not on {}",
        subscriptions[0].notification_url,
        moved.base_url()
    );
}
