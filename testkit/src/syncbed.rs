//! A test bed for sync runs: the [`TestBed`] (moto, the sandbox, a tenant) with its CRM pointed
//! at the sandbox vtiger, the CRM users in it, and maria connected. Runs go through the same
//! `entry::jobs::run_job` the sync function calls.

use anyhow::{Context, Result};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync::services::sync_run::RunReport;
use calsync::services::users::UserRecord;
use calsync_sandbox::vtiger::{SeedEvent, StoredEvent, UserSpec};
use serde_json::Value;

use crate::testbed::{BedOptions, TestBed, USER_OID};

/// The integration user's access key in the sandbox CRM (the tenant secret's).
pub const CRM_ADMIN_KEY: &str = "crm-access-key";
/// maria's user record number in the sandbox CRM.
pub const MARIA: u64 = 5;

/// A Graph event body with times in UTC (`start`, `end`: `yyyy-mm-ddThh:mm:ss`), as a user
/// would make it in Outlook.
pub fn outlook_event(subject: &str, start: &str, end: &str) -> Value {
    serde_json::json!({
        "subject": subject,
        "start": {"dateTime": start, "timeZone": "UTC"},
        "end": {"dateTime": end, "timeZone": "UTC"},
    })
}

pub struct SyncBed {
    pub bed: TestBed,
}

impl SyncBed {
    pub async fn start() -> Result<Self> {
        Self::start_in_zone("UTC").await
    }

    /// With the CRM server (and the tenant's CRM zone setting) in `server_zone`; maria's own
    /// zone is Europe/Madrid.
    pub async fn start_in_zone(server_zone: &str) -> Result<Self> {
        Self::start_with(server_zone, BedOptions::default()).await
    }

    /// With the App built as `options` say (to watch its AWS calls, say).
    pub async fn start_with(server_zone: &str, options: BedOptions) -> Result<Self> {
        let bed = TestBed::start_with(options).await?;
        seed_crm_users(&bed.sandbox, server_zone)?;
        point_at_sandbox_crm(&bed.app, &bed.tenant, &bed.sandbox.base_url(), server_zone).await?;
        let connected = bed.connect().await?;
        anyhow::ensure!(
            connected.status == 200,
            "connect answered {}",
            connected.status
        );
        bed.take_jobs().await?;
        Ok(Self { bed })
    }

    pub fn job(&self, full: bool) -> SyncJob {
        SyncJob {
            tenant: self.bed.tenant.clone(),
            user: self.bed.user.clone(),
            reason: JobReason::Manual,
            full,
            origin: None,
        }
    }

    /// One sync run, as a queued job would run it.
    pub async fn sync(&self) -> Result<RunReport> {
        self.run(self.job(false)).await
    }

    /// Syncs until a run writes nothing (at most four runs, none failing), then checks that
    /// the next run is quiet: the echoes of calsync's own writes never come back as changes.
    pub async fn settle(&self) -> Result<()> {
        for _ in 0..4 {
            let report = self.sync().await?;
            anyhow::ensure!(report.failures.is_empty(), "a run failed steps: {report:?}");
            if report.counts.writes() == 0 {
                let again = self.sync().await?;
                anyhow::ensure!(
                    again.outcome == calsync::services::sync_run::RunOutcome::Quiet
                        && again.counts.writes() == 0,
                    "the run after a settled one was not quiet: {again:?}"
                );
                return Ok(());
            }
        }
        anyhow::bail!("the two sides did not settle in four runs")
    }

    pub async fn run(&self, job: SyncJob) -> Result<RunReport> {
        calsync::entry::jobs::run_job(&self.bed.app, &job)
            .await
            .map_err(|e| anyhow::anyhow!("sync failed: {}", calsync::errors::chain(&e)))
    }

