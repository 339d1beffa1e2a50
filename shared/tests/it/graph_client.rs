//! The Graph client against the sandbox's Graph: delta rounds (paging, resync, the
//! no-progress guard, occurrences, tombstones), throttling, `$batch`, idempotent creates and
//! the CRM stamp.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use calsync::adapters::graph::{DeltaStart, EventDraft, GraphError, RemovalCheck, CRM_ID_PROPERTY};
use calsync_core::crm::CrmEventId;
use calsync_core::sync::outlook_transaction_id;
use calsync_core::time::TimeWindow;
use calsync_sandbox::{DeltaExpiry, DeltaQuirks, FaultRate, FaultRoute, FaultRule, GraphFault};
use calsync_testkit::graph::{days, event_body, hours_from_now, Harness, USER_OID};
use jiff::Timestamp;
use serde_json::json;

fn window() -> TimeWindow {
    TimeWindow::new(hours_from_now(-24 * 7), hours_from_now(24 * 30))
}

fn seed(h: &Harness, subjects: &[&str], first: Timestamp) -> Vec<String> {
    let bodies: Vec<_> = subjects
        .iter()
        .enumerate()
        .map(|(i, s)| event_body(s, first + days(i as i64 % 20), 30))
        .collect();
    h.graph_sandbox().seed_events(USER_OID, &bodies).unwrap()
}

#[tokio::test]
async fn a_multi_page_round_then_incremental_rounds() {
    let h = Harness::start_with(|s| s.page_size = 4).await;
    let subjects: Vec<String> = (0..25).map(|i| format!("Meeting {i}")).collect();
    let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
    let ids = seed(&h, &refs, hours_from_now(2));
    // Outside the window: never listed in a full round.
    seed(&h, &["Far away"], hours_from_now(24 * 90));

    let me = h.me();
    let round = me.delta_round(DeltaStart::Full(window())).await.unwrap();
    assert!(round.pages >= 7, "{} pages", round.pages);
    assert_eq!(round.changes.len(), 25);
    assert!(round.tombstones.is_empty());
    let seen: HashSet<&str> = round.changes.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect());
    // Text bodies and UTC, as asked.
    let first = &round.changes[0];
    assert_eq!(
        first.body.as_ref().unwrap().content_type.as_deref(),
        Some("text")
    );
    assert_eq!(
        first.start.as_ref().unwrap().time_zone.as_deref(),
        Some("UTC")
    );

    let delta_requests: Vec<_> = h
        .graph_sandbox()
        .requests()
        .into_iter()
        .filter(|r| r.path.to_ascii_lowercase().ends_with("calendarview/delta"))
        .collect();
    assert_eq!(delta_requests.len() as u32, round.pages);
    for r in &delta_requests {
        let prefer = r.prefer.as_deref().unwrap();
        for wanted in [
            "odata.maxpagesize=4",
            "outlook.timezone=\"UTC\"",
            "IdType=\"ImmutableId\"",
            "outlook.body-content-type=\"text\"",
        ] {
            assert!(prefer.contains(wanted), "{prefer} lacks {wanted}");
        }
        assert!(r.client_request_id.is_some());
        assert_eq!(r.status, 200);
    }
    // Only the first request names the window; the rest follow the links verbatim.
    assert!(delta_requests[0].query.contains("startDateTime"));
    assert!(delta_requests[1..]
        .iter()
        .all(|r| r.query.contains("skiptoken")));

    // Nothing changed: one page, nothing in it.
    let quiet = me
        .delta_round(DeltaStart::Resume(round.delta_link.clone()))
        .await
        .unwrap();
    assert_eq!(
        (quiet.pages, quiet.changes.len(), quiet.tombstones.len()),
        (1, 0, 0)
    );

    // One edit and one deletion.
    let g = h.graph_sandbox();
    g.update_event(USER_OID, &ids[3], json!({"subject": "Moved"}))
        .unwrap();
    g.delete_event(USER_OID, &ids[4]).unwrap();
    let next = me
        .delta_round(DeltaStart::Resume(quiet.delta_link))
        .await
        .unwrap();
    assert_eq!(next.changes.len(), 1);
    assert_eq!(next.changes[0].subject.as_deref(), Some("Moved"));
    assert_eq!(next.tombstones.len(), 1);
    assert_eq!(next.tombstones[0].id, ids[4]);
}

