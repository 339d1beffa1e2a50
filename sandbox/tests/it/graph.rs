//! Black-box tests of the Graph stand-in over real HTTP: what the client tests in `shared/`
//! do not already pin down — auth refusals, `$batch` rules, ids, zones, all-day events,
//! dropped connections and subscription validation.

use calsync_sandbox::identity::{
    DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT_ID, DEMO_USER_OID,
};
use calsync_sandbox::subscriber::{TestSubscriber, ValidationMode};
use calsync_sandbox::{FaultRate, FaultRoute, FaultRule, GraphFault, Sandbox};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

struct Harness {
    sandbox: Sandbox,
    http: Client,
    token: String,
}

async fn harness() -> Harness {
    let sandbox = Sandbox::start().await.unwrap();
    sandbox.identity().seed_demo();
    sandbox
        .identity()
        .grant_admin_consent(DEMO_TENANT_ID, DEMO_CLIENT_ID)
        .unwrap();
    let http = Client::new();
    let answer: Value = http
        .post(format!(
            "{}/{DEMO_TENANT_ID}/oauth2/v2.0/token",
            sandbox.base_url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", DEMO_CLIENT_ID),
            ("client_secret", DEMO_CLIENT_SECRET),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Harness {
        token: answer["access_token"].as_str().unwrap().to_owned(),
        sandbox,
        http,
    }
}

impl Harness {
    fn url(&self, path: &str) -> String {
        format!("{}/v1.0{path}", self.sandbox.base_url())
    }

    fn events(&self) -> String {
        self.url(&format!("/users/{DEMO_USER_OID}/events"))
    }

    async fn post(&self, url: &str, body: Value, prefer: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("prefer", prefer)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, url: &str, prefer: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .get(url)
            .bearer_auth(&self.token)
            .header("prefer", prefer)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn event(subject: &str) -> Value {
    json!({
        "subject": subject,
        "start": {"dateTime": "2030-03-10T09:00:00", "timeZone": "Romance Standard Time"},
        "end": {"dateTime": "2030-03-10T10:00:00", "timeZone": "Romance Standard Time"},
    })
}

#[tokio::test]
async fn tokens_are_required_and_checked() {
    let h = harness().await;
    let missing = h.http.get(h.events()).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.headers().contains_key("www-authenticate"));
    let forged = h
        .http
        .get(h.events())
        .bearer_auth("forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // An app-only token has no /me.
    let (status, body) = h.get(&h.url("/me/events"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "BadRequest");
    // An unknown user has no mailbox.
    let (status, body) = h
        .get(
            &h.url("/users/00000000-0000-4000-8000-000000000000/events"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ErrorInvalidUser");
}

#[tokio::test]
async fn ids_zones_and_all_day_events_read_like_graph() {
    let h = harness().await;
    let (status, created) = h.post(&h.events(), event("Zoned"), "").await;
    assert_eq!(status, StatusCode::CREATED);
    let rest_id = created["id"].as_str().unwrap().to_owned();
    assert!(rest_id.starts_with("AAMkA"), "{rest_id}");
    // UTC unless asked otherwise; Romance Standard Time is UTC+1 in March.
    assert_eq!(created["start"]["dateTime"], "2030-03-10T08:00:00.0000000");
    assert_eq!(created["start"]["timeZone"], "UTC");
    assert_eq!(created["originalStartTimeZone"], "Romance Standard Time");
    let (_, read) = h
        .get(
            &format!("{}/{rest_id}", h.events()),
            "outlook.timezone=\"Pacific Standard Time\", IdType=\"ImmutableId\"",
        )
        .await;
    assert!(read["id"].as_str().unwrap().starts_with("AAkALg"));
    assert_eq!(read["start"]["dateTime"], "2030-03-10T00:00:00.0000000");
    assert_eq!(read["start"]["timeZone"], "Pacific Standard Time");
    assert_eq!(read["changeKey"], created["changeKey"]);
    assert_eq!(
        read["@odata.etag"],
        format!("W/\"{}\"", created["changeKey"].as_str().unwrap())
    );

    // All-day: midnight to midnight, whatever zone is asked for.
    let (status, _) = h
        .post(
            &h.events(),
            json!({"subject": "Not midnight", "isAllDay": true,
                   "start": {"dateTime": "2030-03-11T08:00:00", "timeZone": "UTC"},
                   "end": {"dateTime": "2030-03-12T08:00:00", "timeZone": "UTC"}}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, all_day) = h
        .post(
            &h.events(),
            json!({"subject": "Holiday", "isAllDay": true,
                   "start": {"dateTime": "2030-03-11", "timeZone": "Tokyo Standard Time"},
                   "end": {"dateTime": "2030-03-12", "timeZone": "Tokyo Standard Time"}}),
            "outlook.timezone=\"Pacific Standard Time\"",
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(all_day["start"]["dateTime"], "2030-03-11T00:00:00.0000000");
    assert_eq!(all_day["end"]["dateTime"], "2030-03-12T00:00:00.0000000");
    // Unknown zones are refused.
    let mut bad = event("Nowhere");
    bad["start"]["timeZone"] = json!("Mars Standard Time");
    let (status, body) = h.post(&h.events(), bad, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "TimeZoneNotSupportedException");
}

#[tokio::test]
async fn batches_follow_graph_rules() {
    let h = harness().await;
    let (_, created) = h.post(&h.events(), event("In a batch"), "").await;
    let id = created["id"].as_str().unwrap();
    let item = |n: usize| json!({"id": n.to_string(), "method": "GET", "url": format!("/users/{DEMO_USER_OID}/events/{id}")});
    let (status, _) = h
        .post(
            &h.url("/$batch"),
            json!({"requests": (0..21).map(item).collect::<Vec<_>>()}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "21 requests");
    let (status, _) = h
        .post(
            &h.url("/$batch"),
            json!({"requests": [item(1), item(1)]}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "duplicate ids");

    let (status, body) = h
        .post(
            &h.url("/$batch"),
            json!({"requests": [
                {"id": "a", "method": "GET", "url": format!("/users/{DEMO_USER_OID}/events/missing")},
                {"id": "b", "method": "GET", "url": format!("/users/{DEMO_USER_OID}/events/{id}"), "dependsOn": ["a"]},
                {"id": "c", "method": "POST", "url": format!("/users/{DEMO_USER_OID}/events"), "body": event("no content type")},
                item(4),
            ]}),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let by_id = |k: &str| {
        body["responses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == k)
            .unwrap()
            .clone()
    };
    assert_eq!(by_id("a")["status"], 404);
    assert_eq!(by_id("b")["status"], 424);
    assert_eq!(by_id("c")["status"], 400);
    assert_eq!(by_id("4")["status"], 200);
    assert_eq!(by_id("4")["body"]["subject"], "In a batch");
}

#[tokio::test]
async fn a_dropped_connection_cuts_the_answer() {
    let h = harness().await;
    h.sandbox.graph().add_fault(FaultRule::new(
        FaultRoute::EventReads,
        GraphFault::Drop,
        FaultRate::Next(1),
    ));
    // The answer never completes: the client fails before or while reading the body.
    let outcome = h.http.get(h.events()).bearer_auth(&h.token).send().await;
    if let Ok(response) = outcome {
        assert!(response.bytes().await.is_err(), "the body must not arrive");
    }
    let (status, _) = h.get(&h.events(), "").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn subscriptions_validate_their_endpoint_first() {
    let h = harness().await;
    let subscriber = TestSubscriber::start().await.unwrap();
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(48)).to_string();
    let body = |url: &str| {
        json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": format!("{url}/notifications"),
            "resource": format!("users/{DEMO_USER_OID}/events"),
            "expirationDateTime": expires,
            "clientState": "s3cret",
        })
    };
    // Echoing the token still encoded fails validation, and nothing is created.
    subscriber.set_validation_mode(ValidationMode::EchoEncoded);
    let (status, answer) = h
        .post(&h.url("/subscriptions"), body(subscriber.base_url()), "")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "ValidationError");
    assert!(h.sandbox.graph().subscriptions().is_empty());
    // Plain HTTP is only for loopback; lifetimes are capped.
    let (status, _) = h
        .post(
            &h.url("/subscriptions"),
            body("http://hooks.example.com"),
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    subscriber.set_validation_mode(ValidationMode::Echo);
    let mut too_long = body(subscriber.base_url());
    too_long["expirationDateTime"] =
        json!((jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24 * 8)).to_string());
    let (status, _) = h.post(&h.url("/subscriptions"), too_long, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, created) = h
        .post(&h.url("/subscriptions"), body(subscriber.base_url()), "")
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let validations = subscriber.received();
    let last = validations.last().unwrap();
    assert_eq!(
        last.validation_token.as_deref(),
        h.sandbox
            .graph()
            .deliveries()
            .last()
            .map(|d| d.sent.as_str())
    );
    // Renew, then delete.
    let id = created["id"].as_str().unwrap();
    let renewed = h
        .http
        .patch(h.url(&format!("/subscriptions/{id}")))
        .bearer_auth(&h.token)
        .json(&json!({"expirationDateTime": (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(70)).to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(renewed.status(), StatusCode::OK);
    let deleted = h
        .http
        .delete(h.url(&format!("/subscriptions/{id}")))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let again = h
        .http
        .delete(h.url(&format!("/subscriptions/{id}")))
        .bearer_auth(&h.token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}
