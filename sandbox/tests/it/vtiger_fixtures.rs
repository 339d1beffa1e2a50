//! The emulator answers the requests captured from a real vtiger 8.2 install with replies of
//! the same shape (and, where the state can be rebuilt, the same values).
//!
//! Each fixture is replayed against a fresh emulator prepared with the state the capture
//! implies: users `admin` (19x1) and `tokyo` (19x5), records rebuilt from the capture itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

use calsync_sandbox::vtiger::{serve_vtiger, SeedEvent, UserSpec, VtigerState};
use jiff::civil::DateTime;
use md5::{Digest, Md5};
use serde_json::{Map, Value};

const ADMIN_KEY: &str = "adminAccessKey";
const TOKYO_KEY: &str = "tokyoAccessKey";

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vtiger")
}

fn load(name: &str) -> Value {
    let bytes = std::fs::read(fixtures_dir().join(name)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A JSON value's structure: object keys with their shapes, list length and first item, types.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), shape(value)))
                .collect(),
        ),
        Value::Array(items) => serde_json::json!({
            "len": items.len(),
            "first": items.first().map(shape),
        }),
        Value::String(_) => Value::String("string".into()),
        Value::Number(_) => Value::String("number".into()),
        Value::Bool(_) => Value::String("bool".into()),
        Value::Null => Value::String("null".into()),
    }
}

fn record_of(value: &Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

fn text(record: &Map<String, Value>, key: &str) -> String {
    record
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn number(id: &str) -> u64 {
    id.rsplit('x').next().unwrap().parse().unwrap()
}

/// Put a captured record into the emulator, as it was at capture time.
fn seed_record(state: &VtigerState, record: &Map<String, Value>, deleted: bool) {
    let modified = DateTime::strptime("%Y-%m-%d %H:%M:%S", text(record, "modifiedtime")).ok();
    let reminder = text(record, "reminder_time");
    let fields: BTreeMap<String, String> = record
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or("").to_owned()))
        .collect();
    let id = state.seed_event(SeedEvent {
        owner: number(&text(record, "assigned_user_id")),
        fields,
        reminder_minutes: reminder.parse().ok(),
        invitees: vec![],
        crmid: Some(number(&text(record, "id"))),
        modified,
    });
    if deleted {
        let at = state.now_epoch();
        // Deleted at its own modification time, as the capture shows.
        state.set_clock(modified.map(epoch).unwrap_or(at));
        assert!(state.ui_delete(&id));
        state.set_clock(at);
    }
}

fn epoch(at: DateTime) -> i64 {
    jiff::tz::TimeZone::UTC
        .to_timestamp(at)
        .unwrap()
        .as_second()
}

fn login_digest(token: &str, key: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(token.as_bytes());
    hasher.update(key.as_bytes());
    hex::encode(hasher.finalize())
}

struct Replay {
    state: VtigerState,
    base: String,
    http: reqwest::Client,
}

impl Replay {
    async fn send(&self, method: &str, params: &BTreeMap<String, String>) -> (u16, String, String) {
        let url = format!("{}/webservice.php", self.base);
        let request = if method == "GET" {
            self.http.get(&url).query(params)
        } else {
            self.http.post(&url).form(params)
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, content_type, response.text().await.unwrap())
    }

    async fn session(&self, user: &str, key: &str) -> String {
        let mut params = BTreeMap::from([
            ("operation".to_owned(), "getchallenge".to_owned()),
            ("username".to_owned(), user.to_owned()),
        ]);
        let (_, _, body) = self.send("GET", &params).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        let token = body["result"]["token"].as_str().unwrap().to_owned();
        params.insert("operation".into(), "login".into());
        params.insert("accessKey".into(), login_digest(&token, key));
        let (_, _, body) = self.send("POST", &params).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        body["result"]["sessionName"].as_str().unwrap().to_owned()
    }
}

