//! `calsync serve`: the three functions on one machine. One loopback HTTP server answers the
//! auth routes, the webhook routes and an operator status page; a scheduler tick dispatches
//! due users every few seconds; a worker takes jobs from the in-process queue and runs them.
//! State lives in the embedded store (one SQLite file). With `--sandbox` the Microsoft and CRM
//! sides are the local stand-ins, with a demo tenant ready to connect.

#[cfg(feature = "sandbox")]
mod demo;
mod ops;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use calsync::adapters::queue::{JobQueue, MemoryQueue, ReceivedJob};
use calsync::adapters::secret_store::LocalSecretStore;
use calsync::adapters::store::{now_epoch, SqliteStore};
use calsync::config::Backend;
use calsync::entry::{auth, html, webhook};
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use url::Url;

/// A job not finished within this time is handed out again, as SQS would after its visibility
/// timeout; failed jobs come back after it too.
const JOB_VISIBILITY: Duration = Duration::from_secs(60);
/// After this many failed attempts a job is dropped (SQS would move it to the dead-letter
/// queue); the next scheduler round queues the user again anyway.
const MAX_ATTEMPTS: u32 = 5;
/// How many finished jobs the status page remembers.
const ACTIVITY_LEN: usize = 20;
/// How long stopping waits for a running job before giving up on it.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    pub listen: SocketAddr,
    pub tick: Duration,
    /// `Some(true)`: `--sandbox`; `Some(false)`: `--no-sandbox`; `None`: sandbox when the data
    /// directory has no tenant yet.
    pub sandbox: Option<bool>,
    pub data_dir: Option<PathBuf>,
}

/// What the sandbox demo set up, for the banner and the status page.
pub struct DemoInfo {
    pub tenant: TenantId,
    pub users: Vec<DemoUser>,
    /// The tenant onboarded by consent to the publisher app.
    pub consent: Option<ConsentDemo>,
    /// The sandbox page where events are edited by hand.
    pub calendars_url: String,
    pub sandbox_url: String,
}

/// A customer that uses the publisher app: its administrator consents, then its user connects.
pub struct ConsentDemo {
    pub tenant: TenantId,
    /// The administrator's sign-in name at the sandbox's Microsoft.
    pub admin: String,
    pub user: DemoUser,
}

pub struct DemoUser {
    pub crm_user: CrmUserName,
    pub email: String,
    pub display_name: String,
}

/// One finished job, as the status page lists it.
#[derive(Clone)]
pub struct JobRecord {
    pub at: i64,
    pub tenant: String,
    pub user: String,
    pub reason: String,
    pub attempt: u32,
    /// `None` when the job succeeded, else why it failed.
    pub failure: Option<String>,
}

/// Everything the HTTP handlers, the worker and the tick share.
pub struct Shared {
    pub app: App,
    pub queue: MemoryQueue,
    pub tick: Duration,
    pub demo: Option<DemoInfo>,
    activity: Mutex<VecDeque<JobRecord>>,
}

impl Shared {
    fn record(&self, record: JobRecord) {
        if let Ok(mut activity) = self.activity.lock() {
            if activity.len() == ACTIVITY_LEN {
                activity.pop_back();
            }
            activity.push_front(record);
        }
    }

    /// Newest first.
    pub fn recent_jobs(&self) -> Vec<JobRecord> {
        self.activity
            .lock()
            .map(|a| a.iter().cloned().collect())
            .unwrap_or_default()
    }
}

pub async fn run(mut config: Config, options: ServeOptions) -> Result<()> {
    if !options.listen.ip().is_loopback() {
        bail!(
            "calsync serve listens on loopback addresses only (the status page has no sign-in); \
             put a reverse proxy in front that publishes only the auth and webhook routes"
        );
    }
    let data_dir = options
        .data_dir
        .clone()
        .or(match &config.backend {
            Backend::Embedded { data_dir } => Some(data_dir.clone()),
            Backend::Aws => None,
        })
        .unwrap_or_else(|| PathBuf::from(".calsync"));
    let sandbox = match options.sandbox {
        Some(choice) => choice,
        None => !has_tenants(&config, &data_dir).await?,
    };
    let listener = TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("listening on {}", options.listen))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let queue = MemoryQueue::new(JOB_VISIBILITY);

    let mut cleanup = Cleanup::default();
    let built = if sandbox {
        start_sandbox(config, local, queue.clone(), &mut cleanup).await
    } else {
        if config.public_url.is_none() {
            // Microsoft accepts plain-http redirect URIs only on `localhost`.
            config.public_url = Some(Url::parse(&format!("http://localhost:{}", local.port()))?);
        }
        embedded_app(config, &data_dir, queue.clone()).map(|app| (app, None))
    };
    let (app, demo) = match built {
        Ok(built) => built,
        Err(error) => {
            cleanup.run().await;
            return Err(error);
        }
    };
    let shared = Arc::new(Shared {
        app,
        queue,
        tick: options.tick,
        demo,
        activity: Mutex::new(VecDeque::new()),
    });
    let result = serve(
        shared.clone(),
        listener,
        local,
        data_dir_shown(&cleanup, &data_dir),
    )
    .await;
    cleanup.run().await;
    result
}