#[tokio::test]
async fn expired_delta_tokens_ask_for_a_resync() {
    let h = Harness::start().await;
    seed(&h, &["a", "b"], hours_from_now(1));
    let me = h.me();
    for how in [
        DeltaExpiry::Gone,
        DeltaExpiry::ResyncRequired,
        DeltaExpiry::InvalidDeltaToken,
    ] {
        let round = me.delta_round(DeltaStart::Full(window())).await.unwrap();
        h.graph_sandbox().expire_delta_tokens(USER_OID, how);
        let err = me
            .delta_round(DeltaStart::Resume(round.delta_link))
            .await
            .unwrap_err();
        assert!(err.is_resync(), "{how:?}: {err}");
    }
    // A full round starts over fine.
    let again = me.delta_round(DeltaStart::Full(window())).await.unwrap();
    assert_eq!(again.changes.len(), 2);
    let gone = h
        .graph_sandbox()
        .requests()
        .into_iter()
        .filter(|r| r.status == 410)
        .count();
    assert_eq!(gone, 1);
}

#[tokio::test]
async fn a_round_that_makes_no_progress_is_stopped() {
    let h = Harness::start_with(|s| s.page_size = 3).await;
    let subjects: Vec<String> = (0..12).map(|i| format!("E{i}")).collect();
    let refs: Vec<&str> = subjects.iter().map(String::as_str).collect();
    seed(&h, &refs, hours_from_now(1));
    h.graph_sandbox()
        .set_delta_quirks(
            USER_OID,
            DeltaQuirks {
                stall: true,
                ..DeltaQuirks::default()
            },
        )
        .unwrap();
    let err = h
        .me()
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap_err();
    assert!(matches!(err, GraphError::NoProgress { .. }), "{err}");
    let requests = h.graph_sandbox().requests().len();
    assert!(requests < 10, "gave up after {requests} requests");

    // Repeated items are fine: the round completes and each id comes once.
    h.graph_sandbox()
        .set_delta_quirks(
            USER_OID,
            DeltaQuirks {
                repeat_items: true,
                ..DeltaQuirks::default()
            },
        )
        .unwrap();
    let round = h
        .me()
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap();
    assert_eq!(round.changes.len(), 12);
}