    /// A CRM event of maria's, made as in the CRM's web UI (`date` `yyyy-mm-dd`, times
    /// `hh:mm:ss` in the server's zone); returns its webservice id.
    pub fn seed_crm(&self, subject: &str, date: &str, start: &str, end: &str) -> String {
        let fields = [
            ("subject", subject),
            ("date_start", date),
            ("time_start", start),
            ("due_date", date),
            ("time_end", end),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        self.bed.sandbox.crm().seed_event(SeedEvent {
            owner: MARIA,
            fields,
            ..SeedEvent::default()
        })
    }

    /// maria's Outlook events (single events, exceptions and occurrences as `GET` shows
    /// them, series masters excluded), by subject.
    pub fn outlook(&self) -> Vec<Value> {
        let graph = self.bed.sandbox.graph();
        let mut events: Vec<Value> = graph
            .event_ids(USER_OID)
            .iter()
            .filter_map(|id| graph.event(USER_OID, id))
            .filter(|e| e["type"] != "seriesMaster")
            .collect();
        events.sort_by_key(|e| e["subject"].as_str().unwrap_or_default().to_owned());
        events
    }

    pub fn outlook_subjects(&self) -> Vec<String> {
        self.outlook()
            .iter()
            .map(|e| e["subject"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// maria's live CRM events, by subject.
    pub fn crm(&self) -> Vec<StoredEvent> {
        let mut events = self.bed.sandbox.crm().events_of(MARIA);
        events.sort_by_key(|e| e.fields.get("subject").cloned().unwrap_or_default());
        events
    }

    pub fn crm_subjects(&self) -> Vec<String> {
        self.crm()
            .iter()
            .map(|e| e.fields.get("subject").cloned().unwrap_or_default())
            .collect()
    }

    /// The CRM event with this subject.
    pub fn crm_event(&self, subject: &str) -> Result<StoredEvent> {
        self.crm()
            .into_iter()
            .find(|e| e.fields.get("subject").map(String::as_str) == Some(subject))
            .with_context(|| format!("no CRM event {subject:?}"))
    }

    /// The Outlook event with this subject.
    pub fn outlook_event(&self, subject: &str) -> Result<Value> {
        self.outlook()
            .into_iter()
            .find(|e| e["subject"] == subject)
            .with_context(|| format!("no Outlook event {subject:?}"))
    }

    /// The user's stored record (status, problems, last sync).
    /// Confirms the deletions the guard held back, as `calsync resync --confirm-deletions`
    /// does; returns how many.
    pub async fn confirm_deletions(&self) -> Result<usize> {
        Ok(self
            .bed
            .app
            .users
            .confirm_held_deletions(&self.bed.tenant, &self.bed.user)
            .await?
            .context("maria is not stored")?
            .len())
    }

    /// The `calsync` CLI as a process against this bed: its exit code, and its stdout and
    /// stderr together.
    pub async fn cli(&self, args: &[&str]) -> Result<(Option<i32>, String)> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let env = self.bed.env();
        let output = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            crate::testbed::run_cli(&args, &env, None)
        })
        .await?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.code(), text))
    }

    pub async fn record(&self) -> Result<UserRecord> {
        Ok(self.bed.stored_user().await?.record)
    }
}

/// The sandbox CRM's users: the integration user (admin), maria (Europe/Madrid) and pedro,
/// with the server in `server_zone`.
pub fn seed_crm_users(sandbox: &calsync_sandbox::Sandbox, server_zone: &str) -> Result<()> {
    let crm = sandbox.crm();
    crm.set_server_zone(server_zone)
        .map_err(anyhow::Error::msg)?;
    crm.add_user(UserSpec::new("admin", CRM_ADMIN_KEY).admin().with_id(1));
    crm.add_user(
        UserSpec::new("maria", "maria-key")
            .zone("Europe/Madrid")
            .with_id(MARIA),
    );
    crm.add_user(UserSpec::new("pedro", "pedro-key").with_id(6));
    Ok(())
}

/// Points the tenant's CRM at the sandbox vtiger at `sandbox_url`, in `server_zone`.
pub async fn point_at_sandbox_crm(
    app: &calsync::App,
    tenant: &calsync_core::ids::TenantId,
    sandbox_url: &str,
    server_zone: &str,
) -> Result<()> {
    let mut secret = app.tenants.secret(tenant).await?;
    secret.crm_url = sandbox_url.to_owned();
    app.tenants.put_secret(tenant, &secret).await?;
    let zone = server_zone.to_owned();
    app.tenants
        .update_settings(tenant, move |s| s.crm_time_zone = zone.clone())
        .await?;
    Ok(())
}
