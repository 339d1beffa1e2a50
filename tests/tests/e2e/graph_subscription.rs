//! Connecting a user creates the Graph subscription: the sandbox's validation handshake reaches
//! the webhook URL first, the lifecycle URL is set at creation, the expiry Graph returns is
//! stored, and the stored client state matches what Graph echoes in notifications. Then the
//! maintenance calls (renew, reauthorize, recreate) and disconnect.

use std::time::Duration;

use calsync::adapters::queue::JobReason;
use calsync::services::subscriptions::Upkeep;
use calsync_sandbox::subscriber::{TestSubscriber, ValidationMode};
use calsync_sandbox::LifecycleEvent;
use calsync_testkit::testbed::{edit_user, now, TestBed, USER_OID};
use serde_json::{json, Value};

async fn bed_with_subscriber() -> (TestBed, TestSubscriber) {
    let subscriber = TestSubscriber::start().await.unwrap();
    let bed = TestBed::start_with_webhook(Some(subscriber.base_url()))
        .await
        .unwrap();
    (bed, subscriber)
}

fn event(subject: &str) -> Value {
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let end = start + jiff::SignedDuration::from_mins(30);
    let form = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    json!({
        "subject": subject,
        "start": {"dateTime": form(start), "timeZone": "UTC"},
        "end": {"dateTime": form(end), "timeZone": "UTC"},
    })
}

#[tokio::test]
async fn connecting_creates_a_validated_subscription() {
    let (bed, subscriber) = bed_with_subscriber().await;
    let done = bed.connect().await.unwrap();
    assert_eq!(done.status, 200, "{}", done.body);

    // The handshake reached both URLs, and was answered with the decoded token.
    let validations: Vec<_> = subscriber
        .received()
        .into_iter()
        .filter(|r| r.validation_token.is_some())
        .collect();
    let endpoints: Vec<&str> = validations.iter().map(|r| r.endpoint.as_str()).collect();
    assert_eq!(endpoints, ["notifications", "lifecycle"]);
    assert!(validations[0]
        .validation_token
        .as_deref()
        .unwrap()
        .starts_with("Validation: Testing client application reachability"));
    let graph = bed.sandbox.graph();
    assert!(graph
        .deliveries()
        .iter()
        .all(|d| d.status == Some(200) && d.answer.as_deref() == Some(d.sent.as_str())));

    let subscriptions = graph.subscriptions();
    assert_eq!(subscriptions.len(), 1);
    let sub = &subscriptions[0];
    assert_eq!(sub.resource, "me/events");
    assert_eq!(sub.change_type, "created,updated,deleted");
    assert_eq!(sub.mailbox, USER_OID);
    assert_eq!(
        sub.notification_url,
        format!("{}/notifications", subscriber.base_url())
    );
    assert_eq!(
        sub.lifecycle_notification_url.as_deref(),
        Some(format!("{}/lifecycle", subscriber.base_url()).as_str())
    );
    assert!(
        sub.immutable_ids,
        "created with Prefer: IdType=\"ImmutableId\""
    );
    let lifetime = sub.expiration.as_second() - now();
    assert!(
        (4229 * 60..=4231 * 60).contains(&lifetime),
        "lifetime {lifetime} s"
    );

    // What calsync stored: the expiry Graph returned, and only a hash of the client state.
    let user = bed.stored_user().await.unwrap().record;
    assert_eq!(user.subscription_id.as_deref(), Some(sub.id.as_str()));
    assert_eq!(
        user.subscription_expires_at,
        Some(sub.expiration.as_second())
    );
    assert!(user.problems.is_empty(), "{:?}", user.problems);
    let record = bed
        .app
        .subscriptions
        .record(&sub.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.user, bed.user);
    assert_eq!(record.expires_at, sub.expiration.as_second());
    let client_state = sub.client_state.clone().unwrap();
    assert!(client_state.len() >= 32 && client_state.len() <= 128);
    assert!(record.client_state_matches(&client_state));
    assert!(!record.client_state_matches("something else"));
    for row in bed.snapshot().await.unwrap() {
        assert!(
            !row.contains(&client_state),
            "client state stored in clear: {row}"
        );
    }

    // A change in Outlook is pushed to the webhook with that client state.
    graph.insert_event(USER_OID, event("Pushed")).unwrap();
    let delivered = graph
        .wait_for_notifications(1, Duration::from_secs(5))
        .await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].status, Some(202));
    let notifications = subscriber.notifications();
    assert_eq!(notifications.len(), 1);
    assert_eq!(notifications[0].endpoint, "notifications");
    let body: Value = serde_json::from_str(&notifications[0].body).unwrap();
    assert_eq!(body["value"][0]["subscriptionId"], sub.id.as_str());
    assert_eq!(body["value"][0]["clientState"], client_state.as_str());
    assert_eq!(body["value"][0]["changeType"], "created");
}

