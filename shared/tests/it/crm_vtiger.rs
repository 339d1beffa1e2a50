//! The vtiger adapter against the vtiger emulator over real HTTP, plus every captured vtiger
//! payload in `fixtures/vtiger/` read through the adapter's own parsers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use calsync::adapters::crm::vtiger::{
    mapping, wire, AccessKey, FeedPreference, VtigerConfig, VtigerCrm,
};
use calsync::adapters::crm::{
    ChangeCursor, ChangeSet, ChangesRequest, CrmError, CrmErrorCode, CrmEventId, CrmPort, CrmUser,
    CrmUserId, DeleteOutcome, EventPatch, GoneReason, NewEvent,
};
use calsync_core::event::{CalendarEvent, EventField, EventStatus, EventTime, Sensitivity};
use calsync_core::time::TimeWindow;
use calsync_sandbox::vtiger::{
    serve_vtiger, Fault, SeedEvent, UserSpec, VtigerServer, VtigerState,
};
use jiff::civil::DateTime;
use jiff::{Timestamp, ToSpan};

const ADMIN_KEY: &str = "k3yOfTheAdmin";

struct Crm {
    state: VtigerState,
    base: String,
    _server: VtigerServer,
}

async fn start() -> Crm {
    let state = VtigerState::new();
    state.add_user(UserSpec::new("admin", ADMIN_KEY).admin().with_id(1));
    state.add_user(
        UserSpec::new("maria", "mk")
            .zone("Europe/Madrid")
            .with_id(5),
    );
    state.add_user(UserSpec::new("pedro", "pk").with_id(6));
    let (base, server) = serve_vtiger(state.clone()).await.unwrap();
    Crm {
        state,
        base,
        _server: server,
    }
}

impl Crm {
    fn config(&self) -> VtigerConfig {
        VtigerConfig::new(&self.base, "admin", AccessKey::new(ADMIN_KEY))
    }

    fn adapter(&self) -> VtigerCrm {
        VtigerCrm::new(self.config()).unwrap()
    }

    fn adapter_with(&self, tweak: impl FnOnce(&mut VtigerConfig)) -> VtigerCrm {
        let mut config = self.config();
        tweak(&mut config);
        VtigerCrm::new(config).unwrap()
    }

    /// An event last changed a minute ago, well before any cursor a test takes.
    fn seed(&self, owner: u64, subject: &str, start: &str) -> String {
        let earlier = self.state.now().checked_sub(60.seconds()).unwrap();
        self.seed_at(owner, subject, start, Some(earlier))
    }

    fn seed_at(
        &self,
        owner: u64,
        subject: &str,
        start: &str,
        modified: Option<DateTime>,
    ) -> String {
        let (date, time) = start.split_once(' ').unwrap();
        let fields = [
            ("subject", subject),
            ("date_start", date),
            ("time_start", time),
            ("due_date", date),
            ("time_end", "23:00:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        self.state.seed_event(SeedEvent {
            owner,
            fields,
            modified,
            ..SeedEvent::default()
        })
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn window() -> TimeWindow {
    TimeWindow {
        start: ts("2026-01-01T00:00:00Z"),
        end: ts("2027-06-01T00:00:00Z"),
    }
}

fn meeting(subject: &str) -> CalendarEvent {
    let mut event = CalendarEvent::timed(
        subject,
        ts("2026-12-01T09:00:00Z"),
        ts("2026-12-01T10:30:00Z"),
    );
    event.location = "Room 1".into();
    event.description = "agenda\nitem".into();
    event.activity_type = Some("Meeting".into());
    event
}

async fn user(crm: &VtigerCrm, name: &str) -> CrmUser {
    crm.resolve_user(name).await.unwrap()
}

async fn read(
    crm: &VtigerCrm,
    owner: &CrmUser,
    cursor: Option<ChangeCursor>,
    known: &[CrmEventId],
    reconcile: bool,
) -> ChangeSet {
    crm.changes(ChangesRequest {
        owner,
        cursor,
        window: window(),
        known,
        reconcile,
        report_any_gone: false,
    })
    .await
    .unwrap()
}

fn ids(set: &ChangeSet) -> Vec<String> {
    let mut ids: Vec<String> = set
        .upserts
        .iter()
        .map(|event| event.ids.crm.clone().unwrap())
        .collect();
    ids.sort();
    ids
}

fn id(text: &str) -> CrmEventId {
    CrmEventId::new(text)
}

// ---- sessions ------------------------------------------------------------------------------

#[tokio::test]
async fn logs_in_once_and_reuses_the_session() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    assert_eq!(maria.id, CrmUserId::new("19x5"));
    assert_eq!(maria.time_zone.as_deref(), Some("Europe/Madrid"));
    adapter.describe().await.unwrap();
    assert_eq!(adapter.get(&maria, &id("18x999")).await.unwrap(), None);
    assert_eq!(crm.state.request_count("getchallenge"), 1);
    assert_eq!(crm.state.request_count("login"), 1);
}

#[tokio::test]
async fn logs_in_again_after_invalid_or_idle_sessions() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    crm.state.expire_sessions();
    assert!(adapter.describe().await.is_ok());
    assert_eq!(crm.state.request_count("login"), 2);
    crm.state.advance_clock(Duration::from_secs(31 * 60));
    assert!(adapter.get(&maria, &id("18x1")).await.is_ok());
    assert_eq!(crm.state.request_count("login"), 3);
}

