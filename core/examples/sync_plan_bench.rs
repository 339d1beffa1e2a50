//! Engine CPU of `calsync_core::sync::plan` for one user with 10,000 events (docs/design.md §6:
//! under 100 µs per event). No I/O: the inputs are built in memory first, only planning is timed.
//!
//! ```text
//! cargo run --release -p calsync-core --example sync_plan_bench [events] [runs]
//! ```
//!
//! Scenarios: the initial sync (every Outlook event new, half of them already in the CRM and
//! matched), a run where every event comes back unchanged (echoes), and a run with 10 % of the
//! events changed on each side, 1 % in conflict and 1 % deleted.

use std::time::{Duration, Instant};

use calsync_core::crm::{CrmEventId, Gone, GoneReason};
use calsync_core::event::{CalendarEvent, EventField};
use calsync_core::sync::ConflictPolicy;
use calsync_core::sync::{
    plan, CrmChanges, FieldSet, Link, LinkKey, LinkState, Origin, OutlookChanges, OutlookItem,
    Plan, Policy,
};
use jiff::{SignedDuration, Timestamp};

/// The fields the CRM carries (the vtiger adapter's set).
fn crm_fields() -> FieldSet {
    FieldSet::of(&[
        EventField::Subject,
        EventField::Location,
        EventField::Description,
        EventField::Time,
        EventField::Status,
        EventField::Sensitivity,
        EventField::Reminder,
        EventField::ActivityType,
    ])
}

fn event(n: usize) -> Result<CalendarEvent, jiff::Error> {
    let origin: Timestamp = "2026-01-05T08:00:00Z".parse()?;
    let start = origin.checked_add(SignedDuration::from_mins(37 * n as i64))?;
    let end = start.checked_add(SignedDuration::from_mins(45))?;
    let mut event = CalendarEvent::timed(format!("Customer meeting {n}"), start, end);
    event.location = format!("Room {}", n % 40);
    event.description = format!("Agenda for meeting {n}: pricing, delivery dates, next steps.");
    event.reminder_minutes = Some(15);
    event.modified.outlook = Some(origin);
    event.modified.crm = Some(origin);
    Ok(event)
}

fn outlook_id(n: usize) -> String {
    format!("AAMkAGI2TG93AAA-{n:08}")
}

fn crm_id(n: usize) -> String {
    format!("18x{}", 100_000 + n)
}

struct Scenario {
    name: &'static str,
    snapshot: Vec<Link>,
    outlook: OutlookChanges,
    crm: CrmChanges,
    policy: Policy,
}

fn initial(events: usize) -> Result<Scenario, jiff::Error> {
    let mut outlook = OutlookChanges::default();
    let mut crm = CrmChanges::default();
    for n in 0..events {
        let mut item = event(n)?;
        item.ids.outlook = Some(outlook_id(n));
        outlook.upserts.push(OutlookItem::new(item));
        if n % 2 == 0 {
            let mut record = event(n)?;
            record.ids.crm = Some(crm_id(n));
            crm.upserts.push(record);
        }
    }
    let mut policy = Policy::new(ConflictPolicy::Latest, "oid-bench", crm_fields());
    policy.first_sync = true;
    Ok(Scenario {
        name: "initial sync (new + first-sync matches)",
        snapshot: Vec::new(),
        outlook,
        crm,
        policy,
    })
}

fn links(events: usize) -> Result<Vec<Link>, jiff::Error> {
    (0..events)
        .map(|n| {
            let mut base = event(n)?;
            base.ids.crm = Some(crm_id(n));
            base.ids.outlook = Some(outlook_id(n));
            let id = CrmEventId::new(crm_id(n));
            Ok(Link {
                key: LinkKey::for_crm(&id),
                version: 4,
                state: LinkState::Linked,
                origin: Origin::Crm,
                crm_id: Some(id),
                outlook_id: Some(outlook_id(n)),
                outlook_tx: None,
                outlook_creates: 1,
                occurrence: None,
                base,
                as_stored: Default::default(),
                pending: None,
                crm_marker: None,
                crm_creates: 0,
            })
        })
        .collect()
}

fn echoes(events: usize) -> Result<Scenario, jiff::Error> {
    let snapshot = links(events)?;
    let outlook = OutlookChanges {
        upserts: snapshot
            .iter()
            .map(|link| OutlookItem::new(link.base.clone()))
            .collect(),
        ..OutlookChanges::default()
    };
    let crm = CrmChanges {
        upserts: snapshot.iter().map(|link| link.base.clone()).collect(),
        ..CrmChanges::default()
    };
    Ok(Scenario {
        name: "every event echoed back unchanged",
        snapshot,
        outlook,
        crm,
        policy: Policy::new(ConflictPolicy::Latest, "oid-bench", crm_fields()),
    })
}

fn mixed(events: usize) -> Result<Scenario, jiff::Error> {
    let snapshot = links(events)?;
    let later: Timestamp = "2026-02-01T08:00:00Z".parse()?;
    let mut outlook = OutlookChanges::default();
    let mut crm = CrmChanges::default();
    for (n, link) in snapshot.iter().enumerate() {
        if n % 100 == 7 {
            if let Some(id) = &link.outlook_id {
                outlook.deleted.push(id.clone());
            }
            continue;
        }
        if n % 10 == 1 || n % 100 == 3 {
            let mut changed = link.base.clone();
            changed.subject.push_str(" (moved)");
            changed.modified.outlook = Some(later);
            outlook.upserts.push(OutlookItem::new(changed));
        }
        if n % 10 == 2 || n % 100 == 3 {
            let mut changed = link.base.clone();
            changed.subject.push_str(" (CRM)");
            changed.location = "Head office".into();
            changed.modified.crm = Some(later);
            crm.upserts.push(changed);
        }
        if n % 100 == 9 {
            if let Some(id) = &link.crm_id {
                crm.gone.push(Gone {
                    id: id.clone(),
                    reason: GoneReason::Deleted,
                });
            }
        }
    }
    Ok(Scenario {
        name: "10 % changed per side, 1 % conflicts, 2 % deleted",
        snapshot,
        outlook,
        crm,
        policy: Policy::new(ConflictPolicy::Latest, "oid-bench", crm_fields()),
    })
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(9)
        .max(1);
    println!("sync::plan, {events} events, median of {runs} runs");
    for scenario in [initial(events)?, echoes(events)?, mixed(events)?] {
        let mut times = Vec::with_capacity(runs);
        let mut last: Option<Plan> = None;
        for _ in 0..runs {
            let started = Instant::now();
            let planned = plan(
                &scenario.snapshot,
                &scenario.outlook,
                &scenario.crm,
                &scenario.policy,
            );
            times.push(started.elapsed());
            last = Some(std::hint::black_box(planned));
        }
        let took = median(times);
        let per_event = took.as_secs_f64() * 1e6 / events as f64;
        println!(
            "  {:<52} {:>9.2} ms  {:>7.2} µs/event  ({} steps)",
            scenario.name,
            took.as_secs_f64() * 1e3,
            per_event,
            last.map(|plan| plan.steps.len()).unwrap_or(0)
        );
    }
    Ok(())
}
