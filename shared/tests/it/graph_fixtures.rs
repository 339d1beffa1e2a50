//! Microsoft's published Graph payloads (`fixtures/graph/`) parse with the client's
//! types, and the sandbox answers the same requests with payloads of the same shape that parse
//! the same way.

use std::path::PathBuf;
use std::time::Duration;

use calsync::adapters::graph::error::error_from_response;
use calsync::adapters::graph::notifications::parse_collection;
use calsync::adapters::graph::types::{
    DeltaPage, GraphErrorBody, GraphEvent, Subscription, TokenErrorBody,
};
use calsync_sandbox::subscriber::TestSubscriber;
use calsync_sandbox::{FaultRate, FaultRoute, FaultRule, GraphFault, LifecycleEvent};
use calsync_testkit::graph::{event_body, hours_from_now, Harness, CLIENT_ID, TENANT, USER_OID};
use serde_json::{json, Value};

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/graph")
}

fn fixture(name: &str) -> Value {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Parses a payload with the client type its name calls for.
fn parse_with_client_types(name: &str, text: &str) -> Result<(), String> {
    let fail = |e: serde_json::Error| format!("{name}: {e}");
    if name.starts_with("delta-") {
        serde_json::from_str::<DeltaPage>(text).map_err(fail)?;
    } else if name.starts_with("error-") {
        let body: GraphErrorBody = serde_json::from_str(text).map_err(fail)?;
        let status: u16 = name
            .trim_start_matches("error-")
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{name}: no status in the name"))?;
        let error = error_from_response(status, text.as_bytes(), None);
        let resync = status == 410 || body.error.code.eq_ignore_ascii_case("syncstatenotfound");
        if resync && !error.is_resync() {
            return Err(format!("{name}: not read as a resync signal"));
        }
    } else if name.starts_with("event-") {
        serde_json::from_str::<GraphEvent>(text).map_err(fail)?;
    } else if name.starts_with("change-notification-") || name.starts_with("lifecycle-") {
        let collection = parse_collection(text.as_bytes()).map_err(|e| format!("{name}: {e}"))?;
        if collection.is_empty() {
            return Err(format!("{name}: no notifications read"));
        }
    } else if name.starts_with("subscription-") {
        serde_json::from_str::<Subscription>(text).map_err(fail)?;
    } else if name.starts_with("token-error") {
        serde_json::from_str::<TokenErrorBody>(text).map_err(fail)?;
    } else {
        return Err(format!("{name}: no client type is known for this fixture"));
    }
    Ok(())
}

#[test]
fn every_graph_fixture_parses_with_the_client_types() {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 8, "fixtures found: {names:?}");
    let problems: Vec<String> = names
        .iter()
        .filter_map(|name| {
            let text = std::fs::read_to_string(fixtures_dir().join(name)).unwrap();
            parse_with_client_types(name, &text).err()
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Where `ours` differs in shape from `published`: every non-null value of the published
/// payload must be present in ours with the same JSON type (arrays compared by first item).
fn shape_problems(published: &Value, ours: &Value, at: &str) -> Vec<String> {
    match (published, ours) {
        (Value::Null, _) => Vec::new(),
        (Value::Object(p), Value::Object(o)) => p
            .iter()
            .filter(|(_, v)| !v.is_null())
            .flat_map(|(k, v)| match o.get(k) {
                None => vec![format!("{at}.{k} is missing")],
                Some(ov) => shape_problems(v, ov, &format!("{at}.{k}")),
            })
            .collect(),
        (Value::Array(p), Value::Array(o)) => match (p.first(), o.first()) {
            (Some(pv), Some(ov)) => shape_problems(pv, ov, &format!("{at}[0]")),
            (Some(_), None) => vec![format!("{at} is empty")],
            _ => Vec::new(),
        },
        (Value::Bool(_), Value::Bool(_))
        | (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_)) => Vec::new(),
        (p, o) => vec![format!("{at}: published {p}, sandbox {o}")],
    }
}

fn assert_same_shape(name: &str, published: &Value, ours: &Value) {
    let problems = shape_problems(published, ours, "$");
    assert!(
        problems.is_empty(),
        "{name}: {problems:#?}\nsandbox: {ours:#}"
    );
}

async fn get(
    h: &Harness,
    path_and_query: &str,
    prefer: &str,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1.0{path_and_query}", h.sandbox.base_url()))
        .bearer_auth(h.user_token.expose())
        .header("prefer", prefer)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap())
}

#[tokio::test]
async fn the_sandbox_answers_with_the_published_shapes() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let first = hours_from_now(2);
    let ids = g
        .seed_events(
            USER_OID,
            &[
                event_body("Plan shopping list", first, 90),
                event_body("Pick up car", first + calsync_testkit::graph::days(1), 60),
                event_body(
                    "Attend service",
                    first + calsync_testkit::graph::days(2),
                    90,
                ),
            ],
        )
        .unwrap();
    let window = format!(
        "startdatetime={}&enddatetime={}",
        hours_from_now(-24),
        hours_from_now(24 * 30)
    );

    // Initial round, first page (maxpagesize=2, as in the published request).
    let (status, _, page) = get(
        &h,
        &format!("/me/calendarView/delta?{window}"),
        "odata.maxpagesize=2",
    )
    .await;
    assert_eq!(status, 200);
    let published = fixture("delta-calendarview-page-nextlink.json");
    assert_same_shape("delta page", &published, &page);
    let parsed: DeltaPage = serde_json::from_value(page.clone()).unwrap();
    let reference: DeltaPage = serde_json::from_value(published).unwrap();
    assert_eq!(parsed.next_link.is_some(), reference.next_link.is_some());
    assert_eq!(parsed.delta_link.is_some(), reference.delta_link.is_some());
    assert_eq!(parsed.value.len(), reference.value.len());

    // Finish the round, then one change and one deletion: the next round's first page.
    let mut next = parsed.next_link;
    let mut delta_link = None;
    while let Some(link) = next {
        let path = link.split("/v1.0").nth(1).unwrap().to_owned();
        let (_, _, page) = get(&h, &path, "odata.maxpagesize=2").await;
        let page: DeltaPage = serde_json::from_value(page).unwrap();
        next = page.next_link;
        delta_link = delta_link.or(page.delta_link);
    }
    g.update_event(
        USER_OID,
        &ids[2],
        json!({"location": {
            "displayName": "Chapel of Saint Ignatius",
            "address": {"street": "900 Broadway", "city": "Seattle", "state": "WA",
                        "countryOrRegion": "United States", "postalCode": ""},
            "coordinates": {"latitude": 47.6105, "longitude": -122.321}
        }}),
    )
    .unwrap();
    g.delete_event(USER_OID, &ids[0]).unwrap();
    let path = delta_link
        .unwrap()
        .split("/v1.0")
        .nth(1)
        .unwrap()
        .to_owned();
    let (_, _, round) = get(&h, &path, "odata.maxpagesize=2").await;
    let published = fixture("delta-calendarview-next-round-removed-deltalink.json");
    // Graph orders items freely: compare tombstone with tombstone, change with change.
    let split = |page: &Value| {
        let items = page["value"].as_array().cloned().unwrap_or_default();
        let (gone, changed): (Vec<Value>, Vec<Value>) =
            items.into_iter().partition(|i| i.get("@removed").is_some());
        (gone, changed)
    };
    let (their_gone, their_changed) = split(&published);
    let (our_gone, our_changed) = split(&round);
    assert_same_shape("tombstone", &their_gone[0], &our_gone[0]);
    assert_same_shape("changed event", &their_changed[0], &our_changed[0]);
    let mut envelope = published.clone();
    envelope["value"] = json!([]);
    assert_same_shape("next round", &envelope, &round);
    let parsed: DeltaPage = serde_json::from_value(round).unwrap();
    assert!(parsed.delta_link.is_some() && parsed.next_link.is_none());
    assert_eq!(parsed.value.iter().filter(|e| e.is_tombstone()).count(), 1);

    // A throttled call.
    g.add_fault(FaultRule::new(
        FaultRoute::EventReads,
        GraphFault::Throttle {
            retry_after: Some(10),
        },
        FaultRate::Next(1),
    ));
    let (status, headers, body) = get(&h, &format!("/me/events/{}", ids[1]), "").await;
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "10");
    assert_same_shape("429", &fixture("error-429-throttled.json"), &body);
    serde_json::from_value::<GraphErrorBody>(body).unwrap();

    // The recurring event of the published create example.
    let created = reqwest::Client::new()
        .post(format!("{}/v1.0/me/events", h.sandbox.base_url()))
        .bearer_auth(h.user_token.expose())
        .json(&json!({
            "subject": "Let's go for lunch",
            "body": {"contentType": "HTML", "content": "Does late morning work for you?"},
            "start": {"dateTime": "2017-09-04T12:00:00", "timeZone": "Pacific Standard Time"},
            "end": {"dateTime": "2017-09-04T14:00:00", "timeZone": "Pacific Standard Time"},
            "recurrence": {
                "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
                "range": {"type": "endDate", "startDate": "2017-09-04", "endDate": "2017-12-31"}
            },
            "location": {"displayName": "Harry's Bar"},
            "attendees": [{"emailAddress": {"address": "AdeleV@contoso.onmicrosoft.com", "name": "Adele Vance"}, "type": "required"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let created: Value = created.json().await.unwrap();
    let published = fixture("event-recurring-series-master.json");
    assert_same_shape("series master", &published, &created);
    let ours: GraphEvent = serde_json::from_value(created.clone()).unwrap();
    let theirs: GraphEvent = serde_json::from_value(published).unwrap();
    assert!(ours.is_series_master() && theirs.is_series_master());
    assert_eq!(ours.recurrence, theirs.recurrence);
    assert_eq!(
        ours.original_start_time_zone,
        theirs.original_start_time_zone
    );

    // A subscription, its validation, a change notification and a lifecycle event.
    let subscriber = TestSubscriber::start().await.unwrap();
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
    let response = reqwest::Client::new()
        .post(format!("{}/v1.0/subscriptions", h.sandbox.base_url()))
        .bearer_auth(h.user_token.expose())
        .json(&json!({
            "changeType": "created,updated,deleted",
            "notificationUrl": format!("{}/notifications", subscriber.base_url()),
            "lifecycleNotificationUrl": format!("{}/lifecycle", subscriber.base_url()),
            "resource": "me/events",
            "expirationDateTime": expires.to_string(),
            "clientState": "secretClientState",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let subscription: Value = response.json().await.unwrap();
    assert_same_shape(
        "subscription",
        &fixture("subscription-create-response.json"),
        &subscription,
    );
    let subscription: Subscription = serde_json::from_value(subscription).unwrap();
    assert_eq!(subscription.application_id.as_deref(), Some(CLIENT_ID));

    g.insert_event(USER_OID, event_body("Notify me", hours_from_now(3), 30))
        .unwrap();
    let delivered = g.wait_for_notifications(1, Duration::from_secs(5)).await;
    assert_eq!(delivered.len(), 1);
    let body: Value = serde_json::from_str(&delivered[0].sent).unwrap();
    assert_same_shape(
        "change notification",
        &fixture("change-notification-basic.json"),
        &body,
    );
    let parsed = parse_collection(body.to_string().as_bytes()).unwrap();
    assert_eq!(parsed[0].subscription_id, subscription.id);
    assert_eq!(
        parsed[0].client_state.as_ref().map(|s| s.expose()),
        Some("secretClientState")
    );
    assert_eq!(parsed[0].tenant_id.as_deref(), Some(TENANT));

    let lifecycle = g
        .send_lifecycle(&subscription.id, LifecycleEvent::ReauthorizationRequired)
        .await
        .unwrap();
    assert_eq!(lifecycle.status, Some(202));
    let body: Value = serde_json::from_str(&lifecycle.sent).unwrap();
    assert_same_shape(
        "lifecycle",
        &fixture("lifecycle-reauthorization-required.json"),
        &body,
    );
    let parsed = parse_collection(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed[0].lifecycle_event.as_deref(),
        Some("reauthorizationRequired")
    );

    // The identity part's token error.
    let response = reqwest::Client::new()
        .post(format!(
            "{}/{TENANT}/oauth2/v2.0/token",
            h.sandbox.base_url()
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", CLIENT_ID),
            ("client_secret", calsync_testkit::graph::CLIENT_SECRET),
            ("scope", "https://foo.microsoft.com/mail.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_same_shape(
        "token error",
        &fixture("token-error-invalid-scope.json"),
        &body,
    );
    let parsed: TokenErrorBody = serde_json::from_value(body).unwrap();
    assert_eq!(parsed.error, "invalid_scope");
}
