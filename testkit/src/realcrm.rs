//! The real-CRM tier: a real vtiger reached over HTTP, with the CRM module built from
//! `crm-module/` and installed by its own tools, and calsync serving that vtiger's tenant on a
//! loopback port the way `calsync serve` does — the auth and webhook routes on one server, a
//! worker that runs the queued jobs one at a time — with the sandbox as Microsoft (sign-in and
//! Graph). There is no scheduler: whatever syncs a user here was asked for (a connection, a
//! Graph notification, a nudge).
//!
//! Configured by environment variables (docs/testing.md); without [`URL_VAR`] the tier is
//! skipped. The vtiger is shared by every test of a run, so a bed holds [`lock`] from before
//! the module is installed until it is uninstalled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use calsync::adapters::crm::vtiger::client::VtigerClient;
use calsync::adapters::crm::vtiger::AccessKey;
use calsync::adapters::queue::{JobQueue, JobReason, MemoryQueue};
use calsync::adapters::secret_store::LocalSecretStore;
use calsync::adapters::store::SqliteStore;
use calsync::crypto::random_token;
use calsync::services::tenants::TenantSettings;
use calsync::{App, Config};
use calsync_core::ids::TenantId;
use calsync_core::secret::Secret;
use calsync_sandbox::Sandbox;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::testbed::{AZURE_TENANT, CLIENT_ID, CLIENT_SECRET};

/// The vtiger's base URL, as its `$site_URL` has it (e.g. `http://127.0.0.1:8080`).
pub const URL_VAR: &str = "CALSYNC_REAL_VTIGER_URL";
/// The vtiger's install folder on this machine, for the module's PHP tools.
pub const ROOT_VAR: &str = "CALSYNC_REAL_VTIGER_ROOT";
/// The administrator calsync logs in as (its integration user); default `admin`.
pub const ADMIN_VAR: &str = "CALSYNC_REAL_VTIGER_ADMIN";
/// That administrator's webservice access key.
pub const ADMIN_KEY_VAR: &str = "CALSYNC_REAL_VTIGER_ADMIN_KEY";
/// The CRM user who connects their calendar; default `tokyo`.
pub const USER_VAR: &str = "CALSYNC_REAL_VTIGER_USER";
/// Their password, for the web login.
pub const PASSWORD_VAR: &str = "CALSYNC_REAL_VTIGER_PASSWORD";
/// Their webservice access key, for their own saves.
pub const USER_KEY_VAR: &str = "CALSYNC_REAL_VTIGER_USER_KEY";
/// The zone of the vtiger server's dates (its `$default_timezone`); default `UTC`.
pub const ZONE_VAR: &str = "CALSYNC_REAL_VTIGER_ZONE";
/// How to run PHP for the tools (e.g. `sudo -u www-data php`); default `php`.
pub const PHP_VAR: &str = "CALSYNC_REAL_VTIGER_PHP";

/// The Microsoft account the CRM user signs in with (the sandbox's).
pub const USER_OID: &str = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
pub const USER_EMAIL: &str = "kenji.sato@contoso.example";

/// One bed at a time on the shared vtiger.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What a test prints when the tier is not configured.
pub fn skip_message(what: &str) -> String {
    format!(
        "skipped: {what}: set {URL_VAR}, {ROOT_VAR}, {ADMIN_KEY_VAR}, {PASSWORD_VAR} and \
         {USER_KEY_VAR} to run against a real vtiger (docs/testing.md)"
    )
}

/// The repository's root (this crate is one folder below it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A real vtiger, as the environment describes it.
#[derive(Debug, Clone)]
pub struct RealVtiger {
    pub url: String,
    pub root: PathBuf,
    pub admin: String,
    pub admin_key: String,
    pub user: String,
    pub password: String,
    pub user_key: String,
    pub zone: String,
    pub php: String,
}