/// Whether the data directory already holds a tenant (then the sandbox is not the default).
async fn has_tenants(config: &Config, data_dir: &Path) -> Result<bool> {
    if !data_dir.join("calsync.sqlite").exists() {
        return Ok(false);
    }
    let app = embedded_app(config.clone(), data_dir, MemoryQueue::default())?;
    Ok(!app.tenants.list().await?.is_empty())
}

fn embedded_app(mut config: Config, data_dir: &Path, queue: MemoryQueue) -> Result<App> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    config.backend = Backend::Embedded {
        data_dir: data_dir.to_owned(),
    };
    let db = data_dir.join("calsync.sqlite");
    Ok(App::with_parts(
        config,
        Arc::new(SqliteStore::open(&db)?),
        Arc::new(LocalSecretStore::open(&db)?),
        Arc::new(queue),
    )?)
}

/// What to undo when serve stops: the sandbox, and the demo's throw-away data directory.
#[derive(Default)]
struct Cleanup {
    #[cfg(feature = "sandbox")]
    sandbox: Option<calsync_sandbox::Sandbox>,
    temp_dir: Option<PathBuf>,
}

impl Cleanup {
    async fn run(self) {
        #[cfg(feature = "sandbox")]
        if let Some(sandbox) = self.sandbox {
            if let Err(error) = sandbox.shutdown().await {
                tracing::warn!(error = %format!("{error:#}"), "the sandbox did not stop cleanly");
            }
        }
        if let Some(dir) = self.temp_dir {
            if let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), %error, "the demo data was not removed");
            }
        }
    }
}

fn data_dir_shown(cleanup: &Cleanup, data_dir: &Path) -> String {
    match &cleanup.temp_dir {
        Some(dir) => format!("{} (demo data, removed when serve stops)", dir.display()),
        None => data_dir.display().to_string(),
    }
}

#[cfg(feature = "sandbox")]
async fn start_sandbox(
    config: Config,
    local: SocketAddr,
    queue: MemoryQueue,
    cleanup: &mut Cleanup,
) -> Result<(App, Option<DemoInfo>)> {
    // The sandbox lives in memory, so its demo tenant must not outlive it in a data directory
    // that a later, real run would read.
    let dir = std::env::temp_dir().join(format!(
        "calsync-serve-{}",
        calsync::crypto::random_token(6).replace(['-', '_'], "x")
    ));
    cleanup.temp_dir = Some(dir.clone());
    let public_url = Url::parse(&format!("http://{local}"))?;
    let (sandbox, config) = demo::start_sandbox(config, &public_url).await?;
    let app = embedded_app(config, &dir, queue)?;
    let info = demo::seed(&app, &sandbox, &public_url).await;
    cleanup.sandbox = Some(sandbox);
    Ok((app, Some(info?)))
}

#[cfg(not(feature = "sandbox"))]
async fn start_sandbox(
    _config: Config,
    _local: SocketAddr,
    _queue: MemoryQueue,
    _cleanup: &mut Cleanup,
) -> Result<(App, Option<DemoInfo>)> {
    bail!(
        "this calsync was built without the sandbox: add a tenant (calsync tenant add) and run \
         calsync serve --no-sandbox, or rebuild with the default features"
    )
}

