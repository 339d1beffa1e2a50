//! `bench-initial-sync [--events N]`: the initial sync of a mailbox of N Outlook events
//! (default 10,000) into an empty CRM, through the real runner (`calsync::entry::jobs::run_job`),
//! with DynamoDB and Secrets Manager in moto and Microsoft identity, Graph and vtiger in the
//! sandbox. Run in release (docs/BENCHMARKS.md).
//!
//! The sandbox runs in a child process (this binary with `--sandbox`), so the CPU time and
//! peak memory measured here are calsync's own: the runner, the Graph and CRM clients, the
//! AWS SDK. Moto is a process of its own too.
//!
//! CPU is the process's utime + stime (`/proc/self/stat`, 10 ms ticks) over the run; peak
//! memory is `VmHWM` (`/proc/self/status`), reset through `/proc/self/clear_refs` before the
//! run; request counts are the sandbox's own logs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync::services::sync_run::RunOutcome;
use calsync_sandbox::Sandbox;
use calsync_testkit::bench_sandbox::{serve_commands, SandboxProcess};
use calsync_testkit::syncbed::{point_at_sandbox_crm, seed_crm_users, MARIA};
use calsync_testkit::testbed::{seed_identity, BedOptions, CalsyncSide, CRM_USER, USER_OID};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

const USAGE: &str = "usage: bench-initial-sync [--events N]";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut events: usize = 10_000;
    let mut serve_sandbox = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--events" => {
                events = args
                    .next()
                    .context(USAGE)?
                    .parse()
                    .context("--events takes a number")?;
            }
            "--sandbox" => serve_sandbox = true,
            _ => return Err(anyhow!("unknown argument {arg}\n{USAGE}")),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if serve_sandbox {
        runtime.block_on(serve(events))
    } else {
        runtime.block_on(bench(events))
    }
}

/// N single Outlook events, 30 minutes each, spread over the next 300 days (inside the
/// default window of 30 days back and 365 ahead).
fn calendar(events: usize) -> Result<Vec<Value>> {
    let base = Timestamp::now()
        .checked_add(SignedDuration::from_hours(24))?
        .round(jiff::Unit::Hour)?;
    let when = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    let mut bodies = Vec::with_capacity(events);
    for i in 0..events {
        let day = i64::try_from(i % 300)?;
        let slot = i64::try_from(i / 300)?;
        let start = base.checked_add(SignedDuration::from_hours(24 * day))?;
        let start = start.checked_add(SignedDuration::from_mins(15 * (slot % 48)))?;
        bodies.push(json!({
            "subject": format!("Customer call {i}"),
            "body": {"contentType": "text", "content": format!("Agenda for call {i}: status, next steps and owners.")},
            "start": {"dateTime": when(start), "timeZone": "UTC"},
            "end": {"dateTime": when(start.checked_add(SignedDuration::from_mins(30))?), "timeZone": "UTC"},
            "location": {"displayName": format!("Room {}", i % 40)},
        }));
    }
    Ok(bodies)
}

/// Child process: the sandbox (identity, Graph with maria's N events, vtiger with its users),
/// answering `counts` and `clear` on stdin until the parent closes it.
async fn serve(events: usize) -> Result<()> {
    let sandbox = Sandbox::start().await?;
    seed_identity(&sandbox)?;
    seed_crm_users(&sandbox, "UTC")?;
    let graph = sandbox.graph();
    graph.set_mailbox_concurrency_limit(None);
    graph.seed_events(USER_OID, &calendar(events)?)?;
    serve_commands(sandbox, |sandbox, command| match command {
        "clear" => {
            sandbox.graph().clear_requests();
            sandbox.crm().reset_counts();
            json!({"cleared": true})
        }
        "counts" => counts(sandbox),
        other => json!({"error": other}),
    })
    .await
}