impl RealVtiger {
    /// `None` when [`URL_VAR`] is not set (the tier is skipped); an error when it is set and
    /// another variable the tier needs is not.
    pub fn from_env() -> Result<Option<Self>> {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(url) = var(URL_VAR) else {
            return Ok(None);
        };
        let need = |name: &str| {
            var(name).with_context(|| {
                format!("{URL_VAR} is set but {name} is not; the real-CRM tier needs both (docs/testing.md)")
            })
        };
        Ok(Some(Self {
            url: url.trim_end_matches('/').to_owned(),
            root: PathBuf::from(need(ROOT_VAR)?),
            admin: var(ADMIN_VAR).unwrap_or_else(|| "admin".to_owned()),
            admin_key: need(ADMIN_KEY_VAR)?,
            user: var(USER_VAR).unwrap_or_else(|| "tokyo".to_owned()),
            password: need(PASSWORD_VAR)?,
            user_key: need(USER_KEY_VAR)?,
            zone: var(ZONE_VAR).unwrap_or_else(|| "UTC".to_owned()),
            php: var(PHP_VAR).unwrap_or_else(|| "php".to_owned()),
        }))
    }

    /// Runs one of the module's PHP tools (`crm-module/tools/{tool}.php`) on this vtiger, with
    /// `args` after the vtiger root; its standard output.
    pub fn tool(&self, tool: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
        use std::io::Write;
        let mut php = self.php.split_whitespace();
        let program = php.next().context("the PHP command is empty")?;
        let script = repo_root()
            .join("crm-module/tools")
            .join(format!("{tool}.php"));
        let mut child = Command::new(program)
            .args(php)
            .arg(&script)
            .arg(&self.root)
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {program} {}", script.display()))?;
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or("").as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        ensure!(
            out.status.success(),
            "{tool}.php failed ({}): {}{}",
            out.status,
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    }

    /// A webservice client for `user`.
    pub fn webservice(&self, user: &str, key: &str) -> Result<VtigerClient> {
        Ok(VtigerClient::new(
            &self.url,
            user,
            AccessKey::new(key),
            Duration::from_secs(30),
        )?)
    }

    /// The webservice as the integration user.
    pub fn as_admin(&self) -> Result<VtigerClient> {
        self.webservice(&self.admin, &self.admin_key)
    }

    /// The webservice as the CRM user who syncs.
    pub fn as_user(&self) -> Result<VtigerClient> {
        self.webservice(&self.user, &self.user_key)
    }

    /// An event's user invitees as vtiger stores them: (user id, answer).
    pub fn invitees(&self, event_id: &str) -> Result<Vec<(u64, String)>> {
        let out = self.tool("invitees", &[event_id], None)?;
        let rows: Vec<Value> = serde_json::from_str(out.trim())
            .with_context(|| format!("invitees.php printed {out:?}"))?;
        Ok(rows
            .iter()
            .map(|row| {
                (
                    row["inviteeid"].as_u64().unwrap_or(0),
                    row["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }
}

/// Builds the module's zip with `crm-module/build`, as an administrator would; its path.
pub fn build_module() -> Result<PathBuf> {
    let out = Command::new(repo_root().join("crm-module/build"))
        .current_dir(repo_root())
        .output()
        .context("running crm-module/build (needs python3)")?;
    ensure!(
        out.status.success(),
        "crm-module/build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let zip = repo_root().join("target/crm-module/Calsync.zip");
    ensure!(zip.is_file(), "crm-module/build made no {}", zip.display());
    Ok(zip)
}

// ---------------------------------------------------------------------------------------------
// A browser: cookies per host, no redirects followed (each hop is checked by the caller).

/// One answer, as a browser sees it.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

impl Page {
    /// The redirect target, made absolute.
    pub fn next_url(&self) -> Result<String> {
        let location = self
            .location
            .as_deref()
            .with_context(|| format!("{} answered {} without a redirect", self.url, self.status))?;
        Ok(url::Url::parse(&self.url)?.join(location)?.to_string())
    }
}

pub struct Browser {
    http: reqwest::Client,
    /// host → cookie name → value. Cookies belong to a host, not a port, as in a browser.
    jar: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl Browser {
    pub fn new() -> Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?,
            jar: Mutex::new(HashMap::new()),
        })
    }

    fn cookies_for(&self, url: &url::Url) -> Option<String> {
        let jar = self.jar.lock().ok()?;
        let cookies = jar.get(url.host_str()?)?;
        (!cookies.is_empty()).then(|| {
            cookies
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&self, url: &url::Url, headers: &reqwest::header::HeaderMap) {
        let Some(host) = url.host_str() else { return };
        let Ok(mut jar) = self.jar.lock() else { return };
        let cookies = jar.entry(host.to_owned()).or_default();
        for value in headers.get_all(reqwest::header::SET_COOKIE) {
            let Ok(text) = value.to_str() else { continue };
            let mut parts = text.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.trim().split_once('=')) else {
                continue;
            };
            let gone = value == "deleted"
                || parts.any(|p| {
                    let p = p.trim().to_ascii_lowercase();
                    p == "max-age=0" || p.starts_with("max-age=-")
                });
            cookies.retain(|(n, _)| n != name);
            if !gone {
                cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder, url: &url::Url) -> Result<Page> {
        let request = match self.cookies_for(url) {
            Some(cookies) => request.header(reqwest::header::COOKIE, cookies),
            None => request,
        };
        let response = request.send().await.with_context(|| format!("{url}"))?;
        self.keep_cookies(url, response.headers());
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await.unwrap_or_default();
        Ok(Page {
            url: url.to_string(),
            status,
            location,
            body,
        })
    }

    pub async fn get(&self, url: &str, referer: Option<&str>) -> Result<Page> {
        let parsed = url::Url::parse(url)?;
        let mut request = self.http.get(parsed.clone());
        if let Some(referer) = referer {
            request = request.header(reqwest::header::REFERER, referer);
        }
        self.send(request, &parsed).await
    }

    pub async fn post_form(
        &self,
        url: &str,
        fields: &[(&str, &str)],
        referer: Option<&str>,
    ) -> Result<Page> {
        let parsed = url::Url::parse(url)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let mut request = self
            .http
            .post(parsed.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        if let Some(referer) = referer {
            request = request.header(reqwest::header::REFERER, referer);
        }
        self.send(request, &parsed).await
    }
}

/// The text between `start` and the next `end` after it.
pub fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

/// `&amp;` and friends, as an attribute value is read.
pub fn html_unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#039;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// vtiger's CSRF token on a page (csrf-magic's `__vtrftk`).
pub fn csrf_token(page: &str) -> Result<String> {
    between(page, "csrfMagicToken = \"", "\"")
        .or_else(|| {
            let at = page.find("__vtrftk")?;
            between(&page[at..], "value=\"", "\"")
        })
        .map(str::to_owned)
        .context("the page has no vtiger CSRF token")
}

impl RealVtiger {
    pub fn index(&self, query: &str) -> String {
        if query.is_empty() {
            format!("{}/index.php", self.url)
        } else {
            format!("{}/index.php?{query}", self.url)
        }
    }

    /// The login form, filled in and posted with its CSRF token, as a browser would.
    pub async fn web_login(&self, browser: &Browser, user: &str, password: &str) -> Result<()> {
        let form = browser.get(&self.index(""), None).await?;
        let token = csrf_token(&form.body)?;
        let answer = browser
            .post_form(
                &self.index(""),
                &[
                    ("__vtrftk", token.as_str()),
                    ("module", "Users"),
                    ("action", "Login"),
                    ("username", user),
                    ("password", password),
                ],
                Some(&self.index("")),
            )
            .await?;
        let location = answer.location.clone().unwrap_or_default();
        ensure!(
            answer.status == 302 && !location.contains("error"),
            "vtiger refused {user}'s login: {} {location}",
            answer.status
        );
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// calsync, served as `calsync serve` would serve it.

/// A job the worker finished.
#[derive(Debug, Clone)]
pub struct JobRun {
    pub user: String,
    pub reason: JobReason,
    pub finished: Instant,
    pub writes: u64,
    pub failure: Option<String>,
}

pub struct CalsyncHost {
    pub sandbox: Sandbox,
    pub app: App,
    /// `http://127.0.0.1:PORT`: the auth routes, and the webhook's (`/notifications`, `/nudge`).
    pub base_url: String,
    pub tenant: TenantId,
    pub link_key: Secret,
    jobs: Arc<Mutex<Vec<JobRun>>>,
    queue: MemoryQueue,
    /// Whether the worker is running a job now.
    busy: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    _dir: TempDir,
}

/// calsync's data folder, removed when the host goes.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl CalsyncHost {
    /// calsync with one tenant whose CRM is `crm_url` (`crm_zone` its server's zone), reached
    /// as `integration_user`; its Microsoft is the sandbox, where the account
    /// [`USER_EMAIL`] signs in at once.
    pub async fn start(
        crm_url: &str,
        crm_zone: &str,
        integration_user: &str,
        integration_key: &str,
    ) -> Result<Self> {
        let sandbox = Sandbox::start().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let identity = sandbox.identity();
        identity.add_tenant(AZURE_TENANT);
        identity.add_app(
            AZURE_TENANT,
            CLIENT_ID,
            CLIENT_SECRET,
            &[&format!("{base_url}/callback")],
        )?;
        identity.add_user(AZURE_TENANT, USER_OID, USER_EMAIL, "Kenji Sato")?;
        identity.set_auto_approve(AZURE_TENANT, Some(USER_EMAIL))?;

        let dir = TempDir(std::env::temp_dir().join(crate::testbed::unique("calsync-realcrm")));
        std::fs::create_dir_all(&dir.0)?;
        let sandbox_url = sandbox.base_url();
        let config = Config::from_lookup(|name| match name {
            "CALSYNC_BACKEND" => Some("embedded".to_owned()),
            "CALSYNC_DATA_DIR" => Some(dir.0.display().to_string()),
            "CALSYNC_PUBLIC_URL" | "CALSYNC_WEBHOOK_URL" => Some(base_url.clone()),
            "CALSYNC_LOGIN_URL" | "CALSYNC_GRAPH_URL" => Some(sandbox_url.clone()),
            _ => None,
        })?;
        let db = dir.0.join("calsync.sqlite");
        let queue = MemoryQueue::new(Duration::from_secs(60));
        let app = App::with_parts(
            config,
            Arc::new(SqliteStore::open(&db)?),
            Arc::new(LocalSecretStore::open(&db)?),
            Arc::new(queue.clone()),
        )?;
        let tenant = TenantId::parse("realcrm")?;
        let link_key = Secret::new(random_token(32));
        let mut settings =
            TenantSettings::new(tenant.clone(), "Real vtiger".into(), crm_url, now())?;
        settings.crm_time_zone = crm_zone.to_owned();
        let secret = crate::testbed::sandbox_tenant_secret(
            crm_url,
            integration_user,
            integration_key,
            &link_key,
        );
        app.tenants.add(&settings, &secret).await?;

        let (stop, stopped) = watch::channel(false);
        let router = calsync::entry::auth::routes()
            .merge(calsync::entry::webhook::routes())
            .fallback(calsync::entry::auth::not_found)
            .with_state(app.clone());
        let mut server_stopped = stopped.clone();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = server_stopped.wait_for(|stop| *stop).await;
                })
                .await;
        });
        let jobs = Arc::new(Mutex::new(Vec::new()));
        let busy = Arc::new(AtomicBool::new(false));
        let worker = tokio::spawn(worker(
            app.clone(),
            queue.clone(),
            jobs.clone(),
            busy.clone(),
            stopped,
        ));
        Ok(Self {
            sandbox,
            app,
            base_url,
            tenant,
            link_key,
            jobs,
            queue,
            busy,
            stop,
            tasks: vec![server, worker],
            _dir: dir,
        })
    }

    /// Every job the worker finished, oldest first.
    pub fn jobs(&self) -> Vec<JobRun> {
        self.jobs.lock().map(|j| j.clone()).unwrap_or_default()
    }

    /// Waits until nothing is queued or running and no job finished for `calm` (the echoes of
    /// a run's own writes, Graph's notifications of them, have come and gone).
    pub async fn settle(&self, calm: Duration, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = self.jobs().last().map(|j| j.finished);
            let idle = self.queue.pending() == 0 && !self.busy.load(Ordering::SeqCst);
            if idle && last.is_none_or(|at| at.elapsed() >= calm) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "calsync did not settle within {timeout:?}; jobs: {:?}",
                    self.jobs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a finished job of `user` that `matches`, among those finished after `since`.
    pub async fn wait_for_job(
        &self,
        user: &str,
        since: Instant,
        timeout: Duration,
        matches: impl Fn(&JobRun) -> bool,
    ) -> Result<JobRun> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(job) = self
                .jobs()
                .into_iter()
                .find(|j| j.user == user && j.finished >= since && matches(j))
            {
                return Ok(job);
            }
            if Instant::now() > deadline {
                bail!(
                    "no such job for {user} within {timeout:?}; jobs: {:?}",
                    self.jobs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The Outlook events of the signed-in account (single events as `GET` shows them).
    pub fn outlook(&self) -> Vec<Value> {
        let graph = self.sandbox.graph();
        graph
            .event_ids(USER_OID)
            .iter()
            .filter_map(|id| graph.event(USER_OID, id))
            .collect()
    }

    /// Waits until an Outlook event `matches`; returns it.
    pub async fn wait_for_outlook(
        &self,
        timeout: Duration,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(event) = self.outlook().into_iter().find(|e| matches(e)) {
                return Ok(event);
            }
            if Instant::now() > deadline {
                let subjects: Vec<Value> = self
                    .outlook()
                    .iter()
                    .map(|e| e["subject"].clone())
                    .collect();
                bail!("no such Outlook event within {timeout:?}; there are {subjects:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and the worker (letting a running job finish) and the sandbox.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let _ = self.sandbox.shutdown().await;
    }
}

/// The worker of `calsync serve`: one job at a time from the in-process queue.
async fn worker(
    app: App,
    queue: MemoryQueue,
    jobs: Arc<Mutex<Vec<JobRun>>>,
    busy: Arc<AtomicBool>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let received = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            received = queue.receive(1, Duration::from_millis(500)) => received,
        };
        let Ok(received) = received else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        for item in received {
            busy.store(true, Ordering::SeqCst);
            let outcome = calsync::entry::jobs::run_job(&app, &item.job).await;
            let (writes, failure) = match outcome {
                Ok(report) => (report.counts.writes(), None),
                Err(error) => (0, Some(calsync::errors::chain(&error))),
            };
            if failure.is_none() || item.receive_count >= 3 {
                let _ = queue.ack(&item.receipt).await;
            }
            if let Ok(mut jobs) = jobs.lock() {
                jobs.push(JobRun {
                    user: item.job.user.to_string(),
                    reason: item.job.reason,
                    finished: Instant::now(),
                    writes,
                    failure,
                });
            }
            busy.store(false, Ordering::SeqCst);
        }
    }
}

fn now() -> i64 {
    crate::testbed::now()
}

// ---------------------------------------------------------------------------------------------
// The whole bed: the module installed in the real vtiger and pointed at calsync.

/// What following the panel's Connect button showed, hop by hop.
#[derive(Debug, Clone)]
pub struct ConnectTrace {
    /// Where vtiger's Connect action sent the browser: calsync's `/connect?…`.
    pub connect_url: String,
    /// Where calsync sent it on: Microsoft's (the sandbox's) authorize page.
    pub authorize_url: String,
    /// Where calsync sent the browser after the sign-in.
    pub back_to: String,
    /// The panel's state afterwards (`data-calsync-status`).
    pub panel_status: String,
}

pub struct RealCrmBed {
    pub crm: RealVtiger,
    pub calsync: CalsyncHost,
    /// The CRM user's browser, logged in to vtiger.
    pub browser: Browser,
    /// What `install.php` printed.
    pub installed: String,
    _lock: tokio::sync::MutexGuard<'static, ()>,
}

impl RealCrmBed {
    /// Builds and installs the module, starts calsync, configures the module to point at it
    /// (with `integration_user` as calsync's own CRM user, when given) and logs the CRM user
    /// in. On failure whatever was installed is removed again.
    pub async fn start(crm: RealVtiger, integration_user: Option<&str>) -> Result<Self> {
        let lock = LOCK.lock().await;
        let zip = build_module()?;
        let installed = crm.tool("install", &[&zip.display().to_string()], None)?;
        let started = Self::configure(crm.clone(), integration_user).await;
        match started {
            Ok((calsync, browser)) => Ok(Self {
                crm,
                calsync,
                browser,
                installed,
                _lock: lock,
            }),
            Err(error) => {
                let _ = crm.tool("uninstall", &[], None);
                Err(error)
            }
        }
    }

    async fn configure(
        crm: RealVtiger,
        integration_user: Option<&str>,
    ) -> Result<(CalsyncHost, Browser)> {
        let calsync = CalsyncHost::start(&crm.url, &crm.zone, &crm.admin, &crm.admin_key).await?;
        let mut args = vec![
            calsync.base_url.as_str(),
            calsync.base_url.as_str(),
            calsync.tenant.as_str(),
            "-",
        ];
        args.extend(integration_user);
        crm.tool("configure", &args, Some(calsync.link_key.expose()))?;
        let browser = Browser::new()?;
        crm.web_login(&browser, &crm.user, &crm.password).await?;
        Ok((calsync, browser))
    }

    /// The CRM user's panel, as their browser shows it.
    pub async fn panel(&self) -> Result<Page> {
        let page = self
            .browser
            .get(&self.crm.index("module=Calsync&view=Panel"), None)
            .await?;
        ensure!(
            page.status == 200,
            "the panel answered {}: {}",
            page.status,
            page.body.chars().take(300).collect::<String>()
        );
        Ok(page)
    }

    /// Presses Connect on the panel and follows each hop as a browser would: vtiger's Connect
    /// action, calsync's `/connect`, the sandbox's authorize page (which signs the account in
    /// at once), calsync's callback, back to the panel. Then waits for the first sync, and for
    /// calsync to settle after it.
    pub async fn connect(&self) -> Result<ConnectTrace> {
        let panel_url = self.crm.index("module=Calsync&view=Panel");
        let panel = self.panel().await?;
        let href = between(&panel.body, "id=\"calsync-connect\" href=\"", "\"")
            .context("the panel has no Connect button")?;
        let action = url::Url::parse(&panel_url)?.join(&html_unescape(href))?;
        let clicked = self.browser.get(action.as_str(), Some(&panel_url)).await?;
        let connect_url = clicked.next_url()?;
        ensure!(
            connect_url.starts_with(&format!("{}/connect?", self.calsync.base_url)),
            "Connect led to {connect_url}"
        );
        let connect = self.browser.get(&connect_url, Some(&panel_url)).await?;
        ensure!(
            connect.status == 302,
            "calsync's /connect answered {}: {}",
            connect.status,
            connect.body
        );
        let authorize_url = connect.next_url()?;
        let signed_in = self.browser.get(&authorize_url, None).await?;
        let callback = signed_in.next_url()?;
        ensure!(
            callback.starts_with(&format!("{}/callback?", self.calsync.base_url)),
            "the sign-in led to {callback}"
        );
        let started = Instant::now();
        let done = self.browser.get(&callback, None).await?;
        let back_to = done.next_url().with_context(|| {
            format!("calsync's callback answered {}: {}", done.status, done.body)
        })?;
        self.calsync
            .wait_for_job(&self.crm.user, started, Duration::from_secs(60), |j| {
                j.reason == JobReason::Connected
            })
            .await?;
        self.calsync
            .settle(Duration::from_millis(1500), Duration::from_secs(60))
            .await?;
        let panel = self.browser.get(&back_to, None).await?;
        let panel_status = between(&panel.body, "data-calsync-status=\"", "\"")
            .unwrap_or("")
            .to_owned();
        Ok(ConnectTrace {
            connect_url,
            authorize_url,
            back_to,
            panel_status,
        })
    }

    /// A Meeting of the CRM user's, made by the integration user through the webservice
    /// (times in the server's zone), with `extra` request parameters (`inviteesid`…); its id.
    pub async fn create_event(
        &self,
        subject: &str,
        date: &str,
        start: &str,
        end: &str,
        extra: &[(&str, &str)],
    ) -> Result<String> {
        let admin = self.crm.as_admin()?;
        let session = self.crm.as_user()?.session().await?;
        let element = json!({
            "subject": subject,
            "date_start": date,
            "time_start": start,
            "due_date": date,
            "time_end": end,
            "activitytype": "Meeting",
            "eventstatus": "Planned",
            "visibility": "Public",
            "duration_hours": "1",
            "assigned_user_id": session.user_id,
        })
        .to_string();
        let mut params = vec![("elementType", "Events"), ("element", element.as_str())];
        params.extend_from_slice(extra);
        let created = admin.post("create", &params).await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("create answered {created}"))
    }

    /// Deletes events through the webservice, as the integration user; failures ignored.
    pub async fn delete_events(&self, ids: &[String]) {
        if let Ok(admin) = self.crm.as_admin() {
            for id in ids {
                let _ = admin.post("delete", &[("id", id)]).await;
            }
        }
    }

    /// Uninstalls the module (the CRM is left stock) and stops calsync; what `uninstall.php`
    /// printed.
    pub async fn finish(self) -> Result<String> {
        let uninstalled = self.crm.tool("uninstall", &[], None);
        self.calsync.stop().await;
        uninstalled
    }
}
