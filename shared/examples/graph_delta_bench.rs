//! Benchmark: time, CPU and peak memory for the Graph client to read and complete one
//! calendarView delta round of N events (default 10,000: single events plus daily series whose
//! occurrences arrive as stubs), against the sandbox's Graph running in a child process so the
//! figures are the client's alone.
//!
//! ```text
//! cargo run --release -p calsync --example graph_delta_bench -- \
//!     [--events N] [--rounds R] [--page-size P]
//! ```
//!
//! Two measurements, each repeated R times (medians reported, the machine is noisy):
//! 1. a full round over HTTP (`MailboxClient::delta_round`): wall time, client CPU, peak RSS;
//! 2. parsing and completing the same pages already in memory (`RoundAssembly`): the
//!    client's own cost without the network or the server.
//!
//! Peak RSS is `VmHWM` from `/proc/self/status`, reset before each run through
//! `/proc/self/clear_refs`; CPU is utime + stime from `/proc/self/stat`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use calsync::adapters::graph::types::{DeltaPage, GraphEvent};
use calsync::adapters::graph::{DeltaStart, GraphClient, GraphSettings, Mailbox, RoundAssembly};
use calsync::adapters::identity::{AppRegistration, ClientCredential, Identity};
use calsync_core::secret::Secret;
use calsync_core::time::TimeWindow;
use calsync_sandbox::Sandbox;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use url::Url;

const TENANT: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
const CLIENT_ID: &str = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
const CLIENT_SECRET: &str = "bench-secret";
const USER_OID: &str = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
/// Each series contributes this many occurrences to the window.
const OCCURRENCES_PER_SERIES: i64 = 25;

type AnyError = Box<dyn std::error::Error + Send + Sync>;

struct Options {
    events: i64,
    rounds: usize,
    page_size: u32,
    serve: bool,
    /// Internal: one measurement (`http` or `memory`) against the sandbox at `base`.
    measure: Option<String>,
    base: String,
}

