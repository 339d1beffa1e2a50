//! Benchmark: how long a CRM save takes to reach Outlook through a nudge, p50 and p95 over N
//! edits (docs/BENCHMARKS.md; target under 10 s), and what a nudge adds to a CRM save.
//!
//! - **serve**: `calsync serve --sandbox` as a process (the built `calsync` next to this
//!   binary), with no scheduler round after the first (`--tick 1h`). Each edit saves the demo
//!   user's CRM event on the sandbox CRM (its calendar page, as a person would), then sends the
//!   nudge the CRM module would send — the same signed form to `/nudge`, with the tenant's link
//!   key from `calsync tenant show --reveal-link-key` — and polls the sandbox's calendar page
//!   until Outlook shows the new subject.
//! - **real** (when `CALSYNC_REAL_VTIGER_URL` and the other variables of docs/testing.md are
//!   set): the real vtiger with the module installed from its zip and configured, calsync served
//!   in process as the real-CRM tests serve it. First `crm-module/tools/measure-save.php` times
//!   the administrator's webservice saves of an event on stock vtiger, with the module and no
//!   nudge (the administrator is calsync's CRM user), and with the module nudging calsync (no
//!   CRM user set; the administrator does not sync, so calsync answers at once); then the CRM
//!   user connects through the panel and makes N real saves of their event through the
//!   webservice, each timed until the sandbox's Outlook holds the new subject.
//!
//! Run (release, as docs/BENCHMARKS.md says):
//!   cargo build --release -p calsync-cli -p calsync-tests --bin calsync --bin bench-crm-latency
//!   ./target/release/bench-crm-latency [--edits 20] [--saves 60] [--rounds 3] [--only serve|real]

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use calsync::crypto::random_token;
use calsync::nudge::Nudge;
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use calsync_testkit::binary_path;
use calsync_testkit::realcrm::{between, skip_message, Browser, RealCrmBed, RealVtiger};
use calsync_testkit::serve::ServeProcess;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

struct Options {
    edits: usize,
    saves: usize,
    rounds: usize,
    only: Option<String>,
}

fn options() -> Result<Options> {
    let mut options = Options {
        edits: 20,
        saves: 60,
        rounds: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--edits" => options.edits = value()?.parse()?,
            "--saves" => options.saves = value()?.parse()?,
            "--rounds" => options.rounds = value()?.parse()?,
            "--only" => options.only = Some(value()?),
            other => bail!("unknown argument {other}; see the header of bench-crm-latency.rs"),
        }
    }
    ensure!(options.edits > 0, "--edits must be at least 1");
    Ok(options)
}

/// Nearest-rank percentile (`p` in 0..=100) of the samples.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