#[tokio::test]
async fn a_failed_handshake_leaves_no_subscription_and_says_so() {
    let (bed, subscriber) = bed_with_subscriber().await;
    subscriber.set_validation_mode(ValidationMode::EchoEncoded);
    let done = bed.connect().await.unwrap();
    assert_eq!(done.status, 200, "connecting still works: {}", done.body);
    assert!(bed.sandbox.graph().subscriptions().is_empty());
    let user = bed.stored_user().await.unwrap().record;
    assert!(user.subscription_id.is_none());
    assert!(user
        .problems
        .iter()
        .any(|p| p.code.as_str() == "subscription_failed"));
}

#[tokio::test]
async fn renew_reauthorize_recreate_and_disconnect() {
    let (bed, _subscriber) = bed_with_subscriber().await;
    bed.connect().await.unwrap();
    let graph = bed.sandbox.graph();
    let first = graph.subscriptions()[0].clone();
    let tenant = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let subscriptions = &bed.app.subscriptions;
    let stored = || async { bed.stored_user().await.unwrap().record };

    // Lifecycle: reauthorization asked, then answered by the job it turns into.
    let sent = graph
        .send_lifecycle(&first.id, LifecycleEvent::ReauthorizationRequired)
        .await
        .unwrap();
    assert_eq!(sent.status, Some(202));
    assert!(graph.subscriptions()[0].needs_reauthorization);
    assert_eq!(
        subscriptions
            .for_job(&tenant, &bed.user, JobReason::Reauthorize)
            .await,
        Upkeep::Reauthorized
    );
    assert!(!graph.subscriptions()[0].needs_reauthorization);

    // Near its expiry, the scheduler's upkeep renews it: the expiry moves, in Graph and in
    // what calsync stored.
    graph.expire_subscription(&first.id).unwrap();
    edit_user(&bed.app, &bed.tenant, &bed.user, |r| {
        r.subscription_expires_at = Some(now() + 60)
    })
    .await
    .unwrap();
    assert_eq!(
        subscriptions
            .maintain_user(&tenant, &stored().await, now())
            .await,
        Upkeep::Renewed
    );
    let renewed = stored().await;
    assert_eq!(renewed.subscription_id.as_deref(), Some(first.id.as_str()));
    let expires_at = renewed.subscription_expires_at.unwrap();
    assert!(expires_at > now() + 4000 * 60);
    assert_eq!(graph.subscriptions()[0].expiration.as_second(), expires_at);
    let record = subscriptions.record(&first.id).await.unwrap().unwrap();
    assert_eq!(record.expires_at, expires_at);

    // Removed by Graph: the job that follows replaces it, and the old record goes.
    graph
        .send_lifecycle(&first.id, LifecycleEvent::SubscriptionRemoved)
        .await
        .unwrap();
    assert!(graph.subscriptions().is_empty());
    assert_eq!(
        subscriptions
            .for_job(&tenant, &bed.user, JobReason::RecreateSubscription)
            .await,
        Upkeep::Recreated
    );
    assert_eq!(graph.subscriptions().len(), 1);
    let again = graph.subscriptions()[0].clone();
    assert_ne!(again.id, first.id);
    assert!(subscriptions.record(&first.id).await.unwrap().is_none());
    assert_eq!(
        stored().await.subscription_id.as_deref(),
        Some(again.id.as_str())
    );

    // Disconnect deletes it in Graph and forgets it here.
    calsync::entry::auth::disconnect_user(&bed.app, &tenant, &bed.user)
        .await
        .unwrap();
    assert!(graph.subscriptions().is_empty());
    assert!(bed
        .app
        .subscriptions
        .record(&again.id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn reconnecting_replaces_the_old_subscription() {
    let (bed, _subscriber) = bed_with_subscriber().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let graph = bed.sandbox.graph();
    let first: Vec<String> = graph.subscriptions().into_iter().map(|s| s.id).collect();
    assert_eq!(first.len(), 1);
    assert_eq!(
        bed.connect().await.unwrap().status,
        200,
        "the user connects again"
    );
    let now: Vec<String> = graph.subscriptions().into_iter().map(|s| s.id).collect();
    assert_eq!(now.len(), 1, "the old one was deleted: {now:?}");
    assert_ne!(now, first);
    assert!(
        bed.app
            .subscriptions
            .record(&first[0])
            .await
            .unwrap()
            .is_none(),
        "and forgotten"
    );
}

#[tokio::test]
async fn removing_a_tenant_deletes_its_live_subscriptions() {
    let (bed, _subscriber) = bed_with_subscriber().await;
    assert_eq!(bed.connect().await.unwrap().status, 200);
    let graph = bed.sandbox.graph();
    assert_eq!(graph.subscriptions().len(), 1);
    assert!(bed.app.remove_tenant(&bed.tenant).await.unwrap());
    assert!(graph.subscriptions().is_empty(), "deleted at Graph");
    let rows = bed.snapshot().await.unwrap();
    assert!(
        !rows.iter().any(|r| r.contains(bed.tenant.as_str())),
        "nothing of the tenant is left: {rows:#?}"
    );
}