fn options() -> Result<Options, AnyError> {
    let mut o = Options {
        events: 10_000,
        rounds: 5,
        page_size: 100,
        serve: false,
        measure: None,
        base: String::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--events" => o.events = value()?.parse()?,
            "--rounds" => o.rounds = value()?.parse()?,
            "--page-size" => o.page_size = value()?.parse()?,
            "--serve" => o.serve = true,
            "--measure" => o.measure = Some(value()?),
            "--base" => o.base = value()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(o)
}

fn window() -> TimeWindow {
    let now = Timestamp::now();
    TimeWindow::new(
        now - SignedDuration::from_hours(24),
        now + SignedDuration::from_hours(24 * 365),
    )
}

fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

/// N items in the window: daily series (one per 500 items) and single events.
fn calendar(events: i64) -> Vec<Value> {
    let series = (events / 500).max(1);
    let singles = events - series * OCCURRENCES_PER_SERIES;
    let base = Timestamp::now() + SignedDuration::from_hours(2);
    let mut bodies = Vec::with_capacity(singles as usize + series as usize);
    for i in 0..singles {
        let start = base + SignedDuration::from_mins(37 * i);
        bodies.push(json!({
            "subject": format!("Customer call #{i} about the renewal"),
            "body": {"contentType": "html", "content": format!(
                "<html><body><p>Agenda for call {i}:</p><ul><li>pricing</li><li>timeline</li>\
                 <li>next steps &amp; owners</li></ul><p>Dial-in details follow.</p></body></html>")},
            "start": {"dateTime": when(start), "timeZone": "UTC"},
            "end": {"dateTime": when(start + SignedDuration::from_mins(30)), "timeZone": "UTC"},
            "location": {"displayName": format!("Room {}", i % 40)},
            "categories": ["CRM"],
        }));
    }
    for s in 0..series {
        let start = base + SignedDuration::from_mins(11 * s);
        bodies.push(json!({
            "subject": format!("Daily standup {s}"),
            "body": {"contentType": "text", "content": "Fifteen minutes, every day."},
            "start": {"dateTime": when(start), "timeZone": "UTC"},
            "end": {"dateTime": when(start + SignedDuration::from_mins(15)), "timeZone": "UTC"},
            "recurrence": {
                "pattern": {"type": "daily", "interval": 1},
                "range": {"type": "numbered", "startDate": start.strftime("%Y-%m-%d").to_string(),
                          "numberOfOccurrences": OCCURRENCES_PER_SERIES}
            }
        }));
    }
    bodies
}

/// Child process: a sandbox holding the calendar, until the parent closes our stdin.
async fn serve(events: i64) -> Result<(), AnyError> {
    let sandbox = Sandbox::start().await?;
    let identity = sandbox.identity();
    identity.add_tenant(TENANT);
    identity.add_app(
        TENANT,
        CLIENT_ID,
        CLIENT_SECRET,
        &["https://bench.test/callback"],
    )?;
    identity.add_user(TENANT, USER_OID, "bench@contoso.test", "Bench User")?;
    identity.grant_admin_consent(TENANT, CLIENT_ID)?;
    sandbox.graph().seed_events(USER_OID, &calendar(events))?;
    sandbox.graph().set_mailbox_concurrency_limit(None);
    println!("READY {}", sandbox.base_url());
    std::io::stdout().flush()?;
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    Ok(())
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

/// One run's figures, as a child prints them.
struct Sample {
    wall_ms: f64,
    cpu_ms: f64,
    peak_kb: f64,
    before_kb: f64,
    items: usize,
    pages: u32,
    fetched: u32,
    json_bytes: usize,
}

impl Sample {
    fn line(&self) -> String {
        format!(
            "SAMPLE {} {} {} {} {} {} {} {}",
            self.wall_ms,
            self.cpu_ms,
            self.peak_kb,
            self.before_kb,
            self.items,
            self.pages,
            self.fetched,
            self.json_bytes
        )
    }

    fn parse(line: &str) -> Option<Self> {
        let v: Vec<&str> = line.strip_prefix("SAMPLE ")?.split(' ').collect();
        Some(Self {
            wall_ms: v.first()?.parse().ok()?,
            cpu_ms: v.get(1)?.parse().ok()?,
            peak_kb: v.get(2)?.parse().ok()?,
            before_kb: v.get(3)?.parse().ok()?,
            items: v.get(4)?.parse().ok()?,
            pages: v.get(5)?.parse().ok()?,
            fetched: v.get(6)?.parse().ok()?,
            json_bytes: v.get(7)?.parse().ok()?,
        })
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn report(title: &str, samples: &[Sample]) {
    let items = samples.first().map(|s| s.items).unwrap_or(1).max(1);
    let wall = median(samples.iter().map(|s| s.wall_ms).collect());
    let cpu = median(samples.iter().map(|s| s.cpu_ms).collect());
    let peak = median(samples.iter().map(|s| s.peak_kb / 1024.0).collect());
    let added = median(
        samples
            .iter()
            .map(|s| (s.peak_kb - s.before_kb) / 1024.0)
            .collect(),
    );
    println!(
        "| {title} | {} | {wall:.0} ms | {cpu:.0} ms | {:.1} µs | {peak:.1} MiB | {added:.1} MiB |",
        samples.len(),
        cpu * 1000.0 / items as f64,
    );
}

/// Raw pages of one round and the raw masters it needs, for the in-memory measurement.
async fn fetch_raw(
    base: &str,
    token: &Secret,
    page_size: u32,
) -> Result<(Vec<Vec<u8>>, Vec<Vec<u8>>), AnyError> {
    let http = reqwest::Client::new();
    let prefer = format!(
        "odata.maxpagesize={page_size}, outlook.timezone=\"UTC\", IdType=\"ImmutableId\", outlook.body-content-type=\"text\""
    );
    let w = window();
    let mut url = format!(
        "{base}/v1.0/users/{USER_OID}/calendarView/delta?startDateTime={}&endDateTime={}",
        w.start, w.end
    );
    let mut pages = Vec::new();
    let mut masters = std::collections::BTreeSet::new();
    loop {
        let bytes = http
            .get(&url)
            .bearer_auth(token.expose())
            .header("prefer", &prefer)
            .send()
            .await?
            .bytes()
            .await?
            .to_vec();
        let page: DeltaPage = serde_json::from_slice(&bytes)?;
        for item in &page.value {
            if let Some(master) = &item.series_master_id {
                masters.insert(master.clone());
            }
        }
        pages.push(bytes);
        match page.next_link {
            Some(next) => url = next,
            None => break,
        }
    }
    let mut raw_masters = Vec::new();
    for id in masters {
        let bytes = http
            .get(format!("{base}/v1.0/users/{USER_OID}/events/{id}"))
            .bearer_auth(token.expose())
            .header("prefer", &prefer)
            .send()
            .await?
            .bytes()
            .await?
            .to_vec();
        raw_masters.push(bytes);
    }
    Ok((pages, raw_masters))
}

/// One run in a fresh process, so its peak RSS is the run's own.
async fn measure(o: &Options, what: &str) -> Result<Sample, AnyError> {
    let tokens = Identity::new(Url::parse(&o.base)?, Duration::from_secs(10))?;
    let client_secret = Secret::new(CLIENT_SECRET);
    let token = tokens
        .app_token(AppRegistration {
            directory: TENANT,
            authority: TENANT,
            client_id: CLIENT_ID,
            credential: ClientCredential::Secret(&client_secret),
        })
        .await?;
    if what == "http" {
        let mut settings = GraphSettings::new(Url::parse(&o.base)?);
        settings.timeout = Duration::from_secs(120);
        settings.page_size = o.page_size;
        let graph = GraphClient::new(settings)?;
        let mailbox = graph.mailbox(Mailbox::user(USER_OID), token);
        let before_kb = status_kb("VmRSS:") as f64;
        let (cpu0, t0) = (cpu_time(), Instant::now());
        let round = mailbox.delta_round(DeltaStart::Full(window())).await?;
        let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
        return Ok(Sample {
            wall_ms: wall.as_secs_f64() * 1000.0,
            cpu_ms: cpu.as_secs_f64() * 1000.0,
            peak_kb: status_kb("VmHWM:") as f64,
            before_kb,
            items: round.changes.len(),
            pages: round.pages,
            fetched: round.masters_fetched,
            json_bytes: 0,
        });
    }
    let (raw_pages, raw_masters) = fetch_raw(&o.base, &token, o.page_size).await?;
    let before_kb = status_kb("VmRSS:") as f64;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut assembly = RoundAssembly::default();
    for bytes in &raw_pages {
        let page: DeltaPage = serde_json::from_slice(bytes)?;
        assembly.add_page(page.value);
    }
    let pending = assembly.finish(String::new());
    let masters = raw_masters
        .iter()
        .map(|b| serde_json::from_slice::<GraphEvent>(b))
        .collect::<Result<Vec<_>, _>>()?;
    let round = pending.complete(masters);
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    Ok(Sample {
        wall_ms: wall.as_secs_f64() * 1000.0,
        cpu_ms: cpu.as_secs_f64() * 1000.0,
        peak_kb: status_kb("VmHWM:") as f64,
        before_kb,
        items: round.changes.len(),
        pages: round.pages,
        fetched: raw_masters.len() as u32,
        json_bytes: raw_pages.iter().map(Vec::len).sum(),
    })
}

fn run_child(o: &Options, what: &str, base: &str) -> Result<Sample, AnyError> {
    let output = Command::new(std::env::current_exe()?)
        .args([
            "--measure",
            what,
            "--base",
            base,
            "--page-size",
            &o.page_size.to_string(),
        ])
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(Sample::parse)
        .ok_or_else(|| format!("a {what} run printed no sample: {text}").into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), AnyError> {
    let o = options()?;
    if o.serve {
        return serve(o.events).await;
    }
    if let Some(what) = o.measure.clone() {
        println!("{}", measure(&o, &what).await?.line());
        return Ok(());
    }
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--serve", "--events", &o.events.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no child stdout")?).read_line(&mut line)?;
    let base = line
        .trim()
        .strip_prefix("READY ")
        .ok_or(format!("the sandbox did not start: {line:?}"))?
        .to_owned();

    // A warm-up run, then alternate the two measurements so drift hits both alike.
    run_child(&o, "http", &base)?;
    let (mut http, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..o.rounds {
        http.push(run_child(&o, "http", &base)?);
        memory.push(run_child(&o, "memory", &base)?);
    }
    println!(
        "graph delta round: {} events, page size {}, {} runs each, one process per run (medians)\n",
        o.events, o.page_size, o.rounds
    );
    println!("| measurement | runs | wall | client CPU | CPU per instance | peak RSS | added by the round |");
    println!("|---|---|---|---|---|---|---|");
    report("full round over HTTP (sandbox in another process)", &http);
    report("parse + complete the same pages in memory", &memory);
    if let (Some(h), Some(m)) = (http.first(), memory.first()) {
        println!(
            "\n{} instances in {} pages ({:.1} MiB of JSON); {} series masters fetched once each",
            h.items,
            h.pages,
            m.json_bytes as f64 / (1024.0 * 1024.0),
            h.fetched
        );
    }
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}
