//! `bench-first-sync --direction to-crm|to-outlook [--events N] [--crm-create-ms MS]
//! [--graph-create-ms MS] [--runs R]`: a user's first sync of N events (default 1,000) from one
//! side into the other, empty one, through the real runner (`calsync::entry::jobs::run_job`),
//! with DynamoDB and Secrets Manager in moto and Microsoft identity, Graph and vtiger in the
//! sandbox (a child process). The sandbox answers like the real services under load: a vtiger
//! `create` takes `--crm-create-ms` (default 40) and each vtiger session serves one request at
//! a time; a Graph write takes `--graph-create-ms` (default 60) and a mailbox takes four
//! requests at once. Run in release (docs/BENCHMARKS.md).
//!
//! With `--real-crm` the CRM is a real vtiger instead, as the real-CRM tier configures it
//! (`CALSYNC_REAL_VTIGER_URL` etc., docs/testing.md): its user (`tokyo` by default) gets the
//! events, or has them created through the webservice first; the events the benchmark made
//! there are deleted before and after each run. Its own speed is the CRM's.
//!
//! Printed per run: wall time per event, the DynamoDB requests the runner sent (counted by an
//! interceptor on its client) per event, and the most Graph requests in flight for the mailbox
//! and the most vtiger sessions serving at once, as the sandbox saw them.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync::services::sync_run::RunOutcome;
use calsync_sandbox::graph::{FaultRate, FaultRoute, FaultRule, GraphFault};
use calsync_sandbox::vtiger::SeedEvent;
use calsync_sandbox::Sandbox;
use calsync_testkit::bench_sandbox::{serve_commands, SandboxProcess};
use calsync_testkit::moto::counted_dynamodb;
use calsync_testkit::realcrm::RealVtiger;
use calsync_testkit::syncbed::{point_at_sandbox_crm, seed_crm_users, MARIA};
use calsync_testkit::testbed::{
    aws_config, connect_user, sandbox_tenant_secret, seed_identity, BedOptions, CalsyncSide,
    CRM_USER, USER_OID,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

const USAGE: &str = "usage: bench-first-sync --direction to-crm|to-outlook [--events N] [--crm-create-ms MS] [--graph-create-ms MS] [--runs R] [--real-crm]";

/// The subject every event the benchmark makes starts with (how its leftovers are found).
const SUBJECT: &str = "Bench call";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Outlook events into an empty CRM.
    ToCrm,
    /// CRM events into an empty Outlook calendar.
    ToOutlook,
}