/// Prepare the emulator for one capture; returns whose session the request needs.
fn prepare(name: &str, state: &VtigerState) -> Option<&'static str> {
    let first_record = |fixture: &str| record_of(&load(fixture)["response"]["body"]["result"]);
    let event_3 = || first_record("real-vtiger-retrieve-events.json");
    match name {
        "real-vtiger-getchallenge.json" | "real-vtiger-login.json" => None,
        "real-vtiger-login-wrong-key.json" | "real-vtiger-invalid-session.json" => None,
        "real-vtiger-sync-stock-php8-http500.json" | "real-vtiger-logout-http500.json" => {
            state.set_php8_stock(true);
            Some("admin")
        }
        "real-vtiger-create-events-user-asia-tokyo.json"
        | "real-vtiger-create-events-user-date-format.json" => Some("tokyo"),
        "real-vtiger-retrieve-events.json"
        | "real-vtiger-query-events-by-id.json"
        | "real-vtiger-query-events-by-date.json"
        | "real-vtiger-update-full-reminder-drift.json"
        | "real-vtiger-update-partial-error.json"
        | "real-vtiger-delete-events.json" => {
            seed_record(state, &event_3(), false);
            Some("admin")
        }
        "real-vtiger-revise-drops-reminder.json" => {
            seed_record(
                state,
                &first_record("real-vtiger-update-full-reminder-drift.json"),
                false,
            );
            Some("admin")
        }
        "real-vtiger-retrieve-deleted.json"
        | "real-vtiger-delete-deleted.json"
        | "real-vtiger-update-deleted.json"
        | "real-vtiger-query-deleted.json" => {
            seed_record(state, &event_3(), true);
            Some("admin")
        }
        "real-vtiger-retrieve-events-other-user-as-admin.json" => {
            seed_record(
                state,
                &first_record("real-vtiger-retrieve-events-other-user-as-admin.json"),
                false,
            );
            Some("admin")
        }
        "real-vtiger-sync-updated.json" => {
            let result = &load(name)["response"]["body"]["result"];
            seed_record(state, &record_of(&result["updated"][0]), false);
            Some("admin")
        }
        "real-vtiger-sync-deleted.json" | "real-vtiger-sync-incremental-sees-delete.json" => {
            let result = &load(name)["response"]["body"]["result"];
            let id = result["deleted"][0].as_str().unwrap();
            let last = result["lastModifiedTime"].as_i64().unwrap();
            let mut record = event_3();
            record.insert("id".into(), Value::String(id.to_owned()));
            let at = jiff::Timestamp::from_second(last).unwrap();
            let text = jiff::tz::TimeZone::UTC
                .to_datetime(at)
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string();
            record.insert("modifiedtime".into(), Value::String(text));
            seed_record(state, &record, true);
            Some("admin")
        }
        "real-vtiger-sync-admin-application.json"
        | "real-vtiger-sync-admin-misses-other-owner.json" => {
            let result =
                &load("real-vtiger-sync-admin-application.json")["response"]["body"]["result"];
            for record in result["updated"].as_array().unwrap() {
                seed_record(state, &record_of(record), false);
            }
            Some("admin")
        }
        "real-vtiger-sync-reassigned-event-vanishes.json" => {
            // Created by the admin, then given to tokyo after the cursor.
            let mut record = event_3();
            record.insert("assigned_user_id".into(), Value::String("19x5".into()));
            record.insert(
                "modifiedtime".into(),
                Value::String("2026-11-27 00:58:40".into()),
            );
            seed_record(state, &record, false);
            Some("admin")
        }
        "real-vtiger-sync-empty.json"
        | "real-vtiger-sync-without-elementtype-http500.json"
        | "real-vtiger-describe-events.json"
        | "real-vtiger-create-events.json"
        | "real-vtiger-create-missing-mandatory.json"
        | "real-vtiger-reminder-3600s-becomes-61min.json"
        | "real-vtiger-retrieve-nonexistent.json" => Some("admin"),
        other => panic!("no scenario for {other}"),
    }
}

/// Whether a record value depends on when (or in which order) the replay wrote it.
fn volatile(name: &str, key: &str) -> bool {
    let writes = ["create", "update", "revise", "reminder"]
        .iter()
        .any(|op| name.contains(op));
    let creates = name.contains("create") || name.contains("reminder");
    match key {
        "createdtime" | "modifiedtime" => writes,
        "id" | "label" => creates,
        _ => false,
    }
}

fn same_values(name: &str, expected: &Value, actual: &Value) {
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) if want.contains_key("subject") => {
            for (key, value) in want {
                if volatile(name, key) {
                    continue;
                }
                assert_eq!(got.get(key), Some(value), "{name}: field {key}");
            }
        }
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                if matches!(
                    key.as_str(),
                    "sessionName" | "token" | "serverTime" | "expireTime"
                ) {
                    continue;
                }
                if key == "fields" {
                    // describe: same fields, same mandatory flags, in the same order.
                    let names = |list: &Value| -> Vec<(String, bool)> {
                        list.as_array()
                            .unwrap()
                            .iter()
                            .map(|f| {
                                (
                                    f["name"].as_str().unwrap().to_owned(),
                                    f["mandatory"].as_bool().unwrap(),
                                )
                            })
                            .collect()
                    };
                    assert_eq!(names(value), names(&got["fields"]), "{name}");
                    continue;
                }
                same_values(name, value, got.get(key).unwrap_or(&Value::Null));
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            assert_eq!(want.len(), got.len(), "{name}");
            for (want, got) in want.iter().zip(got) {
                same_values(name, want, got);
            }
        }
        _ => assert_eq!(expected, actual, "{name}"),
    }
}