#[tokio::test]
async fn occurrences_are_completed_from_their_master_once() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let start = hours_from_now(3);
    let date = start.strftime("%Y-%m-%d").to_string();
    let mut body = event_body("Daily standup", start, 15);
    body["recurrence"] = json!({
        "pattern": {"type": "daily", "interval": 1},
        "range": {"type": "numbered", "startDate": date, "numberOfOccurrences": 10}
    });
    body["start"]["timeZone"] = json!("UTC");
    let master = g.insert_event(USER_OID, body).unwrap();
    let occurrences = g.occurrence_ids(USER_OID, &master, window().start, window().end);
    assert_eq!(occurrences.len(), 10);
    // One exception, one cancelled occurrence.
    g.update_event(
        USER_OID,
        &occurrences[2],
        json!({"subject": "Standup (moved)"}),
    )
    .unwrap();
    g.delete_event(USER_OID, &occurrences[5]).unwrap();
    seed(&h, &["Single"], hours_from_now(5));

    let round = h
        .me()
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap();
    assert_eq!(round.changes.len(), 10, "9 instances and one single event");
    assert_eq!(round.masters_fetched, 1);
    assert!(round.incomplete.is_empty());
    assert_eq!(round.series_masters.len(), 1);
    assert_eq!(round.series_masters[0].id, master);
    let series: Vec<_> = round
        .changes
        .iter()
        .filter(|e| e.series_master_id.as_deref() == Some(master.as_str()))
        .collect();
    assert_eq!(series.len(), 9);
    assert!(series.iter().all(|e| !e.is_series_master()));
    let by_kind: BTreeMap<&str, usize> = series.iter().fold(BTreeMap::new(), |mut m, e| {
        *m.entry(e.kind.as_deref().unwrap()).or_default() += 1;
        m
    });
    assert_eq!(
        by_kind,
        BTreeMap::from([("exception", 1), ("occurrence", 8)])
    );
    for e in &series {
        let expected = if e.kind.as_deref() == Some("exception") {
            "Standup (moved)"
        } else {
            "Daily standup"
        };
        assert_eq!(e.subject.as_deref(), Some(expected));
        assert!(e.start.is_some() && e.end.is_some());
    }
    // The occurrences kept their own times.
    let starts: HashSet<_> = series
        .iter()
        .map(|e| e.start.as_ref().unwrap().date_time.clone())
        .collect();
    assert_eq!(starts.len(), 9);
    // The master was read once, in one batch.
    let requests = g.requests();
    assert_eq!(requests.iter().filter(|r| r.path == "/$batch").count(), 1);
    assert_eq!(requests.iter().filter(|r| r.in_batch).count(), 1);

    // Masters listed in delta are used as they come, without a fetch.
    g.set_delta_quirks(
        USER_OID,
        DeltaQuirks {
            list_masters: true,
            ..DeltaQuirks::default()
        },
    )
    .unwrap();
    let listed = h
        .me()
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap();
    assert_eq!(listed.masters_fetched, 0);
    assert_eq!(listed.changes.len(), 10);
    assert!(listed.changes.iter().all(|e| !e.is_series_master()));
}

#[tokio::test]
async fn cancelled_occurrences_are_silent_unless_configured() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let start = hours_from_now(3);
    let mut body = event_body("Weekly", start, 30);
    body["recurrence"] = json!({
        "pattern": {"type": "daily", "interval": 7},
        "range": {"type": "noEnd", "startDate": start.strftime("%Y-%m-%d").to_string()}
    });
    let master = g.insert_event(USER_OID, body).unwrap();
    let me = h.me();
    let round = me.delta_round(DeltaStart::Full(window())).await.unwrap();
    let occurrences = g.occurrence_ids(USER_OID, &master, window().start, window().end);
    g.delete_event(USER_OID, &occurrences[1]).unwrap();
    let silent = me
        .delta_round(DeltaStart::Resume(round.delta_link))
        .await
        .unwrap();
    assert!(silent.tombstones.is_empty() && silent.changes.is_empty());

    g.set_delta_quirks(
        USER_OID,
        DeltaQuirks {
            tombstone_cancelled_occurrences: true,
            ..DeltaQuirks::default()
        },
    )
    .unwrap();
    g.delete_event(USER_OID, &occurrences[2]).unwrap();
    let told = me
        .delta_round(DeltaStart::Resume(silent.delta_link))
        .await
        .unwrap();
    let tombstoned: HashSet<&str> = told.tombstones.iter().map(|t| t.id.as_str()).collect();
    assert!(tombstoned.contains(occurrences[2].as_str()));
}