/// The sandbox's request logs, summarised: Graph requests by kind, CRM requests by operation.
fn counts(sandbox: &Sandbox) -> Value {
    let mut graph: BTreeMap<String, u64> = BTreeMap::new();
    let mut maria = 0;
    let mut total = 0;
    for request in sandbox.graph().requests() {
        total += 1;
        if request.mailbox.as_deref() == Some(USER_OID) {
            maria += 1;
        }
        let kind = request
            .path
            .split('/')
            .map(|segment| {
                if segment.len() > 24 || segment.contains(['=', '%']) {
                    "{id}"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        *graph
            .entry(format!("{} {}", request.method, kind))
            .or_default() += 1;
    }
    json!({
        "graph_total": total,
        "graph_maria": maria,
        "graph": graph,
        "crm": sandbox.crm().request_counts(),
        "crm_events": sandbox.crm().events_of(MARIA).len(),
    })
}

fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Process CPU time (user + system), from /proc/self/stat in clock ticks of 10 ms.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 of the whole line are the 12th and 13th after the name.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn bench(events: usize) -> Result<()> {
    let started = Instant::now();
    let mut sandbox = SandboxProcess::start(["--sandbox", "--events", &events.to_string()])?;
    eprintln!(
        "sandbox up with {events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let side = CalsyncSide::start(&sandbox.url, &BedOptions::default()).await?;
    point_at_sandbox_crm(&side.app, &side.tenant, &sandbox.url, "UTC").await?;
    let connected = side.connect().await?;
    anyhow::ensure!(
        connected.status == 200,
        "connect answered {}",
        connected.status
    );
    sandbox.ask("clear")?;
    let job = SyncJob {
        tenant: side.tenant.clone(),
        user: calsync_core::ids::CrmUserName::parse(CRM_USER)?,
        reason: JobReason::Manual,
        full: false,
        origin: None,
    };

    let rss_before = status_kb("VmRSS:");
    // Resets VmHWM to the current RSS, so the peak is the run's.
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM")?;
    let cpu_before = cpu_time();
    let wall = Instant::now();
    let report = calsync::entry::jobs::run_job(&side.app, &job)
        .await
        .map_err(|e| anyhow!("sync failed: {e}"))?;
    let wall = wall.elapsed();
    let cpu = cpu_time().saturating_sub(cpu_before);
    let peak = status_kb("VmHWM:");
    let counts = sandbox.ask("counts")?;

    // The echo run: what the first run's writes cost the next scheduled run.
    sandbox.ask("clear")?;
    let echo = calsync::entry::jobs::run_job(&side.app, &job)
        .await
        .map_err(|e| anyhow!("echo run failed: {e}"))?;
    let echo_counts = sandbox.ask("counts")?;
    sandbox.stop()?;

    let crm_requests: u64 = counts["crm"]
        .as_object()
        .map(|ops| ops.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    println!("events: {events}");
    println!(
        "outcome: {:?}, counts {:?}, graph pages {}, failures {}",
        report.outcome,
        report.counts,
        report.graph_pages,
        report.failures.len()
    );
    println!("wall: {:.2} s", wall.as_secs_f64());
    println!(
        "calsync CPU: {} ms, {:.1} µs/event",
        cpu.as_millis(),
        cpu.as_secs_f64() * 1e6 / events as f64
    );
    println!(
        "peak RSS (VmHWM): {:.1} MiB (RSS before the run {:.1} MiB)",
        peak as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    println!(
        "Graph requests: {} for maria, {} in all: {}",
        counts["graph_maria"], counts["graph_total"], counts["graph"]
    );
    println!("CRM requests: {crm_requests}: {}", counts["crm"]);
    println!(
        "CRM events of maria after the run: {}",
        counts["crm_events"]
    );
    println!(
        "echo run: {:?}, writes {}, Graph {} CRM {}",
        echo.outcome,
        echo.counts.writes(),
        echo_counts["graph"],
        echo_counts["crm"]
    );
    anyhow::ensure!(
        report.outcome == RunOutcome::Synced,
        "the initial sync did not finish: {:?}",
        report.outcome
    );
    Ok(())
}