#[tokio::test]
async fn the_emulator_answers_like_the_real_install() {
    let mut replayed = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("the repository's fixtures") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.starts_with("real-vtiger-") || !name.ends_with(".json") {
            continue;
        }
        let fixture = load(&name);
        let state = VtigerState::new();
        let mut admin = UserSpec::new("admin", ADMIN_KEY).admin().with_id(1);
        admin.first_name = "Admin".into();
        admin.last_name = "Administrator".into();
        state.add_user(admin);
        state.add_user(
            UserSpec::new("tokyo", TOKYO_KEY)
                .zone("Asia/Tokyo")
                .date_format("dd-mm-yyyy")
                .with_id(5),
        );
        // The capture's own clock: 2026-11-27, shortly after the records were made.
        state.set_clock(1_795_741_200);
        let (base, server) = serve_vtiger(state.clone()).await.unwrap();
        let replay = Replay {
            state: state.clone(),
            base,
            http: reqwest::Client::new(),
        };
        let who = prepare(&name, &state);

        let request = &fixture["request"];
        let method = request["method"].as_str().unwrap();
        let mut params: BTreeMap<String, String> = request["params"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                let text = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                (key.clone(), text)
            })
            .collect();
        if let Some(user) = who {
            let key = if user == "tokyo" {
                TOKYO_KEY
            } else {
                ADMIN_KEY
            };
            let session = replay.session(user, key).await;
            if params.contains_key("sessionName") {
                params.insert("sessionName".into(), session);
            }
        }
        if name == "real-vtiger-login.json" || name == "real-vtiger-login-wrong-key.json" {
            let challenge = BTreeMap::from([
                ("operation".to_owned(), "getchallenge".to_owned()),
                ("username".to_owned(), "admin".to_owned()),
            ]);
            let (_, _, body) = replay.send("GET", &challenge).await;
            let body: Value = serde_json::from_str(&body).unwrap();
            if name == "real-vtiger-login.json" {
                let token = body["result"]["token"].as_str().unwrap();
                params.insert("accessKey".into(), login_digest(token, ADMIN_KEY));
            }
        }

        let (status, content_type, body) = replay.send(method, &params).await;
        let response = &fixture["response"];
        assert_eq!(
            status as u64,
            response["http_status"].as_u64().unwrap(),
            "{name}"
        );
        let want_type = response["content_type"].as_str().unwrap();
        assert_eq!(
            content_type.split(';').next(),
            want_type.split(';').next(),
            "{name}"
        );
        let want = &response["body"];
        if let Some(raw) = want.get("_raw_text") {
            assert_eq!(body, raw.as_str().unwrap(), "{name}");
        } else {
            let got: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(shape(want), shape(&got), "{name}: shape\n{got:#}");
            same_values(&name, want, &got);
        }
        replayed += 1;
        server.shutdown().await;
    }
    assert!(replayed >= 33, "only {replayed} captures replayed");
}

