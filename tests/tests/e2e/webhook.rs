//! The webhook: Graph's handshake, notifications turned into one job per user on a moto SQS
//! FIFO queue, and everything a stranger might send refused harmlessly. In process, and once
//! through the real `calsync-webhook` binary behind a local Function URL.

use calsync::adapters::queue::SqsQueue;
use calsync::crypto::sha256_hex;
use calsync::services::subscriptions::SubscriptionRecord;
use calsync::App;
use calsync_testkit::function_url::FunctionUrlServer;
use calsync_testkit::testbed::{now, TestBed};
use calsync_testkit::web::{WebRequest, WebResponse};
use calsync_testkit::{binary_path, FunctionProcess};
use serde_json::{json, Value};
use std::sync::Arc;

const SUBSCRIPTION: &str = "0fd6d6a0-6b4f-4b2e-9d0c-1a2b3c4d5e6f";
const CLIENT_STATE: &str = "the-client-state-only-graph-and-calsync-know";

async fn subscribe(bed: &TestBed, id: &str, user: &str) {
    let record = SubscriptionRecord {
        id: id.into(),
        tenant: bed.tenant.clone(),
        user: calsync_core::ids::CrmUserName::parse(user).unwrap(),
        client_state_hash: sha256_hex(CLIENT_STATE),
        expires_at: now() + 86_400,
        created_at: now(),
    };
    calsync_testkit::testbed::put_subscription(&bed.app, &record)
        .await
        .unwrap();
}

fn notification(subscription: &str, client_state: &str, n: usize) -> Value {
    json!({
        "subscriptionId": subscription,
        "subscriptionExpirationDateTime": "2026-12-01T10:00:00Z",
        "changeType": "updated",
        "clientState": client_state,
        "resource": format!("Users/9a1b2c3d/Events/AAMkAD{n}="),
        "tenantId": "6e3c2f1a-8d4b-4c3e-9f2a-1b5d7c9e0a11",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": format!("AAMkAD{n}=")}
    })
}

async fn post(app: &App, path: &str, query: &str, body: &str) -> WebResponse {
    calsync_testkit::web::webhook(
        app,
        &WebRequest {
            method: "POST".into(),
            path: path.into(),
            query: query.into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        },
    )
    .await
}

