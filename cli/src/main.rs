//! `calsync`: the operator's tool. Tenants, signed links for users, status, and `serve`, which
//! runs everything on one machine. It works against AWS (and so against a local emulator
//! through `AWS_ENDPOINT_URL`) or against the embedded store (`--data-dir`, or
//! `CALSYNC_BACKEND=embedded`).

mod duration;
mod publisher_cmd;
mod resync;
mod rotate;
mod serve;
mod stack;
mod tenant_cmd;

use anyhow::{bail, Context, Result};
use calsync::services::users::UserRecord;
use calsync::signed_url::{LinkRoute, SignedUrl};
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use clap::{CommandFactory, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "calsync",
    version,
    about = "Operate calsync: two-way sync between CRM (vtiger) and Office 365 calendars",
    long_about = "Operate calsync: two-way sync between CRM (vtiger) and Office 365 calendars.\n\n\
                  Try it on one machine with `calsync serve`. Against AWS, the usual SDK settings \
                  apply (AWS_PROFILE, AWS_REGION) with --stack NAME, which reads the deployed \
                  stack's outputs, or CALSYNC_TABLE, CALSYNC_SECRET_PREFIX and CALSYNC_PUBLIC_URL \
                  exported by hand; --data-dir uses the embedded store instead."
)]
struct Cli {
    /// Use the embedded store (one SQLite file) in this folder instead of AWS.
    #[arg(long, global = true, env = "CALSYNC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Take CALSYNC_TABLE, CALSYNC_SECRET_PREFIX, CALSYNC_PUBLIC_URL, CALSYNC_WEBHOOK_URL and
    /// CALSYNC_QUEUE_URL from this CloudFormation stack (its outputs and SecretPrefix
    /// parameter) in the current region; they win over the same variables exported.
    #[arg(
        long,
        global = true,
        env = "CALSYNC_STACK",
        conflicts_with = "data_dir"
    )]
    stack: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything on this machine, with a status page (and a sandbox demo to try).
    #[command(
        long_about = "Run everything on this machine: the auth and webhook routes, \
        the scheduler, the sync worker and an operator status page on one local HTTP server, \
        with the embedded store (--data-dir, default .calsync).\n\n\
        When the data directory has no tenant yet (or with --sandbox), it also starts the \
        sandbox — local stand-ins for Microsoft sign-in, Microsoft Graph and a vtiger CRM — \
        with a demo tenant, two users and a few events, and prints the links to try it: \
        connect a user, watch the status page, edit an event on either side. Demo data lives \
        in a temporary folder and is gone when serve stops."
    )]
    Serve {
        /// Address to listen on; loopback only (the status page has no sign-in).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// How often the scheduler queues users who are due a sync: 10s, 5m.
        #[arg(long, default_value = "10s")]
        tick: String,
        /// Start the sandbox with a demo tenant (the default when there is no tenant yet).
        #[arg(long, conflicts_with = "no_sandbox")]
        sandbox: bool,
        /// Serve the tenants in the data directory, without the sandbox.
        #[arg(long)]
        no_sandbox: bool,
    },
    /// Add, check, change, list, show, rotate the keys of, or remove tenants (CRM customers).
    #[command(subcommand)]
    Tenant(tenant_cmd::TenantCommand),
    /// Set or show the publisher app: the one multi-tenant Microsoft app customers consent to.
    #[command(subcommand)]
    Publisher(publisher_cmd::PublisherCommand),
    /// Print a signed link that connects a CRM user to Office 365 (or shows their status).
    Link {
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// The CRM user's login name.
        #[arg(long, required_unless_present = "admin_consent")]
        user: Option<String>,
        /// How long the link works: 90s, 30m, 1h, 7d. Connect links live at most 15 minutes
        /// (the default); status and admin-consent links up to 31 days (default 7d).
        #[arg(long)]
        ttl: Option<String>,
        /// Where to send the user afterwards; must be on the tenant's CRM.
        #[arg(long)]
        return_to: Option<String>,
        /// Link to the user's status page instead of the connect flow.
        #[arg(long, conflicts_with = "admin_consent")]
        status: bool,
        /// Link for the tenant's Microsoft 365 administrator to consent: to the publisher app
        /// (the tenant starts working), or, with the customer's own app, to app-only access.
        #[arg(long)]
        admin_consent: bool,
        /// Machine-readable output: the URL, its route and expiry.
        #[arg(long)]
        json: bool,
    },
    /// Manage a connected user (disconnect).
    #[command(subcommand)]
    User(UserCommand),
    /// Sync users now. On AWS this queues a job per user for the sync function; on the
    /// embedded store (or with --now) it syncs here. --dry-run only prints what a sync would do.
    Resync {
        #[arg(long)]
        tenant: String,
        /// One user; all connected users of the tenant when absent.
        #[arg(long)]
        user: Option<String>,
        /// Forget the cursors: list both calendars in full and reconcile them with the links.
        #[arg(long)]
        full: bool,
        /// Let through the deletions the mass-deletion guard held back: exactly the ones
        /// `calsync status` lists (printed again here), not any that came since.
        #[arg(long)]
        confirm_deletions: bool,
        /// Read both sides and print the plan; change nothing.
        #[arg(long, conflicts_with = "confirm_deletions")]
        dry_run: bool,
        /// Sync in this process instead of queueing jobs.
        #[arg(long)]
        now: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show users' connection and sync health.
    Status {
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// Only this CRM user (login name).
        #[arg(long)]
        user: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print a completion script for a shell: `calsync completions bash > /etc/bash_completion.d/calsync`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Stop syncing a user's calendar and forget their Microsoft sign-in; what the sync knows
    /// stays, so reconnecting later duplicates nothing.
    Disconnect {
        /// The tenant's id.
        #[arg(long)]
        tenant: String,
        /// The CRM user's login name.
        #[arg(long)]
        user: String,
    },
}

#[tokio::main]
async fn main() {
    calsync::telemetry::init();
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        // Into a buffer first: the generator panics on a write error (a closed pipe).
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "calsync", &mut script);
        let mut out = std::io::stdout().lock();
        return match std::io::Write::write_all(&mut out, &script) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other.context("writing the completion script"),
        };
    }
    let mut config = match &cli.stack {
        Some(name) => {
            let vars = stack::describe(name).await?.variables(name)?;
            Config::from_lookup(|key| {
                vars.get(key)
                    .cloned()
                    .or_else(|| std::env::var(key).ok().filter(|v| !v.is_empty()))
            })?
        }
        None => Config::from_env()?,
    };
    if let Command::Serve {
        listen,
        tick,
        sandbox,
        no_sandbox,
    } = cli.command
    {
        let options = serve::ServeOptions {
            listen,
            tick: std::time::Duration::from_secs(duration::parse(&tick)?.unsigned_abs()),
            sandbox: match (sandbox, no_sandbox) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            },
            data_dir: cli.data_dir,
        };
        return serve::run(config, options).await;
    }
    if let Some(dir) = cli.data_dir {
        config.backend = calsync::config::Backend::Embedded { data_dir: dir };
    }
    let app = App::from_config(config).await?;
    match cli.command {
        Command::Tenant(command) => tenant_cmd::run(&app, command).await,
        Command::Publisher(command) => publisher_cmd::run(&app, command).await,
        Command::Link {
            tenant,
            user,
            ttl,
            return_to,
            status,
            admin_consent,
            json,
        } => {
            link(
                &app,
                &tenant,
                user.as_deref(),
                ttl.as_deref(),
                return_to,
                (status, admin_consent),
                json,
            )
            .await
        }
        Command::Resync {
            tenant,
            user,
            full,
            confirm_deletions,
            dry_run,
            now,
            json,
        } => {
            let options = calsync::services::sync_run::RunOptions {
                full,
                reconcile: false,
                dry_run,
                deadline: None,
                look_first: false,
            };
            let how = resync::How {
                options,
                now,
                confirm_deletions,
                json,
            };
            resync::run(&app, &tenant, user.as_deref(), how).await
        }
        Command::Status { tenant, user, json } => {
            let attention = status(&app, &tenant, user.as_deref(), json).await?;
            if attention > 0 {
                // Scripts and monitors can tell "all good" from "look at this" by the code.
                eprintln!("{attention} item(s) need attention");
                std::process::exit(STATUS_NEEDS_ATTENTION);
            }
            Ok(())
        }
        Command::Serve { .. } => bail!("serve opens its own store"),
        Command::Completions { .. } => Ok(()),
        Command::User(UserCommand::Disconnect { tenant, user }) => {
            let tenant = TenantId::parse(&tenant)?;
            let user = CrmUserName::parse(&user)?;
            let context = app.tenants.context(&tenant).await?;
            calsync::entry::auth::disconnect_user(&app, &context, &user).await?;
            println!("user {user} of tenant {tenant} disconnected");
            Ok(())
        }
    }
}