#[tokio::test]
async fn edits_without_inviteesid_wipe_invitees_and_reminders() {
    let state = VtigerState::new();
    state.add_user(UserSpec::new("admin", ADMIN_KEY).admin().with_id(1));
    state.add_user(UserSpec::new("tokyo", TOKYO_KEY).with_id(5));
    let id = state.seed_event(SeedEvent {
        owner: 1,
        fields: BTreeMap::from([("subject".to_owned(), "x".to_owned())]),
        reminder_minutes: Some(15),
        invitees: vec![5],
        ..SeedEvent::default()
    });
    let (base, _server) = serve_vtiger(state.clone()).await.unwrap();
    let replay = Replay {
        state: state.clone(),
        base,
        http: reqwest::Client::new(),
    };
    let session = replay.session("admin", ADMIN_KEY).await;
    let revise = |element: String, invitees: Option<&str>| {
        let mut params = BTreeMap::from([
            ("operation".to_owned(), "revise".to_owned()),
            ("sessionName".to_owned(), session.clone()),
            ("element".to_owned(), element),
        ]);
        if let Some(invitees) = invitees {
            params.insert("inviteesid".into(), invitees.to_owned());
        }
        params
    };
    let element = format!(r#"{{"id":"{id}","location":"A","reminder_time":"900"}}"#);
    replay.send("POST", &revise(element, Some("5"))).await;
    let kept = replay.state.event(&id).unwrap();
    assert_eq!(kept.invitees.len(), 1);
    assert_eq!(kept.reminder, Some(15));

    let element = format!(r#"{{"id":"{id}","location":"B"}}"#);
    let (_, _, body) = replay.send("POST", &revise(element, None)).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["result"]["reminder_time"], "");
    let wiped = replay.state.event(&id).unwrap();
    assert!(wiped.invitees.is_empty());
    assert_eq!(wiped.reminder, None);
}

#[tokio::test]
async fn protocol_rules() {
    let state = VtigerState::new();
    state.add_user(UserSpec::new("admin", ADMIN_KEY).admin().with_id(1));
    let (base, _server) = serve_vtiger(state.clone()).await.unwrap();
    let replay = Replay {
        state: state.clone(),
        base,
        http: reqwest::Client::new(),
    };
    let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let code = |body: &str| -> String {
        let body: Value = serde_json::from_str(body).unwrap();
        body["error"]["code"].as_str().unwrap_or("").to_owned()
    };

    // Unknown operation: a PHP fatal.
    let (status, _, body) = replay
        .send("GET", &params(&[("operation", "frobnicate")]))
        .await;
    assert_eq!((status, body.as_str()), (500, ""));
    // No session on a protected operation.
    let (status, _, body) = replay
        .send(
            "GET",
            &params(&[("operation", "describe"), ("elementType", "Events")]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(code(&body), "AUTHENTICATION_REQUIRED");

    let session = replay.session("admin", ADMIN_KEY).await;
    // A POST operation's parameters in the query string are not read.
    let url = format!(
        "{}/webservice.php?operation=delete&sessionName={session}&id=18x1",
        replay.base
    );
    let body = replay
        .http
        .post(url)
        .form(&[("x", "y")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(code(&body), "INVALID_ID_ATTRIBUTE", "{body}");
    // logout is POST only.
    let (_, _, body) = replay
        .send(
            "GET",
            &params(&[("operation", "logout"), ("sessionName", &session)]),
        )
        .await;
    assert_eq!(code(&body), "OPERATION_NOT_SUPPORTED");
    // VTQL needs its semicolon; the page cap is 100.
    let (_, _, body) = replay
        .send(
            "GET",
            &params(&[
                ("operation", "query"),
                ("sessionName", &session),
                ("query", "SELECT * FROM Events"),
            ]),
        )
        .await;
    assert_eq!(code(&body), "QUERY_SYNTAX_ERROR");
    for n in 0..130 {
        state.seed_event(SeedEvent {
            owner: 1,
            fields: BTreeMap::from([("subject".to_owned(), format!("e{n}"))]),
            ..SeedEvent::default()
        });
    }
    let (_, _, body) = replay
        .send(
            "GET",
            &params(&[
                ("operation", "query"),
                ("sessionName", &session),
                ("query", "SELECT id FROM Events LIMIT 500;"),
            ]),
        )
        .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["result"].as_array().unwrap().len(), 100);
    let (_, _, body) = replay
        .send(
            "GET",
            &params(&[
                ("operation", "query"),
                ("sessionName", &session),
                (
                    "query",
                    "SELECT count(*) FROM Events WHERE subject LIKE 'e1%';",
                ),
            ]),
        )
        .await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["result"][0]["count"], "41");
    // sync from zero is a PHP fatal on a real install.
    let (status, _, _) = replay
        .send(
            "GET",
            &params(&[
                ("operation", "sync"),
                ("sessionName", &session),
                ("modifiedTime", "0"),
                ("elementType", "Events"),
            ]),
        )
        .await;
    assert_eq!(status, 500);
    // A second login leaves the first session working (vtiger 8.2.0, measured); on a stricter
    // install (the switch) it ends it.
    let describe = |session: String| {
        let replay = &replay;
        async move {
            let (_, _, body) = replay
                .send(
                    "GET",
                    &params(&[
                        ("operation", "describe"),
                        ("sessionName", &session),
                        ("elementType", "Events"),
                    ]),
                )
                .await;
            code(&body)
        }
    };
    let other = replay.session("admin", ADMIN_KEY).await;
    assert_eq!(describe(session.clone()).await, "");
    assert_eq!(describe(other.clone()).await, "");
    state.set_challenge_ends_sessions(true);
    let third = replay.session("admin", ADMIN_KEY).await;
    assert_eq!(describe(other).await, "INVALID_SESSIONID");
    assert_eq!(describe(third).await, "");
    assert_eq!(state.request_count("describe"), 5);
}