fn report(label: &str, samples: &[Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: n={} p50={:.0} ms p95={:.0} ms min={:.0} ms max={:.0} ms",
        samples.len(),
        ms(percentile(samples, 50)),
        ms(percentile(samples, 95)),
        ms(samples.iter().copied().min().unwrap_or_default()),
        ms(samples.iter().copied().max().unwrap_or_default()),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let options = options()?;
    if options.only.as_deref() != Some("real") {
        serve_mode(&options).await?;
    }
    if options.only.as_deref() != Some("serve") {
        match RealVtiger::from_env()? {
            Some(crm) => real_mode(crm, &options).await?,
            None => println!("{}", skip_message("the real-vtiger half of the benchmark")),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `calsync serve --sandbox`

async fn serve_mode(options: &Options) -> Result<()> {
    let serve = ServeProcess::start("1h")?;
    let outcome = serve_edits(&serve, options).await;
    let log = serve.log_text();
    serve.stop()?;
    let latencies = outcome.with_context(|| format!("calsync serve's log:\n{log}"))?;
    let queued = log
        .lines()
        .filter(|l| l.contains("nudge taken") && l.contains("Queued"))
        .count();
    // The worker's line for each job: `sync job done … user=adele reason=nudge … writes=N`.
    let nudge_runs = log
        .lines()
        .filter(|l| {
            l.contains("sync job done")
                && l.contains("user=adele")
                && l.contains("reason=nudge")
                && !l.contains("writes=0")
        })
        .count();
    println!(
        "serve: nudges queued {queued}, nudge runs that wrote {nudge_runs} (of {} edits)",
        options.edits
    );
    report("serve: CRM save → Outlook", &latencies);
    Ok(())
}

/// The sandbox calendar page's Outlook part (before its CRM part).
fn outlook_part(page: &str) -> &str {
    page.split("<h2>CRM</h2>").next().unwrap_or(page)
}

/// The URL on the banner line that starts with `prefix`, without its trailing slash.
fn url_in(serve: &ServeProcess, prefix: &str) -> Result<String> {
    Ok(serve.url_on(prefix)?.trim_end_matches('/').to_owned())
}

async fn serve_edits(serve: &ServeProcess, options: &Options) -> Result<Vec<Duration>> {
    let base = url_in(serve, "calsync serve: listening on")?;
    let calendars = url_in(serve, "3. Edit an event")?;
    let sandbox = calendars
        .split("/_sandbox/")
        .next()
        .unwrap_or_default()
        .to_owned();
    let connect_line = serve.line("connect adele")?;
    let email = between(connect_line, "(", ")").context("no address on the connect line")?;
    let connect = url_in(serve, "connect adele")?;
    let data_dir = serve
        .line("data:")?
        .trim_start()
        .trim_start_matches("data:")
        .split_whitespace()
        .next()
        .context("no data folder in the banner")?
        .to_owned();

    // Connect adele as a browser would, signing in at once.
    let browser = Browser::new()?;
    let started = browser.get(&connect, None).await?;
    let authorize = started.next_url()?;
    let azure_tenant = reqwest::Url::parse(&authorize)?
        .path_segments()
        .and_then(|mut s| s.next().map(str::to_owned))
        .context("no tenant in the authorize URL")?;
    let http = reqwest::Client::new();
    let approved = http
        .put(format!(
            "{sandbox}/_sandbox/identity/tenants/{azure_tenant}/auto-approve"
        ))
        .json(&json!({ "username": email }))
        .send()
        .await?;
    ensure!(
        approved.status().is_success(),
        "auto-approve: {}",
        approved.status()
    );
    let callback = browser.get(&authorize, None).await?.next_url()?;
    let done = browser.get(&callback, None).await?;
    ensure!(done.status == 200, "the callback answered {}", done.status);
    wait_for_status_row(&http, &base, "connected").await?;

    // The tenant's link key, as an operator reads it for the CRM module.
    let shown = Command::new(binary_path("calsync"))
        .args(["--data-dir", &data_dir, "tenant", "show", "demo"])
        .args(["--reveal-link-key", "--json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .output()?;
    ensure!(
        shown.status.success(),
        "tenant show: {}",
        String::from_utf8_lossy(&shown.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
    let link_key = Secret::new(
        shown["link_key"]
            .as_str()
            .context("tenant show printed no link_key")?,
    );

    // adele's CRM event on the sandbox's calendar page.
    let page = http.get(&calendars).send().await?.text().await?;
    let adele = page
        .split("<section><h3>adele</h3>")
        .nth(1)
        .context("no CRM section for adele")?;
    let id = between(adele, "name=\"id\" value=\"", "\"")
        .context("adele has no CRM event")?
        .to_owned();
    let start = between(adele, "name=\"start\" value=\"", "\"")
        .context("no start")?
        .to_owned();
    let end = between(adele, "name=\"end\" value=\"", "\"")
        .context("no end")?
        .to_owned();

    let nonce = random_token(4);
    let mut latencies = Vec::new();
    for i in 0..options.edits {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let subject = format!("Visit {i} ({nonce})");
        let started = Instant::now();
        let saved = http
            .post(format!("{calendars}/crm"))
            .form(&[
                ("id", id.as_str()),
                ("subject", subject.as_str()),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("action", "save"),
            ])
            .send()
            .await?;
        ensure!(
            saved.status().is_redirection() || saved.status().is_success(),
            "the CRM save answered {}",
            saved.status()
        );
        // The CRM module's nudge, byte for byte what it sends.
        let nudge = Nudge {
            tenant: TenantId::parse("demo")?,
            user: CrmUserName::parse("adele")?,
            sent_at: calsync_testkit::testbed::now(),
            nonce: random_token(16),
        };
        let nudged = http
            .post(format!("{base}/nudge"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(nudge.form(&link_key))
            .send()
            .await?;
        ensure!(
            nudged.status() == 202,
            "the nudge answered {}",
            nudged.status()
        );
        let needle = format!("value=\"{subject}\"");
        loop {
            let page = http.get(&calendars).send().await?.text().await?;
            if outlook_part(&page).contains(&needle) {
                latencies.push(started.elapsed());
                break;
            }
            ensure!(started.elapsed() < WAIT, "edit {i} never reached Outlook");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // The last run's echo (Graph's notification of calsync's own write) comes and goes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(latencies)
}

/// Waits until the status page lists a finished job of adele's for `reason`.
async fn wait_for_status_row(http: &reqwest::Client, base: &str, reason: &str) -> Result<()> {
    let row = format!("data-job-user=\"adele\" data-reason=\"{reason}\"");
    let deadline = Instant::now() + WAIT;
    loop {
        let page = http.get(format!("{base}/")).send().await?.text().await?;
        if page.contains(&row) {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "adele's {reason} job never ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The real vtiger

async fn real_mode(crm: RealVtiger, options: &Options) -> Result<()> {
    let bed = RealCrmBed::start(crm.clone(), None).await?;
    let outcome = real_runs(&bed, options).await;
    let uninstalled = bed.finish().await;
    outcome?;
    uninstalled?;
    // Stock vtiger, for comparison (the module is gone again).
    for round in 1..=options.rounds {
        let stock = measure_saves(&crm, options.saves).await?;
        println!("real: admin's webservice save, stock vtiger (round {round}): {stock}");
    }
    Ok(())
}

async fn real_runs(bed: &RealCrmBed, options: &Options) -> Result<()> {
    let crm = &bed.crm;
    // What a nudge adds to a save: the administrator's saves, which nudge calsync (it takes the
    // nudge at once: the administrator does not sync), then without nudging (the administrator
    // named as calsync's CRM user), then nudging again.
    let configure = |integration_user: Option<&str>| {
        let mut args = vec![
            bed.calsync.base_url.as_str(),
            bed.calsync.base_url.as_str(),
            bed.calsync.tenant.as_str(),
            "-",
        ];
        args.extend(integration_user);
        crm.tool("configure", &args, Some(bed.calsync.link_key.expose()))
    };
    for round in 1..=options.rounds {
        configure(None)?;
        let nudging = measure_saves(crm, options.saves).await?;
        configure(Some(&crm.admin))?;
        let quiet = measure_saves(crm, options.saves).await?;
        println!("real: admin's webservice save, module nudging (round {round}): {nudging}");
        println!("real: admin's webservice save, module, no nudge (round {round}): {quiet}");
    }

    // CRM save → Outlook, as the CRM user, with calsync's own saves not nudging.
    let date = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date()
        .checked_add(jiff::Span::new().days(2))?
        .to_string();
    let id = bed
        .create_event("Bench visit", &date, "09:00:00", "10:00:00", &[])
        .await?;
    let outcome = async {
        bed.connect().await?;
        let user = crm.as_user()?;
        let nonce = random_token(4);
        let mut latencies = Vec::new();
        let mut saves = Vec::new();
        for i in 0..options.edits {
            bed.calsync
                .settle(Duration::from_millis(1500), WAIT)
                .await?;
            let subject = format!("Bench visit {i} ({nonce})");
            let started = Instant::now();
            user.post(
                "revise",
                &[(
                    "element",
                    &json!({"id": id, "subject": subject}).to_string(),
                )],
            )
            .await?;
            saves.push(started.elapsed());
            bed.calsync
                .wait_for_outlook(WAIT, |e| e["subject"] == subject.as_str())
                .await?;
            latencies.push(started.elapsed());
        }
        bed.calsync
            .settle(Duration::from_millis(1500), WAIT)
            .await?;
        let nudge_runs = bed
            .calsync
            .jobs()
            .iter()
            .filter(|j| {
                j.user == crm.user
                    && j.reason == calsync::adapters::queue::JobReason::Nudge
                    && j.writes > 0
            })
            .count();
        println!(
            "real: nudge runs that wrote {nudge_runs} (of {} edits)",
            options.edits
        );
        report("real: the user's save (webservice answer)", &saves);
        report("real: CRM save → Outlook", &latencies);
        anyhow::Ok(())
    }
    .await;
    bed.delete_events(&[id]).await;
    outcome
}

/// `measure-save.php` over `saves` revises of an administrator's event made for it; its line.
async fn measure_saves(crm: &RealVtiger, saves: usize) -> Result<String> {
    let admin = crm.as_admin()?;
    let me = admin.session().await?.user_id.clone();
    let element = json!({
        "subject": "measure-save",
        "date_start": "2026-12-01",
        "time_start": "09:00:00",
        "due_date": "2026-12-01",
        "time_end": "10:00:00",
        "activitytype": "Meeting",
        "eventstatus": "Planned",
        "visibility": "Public",
        "duration_hours": "1",
        "assigned_user_id": me,
    })
    .to_string();
    let created = admin
        .post(
            "create",
            &[("elementType", "Events"), ("element", &element)],
        )
        .await?;
    let id = created["id"]
        .as_str()
        .context("no id for the measured event")?
        .to_owned();
    let script = calsync_testkit::realcrm::repo_root().join("crm-module/tools/measure-save.php");
    let mut php = crm.php.split_whitespace();
    let program = php.next().context("the PHP command is empty")?;
    let out = Command::new(program)
        .args(php)
        .arg(&script)
        .args([
            &crm.url,
            &crm.admin,
            &crm.admin_key,
            &id,
            &saves.to_string(),
        ])
        .output();
    let _ = admin.post("delete", &[("id", &id)]).await;
    let out = out?;
    ensure!(
        out.status.success(),
        "measure-save.php: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