#[derive(Debug, Clone, Copy)]
struct Setup {
    direction: Direction,
    events: usize,
    crm_create: Duration,
    graph_create: Duration,
    /// The CRM is the real vtiger of the real-CRM tier, not the sandbox's.
    real_crm: bool,
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut setup = Setup {
        direction: Direction::ToCrm,
        events: 1_000,
        crm_create: Duration::from_millis(40),
        graph_create: Duration::from_millis(60),
        real_crm: false,
    };
    let mut runs = 1;
    let mut serve_sandbox = false;
    let mut direction = None;
    let number = |value: Option<String>, what: &str| -> Result<u64> {
        value
            .context(USAGE)?
            .parse()
            .with_context(|| format!("{what} takes a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--direction" => {
                direction = Some(match args.next().as_deref() {
                    Some("to-crm") => Direction::ToCrm,
                    Some("to-outlook") => Direction::ToOutlook,
                    _ => bail!(USAGE),
                })
            }
            "--events" => setup.events = number(args.next(), "--events")? as usize,
            "--crm-create-ms" => {
                setup.crm_create = Duration::from_millis(number(args.next(), "--crm-create-ms")?)
            }
            "--graph-create-ms" => {
                setup.graph_create =
                    Duration::from_millis(number(args.next(), "--graph-create-ms")?)
            }
            "--runs" => runs = number(args.next(), "--runs")?.max(1),
            "--sandbox" => serve_sandbox = true,
            "--real-crm" => setup.real_crm = true,
            _ => bail!("unknown argument {arg}\n{USAGE}"),
        }
    }
    setup.direction = direction.context(USAGE)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if serve_sandbox {
        return runtime.block_on(serve(setup));
    }
    let mut per_event = Vec::new();
    for run in 1..=runs {
        let figures = runtime.block_on(bench(setup))?;
        println!(
            "run {run}: {:?}, {} events: {:.1} ms per event (wall {:.1} s), DynamoDB {} requests = {:.3} per event, Graph in flight at most {}, vtiger sessions serving at most {}",
            setup.direction,
            setup.events,
            figures.ms_per_event,
            figures.wall.as_secs_f64(),
            figures.dynamodb,
            figures.dynamodb as f64 / setup.events as f64,
            figures.graph_in_flight,
            if setup.real_crm {
                "(not counted on a real vtiger)".to_owned()
            } else {
                figures.crm_sessions.to_string()
            },
        );
        per_event.push(figures.ms_per_event);
    }
    per_event.sort_by(f64::total_cmp);
    println!(
        "median of {runs}: {:.1} ms per event",
        per_event[per_event.len() / 2]
    );
    Ok(())
}

/// The i-th event's start: N 30-minute events spread over the next 300 days.
fn start_of(base: Timestamp, i: usize) -> Result<Timestamp> {
    let day = i64::try_from(i % 300)?;
    let slot = i64::try_from(i / 300)?;
    Ok(base
        .checked_add(SignedDuration::from_hours(24 * day))?
        .checked_add(SignedDuration::from_mins(15 * (slot % 48)))?)
}

/// Child process: the sandbox with maria's N events on the source side, answering `counts` on
/// stdin until the parent closes it.
async fn serve(setup: Setup) -> Result<()> {
    let sandbox = Sandbox::start().await?;
    seed_identity(&sandbox)?;
    seed_crm_users(&sandbox, "UTC")?;
    let graph = sandbox.graph();
    let crm = sandbox.crm();
    graph.add_fault(FaultRule::new(
        FaultRoute::EventWrites,
        GraphFault::Slow(setup.graph_create),
        FaultRate::Always,
    ));
    crm.set_operation_latency("create", setup.crm_create);
    let base = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24))?
        .round(jiff::Unit::Hour)?;
    match setup.direction {
        Direction::ToCrm => {
            let when = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
            let mut bodies = Vec::with_capacity(setup.events);
            for i in 0..setup.events {
                let start = start_of(base, i)?;
                bodies.push(json!({
                    "subject": format!("{SUBJECT} {i}"),
                    "body": {"contentType": "text", "content": format!("Agenda for call {i}.")},
                    "start": {"dateTime": when(start), "timeZone": "UTC"},
                    "end": {"dateTime": when(start.checked_add(SignedDuration::from_mins(30))?), "timeZone": "UTC"},
                    "location": {"displayName": format!("Room {}", i % 40)},
                }));
            }
            graph.seed_events(USER_OID, &bodies)?;
        }
        Direction::ToOutlook if setup.real_crm => {}
        Direction::ToOutlook => {
            for i in 0..setup.events {
                let start = start_of(base, i)?;
                let end = start.checked_add(SignedDuration::from_mins(30))?;
                let fields = [
                    ("subject", format!("{SUBJECT} {i}")),
                    ("date_start", start.strftime("%Y-%m-%d").to_string()),
                    ("time_start", start.strftime("%H:%M:%S").to_string()),
                    ("due_date", end.strftime("%Y-%m-%d").to_string()),
                    ("time_end", end.strftime("%H:%M:%S").to_string()),
                    ("location", format!("Room {}", i % 40)),
                    ("description", format!("Agenda for call {i}.")),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
                crm.seed_event(SeedEvent {
                    owner: MARIA,
                    fields,
                    ..SeedEvent::default()
                });
            }
        }
    }
    serve_commands(sandbox, |sandbox, command| match command {
        "reset" => {
            sandbox.graph().reset_peak_in_flight();
            sandbox.crm().reset_peak_sessions_busy();
            json!({"reset": true})
        }
        "counts" => json!({
            "graph_in_flight": sandbox.graph().peak_in_flight(USER_OID),
            "crm_sessions": sandbox.crm().peak_sessions_busy(),
            "crm_events": sandbox.crm().events_of(MARIA).len(),
            "outlook_events": sandbox.graph().event_ids(USER_OID).len(),
        }),
        other => json!({"error": other}),
    })
    .await
}

struct Figures {
    wall: Duration,
    ms_per_event: f64,
    dynamodb: u64,
    graph_in_flight: u64,
    crm_sessions: u64,
}