async fn link(
    app: &App,
    tenant: &str,
    user: Option<&str>,
    ttl: Option<&str>,
    return_to: Option<String>,
    (status, admin_consent): (bool, bool),
    json: bool,
) -> Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let route = match (admin_consent, status) {
        (true, _) => LinkRoute::AdminConsent,
        (false, true) => LinkRoute::Status,
        (false, false) => LinkRoute::Connect,
    };
    let ttl = match ttl {
        Some(ttl) => duration::parse(ttl)?,
        None => route.max_lifetime_secs().min(7 * 24 * 3600),
    };
    if ttl > route.max_lifetime_secs() {
        match route {
            LinkRoute::Connect => bail!(
                "connect links live at most 15 minutes; to hand a user a lasting link, give them a --status link (up to 31 days): its page offers Connect"
            ),
            _ => bail!("links can live at most 31 days"),
        }
    }
    let context = app.tenants.context(&tenant).await?;
    if let Some(url) = &return_to {
        let origin = calsync::services::tenants::origin_of(url)?;
        if origin != context.settings.crm_origin {
            bail!(
                "--return-to must be on the tenant's CRM ({})",
                context.settings.crm_origin
            );
        }
    }
    let public_url = app.config.require_public_url()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let claims = SignedUrl {
        route,
        tenant,
        user: if admin_consent {
            None
        } else {
            Some(CrmUserName::parse(user.context("--user is required")?)?)
        },
        expires_at: now + ttl,
        return_to,
    };
    let url = claims.url(public_url, &context.secret.link_key);
    if json {
        let out = serde_json::json!({
            "url": url,
            "route": route.path(),
            "tenant": claims.tenant,
            "user": claims.user,
            "expires_at": claims.expires_at,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{url}");
    }
    Ok(())
}

/// The admin-consent link `tenant add` prints for a publisher-app tenant: seven days, like
/// `calsync link --admin-consent`'s default.
pub(crate) fn admin_consent_link(
    app: &App,
    tenant: &TenantId,
    link_key: &calsync_core::secret::Secret,
) -> Result<String> {
    let public_url = app.config.require_public_url()?;
    let claims = SignedUrl {
        route: LinkRoute::AdminConsent,
        tenant: tenant.clone(),
        user: None,
        expires_at: calsync::adapters::store::now_epoch() + 7 * 24 * 3600,
        return_to: None,
    };
    Ok(claims.url(public_url, link_key))
}

fn user_json(record: &UserRecord) -> serde_json::Value {
    serde_json::json!({
        "tenant": record.tenant,
        "user": record.user,
        "status": record.status.as_str(),
        "ms_tenant_id": record.ms_tenant_id,
        "ms_user_id": record.ms_user_id,
        "ms_username": record.ms_username,
        "connected_at": record.connected_at,
        "updated_at": record.updated_at,
        "subscription_id": record.subscription_id,
        "subscription_expires_at": record.subscription_expires_at,
        "last_sync": record.last_sync,
        "problems": record.problems,
        "held_deletions": record.held_deletions,
        "confirmed_deletions": record.confirmed_deletions,
        "skipped": record.skipped.iter().map(|s| serde_json::json!({
            "side": match s.side {
                calsync_core::sync::Side::Crm => "crm",
                calsync_core::sync::Side::Outlook => "outlook",
            },
            "id": s.id,
            "why": s.why,
        })).collect::<Vec<_>>(),
        "parked": record.parked.iter().map(|p| serde_json::json!({
            "key": p.key,
            "subject": p.subject,
            "why": p.why,
            "attempts": p.attempts,
            "since": p.since,
            "next_at": p.next_at,
        })).collect::<Vec<_>>(),
    })
}

/// How many journal entries `calsync status --user` prints.
const STATUS_JOURNAL_ENTRIES: usize = 20;

/// `calsync status`'s exit code when a tenant warning or a user's problem needs a look.
const STATUS_NEEDS_ATTENTION: i32 = 2;

/// How many things `status` shows that need attention: the tenant's warnings, and each user who
/// must reconnect, has a problem, or is overdue (`overdue`: the users who are).
fn needs_attention(warnings: &[String], users: &[UserRecord], overdue: &[bool]) -> usize {
    warnings.len()
        + users
            .iter()
            .zip(overdue)
            .filter(|(u, overdue)| {
                u.status == calsync::services::users::UserStatus::ReconnectRequired
                    || !u.problems.is_empty()
                    || **overdue
            })
            .count()
}

/// Prints the tenant's and users' status; returns how many things need attention.
async fn status(app: &App, tenant: &str, user: Option<&str>, json: bool) -> Result<usize> {
    let tenant = TenantId::parse(tenant)?;
    let settings = app
        .tenants
        .settings(&tenant)
        .await?
        .with_context(|| format!("tenant {tenant} does not exist"))?;
    let users = match user {
        Some(name) => {
            let name = CrmUserName::parse(name)?;
            match app.users.get_for_status(&tenant, &name).await? {
                Some(record) => vec![record],
                None => bail!("user {name} of tenant {tenant} has never connected"),
            }
        }
        None => app.users.list_for_status(&tenant).await?,
    };
    let now = calsync::adapters::store::now_epoch();
    let overdue: Vec<bool> = users.iter().map(|u| u.overdue_in(&settings, now)).collect();
    let mut warnings = settings.warnings(now);
    // The publisher app's credential concerns every tenant that uses it.
    if settings.app == calsync::services::tenants::AppSource::Publisher {
        match app.tenants.publisher().get().await? {
            Some(publisher) => warnings.extend(publisher.warnings(now)),
            None => warnings.push(
                "the tenant uses the publisher app, which is not set (calsync publisher set)"
                    .to_owned(),
            ),
        }
    }
    if json {
        let mut listed = Vec::new();
        for (u, overdue) in users.iter().zip(&overdue) {
            let mut entry = user_json(u);
            entry["overdue"] = (*overdue).into();
            // One user asked for: the journal too, as the text view prints it.
            if user.is_some() {
                let journal = app
                    .runner
                    .journal(&tenant, &u.user, STATUS_JOURNAL_ENTRIES)
                    .await?;
                entry["journal"] = serde_json::to_value(&journal)?;
            }
            listed.push(entry);
        }
        let out = serde_json::json!({
            "tenant": tenant,
            "mode": settings.mode,
            "warnings": warnings,
            "needs_attention": needs_attention(&warnings, &users, &overdue),
            "users": listed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(needs_attention(&warnings, &users, &overdue));
    }
    for warning in &warnings {
        println!("warning: {warning}");
    }
    if users.is_empty() {
        println!("tenant {tenant}: no users have connected yet");
        return Ok(needs_attention(&warnings, &users, &overdue));
    }
    println!(
        "{:<24} {:<20} {:<36} {:<22} PROBLEMS",
        "USER", "STATUS", "MICROSOFT ACCOUNT", "LAST GOOD SYNC"
    );
    for (u, overdue) in users.iter().zip(&overdue) {
        let problems = if *overdue {
            calsync::services::users::OVERDUE_TEXT.to_owned()
        } else if u.problems.is_empty() {
            "-".to_owned()
        } else {
            u.problems
                .iter()
                .map(|p| p.code.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let last_good = u
            .last_sync
            .as_ref()
            .and_then(|s| s.last_success_at)
            .and_then(|at| jiff::Timestamp::from_second(at).ok())
            .map(|at| at.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
            .unwrap_or_else(|| "never".to_owned());
        println!(
            "{:<24} {:<20} {:<36} {:<22} {}",
            u.user.as_str(),
            u.status.as_str(),
            u.ms_username,
            last_good,
            problems
        );
    }
    // The details only a person looking at one user needs.
    if user.is_some() {
        for u in &users {
            if let Some(summary) = &u.last_sync {
                let t = &summary.total_counts;
                println!(
                    "linked events: {}; since the first sync: {} created, {} updated, {} deleted in the CRM; {} created, {} updated, {} deleted in Outlook; {} conflicts settled",
                    summary.linked_events,
                    t.crm_created, t.crm_updated, t.crm_deleted,
                    t.outlook_created, t.outlook_updated, t.outlook_deleted,
                    t.conflicts
                );
            }
            for p in &u.problems {
                println!("problem {}: {}", p.code, p.detail);
            }
            if !u.held_deletions.is_empty() {
                println!("held back by the deletion guard:");
                for held in &u.held_deletions {
                    println!("  {}", resync::held_line(held));
                }
            }
            for skipped in &u.skipped {
                let side = match skipped.side {
                    calsync_core::sync::Side::Crm => "CRM",
                    calsync_core::sync::Side::Outlook => "Outlook",
                };
                println!(
                    "not readable, not synced: {side} event {:?}: {}",
                    skipped.id, skipped.why
                );
            }
            for parked in &u.parked {
                let next = jiff::Timestamp::from_second(parked.next_at)
                    .map(|at| at.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                    .unwrap_or_default();
                println!(
                    "set aside: {:?} ({}), refused {} time(s), next try {next}: {}",
                    parked.subject, parked.key, parked.attempts, parked.why
                );
            }
            if !u.confirmed_deletions.is_empty() {
                println!(
                    "{} confirmed deletion(s) go through on the next run",
                    u.confirmed_deletions.len()
                );
            }
            let journal = app
                .runner
                .journal(&tenant, &u.user, STATUS_JOURNAL_ENTRIES)
                .await?;
            if !journal.is_empty() {
                println!("settled by calsync (newest first; the value not kept in quotes):");
            }
            for entry in &journal {
                let at = jiff::Timestamp::from_second(entry.at)
                    .map(|at| at.strftime("%Y-%m-%d %H:%MZ").to_string())
                    .unwrap_or_default();
                let kept = match entry.conflict.winner {
                    calsync_core::sync::Side::Crm => "CRM",
                    calsync_core::sync::Side::Outlook => "Outlook",
                };
                let not_kept = entry
                    .not_kept()
                    .map(|value| format!("{value:?}"))
                    .unwrap_or_else(|| "(deleted)".to_owned());
                println!(
                    "  {at}  {:?}  {}: kept {kept}, not {not_kept} ({})",
                    entry.conflict.subject,
                    entry.what(),
                    entry.conflict.reason.code()
                );
            }
        }
    }
    Ok(needs_attention(&warnings, &users, &overdue))
}