async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    local: SocketAddr,
    data_dir: String,
) -> Result<()> {
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(worker(shared.clone(), stopped.clone()));
    let ticker = tokio::spawn(ticker(shared.clone(), stopped.clone()));
    print_banner(&shared, local, &data_dir).await;

    let router = routes(shared.clone());
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("stopping: waiting for the running job");
    let _ = stop.send(true);
    for task in [worker, ticker] {
        let abort = task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
            abort.abort();
        }
    }
    served.context("the HTTP server failed")
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn print_banner(shared: &Shared, local: SocketAddr, data_dir: &str) {
    let base = format!("http://{local}");
    println!("calsync serve: listening on {base}");
    println!("  status page:  {base}/");
    println!("  auth routes:  {base}/connect, /callback, /admin-consent, /disconnect, /status");
    println!("  webhook:      {base}/notifications, {base}/lifecycle");
    println!("  data:         {data_dir}");
    println!(
        "  scheduler:    every {}s; worker: one job at a time",
        shared.tick.as_secs()
    );
    if let Some(demo) = &shared.demo {
        println!();
        println!(
            "Sandbox demo: tenant {} on the local Microsoft and CRM stand-ins at {}",
            demo.tenant, demo.sandbox_url
        );
        println!("1. Open a user's connect link and sign in with their address:");
        for user in &demo.users {
            match ops::connect_link(&shared.app, &demo.tenant, &user.crm_user).await {
                Ok(link) => println!("   connect {} ({}): {link}", user.crm_user, user.email),
                Err(error) => println!("   connect {}: no link ({error:#})", user.crm_user),
            }
        }
        println!("2. Watch the status page: {base}/");
        println!(
            "3. Edit an event in Outlook or in the CRM: {}",
            demo.calendars_url
        );
        if let Some(consent) = &demo.consent {
            println!(
                "4. Onboard a customer by consent: tenant {} uses the publisher app and holds no Microsoft credential.",
                consent.tenant
            );
            match ops::admin_consent_link(&shared.app, &consent.tenant).await {
                Ok(link) => println!(
                    "   consent {} (sign in as {} and accept): {link}",
                    consent.tenant, consent.admin
                ),
                Err(error) => println!("   consent {}: no link ({error:#})", consent.tenant),
            }
            match ops::connect_link(&shared.app, &consent.tenant, &consent.user.crm_user).await {
                Ok(link) => println!(
                    "   then connect {} ({}): {link}",
                    consent.user.crm_user, consent.user.email
                ),
                Err(error) => println!("   connect {}: no link ({error:#})", consent.user.crm_user),
            }
        }
    }
    println!();
    println!("Press Ctrl-C to stop.");
}

/// The auth and webhook routes, exactly as the functions serve them, with the status page on
/// `/`; unknown paths get the auth function's 404 page.
fn routes(shared: Arc<Shared>) -> Router {
    let functions = auth::routes()
        .merge(webhook::routes())
        .fallback(auth::not_found)
        .with_state(shared.app.clone());
    Router::new()
        .route(
            "/",
            get(|State(shared): State<Arc<Shared>>| async move { ops::page(&shared).await })
                .fallback(|| async {
                    html::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
                }),
        )
        .with_state(shared)
        .merge(functions)
}

/// Takes jobs from the in-process queue one at a time and runs them.
async fn worker(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            received = shared.queue.receive(1, Duration::from_secs(5)) => received,
        };
        match received {
            Ok(jobs) => {
                for job in jobs {
                    run_one(&shared, job).await;
                }
            }
            Err(error) => {
                tracing::error!(%error, "the job queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn run_one(shared: &Shared, received: ReceivedJob) {
    let job = &received.job;
    let outcome = calsync::entry::jobs::run_job(&shared.app, job).await;
    let reason = serde_json::to_value(job.reason)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let failure = match outcome {
        Ok(report) => {
            tracing::info!(
                tenant = %job.tenant,
                user = %job.user,
                %reason,
                outcome = ?report.outcome,
                writes = report.counts.writes(),
                "sync job done"
            );
            None
        }
        Err(error) => Some(calsync::errors::chain(&error)),
    };
    // A failed job stays unacknowledged so it comes back after the visibility timeout, like
    // an SQS message, until it has had its attempts.
    let finished = failure.is_none() || received.receive_count >= MAX_ATTEMPTS;
    if let Some(why) = &failure {
        if finished {
            tracing::error!(tenant = %job.tenant, user = %job.user, %reason, attempt = received.receive_count, error = %why, "sync job failed for the last time; dropped");
        } else {
            tracing::error!(tenant = %job.tenant, user = %job.user, %reason, attempt = received.receive_count, error = %why, "sync job failed; it will be retried");
        }
    }
    if finished {
        if let Err(error) = shared.queue.ack(&received.receipt).await {
            tracing::error!(%error, "a finished job was not acknowledged");
        }
    }
    shared.record(JobRecord {
        at: now_epoch(),
        tenant: job.tenant.to_string(),
        user: job.user.to_string(),
        reason,
        attempt: received.receive_count,
        failure,
    });
}

/// The scheduler: what EventBridge does in AWS, every `tick`.
async fn ticker(shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut interval = tokio::time::interval(shared.tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            _ = interval.tick() => {}
        }
        match calsync::entry::dispatch::dispatch(&shared.app, None).await {
            Ok(report) if report.jobs_queued > 0 => {
                tracing::info!(jobs = report.jobs_queued, "scheduler queued due users")
            }
            Ok(_) => tracing::debug!("scheduler: nobody due"),
            Err(error) => {
                tracing::error!(error = %calsync::errors::chain(&error), "scheduler round failed")
            }
        }
    }
}