#[tokio::test]
async fn tombstones_from_outside_the_window_delete_nothing() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let ids = seed(&h, &["Stays", "Leaves", "Deleted"], hours_from_now(2));
    let me = h.me();
    let round = me.delta_round(DeltaStart::Full(window())).await.unwrap();
    let known: HashSet<String> = round.changes.iter().map(|e| e.id.clone()).collect();

    // Outside the window: a new event, and one moved out.
    let far = g
        .insert_event(USER_OID, event_body("Far", hours_from_now(24 * 120), 30))
        .unwrap();
    let moved_to = event_body("Leaves", hours_from_now(24 * 200), 30);
    g.update_event(
        USER_OID,
        &ids[1],
        json!({"start": moved_to["start"], "end": moved_to["end"]}),
    )
    .unwrap();
    g.delete_event(USER_OID, &ids[2]).unwrap();

    let next = me
        .delta_round(DeltaStart::Resume(round.delta_link))
        .await
        .unwrap();
    let tombstoned: HashSet<&str> = next.tombstones.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(
        tombstoned,
        HashSet::from([far.as_str(), ids[1].as_str(), ids[2].as_str()])
    );
    // The new far event was never ours: not even a candidate.
    let candidates: Vec<String> = next
        .tombstones_among(|id| known.contains(id))
        .into_iter()
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(candidates.len(), 2);
    assert!(!candidates.contains(&far));
    // Asking Graph separates the moved event from the deleted one.
    let checks = me.check_removals(&candidates).await.unwrap();
    let deleted: Vec<&str> = checks
        .iter()
        .filter_map(|c| match c {
            RemovalCheck::Deleted(id) => Some(id.as_str()),
            RemovalCheck::StillThere(_) => None,
        })
        .collect();
    assert_eq!(deleted, [ids[2].as_str()]);
    // Nothing was deleted in Outlook on the way.
    assert!(g.event(USER_OID, &far).is_some());
    assert!(g.event(USER_OID, &ids[1]).is_some());
    assert!(g.event(USER_OID, &ids[0]).is_some());
}

#[tokio::test]
async fn a_429_storm_waits_out_retry_after_with_at_most_four_in_flight() {
    let h = Harness::start_with(|s| s.max_attempts = 8).await;
    let g = h.graph_sandbox();
    let ids = seed(&h, &["Storm"], hours_from_now(1));
    g.add_fault(
        FaultRule::new(
            FaultRoute::EventReads,
            GraphFault::Throttle {
                retry_after: Some(1),
            },
            FaultRate::Next(10),
        )
        .for_mailbox(USER_OID),
    );
    // Slow answers keep requests in flight long enough to overlap.
    g.add_fault(FaultRule::new(
        FaultRoute::EventReads,
        GraphFault::Slow(Duration::from_millis(40)),
        FaultRate::Always,
    ));
    g.reset_peak_in_flight();
    let me = h.me();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let me = me.clone();
        let id = ids[0].clone();
        tasks.push(tokio::spawn(async move { me.get_event(&id).await }));
    }
    for task in tasks {
        let event = task.await.unwrap().unwrap().unwrap();
        assert_eq!(event.subject.as_deref(), Some("Storm"));
    }
    assert!(
        g.peak_in_flight(USER_OID) <= 4,
        "peak {}",
        g.peak_in_flight(USER_OID)
    );
    assert!(g.peak_in_flight(USER_OID) >= 2, "requests did overlap");

    let requests = g.requests();
    let throttled: Vec<_> = requests.iter().filter(|r| r.status == 429).collect();
    assert_eq!(throttled.len(), 10);
    assert!(requests
        .iter()
        .all(|r| r.fault.as_deref() != Some("concurrency-limit")));
    // Every retry of a throttled call came after its Retry-After.
    for refused in &throttled {
        let retry = requests
            .iter()
            .filter(|r| {
                r.client_request_id == refused.client_request_id && r.started > refused.started
            })
            .min_by_key(|r| r.started)
            .expect("the throttled call was retried");
        let waited = retry.started - refused.finished;
        assert!(
            waited >= Duration::from_millis(950),
            "retried after {waited:?}"
        );
    }
}

#[tokio::test]
async fn only_the_failed_batch_item_is_retried() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let subjects = ["b0", "b1", "b2", "b3", "b4"];
    let ids = seed(&h, &subjects, hours_from_now(1));
    g.add_fault(
        FaultRule::new(
            FaultRoute::EventReads,
            GraphFault::Throttle {
                retry_after: Some(1),
            },
            FaultRate::Next(1),
        )
        .for_mailbox(USER_OID),
    );
    let started = std::time::Instant::now();
    let events = h.me().get_events(&ids).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    let subjects_back: Vec<_> = events
        .iter()
        .map(|(_, e)| e.as_ref().unwrap().subject.clone().unwrap())
        .collect();
    assert_eq!(subjects_back, subjects);

    let requests = g.requests();
    let outer: Vec<_> = requests.iter().filter(|r| r.path == "/$batch").collect();
    let items: Vec<_> = requests.iter().filter(|r| r.in_batch).collect();
    assert_eq!(outer.len(), 2, "one batch, then one retry batch");
    assert_eq!(items.len(), 6, "five items, then the one that failed");
    let refused = items.iter().find(|r| r.status == 429).unwrap();
    let retried = items.last().unwrap();
    assert_eq!(retried.path, refused.path);
    assert_eq!(retried.status, 200);
    assert!(retried.started >= refused.finished + Duration::from_millis(950));
}