#[tokio::test]
async fn two_adapters_as_the_same_user_do_not_break_each_other() {
    let crm = start().await;
    let first = Arc::new(crm.adapter());
    let second = Arc::new(crm.adapter());
    let maria = user(&first, "maria").await;
    let event = first
        .create(
            &maria,
            &NewEvent {
                event: meeting("shared"),
                marker: None,
            },
        )
        .await
        .unwrap();
    let event_id = id(event.ids.crm.as_deref().unwrap());
    crm.state.expire_sessions();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..20 {
        for adapter in [first.clone(), second.clone()] {
            let maria = maria.clone();
            let event_id = event_id.clone();
            tasks.spawn(async move {
                if round % 2 == 0 {
                    adapter
                        .get(&maria, &event_id)
                        .await
                        .map(|found| found.is_some())
                } else {
                    adapter.describe().await.map(|_| true)
                }
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        assert!(joined.unwrap().unwrap(), "a call failed");
    }
    // One fresh login for everyone after the expiry: no challenge ended a live session.
    assert_eq!(crm.state.request_count("login"), 2);
}

#[tokio::test]
async fn survives_another_process_taking_the_session() {
    let crm = start().await;
    // An install where a new challenge ends the user's earlier sessions.
    crm.state.set_challenge_ends_sessions(true);
    let adapter = crm.adapter();
    adapter.describe().await.unwrap();
    // Another process asks for a challenge for the same CRM user: our session ends.
    let http = reqwest::Client::new();
    http.get(format!(
        "{}/webservice.php?operation=getchallenge&username=admin",
        crm.base
    ))
    .send()
    .await
    .unwrap();
    assert!(adapter.describe().await.is_ok());
    assert_eq!(crm.state.request_count("login"), 2);
}

#[tokio::test]
async fn wrong_access_key_is_a_login_error() {
    let crm = start().await;
    let adapter = crm.adapter_with(|config| config.access_key = AccessKey::new("nope"));
    let err = adapter.describe().await.unwrap_err();
    assert!(
        matches!(
            &err,
            CrmError::Login {
                code: CrmErrorCode::InvalidUserCredentials,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("nope"));
}

#[tokio::test]
async fn works_with_an_old_vtiger_login_reply() {
    let crm = start().await;
    crm.state.set_vtiger_version("5.4.0");
    let adapter = crm.adapter();
    assert_eq!(user(&adapter, "pedro").await.id, CrmUserId::new("19x6"));
}

// ---- users and schema ----------------------------------------------------------------------

#[tokio::test]
async fn resolves_users_and_describes_events() {
    let crm = start().await;
    let adapter = crm.adapter();
    let err = adapter.resolve_user("nobody' OR '1'='1").await.unwrap_err();
    assert!(matches!(err, CrmError::UnknownUser { .. }), "{err}");
    let schema = adapter.describe().await.unwrap();
    assert_eq!(schema.id_prefix, "18");
    let mandatory: Vec<&str> = schema.mandatory_fields().collect();
    assert!(mandatory.contains(&"duration_hours"), "{mandatory:?}");
    assert!(schema
        .field("activitytype")
        .unwrap()
        .picklist
        .contains(&"Meeting".to_owned()));
}

// ---- writes and their quirks ---------------------------------------------------------------

#[tokio::test]
async fn a_60_minute_reminder_stays_60_after_ten_round_trips() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let mut event = meeting("reminder");
    event.reminder_minutes = Some(60);
    let created = adapter
        .create(
            &maria,
            &NewEvent {
                event,
                marker: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.reminder_minutes, Some(60));
    let event_id = id(created.ids.crm.as_deref().unwrap());
    for round in 0..10 {
        let mut current = adapter.get(&maria, &event_id).await.unwrap().unwrap();
        assert_eq!(current.reminder_minutes, Some(60), "round {round}");
        current.subject = format!("reminder {round}");
        let written = adapter
            .update(
                &maria,
                &event_id,
                &EventPatch {
                    event: current,
                    fields: vec![EventField::Subject],
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(written.reminder_minutes, Some(60), "round {round}");
        // The CRM itself keeps 61, the value it always makes of 3600 s: no drift.
        assert_eq!(
            crm.state.event(event_id.as_str()).unwrap().reminder,
            Some(61)
        );
    }
}

#[tokio::test]
async fn a_partial_update_keeps_the_reminder_and_never_names_the_invitees() {
    let crm = start().await;
    crm.state.set_invitee_module(true);
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let mut event = meeting("with people");
    event.reminder_minutes = Some(15);
    let created = adapter
        .create(
            &maria,
            &NewEvent {
                event,
                marker: None,
            },
        )
        .await
        .unwrap();
    let event_id = id(created.ids.crm.as_deref().unwrap());
    // pedro is invited in the CRM's web UI.
    assert!(crm.state.ui_invite(event_id.as_str(), &[6]));

    let mut moved = created.clone();
    moved.location = "Room 2".into();
    let written = adapter
        .update(
            &maria,
            &event_id,
            &EventPatch {
                event: moved,
                fields: vec![EventField::Location],
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.location, "Room 2");
    assert_eq!(written.reminder_minutes, Some(15));
    assert_eq!(written.subject, "with people", "fields not written stay");
    let stored = crm.state.event(event_id.as_str()).unwrap();
    assert_eq!(stored.invitees.into_iter().collect::<Vec<_>>(), vec![6]);
    assert_eq!(stored.reminder, Some(15));
    // Every write carried the reminder (vtiger drops it otherwise) and none named the
    // invitees (the module can keep them only then).
    for request in crm.state.requests() {
        if matches!(request.operation.as_str(), "create" | "revise") {
            assert!(!request.params.contains_key("inviteesid"), "{request:?}");
            assert!(
                request.params["element"].contains("reminder_time"),
                "{request:?}"
            );
        }
    }
}

#[tokio::test]
async fn deleted_records_are_gone_not_errors() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let created = adapter
        .create(
            &maria,
            &NewEvent {
                event: meeting("doomed"),
                marker: None,
            },
        )
        .await
        .unwrap();
    let event_id = id(created.ids.crm.as_deref().unwrap());
    assert_eq!(
        adapter.delete(&event_id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        adapter.delete(&event_id).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert_eq!(adapter.get(&maria, &event_id).await.unwrap(), None);
    let patch = EventPatch {
        event: created,
        fields: vec![EventField::Subject],
    };
    assert_eq!(
        adapter.update(&maria, &event_id, &patch).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn times_are_wall_clock_in_the_server_zone_and_durations_recomputed() {
    let crm = start().await;
    crm.state.set_server_zone("Europe/Madrid").unwrap();
    let adapter = crm.adapter_with(|config| config.server_zone = "Europe/Madrid".into());
    let pedro = user(&adapter, "pedro").await;
    for (start, end, local_start, local_end) in [
        (
            "2026-07-01T08:00:00Z",
            "2026-07-01T09:30:00Z",
            "10:00:00",
            "11:30:00",
        ),
        (
            "2026-12-01T08:00:00Z",
            "2026-12-01T09:30:00Z",
            "09:00:00",
            "10:30:00",
        ),
    ] {
        let event = CalendarEvent::timed("zone", ts(start), ts(end));
        let created = adapter
            .create(
                &pedro,
                &NewEvent {
                    event: event.clone(),
                    marker: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(created.time, event.time);
        let stored = crm
            .state
            .event(created.ids.crm.as_deref().unwrap())
            .unwrap();
        assert_eq!(stored.fields["time_start"], local_start);
        assert_eq!(stored.fields["time_end"], local_end);
        assert_eq!(stored.fields["duration_hours"], "1");
        assert_eq!(stored.fields["duration_minutes"], "30");
        let modified = created.modified.crm.unwrap();
        assert!((modified.as_second() - crm.state.now_epoch()).abs() < 5);
    }
    // A move recomputes the durations on the server.
    let created = adapter
        .create(
            &pedro,
            &NewEvent {
                event: CalendarEvent::timed(
                    "long",
                    ts("2026-12-02T08:00:00Z"),
                    ts("2026-12-02T09:00:00Z"),
                ),
                marker: None,
            },
        )
        .await
        .unwrap();
    let event_id = id(created.ids.crm.as_deref().unwrap());
    let mut longer = created.clone();
    longer.time = EventTime::Timed {
        start: ts("2026-12-02T08:00:00Z"),
        end: ts("2026-12-02T11:45:00Z"),
    };
    adapter
        .update(
            &pedro,
            &event_id,
            &EventPatch {
                event: longer,
                fields: vec![EventField::Time],
            },
        )
        .await
        .unwrap()
        .unwrap();
    let stored = crm.state.event(event_id.as_str()).unwrap();
    assert_eq!(stored.fields["duration_hours"], "3");
    assert_eq!(stored.fields["duration_minutes"], "45");
}

#[tokio::test]
async fn all_day_events_use_the_owners_zone() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let start = "2026-12-01".parse().unwrap();
    let end = "2026-12-02".parse().unwrap();
    let mut event = CalendarEvent::all_day("Fiesta", start, end);
    event.status = EventStatus::Held;
    event.sensitivity = Sensitivity::Private;
    let created = adapter
        .create(
            &maria,
            &NewEvent {
                event,
                marker: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(created.time, EventTime::AllDay { start, end });
    assert_eq!(created.status, EventStatus::Held);
    assert_eq!(created.sensitivity, Sensitivity::Private);
    let stored = crm
        .state
        .event(created.ids.crm.as_deref().unwrap())
        .unwrap();
    assert_eq!(stored.fields["date_start"], "2026-11-30");
    assert_eq!(stored.fields["time_start"], "23:00:00");
    assert_eq!(stored.fields["notime"], "1");
    assert_eq!(stored.fields["visibility"], "Private");
    assert_eq!(stored.fields["sendnotification"], "0");
}

// ---- reading changes -----------------------------------------------------------------------

#[tokio::test]
async fn first_load_by_query_then_sync_with_overlap() {
    let crm = start().await;
    let a = crm.seed(5, "a", "2026-12-01 09:00:00");
    let b = crm.seed(5, "b", "2026-12-02 09:00:00");
    crm.seed(5, "out of window", "2025-01-01 09:00:00");
    crm.seed(6, "pedro's", "2026-12-01 09:00:00");
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;

    let first = read(&adapter, &maria, None, &[], false).await;
    assert_eq!(ids(&first), vec![a.clone(), b.clone()]);
    assert!(first.full_listing && first.sees_deletions && !first.more);
    assert_eq!(crm.state.request_count("sync"), 0, "never sync from zero");

    // Nothing changed: one sync request, nothing new (the overlap repeats are dropped).
    let quiet = read(&adapter, &maria, Some(first.cursor.clone()), &[], false).await;
    assert!(
        quiet.upserts.is_empty() && quiet.gone.is_empty(),
        "{:?}",
        ids(&quiet)
    );
    assert_eq!(crm.state.request_count("sync"), 1);

    crm.state.ui_edit(&a, &[("location", "Sala 3")]);
    let changed = read(&adapter, &maria, Some(quiet.cursor.clone()), &[], false).await;
    assert_eq!(ids(&changed), vec![a.clone()]);
    assert_eq!(changed.upserts[0].location, "Sala 3");
    assert!(changed.sees_deletions && !changed.full_listing);
    // The same change, still inside the overlap, is not delivered twice.
    let again = read(&adapter, &maria, Some(changed.cursor.clone()), &[], false).await;
    assert!(again.upserts.is_empty(), "{:?}", ids(&again));

    for request in crm.state.requests() {
        if request.operation == "sync" {
            let from: i64 = request.params["modifiedTime"].parse().unwrap();
            assert!(from > 0);
            assert_eq!(request.params["syncType"], "application");
            assert_eq!(request.params["elementType"], "Events");
        }
    }
}

#[tokio::test]
async fn sync_reports_deletions_and_departures_of_known_events() {
    let crm = start().await;
    let a = crm.seed(5, "a", "2026-12-01 09:00:00");
    let b = crm.seed(5, "b", "2026-12-02 09:00:00");
    let c = crm.seed(5, "c", "2026-12-03 09:00:00");
    let stranger = crm.seed(6, "not ours", "2026-12-03 09:00:00");
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let known = [id(&a), id(&b), id(&c)];
    let first = read(&adapter, &maria, None, &known, false).await;

    crm.state.ui_delete(&a);
    crm.state.ui_edit(&b, &[("assigned_user_id", "19x6")]);
    crm.state.ui_delete(&stranger);
    let next = read(&adapter, &maria, Some(first.cursor), &known, false).await;
    let mut gone: Vec<(String, GoneReason)> = next
        .gone
        .iter()
        .map(|gone| (gone.id.to_string(), gone.reason))
        .collect();
    gone.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        gone,
        vec![(a, GoneReason::Deleted), (b, GoneReason::LeftOwner)]
    );
    assert!(next.upserts.is_empty());
}

#[tokio::test]
async fn sync_delivers_more_than_a_page_of_ties_once() {
    let crm = start().await;
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let first = read(&adapter, &maria, None, &[], false).await;
    let later = crm.state.now().checked_add(10.seconds()).unwrap();
    let last = later.checked_add(1.second()).unwrap();
    for n in 0..250 {
        crm.seed_at(5, &format!("tie {n}"), "2026-12-05 09:00:00", Some(later));
    }
    for n in 0..50 {
        crm.seed_at(5, &format!("after {n}"), "2026-12-06 09:00:00", Some(last));
    }
    crm.state.advance_clock(Duration::from_secs(20));
    let mut cursor = Some(first.cursor);
    let mut all = Vec::new();
    loop {
        let set = read(&adapter, &maria, cursor.take(), &[], false).await;
        all.extend(ids(&set));
        cursor = Some(set.cursor);
        if !set.more {
            break;
        }
    }
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!((total, all.len()), (300, 300));
}

#[tokio::test]
async fn falls_back_to_query_when_sync_dies_and_finds_deletions_by_absence() {
    let crm = start().await;
    crm.state.set_php8_stock(true);
    let a = crm.seed(5, "a", "2026-12-01 09:00:00");
    let b = crm.seed(5, "b", "2026-12-02 09:00:00");
    let c = crm.seed(5, "c", "2026-12-03 09:00:00");
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let known = [id(&a), id(&b), id(&c)];
    let first = read(&adapter, &maria, None, &known, false).await;

    crm.state.ui_edit(&c, &[("subject", "c2")]);
    let next = read(&adapter, &maria, Some(first.cursor), &known, false).await;
    assert_eq!(ids(&next), vec![c.clone()]);
    assert!(!next.sees_deletions, "query cannot see deletions");
    assert_eq!(crm.state.request_count("sync"), 1);

    // Sync is not tried again right away.
    crm.state.ui_delete(&a);
    crm.state.ui_edit(&b, &[("assigned_user_id", "19x6")]);
    crm.state.reset_counts();
    let reconciled = read(&adapter, &maria, Some(next.cursor), &known, true).await;
    assert_eq!(crm.state.request_count("sync"), 0);
    assert!(reconciled.sees_deletions && reconciled.full_listing);
    let mut gone: Vec<(String, GoneReason)> = reconciled
        .gone
        .iter()
        .map(|gone| (gone.id.to_string(), gone.reason))
        .collect();
    gone.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        gone,
        vec![(a, GoneReason::Deleted), (b, GoneReason::LeftOwner)]
    );
    // One retrieve per missing id, and it was the one that confirmed each.
    assert_eq!(crm.state.request_count("retrieve"), 2);
}

#[tokio::test]
async fn query_fallback_pages_through_ties() {
    let crm = start().await;
    let adapter = crm.adapter_with(|config| config.feed = FeedPreference::QueryOnly);
    let maria = user(&adapter, "maria").await;
    let first = read(&adapter, &maria, None, &[], false).await;
    let later = crm.state.now().checked_add(10.seconds()).unwrap();
    for n in 0..230 {
        crm.seed_at(5, &format!("tie {n}"), "2026-12-05 09:00:00", Some(later));
    }
    for n in 0..30 {
        crm.seed_at(
            5,
            &format!("after {n}"),
            "2026-12-06 09:00:00",
            Some(later.checked_add(3.seconds()).unwrap()),
        );
    }
    crm.state.advance_clock(Duration::from_secs(20));
    let set = read(&adapter, &maria, Some(first.cursor), &[], false).await;
    assert!(!set.more);
    let mut all = ids(&set);
    let total = all.len();
    all.dedup();
    assert_eq!((total, all.len()), (260, 260));
    assert_eq!(crm.state.request_count("sync"), 0);
    // And then nothing new.
    let quiet = read(&adapter, &maria, Some(set.cursor), &[], false).await;
    assert!(quiet.upserts.is_empty(), "{}", quiet.upserts.len());
}

// ---- bad answers ---------------------------------------------------------------------------

#[tokio::test]
async fn bad_answers_are_typed_errors() {
    let crm = start().await;
    let adapter = crm.adapter_with(|config| config.timeout = Duration::from_millis(400));
    let maria = user(&adapter, "maria").await;
    let probe = id("18x1");

    crm.state.inject("retrieve", Fault::html_page(200), Some(1));
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(
        matches!(&err, CrmError::Malformed { reason, .. } if *reason == "not JSON"),
        "{err}"
    );
    assert!(err.is_transient());

    crm.state
        .inject("retrieve", Fault::truncated_json(), Some(1));
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(
        matches!(&err, CrmError::Malformed { reason, .. } if *reason == "truncated JSON"),
        "{err}"
    );

    crm.state.inject(
        "retrieve",
        Fault::error("SOMETHING_NEW", "surprise"),
        Some(1),
    );
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(
        matches!(&err, CrmError::Api { code: CrmErrorCode::Other(code), .. } if code == "SOMETHING_NEW"),
        "{err}"
    );

    crm.state.inject("retrieve", Fault::Fatal, Some(1));
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(matches!(err, CrmError::Http { status: 500, .. }), "{err}");

    crm.state.inject("retrieve", Fault::html_page(503), Some(1));
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(matches!(err, CrmError::Http { status: 503, .. }), "{err}");

    crm.state
        .inject("retrieve", Fault::Delay(Duration::from_secs(2)), Some(1));
    let err = adapter.get(&maria, &probe).await.unwrap_err();
    assert!(matches!(err, CrmError::Timeout { .. }), "{err}");
    assert!(err.is_transient());

    // A slow CRM under the limit is fine.
    crm.state.set_latency(Duration::from_millis(50));
    assert_eq!(adapter.get(&maria, &probe).await.unwrap(), None);
}

#[tokio::test]
async fn nothing_secret_in_debug_output_or_errors() {
    let crm = start().await;
    let adapter = crm.adapter();
    adapter.describe().await.unwrap();
    let shown = format!("{adapter:?} {:?}", crm.config());
    assert!(!shown.contains(ADMIN_KEY), "{shown}");
    crm.state.inject("describe", Fault::html_page(500), Some(1));
    let err = adapter.describe().await.unwrap_err().to_string();
    assert!(!err.contains("sessionName"), "{err}");
}

// ---- the captured payloads in fixtures/vtiger/ ------------------------------------------

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/vtiger")
}

/// A captured `{request, response}` pair, or a bare body, as (operation, status, bytes).
fn reply_of(name: &str, json: &serde_json::Value) -> (String, u16, Vec<u8>) {
    if let Some(response) = json.get("response") {
        let operation = json["request"]["params"]["operation"]
            .as_str()
            .unwrap()
            .to_owned();
        let status = response["http_status"].as_u64().unwrap() as u16;
        let body = &response["body"];
        let bytes = match body.get("_raw_text") {
            Some(raw) => raw.as_str().unwrap().as_bytes().to_vec(),
            None => serde_json::to_vec(body).unwrap(),
        };
        return (operation, status, bytes);
    }
    let operation = match name {
        n if n.contains("getchallenge") => "getchallenge",
        n if n.contains("login") => "login",
        n if n.contains("listtypes") => "listtypes",
        n if n.contains("query") => "query",
        n if n.contains("sync") => "sync",
        n if n.contains("create") => "create",
        n if n.contains("error") => "error",
        other => panic!("fixture {other} not understood"),
    };
    (operation.to_owned(), 200, serde_json::to_vec(json).unwrap())
}

#[test]
fn every_vtiger_fixture_is_understood() {
    let zones = mapping::Zones::new(jiff::tz::TimeZone::UTC, jiff::tz::TimeZone::UTC);
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("the repository's fixtures") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("json") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();

        // A request shown as its form fields: the element is JSON text.
        if name == "vtiger-create-request-form-fields.json" {
            let element: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(json["element"].as_str().unwrap()).unwrap();
            assert_eq!(element["assigned_user_id"], "19x16");
            continue;
        }
        if let Some(element) = json.pointer("/request/params/element") {
            let element: wire::Record = serde_json::from_str(element.as_str().unwrap()).unwrap();
            assert!(element.has("subject") || element.has("location"), "{name}");
        }

        let (operation, status, body) = reply_of(&name, &json);
        let reply = wire::parse_reply(&operation, status, &body);
        let value = match reply {
            Err(CrmError::Http { status: 500, .. }) => {
                assert!(name.contains("http500"), "{name}");
                continue;
            }
            Err(CrmError::Api { code, .. }) => {
                assert!(!matches!(code, CrmErrorCode::Other(_)), "{name}: {code}");
                continue;
            }
            Err(other) => panic!("{name}: {other}"),
            Ok(value) => value,
        };
        match operation.as_str() {
            "getchallenge" => {
                let challenge: wire::Challenge = wire::decode(&operation, value).unwrap();
                assert_eq!(challenge.expire_time - challenge.server_time, 300, "{name}");
                assert_eq!(challenge.token.len(), 13, "{name}");
            }
            "login" => {
                let login: wire::LoginResult = wire::decode(&operation, value).unwrap();
                assert!(login.user_id.starts_with("19x"), "{name}");
                assert!(!login.vtiger_version.is_empty(), "{name}");
            }
            "create" | "retrieve" | "update" | "revise" => {
                let record: wire::Record = wire::decode(&operation, value).unwrap();
                if name.contains("leads") {
                    assert_eq!(record.id(), "2x531");
                } else {
                    let event = mapping::event_from_record(&record, &zones).unwrap();
                    assert!(
                        event.ids.crm.as_deref().unwrap().starts_with("18x"),
                        "{name}"
                    );
                    assert!(event.modified.crm.is_some(), "{name}");
                }
            }
            "query" => {
                for record in wire::records(&operation, value).unwrap() {
                    mapping::event_from_record(&record, &zones)
                        .unwrap_or_else(|err| panic!("{name}: {err}"));
                }
            }
            "sync" => {
                let sync: wire::SyncResult = wire::decode(&operation, value).unwrap();
                for record in &sync.updated {
                    mapping::event_from_record(record, &zones)
                        .unwrap_or_else(|err| panic!("{name}: {err}"));
                }
                assert!(
                    sync.deleted.iter().all(|id| id.starts_with("18x")),
                    "{name}"
                );
            }
            "describe" => {
                let schema = wire::schema(&operation, value).unwrap();
                assert_eq!(schema.id_prefix, "18");
                assert_eq!(schema.mandatory_fields().count(), 9);
                assert_eq!(schema.field("reminder_time").unwrap().type_name, "integer");
            }
            "delete" => assert_eq!(value["status"], "successful", "{name}"),
            "listtypes" => {
                let types = value["types"].as_array().unwrap();
                assert!(types.iter().any(|t| t == "Events"));
            }
            other => panic!("{name}: no check for {other}"),
        }
    }
    assert!(seen >= 40, "only {seen} fixtures found");
}

#[test]
fn fixture_reminders_read_as_meant() {
    // 900 s written, "15" read; 3600 s written, "61" read and meant as 60.
    for (file, minutes) in [
        ("real-vtiger-create-events.json", Some(15)),
        ("real-vtiger-reminder-3600s-becomes-61min.json", Some(60)),
        ("real-vtiger-revise-drops-reminder.json", None),
    ] {
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(fixtures_dir().join(file)).unwrap()).unwrap();
        let record: wire::Record =
            serde_json::from_value(json["response"]["body"]["result"].clone()).unwrap();
        assert_eq!(
            mapping::reminder_minutes_from_crm(&record.text("reminder_time")),
            minutes,
            "{file}"
        );
    }
}

#[tokio::test]
async fn a_second_change_in_the_same_second_is_not_lost() {
    let crm = start().await;
    // Changed "now": inside the first cursor's overlap.
    let a = crm.seed_at(5, "a", "2026-12-01 09:00:00", None);
    let adapter = crm.adapter();
    let maria = user(&adapter, "maria").await;
    let first = read(&adapter, &maria, None, &[], false).await;
    assert_eq!(ids(&first), vec![a.clone()]);
    // Edited again, most likely within the same second: same id and modifiedtime, new content.
    crm.state.ui_edit(&a, &[("subject", "a, edited")]);
    let next = read(&adapter, &maria, Some(first.cursor), &[], false).await;
    assert_eq!(ids(&next), vec![a]);
    assert_eq!(next.upserts[0].subject, "a, edited");
}

async fn hammer(adapters: Vec<Arc<VtigerCrm>>, owner: CrmUser) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        for adapter in &adapters {
            let adapter = adapter.clone();
            let owner = owner.clone();
            tasks.spawn(async move { adapter.get(&owner, &id("18x1")).await });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_logins_at_once_share_one_session() {
    let crm = start().await;
    let adapters = vec![Arc::new(crm.adapter()), Arc::new(crm.adapter())];
    let owner = CrmUser {
        id: CrmUserId::new("19x5"),
        user_name: "maria".into(),
        time_zone: None,
        active: true,
        email: None,
    };
    hammer(adapters, owner).await;
    assert_eq!(crm.state.request_count("getchallenge"), 1);
    assert_eq!(crm.state.request_count("login"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_from_two_processes_retry_a_replaced_challenge() {
    let crm = start().await;
    // Real vtiger: a new challenge replaces the token but leaves sessions alone.
    crm.state.set_challenge_ends_sessions(false);
    // A different spelling of the URL gets its own session slot, like another process.
    let port = crm.base.rsplit(':').next().unwrap().to_owned();
    let elsewhere = format!("http://localhost:{port}/webservice.php");
    let adapters = vec![
        Arc::new(crm.adapter()),
        Arc::new(crm.adapter_with(|config| config.url = elsewhere)),
    ];
    let owner = CrmUser {
        id: CrmUserId::new("19x5"),
        user_name: "maria".into(),
        time_zone: None,
        active: true,
        email: None,
    };
    for _ in 0..5 {
        crm.state.expire_sessions();
        hammer(adapters.clone(), owner.clone()).await;
    }
}

fn maria() -> CrmUser {
    CrmUser {
        id: CrmUserId::new("19x5"),
        user_name: "maria".into(),
        time_zone: None,
        active: true,
        email: None,
    }
}

/// Twelve creates at once through an adapter with `writers` writers; every one must land.
async fn create_at_once(adapter: Arc<dyn CrmPort>) {
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..12 {
        let adapter = adapter.clone();
        tasks.spawn(async move {
            adapter
                .create(
                    &maria(),
                    &NewEvent {
                        event: meeting(&format!("parallel {n}")),
                        marker: None,
                    },
                )
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_each_have_a_session() {
    let crm = start().await;
    crm.state
        .set_operation_latency("create", Duration::from_millis(40));
    let wide: Arc<dyn CrmPort> = crm.adapter().with_writers(3).unwrap().into();
    create_at_once(wide).await;
    assert_eq!(crm.state.events_of(5).len(), 12);
    // Three sessions, each serving one request at a time, all three busy together.
    assert_eq!(crm.state.request_count("login"), 3);
    assert_eq!(crm.state.session_count(), 3);
    assert_eq!(crm.state.peak_sessions_busy(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_writers_keep_to_one_session_where_a_login_ends_the_others() {
    let crm = start().await;
    crm.state.set_challenge_ends_sessions(true);
    crm.state
        .set_operation_latency("create", Duration::from_millis(40));
    let wide: Arc<dyn CrmPort> = crm.adapter().with_writers(3).unwrap().into();
    create_at_once(wide.clone()).await;
    assert_eq!(crm.state.events_of(5).len(), 12);
    // Once seen, one session serves them all: no more logins ending each other's sessions.
    let logins = crm.state.request_count("login");
    crm.state.reset_peak_sessions_busy();
    create_at_once(wide).await;
    assert_eq!(crm.state.events_of(5).len(), 24);
    assert_eq!(crm.state.request_count("login"), logins);
    assert_eq!(crm.state.peak_sessions_busy(), 1);
}