async fn bench(setup: Setup) -> Result<Figures> {
    let direction = match setup.direction {
        Direction::ToCrm => "to-crm",
        Direction::ToOutlook => "to-outlook",
    };
    let mut args = vec![
        "--sandbox".to_owned(),
        "--direction".to_owned(),
        direction.to_owned(),
        "--events".to_owned(),
        setup.events.to_string(),
        "--crm-create-ms".to_owned(),
        setup.crm_create.as_millis().to_string(),
        "--graph-create-ms".to_owned(),
        setup.graph_create.as_millis().to_string(),
    ];
    if setup.real_crm {
        args.push("--real-crm".to_owned());
    }
    let mut sandbox = SandboxProcess::start(args)?;
    let sdk = aws_config().await?;
    let (dynamodb, count) = counted_dynamodb(&sdk);
    let options = BedOptions {
        dynamodb: Some(dynamodb),
        ..BedOptions::default()
    };
    let side = CalsyncSide::start(&sandbox.url, &options).await?;
    let real = if setup.real_crm {
        Some(RealVtiger::from_env()?.context(
            "--real-crm needs the real-CRM tier's variables (CALSYNC_REAL_VTIGER_URL etc.)",
        )?)
    } else {
        None
    };
    let crm_user = match &real {
        Some(real) => {
            let secret =
                sandbox_tenant_secret(&real.url, &real.admin, &real.admin_key, &side.link_key);
            side.app.tenants.put_secret(&side.tenant, &secret).await?;
            let zone = real.zone.clone();
            side.app
                .tenants
                .update_settings(&side.tenant, move |s| s.crm_time_zone = zone.clone())
                .await?;
            real_crm_clear(real).await?;
            if setup.direction == Direction::ToOutlook {
                real_crm_seed(real, setup.events).await?;
            }
            real.user.clone()
        }
        None => {
            point_at_sandbox_crm(&side.app, &side.tenant, &sandbox.url, "UTC").await?;
            CRM_USER.to_owned()
        }
    };
    let connected = connect_user(&side.app, &side.tenant, &side.link_key, &crm_user).await?;
    anyhow::ensure!(
        connected.status == 200,
        "connect answered {}",
        connected.status
    );
    sandbox.ask("reset")?;
    let job = SyncJob {
        tenant: side.tenant.clone(),
        user: calsync_core::ids::CrmUserName::parse(&crm_user)?,
        reason: JobReason::Manual,
        full: false,
        origin: None,
    };
    let before = count.get();
    let wall = Instant::now();
    let report = calsync::entry::jobs::run_job(&side.app, &job)
        .await
        .map_err(|e| anyhow!("sync failed: {e}"))?;
    let wall = wall.elapsed();
    let dynamodb = count.get() - before;
    let counts = sandbox.ask("counts")?;
    sandbox.stop()?;
    anyhow::ensure!(
        report.outcome == RunOutcome::Synced && report.failures.is_empty(),
        "the first sync did not finish: {:?}, {:?}",
        report.outcome,
        report.failures
    );
    let in_real_crm = match &real {
        Some(real) => {
            let made = real_crm_clear(real).await?;
            Some(made as u64)
        }
        None => None,
    };
    let landed = match setup.direction {
        Direction::ToCrm if in_real_crm.is_some() => in_real_crm,
        Direction::ToCrm => counts["crm_events"].as_u64(),
        Direction::ToOutlook => counts["outlook_events"].as_u64(),
    }
    .unwrap_or(0);
    anyhow::ensure!(
        landed == setup.events as u64,
        "{landed} events on the other side, not {}",
        setup.events
    );
    Ok(Figures {
        wall,
        ms_per_event: wall.as_secs_f64() * 1000.0 / setup.events as f64,
        dynamodb,
        graph_in_flight: counts["graph_in_flight"].as_u64().unwrap_or(0),
        crm_sessions: counts["crm_sessions"].as_u64().unwrap_or(0),
    })
}

/// The real vtiger user's events whose subject the benchmark uses: their ids.
async fn real_crm_events(real: &RealVtiger) -> Result<Vec<String>> {
    let client = real.as_user()?;
    let mut ids = Vec::new();
    loop {
        let query = format!(
            "SELECT id FROM Events WHERE subject LIKE '{SUBJECT} %' LIMIT {}, 100;",
            ids.len()
        );
        let page = client.get("query", &[("query", &query)]).await?;
        let rows = page.as_array().map(Vec::as_slice).unwrap_or_default();
        ids.extend(
            rows.iter()
                .filter_map(|row| row["id"].as_str().map(str::to_owned)),
        );
        if rows.len() < 100 {
            return Ok(ids);
        }
    }
}

/// Deletes the benchmark's events from the real vtiger; how many there were.
async fn real_crm_clear(real: &RealVtiger) -> Result<usize> {
    let ids = real_crm_events(real).await?;
    let client = real.as_user()?;
    for id in &ids {
        client.post("delete", &[("id", id)]).await?;
    }
    Ok(ids.len())
}

/// Creates `events` events of the real vtiger user through the webservice, as the sandbox
/// seeds them.
async fn real_crm_seed(real: &RealVtiger, events: usize) -> Result<()> {
    let client = real.as_user()?;
    let owner = client.session().await?.user_id.clone();
    let base = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24))?
        .round(jiff::Unit::Hour)?;
    let zone = jiff::tz::TimeZone::get(&real.zone)?;
    let wall = |t: Timestamp| zone.to_datetime(t);
    for i in 0..events {
        let start = wall(start_of(base, i)?);
        let end = wall(start_of(base, i)?.checked_add(SignedDuration::from_mins(30))?);
        let element = json!({
            "subject": format!("{SUBJECT} {i}"),
            "date_start": start.strftime("%Y-%m-%d").to_string(),
            "time_start": start.strftime("%H:%M:%S").to_string(),
            "due_date": end.strftime("%Y-%m-%d").to_string(),
            "time_end": end.strftime("%H:%M:%S").to_string(),
            "duration_hours": "0",
            "duration_minutes": "30",
            "activitytype": "Meeting",
            "eventstatus": "Planned",
            "location": format!("Room {}", i % 40),
            "description": format!("Agenda for call {i}."),
            "assigned_user_id": owner,
        });
        client
            .post(
                "create",
                &[("elementType", "Events"), ("element", &element.to_string())],
            )
            .await?;
    }
    Ok(())
}