#[tokio::test]
async fn a_retried_create_is_a_no_op() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let me = h.me();
    let start = hours_from_now(4);
    let draft = EventDraft {
        subject: Some("Call with ACME".into()),
        body: Some(EventDraft::text_body("Prepare the offer")),
        start: Some(EventDraft::utc(start)),
        end: Some(EventDraft::utc(start + jiff::SignedDuration::from_mins(30))),
        ..EventDraft::default()
    };
    // The key the sync engine gives a first create of a CRM record in this mailbox.
    let key = |crm_id: &str| outlook_transaction_id(USER_OID, &CrmEventId::new(crm_id), 0);
    let first = me
        .create_event(&draft, "18x1001", &key("18x1001"))
        .await
        .unwrap();
    let again = me
        .create_event(&draft, "18x1001", &key("18x1001"))
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    // A create whose answer is lost on the way is retried, and still creates one event.
    g.add_fault(FaultRule::new(
        FaultRoute::EventWrites,
        GraphFault::Drop,
        FaultRate::Next(1),
    ));
    let other = me
        .create_event(&draft, "18x1002", &key("18x1002"))
        .await
        .unwrap();
    assert_ne!(other.id, first.id);
    let counters = g.counters(USER_OID);
    assert_eq!(counters.creates, 2);
    assert_eq!(counters.transaction_dedupes, 2);
    assert_eq!(counters.invitations_sent, 0);
    assert_eq!(g.event_ids(USER_OID).len(), 2);

    // The CRM id reads back, and finds the event.
    let read = me.get_event(&first.id).await.unwrap().unwrap();
    assert_eq!(read.extended_property(CRM_ID_PROPERTY), Some("18x1001"));
    assert_eq!(read.transaction_id, first.transaction_id);
    let found = me.find_by_crm_id("18x1002").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, other.id);
    assert_eq!(found[0].extended_property(CRM_ID_PROPERTY), Some("18x1002"));
    assert!(me.find_by_crm_id("18x404").await.unwrap().is_empty());
}