#[tokio::test]
async fn a_hundred_notifications_for_one_user_make_one_job() {
    let bed = TestBed::start().await.unwrap();
    subscribe(&bed, SUBSCRIPTION, "maria").await;
    let items: Vec<Value> = (0..100)
        .map(|n| notification(SUBSCRIPTION, CLIENT_STATE, n))
        .collect();
    let response = post(
        &bed.app,
        "/notifications",
        "",
        &json!({"value": items}).to_string(),
    )
    .await;
    assert_eq!(response.status, 202);
    assert!(response.body.is_empty());
    let mut jobs = bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    // The job carries where it came from, for the run's span: a correlation id and the time.
    let origin = jobs[0].1["origin"].take();
    assert!(
        origin["correlation"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{origin}"
    );
    assert!(
        origin["at_ms"].as_i64().is_some_and(|at| at > 0),
        "{origin}"
    );
    assert_eq!(
        jobs,
        vec![(
            format!("{}#maria", bed.tenant),
            json!({"tenant": bed.tenant, "user": "maria", "reason": "notification", "full": false, "origin": null})
        )]
    );
}

#[tokio::test]
async fn users_get_a_job_each_and_lifecycle_events_their_own_reasons() {
    let bed = TestBed::start().await.unwrap();
    subscribe(&bed, "sub-ana", "ana").await;
    subscribe(&bed, "sub-luis", "luis").await;
    subscribe(&bed, "sub-eva", "eva").await;
    let mut removed = notification("sub-luis", CLIENT_STATE, 0);
    removed["lifecycleEvent"] = json!("subscriptionRemoved");
    let body = json!({"value": [notification("sub-ana", CLIENT_STATE, 1), removed, notification("sub-luis", CLIENT_STATE, 2)]});
    assert_eq!(
        post(&bed.app, "/notifications", "", &body.to_string())
            .await
            .status,
        202
    );
    let mut missed = notification("sub-eva", CLIENT_STATE, 0);
    missed["lifecycleEvent"] = json!("missed");
    let mut reauthorize = notification("sub-ana", CLIENT_STATE, 0);
    reauthorize["lifecycleEvent"] = json!("reauthorizationRequired");
    let mut unknown = notification("sub-ana", CLIENT_STATE, 0);
    unknown["lifecycleEvent"] = json!("somethingNewFromGraph");
    let body = json!({"value": [missed, reauthorize, unknown]});
    assert_eq!(
        post(&bed.app, "/lifecycle", "", &body.to_string())
            .await
            .status,
        202
    );

    let mut jobs: Vec<Value> = bed
        .take_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    jobs.sort_by_key(|j| format!("{}{}", j["user"], j["reason"]));
    let summary: Vec<(String, String, bool)> = jobs
        .iter()
        .map(|j| {
            (
                j["user"].as_str().unwrap().to_owned(),
                j["reason"].as_str().unwrap().to_owned(),
                j["full"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("ana".into(), "notification".into(), false),
            ("ana".into(), "reauthorize".into(), false),
            ("eva".into(), "missed".into(), true),
            ("luis".into(), "recreate-subscription".into(), true),
        ]
    );
}

#[tokio::test]
async fn strangers_learn_nothing_and_queue_nothing() {
    let bed = TestBed::start().await.unwrap();
    subscribe(&bed, SUBSCRIPTION, "maria").await;
    let forged = json!({"value": [notification(SUBSCRIPTION, "guessed-state", 1)]}).to_string();
    let unknown =
        json!({"value": [notification("ffffffff-0000-0000-0000-000000000000", CLIENT_STATE, 1)]})
            .to_string();
    let missing_state =
        json!({"value": [{"subscriptionId": SUBSCRIPTION, "changeType": "updated"}]}).to_string();
    let empty = json!({"value": []}).to_string();
    let encrypted = json!({"value": [{"subscriptionId": SUBSCRIPTION, "clientState": CLIENT_STATE, "encryptedContent": {"data": "x"}}], "validationTokens": ["eyJ"]}).to_string();
    for body in [&forged, &unknown, &missing_state, &empty, &encrypted] {
        let response = post(&bed.app, "/notifications", "", body).await;
        assert_eq!(response.status, 202, "{body}");
        assert!(response.body.is_empty());
    }
    for malformed in ["{\"value\": [", "<html>", "{\"value\": 42}", ""] {
        assert_eq!(
            post(&bed.app, "/notifications", "", malformed).await.status,
            400,
            "{malformed}"
        );
    }
    let huge = format!(
        "{{\"value\": [], \"pad\": \"{}\"}}",
        "x".repeat(calsync::entry::webhook::MAX_BODY_BYTES)
    );
    assert_eq!(
        post(&bed.app, "/notifications", "", &huge).await.status,
        413
    );
    assert_eq!(post(&bed.app, "/elsewhere", "", &empty).await.status, 404);
    assert!(
        bed.take_jobs().await.unwrap().is_empty(),
        "nothing was queued"
    );

    // The tally says why.
    let parsed =
        calsync::adapters::graph::notifications::parse_collection(forged.as_bytes()).unwrap();
    let (_, tally) = calsync::entry::webhook::jobs_for(&bed.app, &parsed)
        .await
        .unwrap();
    assert_eq!((tally.bad_client_state, tally.jobs), (1, 0));
    let parsed =
        calsync::adapters::graph::notifications::parse_collection(encrypted.as_bytes()).unwrap();
    assert_eq!(
        calsync::entry::webhook::jobs_for(&bed.app, &parsed)
            .await
            .unwrap()
            .1
            .encrypted_refused,
        1
    );
}

#[tokio::test]
async fn the_validation_token_is_echoed_as_plain_text_byte_for_byte() {
    let bed = TestBed::start().await.unwrap();
    let token = "<script>alert('x')</script> Validation: Testing client application reachability for subscription Request-Id: 0d5c";
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("validationToken", token)
        .finish();
    for path in ["/notifications", "/lifecycle"] {
        let response = post(&bed.app, path, &query, "").await;
        assert_eq!(response.status, 200);
        assert_eq!(response.body, token);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
}

#[tokio::test]
async fn a_queue_that_fails_gets_a_5xx_so_graph_retries() {
    let bed = TestBed::start().await.unwrap();
    subscribe(&bed, SUBSCRIPTION, "maria").await;
    let broken = App::with_parts(
        bed.app.config.clone(),
        bed.app.store.clone(),
        bed.app.secret_store.clone(),
        Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(&bed.sdk),
            format!(
                "{}/123456789012/no-such-queue.fifo",
                calsync_testkit::testbed::aws_endpoint().unwrap()
            ),
        )),
    )
    .unwrap();
    let body = json!({"value": [notification(SUBSCRIPTION, CLIENT_STATE, 1)]}).to_string();
    let response = post(&broken, "/notifications", "", &body).await;
    assert_eq!(response.status, 503);
    assert!(bed.take_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_real_binary_behind_a_function_url_queues_one_job() {
    let bed = TestBed::start().await.unwrap();
    subscribe(&bed, SUBSCRIPTION, "maria").await;
    let function = FunctionProcess::spawn(
        &binary_path("calsync-webhook"),
        "calsync-webhook",
        &bed.env(),
    )
    .await
    .unwrap();
    let server = FunctionUrlServer::start(function).await.unwrap();
    let http = reqwest::Client::new();

    let handshake = http
        .post(format!(
            "{}/notifications?validationToken=abc%3C%3E%20123",
            server.base_url()
        ))
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_eq!(handshake.status(), 200);
    assert!(handshake.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(handshake.text().await.unwrap(), "abc<> 123");

    let items: Vec<Value> = (0..100)
        .map(|n| notification(SUBSCRIPTION, CLIENT_STATE, n))
        .collect();
    let delivered = http
        .post(format!("{}/notifications", server.base_url()))
        .json(&json!({"value": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.status(), 202);
    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0, format!("{}#maria", bed.tenant));
}

#[tokio::test]
async fn a_store_that_fails_gets_a_5xx_so_nothing_is_lost() {
    let bed = TestBed::start().await.unwrap();
    // A table that does not exist: every subscription lookup fails.
    let broken = App::with_parts(
        bed.app.config.clone(),
        Arc::new(calsync::adapters::store::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&bed.sdk),
            "no-such-table",
        )),
        bed.app.secret_store.clone(),
        bed.app.queue.clone(),
    )
    .unwrap();
    let body = json!({"value": [notification(SUBSCRIPTION, CLIENT_STATE, 1)]}).to_string();
    assert_eq!(post(&broken, "/notifications", "", &body).await.status, 503);
    assert!(bed.take_jobs().await.unwrap().is_empty());
}

fn nudge_body(bed: &TestBed, user: &str, sent_at: i64, nonce: &str) -> String {
    calsync::nudge::Nudge {
        tenant: bed.tenant.clone(),
        user: calsync_core::ids::CrmUserName::parse(user).unwrap(),
        sent_at,
        nonce: nonce.to_owned(),
    }
    .form(&bed.link_key)
}

#[tokio::test]
async fn a_nudge_queues_one_job_until_a_run_starts() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap();
    // Three saves in the CRM in a row: one job.
    for n in 0..3 {
        let body = nudge_body(&bed, "maria", now(), &format!("nonce-{n}-0123456789abcdef"));
        assert_eq!(post(&bed.app, "/nudge", "", &body).await.status, 202);
    }
    let jobs = bed.take_jobs().await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].1["reason"], "nudge");
    assert_eq!(jobs[0].1["user"], "maria");
    // A run starts (and finds the CRM unreachable here, which does not matter): the mark goes,
    // so the next save queues again.
    let tenant = bed.app.tenants.context(&bed.tenant).await.unwrap();
    let _ = bed
        .app
        .runner
        .sync_user(&tenant, &bed.user, Default::default())
        .await;
    let body = nudge_body(&bed, "maria", now(), "after-the-run-0123456789");
    assert_eq!(post(&bed.app, "/nudge", "", &body).await.status, 202);
    assert_eq!(bed.take_jobs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn bad_stale_replayed_or_foreign_nudges_are_refused_harmlessly() {
    let bed = TestBed::start().await.unwrap();
    assert_eq!(bed.connect().await.unwrap().status, 200);
    bed.take_jobs().await.unwrap();
    let good = nudge_body(&bed, "maria", now(), "good-nonce-0123456789ab");
    assert_eq!(post(&bed.app, "/nudge", "", &good).await.status, 202);
    bed.take_jobs().await.unwrap();
    let before = bed.snapshot().await.unwrap();
    assert_eq!(
        post(&bed.app, "/nudge", "", &good).await.status,
        409,
        "a replay"
    );
    let forged =
        nudge_body(&bed, "maria", now(), "forged-nonce-0123456789").replace("sig=", "sig=0");
    assert_eq!(post(&bed.app, "/nudge", "", &forged).await.status, 403);
    let stale = nudge_body(&bed, "maria", now() - 3600, "stale-nonce-0123456789a");
    assert_eq!(post(&bed.app, "/nudge", "", &stale).await.status, 403);
    let unknown = nudge_body(&bed, "maria", now(), "unknown-nonce-012345678").replacen(
        &format!("tenant={}", bed.tenant),
        "tenant=nobody",
        1,
    );
    assert_eq!(post(&bed.app, "/nudge", "", &unknown).await.status, 403);
    assert_eq!(post(&bed.app, "/nudge", "", "tenant=x").await.status, 400);
    assert_eq!(bed.snapshot().await.unwrap(), before, "nothing stored");
    // A user who never connected: taken, nothing queued.
    let pedro = nudge_body(&bed, "pedro", now(), "pedro-nonce-0123456789a");
    assert_eq!(post(&bed.app, "/nudge", "", &pedro).await.status, 202);
    assert!(bed.take_jobs().await.unwrap().is_empty());
}