#[tokio::test]
async fn updates_deletes_and_change_keys() {
    let h = Harness::start().await;
    let me = h.me();
    let start = hours_from_now(6);
    let draft = EventDraft {
        subject: Some("Demo".into()),
        start: Some(EventDraft::utc(start)),
        end: Some(EventDraft::utc(start + jiff::SignedDuration::from_mins(45))),
        ..EventDraft::default()
    };
    let created = me
        .create_event(
            &draft,
            "18x7",
            &outlook_transaction_id(USER_OID, &CrmEventId::new("18x7"), 0),
        )
        .await
        .unwrap();
    let key = created.version().unwrap().to_owned();
    let patch = EventDraft {
        location: Some(calsync::adapters::graph::LocationDraft {
            display_name: "Room 4".into(),
        }),
        ..EventDraft::default()
    };
    let updated = me
        .update_event(&created.id, &patch, Some(&key))
        .await
        .unwrap();
    assert_eq!(
        updated.location.unwrap().display_name.as_deref(),
        Some("Room 4")
    );
    assert_eq!(updated.subject.as_deref(), Some("Demo"));
    // The old change key is stale now.
    let stale = me
        .update_event(&created.id, &patch, Some(&key))
        .await
        .unwrap_err();
    assert!(matches!(stale, GraphError::Conflict { .. }), "{stale}");
    assert!(me.delete_event(&created.id, None).await.unwrap());
    assert!(!me.delete_event(&created.id, None).await.unwrap());
    assert!(me.get_event(&created.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_503_is_retried_on_a_fresh_connection() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let ids = seed(&h, &["warm"], hours_from_now(1));
    let me = h.me();
    // Warm a pooled connection first.
    me.get_event(&ids[0]).await.unwrap().unwrap();
    g.add_fault(FaultRule::new(
        FaultRoute::EventReads,
        GraphFault::Unavailable {
            retry_after: Some(0),
        },
        FaultRate::Next(1),
    ));
    // The connection that saw the 503 keeps failing in the sandbox: only a new one works.
    let event = me.get_event(&ids[0]).await.unwrap().unwrap();
    assert_eq!(event.subject.as_deref(), Some("warm"));
    let requests = g.requests();
    let failed = requests.iter().find(|r| r.status == 503).unwrap();
    let retry = requests.last().unwrap();
    assert_eq!(retry.status, 200);
    assert_ne!(retry.remote, failed.remote);
    assert_eq!(
        requests.iter().filter(|r| r.status == 503).count(),
        1,
        "no request went back to the failed connection"
    );
}

#[tokio::test]
async fn slow_answers_time_out_and_are_retried() {
    let h = Harness::start_with(|s| s.timeout = Duration::from_millis(500)).await;
    let g = h.graph_sandbox();
    let ids = seed(&h, &["slow"], hours_from_now(1));
    g.add_fault(FaultRule::new(
        FaultRoute::EventReads,
        GraphFault::Slow(Duration::from_secs(2)),
        FaultRate::Next(1),
    ));
    let event = h.me().get_event(&ids[0]).await.unwrap().unwrap();
    assert_eq!(event.subject.as_deref(), Some("slow"));
}

#[tokio::test]
async fn app_only_tokens_reach_users_by_id() {
    let h = Harness::start().await;
    seed(&h, &["one", "two"], hours_from_now(1));
    let round = h
        .as_app()
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap();
    assert_eq!(round.changes.len(), 2);
    assert!(round.delta_link.contains(&format!("/users/{USER_OID}/")));
    // /me means nothing to an app-only token.
    let wrong = h
        .graph
        .mailbox(
            calsync::adapters::graph::Mailbox::me(USER_OID),
            h.app_token.clone(),
        )
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap_err();
    assert!(
        matches!(wrong, GraphError::Status { status: 400, .. }),
        "{wrong}"
    );
    // A delegated token does not reach another user's mailbox.
    let other = h
        .graph
        .mailbox(
            calsync::adapters::graph::Mailbox::user("11111111-2222-4333-8444-555555555555"),
            h.user_token.clone(),
        )
        .delta_round(DeltaStart::Full(window()))
        .await
        .unwrap_err();
    assert!(matches!(other, GraphError::Forbidden { .. }), "{other}");
}

#[tokio::test]
async fn series_instances_in_a_window() {
    let h = Harness::start().await;
    let g = h.graph_sandbox();
    let start = hours_from_now(2);
    let mut body = event_body("Review", start, 60);
    body["recurrence"] = json!({
        "pattern": {"type": "daily", "interval": 2},
        "range": {"type": "endDate", "startDate": start.strftime("%Y-%m-%d").to_string(),
                  "endDate": (start + days(40)).strftime("%Y-%m-%d").to_string()}
    });
    let master = g.insert_event(USER_OID, body).unwrap();
    let occurrences = g.occurrence_ids(USER_OID, &master, window().start, window().end);
    g.delete_event(USER_OID, &occurrences[0]).unwrap();
    let instances = h
        .me()
        .series_instances(&master, TimeWindow::new(start, start + days(10)))
        .await
        .unwrap();
    // Every other day over ten days is five, less the cancelled first one.
    assert_eq!(instances.len(), 4);
    assert!(instances
        .iter()
        .all(|e| e.subject.as_deref() == Some("Review")
            && e.series_master_id.as_deref() == Some(master.as_str())));
}
