//! `calsync tenant …`: onboarding and offboarding CRM customers. Secret values come from stdin
//! or a file, never from the command line (where `ps` and shell history would see them).

use anyhow::{bail, Context, Result};
use calsync::services::tenant_check::{self, Check, CheckTargets};
use calsync::services::tenants::{AccessMode, AppSource, TenantApp, TenantSecret, TenantSettings};
use calsync::App;
use calsync_core::ids::TenantId;
use calsync_core::secret::Secret;
use calsync_core::sync::ConflictPolicy;
use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Add a tenant. Reads `crm_access_key=…` (and, with the customer's own app,
    /// `client_secret=…`) lines, or a JSON object with those keys, from --secrets-file, or from
    /// stdin when it is `-`. Without --azure-tenant-id and --client-id the tenant uses the
    /// publisher app (`calsync publisher set`) and is active once the customer's Microsoft 365
    /// administrator consents through the link printed.
    Add {
        /// Short id: lowercase letters, digits and '-'.
        tenant: String,
        #[arg(long)]
        name: Option<String>,
        /// The customer's own app registration: its Microsoft Entra tenant (directory) id.
        #[arg(long, requires = "client_id")]
        azure_tenant_id: Option<String>,
        /// The customer's own app registration: its application (client) id.
        #[arg(long, requires = "azure_tenant_id")]
        client_id: Option<String>,
        /// With the publisher app: the customer's directory id, when known. The consent link
        /// then goes to it, and a consent from another directory is refused.
        #[arg(long, conflicts_with_all = ["azure_tenant_id", "client_id"])]
        directory: Option<String>,
        /// How calsync reaches mailboxes: each user signs in (delegated), or app-only, with
        /// the application permission an administrator consents to.
        #[arg(long, value_enum, default_value = "delegated")]
        mode: ModeArg,
        /// When the client secret expires (YYYY-MM-DD); calsync warns 30 days ahead.
        #[arg(long)]
        client_secret_expires: Option<String>,
        /// The CRM's base URL.
        #[arg(long)]
        crm_url: String,
        /// The CRM integration user (an admin) whose access key calsync uses.
        #[arg(long)]
        crm_user: String,
        /// IANA time zone of the CRM server's dates, e.g. Europe/Madrid.
        #[arg(long, default_value = "UTC")]
        crm_time_zone: String,
        #[arg(long, value_enum, default_value = "latest")]
        conflict_policy: PolicyArg,
        /// Users may only connect the Microsoft account whose address is their CRM e-mail.
        #[arg(long)]
        require_matching_email: bool,
        /// File with the secret values, or `-` for stdin.
        #[arg(long)]
        secrets_file: PathBuf,
        /// Save without checking the credentials first (offline, or a CRM not reachable
        /// from here); `calsync tenant check` runs the checks later.
        #[arg(long)]
        no_check: bool,
    },
    /// Check a tenant's credentials: the Entra client id and secret, admin consent (app-only
    /// tenants), the CRM login and the integration user's rights, and that the webhook answers
    /// Graph's validation handshake. Exits 1 when a check fails.
    Check {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace the link key that signs users' links and the CRM module's nudges, and print
    /// what the CRM's administrator does next. Links signed with the old key stop working.
    RotateLinkKey {
        tenant: String,
        /// How long nudges signed with the old key are still taken, while the new key is
        /// typed into the CRM module: 0s (none, for a key that leaked) up to 7d.
        #[arg(long, default_value = "24h")]
        nudge_overlap: String,
    },
    /// Make a new token key the one that seals users' tokens, and seal every stored token
    /// again with it. The earlier keys still open; retire them with retire-token-keys.
    RotateTokenKey { tenant: String },
    /// Seal every stored token with the newest key again, then forget the earlier token keys.
    /// Allowed from 20 minutes after the rotation.
    RetireTokenKeys { tenant: String },
    /// Store a new access key of the CRM integration user, read from stdin (one line), after
    /// checking that it logs in.
    RotateCrmKey { tenant: String },
    /// Change a tenant's settings; only the options given change.
    Update {
        tenant: String,
        /// Days of the past that are synced (0–365).
        #[arg(long)]
        window_past_days: Option<u32>,
        /// Days of the future that are synced (1–730).
        #[arg(long)]
        window_future_days: Option<u32>,
        /// How often each user is swept without notifications: 5m to 24h.
        #[arg(long)]
        sync_interval: Option<String>,
        /// IANA time zone of the CRM server's dates, e.g. Europe/Madrid.
        #[arg(long)]
        crm_time_zone: Option<String>,
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        #[arg(long, value_enum)]
        conflict_policy: Option<PolicyArg>,
        /// Users may only connect the Microsoft account whose address is their CRM e-mail.
        #[arg(long)]
        require_matching_email: Option<bool>,
        /// How many syncs may talk to the tenant's CRM at once, across every instance (1–32).
        #[arg(long)]
        crm_sessions: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant's settings (secrets stay hidden unless asked for).
    Show {
        tenant: String,
        #[arg(long)]
        json: bool,
        /// Print the link key, which the CRM needs to sign users' links.
        #[arg(long)]
        reveal_link_key: bool,
    },
    /// Store a new client secret (read from --secrets-file or stdin as `client_secret=…`), e.g.
    /// before the old one expires. Functions pick it up within five minutes.
    RotateSecret {
        tenant: String,
        /// When the new client secret expires (YYYY-MM-DD).
        #[arg(long)]
        client_secret_expires: Option<String>,
        #[arg(long)]
        secrets_file: PathBuf,
    },
    /// Remove a tenant with its users, tokens and secret.
    Remove {
        tenant: String,
        /// Confirm: this cannot be undone.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum PolicyArg {
    Latest,
    CrmWins,
    OutlookWins,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// Each user signs in.
    Delegated,
    /// A directory admin consented; calsync uses app-only tokens.
    AppOnly,
}

pub async fn run(app: &App, command: TenantCommand) -> Result<()> {
    match command {
        TenantCommand::Add {
            tenant,
            name,
            azure_tenant_id,
            client_id,
            directory,
            mode,
            client_secret_expires,
            crm_url,
            crm_user,
            crm_time_zone,
            conflict_policy,
            require_matching_email,
            secrets_file,
            no_check,
        } => {
            let tenant = TenantId::parse(&tenant)?;
            calsync::services::tenants::check_crm_url(&crm_url)?;
            let values = read_secret_values(&secrets_file)?;
            let now = calsync::adapters::store::now_epoch();
            let mut settings = TenantSettings::new(
                tenant.clone(),
                name.unwrap_or_else(|| tenant.to_string()),
                &crm_url,
                now,
            )?;
            settings.crm_time_zone = crm_time_zone;
            settings.conflict_policy = match conflict_policy {
                PolicyArg::Latest => ConflictPolicy::Latest,
                PolicyArg::CrmWins => ConflictPolicy::CrmWins,
                PolicyArg::OutlookWins => ConflictPolicy::OutlookWins,
            };
            settings.require_matching_email = require_matching_email;
            settings.mode = match mode {
                ModeArg::Delegated => AccessMode::Delegated,
                ModeArg::AppOnly => AccessMode::AppOnly,
            };
            let own_app = match (azure_tenant_id, client_id, values.client_secret) {
                (Some(directory), Some(client_id), Some(secret)) => {
                    Some((directory, client_id, secret))
                }
                (Some(_), Some(_), None) => bail!(
                    "client_secret is missing from the secrets (the customer's own app needs it)"
                ),
                (_, _, Some(_)) => bail!(
                    "the secrets name a client_secret but no app: give --azure-tenant-id and --client-id, or leave client_secret out to use the publisher app"
                ),
                _ => None,
            };
            let publisher = match &own_app {
                Some(_) => None,
                None => {
                    if client_secret_expires.is_some() {
                        bail!("--client-secret-expires is for the customer's own app; the publisher app's expiry is its own (calsync publisher show)");
                    }
                    if let Some(directory) = &directory {
                        if !calsync::services::publisher::is_guid(directory) {
                            bail!(
                                "--directory must be the customer's directory (tenant) id, a GUID"
                            );
                        }
                    }
                    settings.app = AppSource::Publisher;
                    settings.expected_directory = directory.map(|d| d.to_ascii_lowercase());
                    Some(app.tenants.publisher().get().await?.context(
                        "no publisher app is set: store it with `calsync publisher set`, or give the customer's own app (--azure-tenant-id, --client-id and client_secret)",
                    )?)
                }
            };
            settings.client_secret_expires = client_secret_expires.clone();
            let mut secret = TenantSecret::fresh(&crm_url, &crm_user, values.crm_access_key);
            if let Some((azure_tenant_id, client_id, client_secret)) = own_app {
                secret = secret.with_own_app(
                    &azure_tenant_id,
                    &client_id,
                    client_secret,
                    client_secret_expires,
                );
            }
            if app.tenants.settings(&tenant).await?.is_some() {
                bail!("tenant {tenant} already exists");
            }
            let tenant_app = match &publisher {
                Some(publisher) => TenantApp::Publisher(publisher.clone()),
                None => TenantApp::Own,
            };
            if !no_check {
                let checks = run_checks(app, &settings, &secret, Some(&tenant_app)).await;
                print_checks(&checks);
                if !tenant_check::all_passed(&checks) {
                    bail!("tenant {tenant} not added: a check failed (fix it, or add with --no-check and run `calsync tenant check {tenant}` later)");
                }
            }
            app.tenants.add(&settings, &secret).await?;
            println!("tenant {tenant} added");
            println!(
                "give the CRM its link key with: calsync tenant show {tenant} --reveal-link-key"
            );
            if publisher.is_some() {
                println!("the tenant works once the customer's Microsoft 365 administrator consents; send them this link (it works for 7 days; `calsync link --tenant {tenant} --admin-consent` makes a new one):");
                match crate::admin_consent_link(app, &tenant, &secret.link_key) {
                    Ok(url) => println!("{url}"),
                    Err(e) => println!("(no link yet: {e:#})"),
                }
            }
            Ok(())
        }
        TenantCommand::Update {
            tenant,
            window_past_days,
            window_future_days,
            sync_interval,
            crm_time_zone,
            mode,
            conflict_policy,
            require_matching_email,
            crm_sessions,
            json,
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let most = calsync::services::crm_sessions::MAX_CRM_SESSIONS;
            if crm_sessions.is_some_and(|n| n == 0 || n > most) {
                bail!("--crm-sessions goes from 1 to {most}");
            }
            if window_past_days.is_some_and(|d| d > 365) {
                bail!("--window-past-days goes up to 365");
            }
            if window_future_days.is_some_and(|d| d == 0 || d > 730) {
                bail!("--window-future-days goes from 1 to 730");
            }
            let sync_interval_minutes = match &sync_interval {
                Some(text) => {
                    let seconds = crate::duration::parse(text)?;
                    if !(300..=86_400).contains(&seconds) {
                        bail!("--sync-interval goes from 5m to 24h");
                    }
                    Some(u32::try_from(seconds / 60)?)
                }
                None => None,
            };
            if let Some(zone) = &crm_time_zone {
                if jiff::tz::TimeZone::get(zone).is_err() {
                    bail!("--crm-time-zone {zone:?} is not an IANA time zone");
                }
            }
            let settings = app
                .tenants
                .update_settings(&tenant, move |s| {
                    if let Some(days) = window_past_days {
                        s.window_past_days = days;
                    }
                    if let Some(days) = window_future_days {
                        s.window_future_days = days;
                    }
                    if let Some(minutes) = sync_interval_minutes {
                        s.sync_interval_minutes = minutes;
                    }
                    if let Some(zone) = &crm_time_zone {
                        s.crm_time_zone.clone_from(zone);
                    }
                    if let Some(mode) = mode {
                        s.mode = match mode {
                            ModeArg::Delegated => AccessMode::Delegated,
                            ModeArg::AppOnly => AccessMode::AppOnly,
                        };
                    }
                    if let Some(policy) = conflict_policy {
                        s.conflict_policy = match policy {
                            PolicyArg::Latest => ConflictPolicy::Latest,
                            PolicyArg::CrmWins => ConflictPolicy::CrmWins,
                            PolicyArg::OutlookWins => ConflictPolicy::OutlookWins,
                        };
                    }
                    if let Some(required) = require_matching_email {
                        s.require_matching_email = required;
                    }
                    if let Some(sessions) = crm_sessions {
                        s.crm_sessions = sessions;
                    }
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
            } else {
                println!("tenant {tenant} updated");
            }
            // The publisher app's application permission is granted only by a consent that
            // asks for it; the delegated consent the tenant gave does not include it.
            if matches!(mode, Some(ModeArg::AppOnly)) && settings.app == AppSource::Publisher {
                eprintln!("app-only mode needs the administrator's consent to the application permission: send them the link again (calsync link --tenant {tenant} --admin-consent)");
            }
            Ok(())
        }
        TenantCommand::List { json } => {
            let tenants = app.tenants.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else if tenants.is_empty() {
                println!("no tenants yet: add one with `calsync tenant add`");
            } else {
                println!("{:<24} {:<32} CRM", "TENANT", "NAME");
                for t in tenants {
                    println!(
                        "{:<24} {:<32} {}",
                        t.tenant.as_str(),
                        t.display_name,
                        t.crm_origin
                    );
                }
            }
            Ok(())
        }
        TenantCommand::Show {
            tenant,
            json,
            reveal_link_key,
        } => {
            let tenant = TenantId::parse(&tenant)?;
            let context = app.tenants.context(&tenant).await?;
            let mut out = serde_json::to_value(&context.settings)?;
            out["azure_tenant_id"] = context.directory().to_owned().into();
            out["client_id"] = context.app().client_id.to_owned().into();
            out["microsoft_access"] = context.settings.microsoft_access().as_str().into();
            out["crm_url"] = context.secret.crm_url.clone().into();
            out["crm_user"] = context.secret.crm_user.clone().into();
            out["warnings"] = serde_json::to_value(
                context
                    .settings
                    .warnings(calsync::adapters::store::now_epoch()),
            )?;
            // Which keys are held, never the keys themselves.
            out["token_key_id"] = context.secret.token_key_id.clone().into();
            out["token_key_since"] = context.secret.token_key_since.into();
            out["previous_token_key_ids"] = context
                .secret
                .previous_token_keys
                .iter()
                .map(|p| p.id.clone().unwrap_or_else(|| "(without id)".to_owned()))
                .collect::<Vec<_>>()
                .into();
            if let Some(previous) = &context.secret.previous_link_key {
                out["previous_link_key_for_nudges_until"] = previous.until.into();
            }
            if reveal_link_key {
                out["link_key"] = context.secret.link_key.expose().into();
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if let Some(map) = out.as_object() {
                for (k, v) in map {
                    println!(
                        "{k:<24} {}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    );
                }
            }
            Ok(())
        }
        TenantCommand::RotateSecret {
            tenant,
            client_secret_expires,
            secrets_file,
        } => {
            let tenant = TenantId::parse(&tenant)?;
            if app
                .tenants
                .settings(&tenant)
                .await?
                .is_some_and(|s| s.app == AppSource::Publisher)
            {
                bail!("tenant {tenant} uses the publisher app: it has no client secret of its own (calsync publisher set replaces the publisher's)");
            }
            let (client_secret, _) = read_secret_pairs(&secrets_file)?;
            let client_secret =
                client_secret.context("client_secret is missing from the secrets")?;
            let mut secret = app.tenants.secret(&tenant).await?;
            secret.client_secret = Secret::new(client_secret);
            secret.client_secret_expires = client_secret_expires.clone();
            app.tenants.put_secret(&tenant, &secret).await?;
            app.tenants
                .update_settings(&tenant, |s| {
                    s.client_secret_expires = client_secret_expires.clone()
                })
                .await?;
            println!("tenant {tenant}: client secret replaced");
            Ok(())
        }
        TenantCommand::Check { tenant, json } => {
            let tenant = TenantId::parse(&tenant)?;
            let context = app.tenants.context(&tenant).await?;
            let checks = run_checks(
                app,
                &context.settings,
                &context.secret,
                Some(&context.app_credential),
            )
            .await;
            if json {
                let out = serde_json::json!({
                    "tenant": tenant,
                    "passed": tenant_check::all_passed(&checks),
                    "checks": checks,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print_checks(&checks);
            }
            if !tenant_check::all_passed(&checks) {
                bail!("tenant {tenant}: a check failed");
            }
            Ok(())
        }
        TenantCommand::RotateLinkKey {
            tenant,
            nudge_overlap,
        } => crate::rotate::link_key(app, &tenant, &nudge_overlap).await,
        TenantCommand::RotateTokenKey { tenant } => crate::rotate::token_key(app, &tenant).await,
        TenantCommand::RetireTokenKeys { tenant } => {
            crate::rotate::retire_token_keys(app, &tenant).await
        }
        TenantCommand::RotateCrmKey { tenant } => crate::rotate::crm_key(app, &tenant).await,
        TenantCommand::Remove { tenant, yes } => {
            let tenant = TenantId::parse(&tenant)?;
            if !yes {
                bail!(
                    "removing {tenant} deletes its settings, its users with their tokens, subscriptions, links and journal, and its secret; run again with --yes"
                );
            }
            if app.remove_tenant(&tenant).await? {
                println!("tenant {tenant} removed");
                Ok(())
            } else {
                bail!("tenant {tenant} does not exist")
            }
        }
    }
}

/// Runs the tenant checks against what the configuration points at.
pub async fn run_checks(
    app: &App,
    settings: &TenantSettings,
    secret: &TenantSecret,
    tenant_app: Option<&TenantApp>,
) -> Vec<Check> {
    let targets = CheckTargets {
        login_url: &app.config.login_url,
        webhook_url: app.config.webhook_url.as_ref(),
        timeout: app.config.http_timeout,
    };
    tenant_check::run(&targets, settings, secret, tenant_app).await
}

/// One line per check: what was checked, pass/fail/skip and why.
pub fn print_checks(checks: &[Check]) {
    for check in checks {
        println!(
            "{:<4}  {:<17}  {}",
            check.outcome.as_str(),
            check.name,
            check.detail
        );
    }
}

struct SecretValues {
    /// Only with the customer's own app.
    client_secret: Option<Secret>,
    crm_access_key: Secret,
}

fn read_secret_values(path: &PathBuf) -> Result<SecretValues> {
    let (client_secret, crm_access_key) = read_secret_pairs(path)?;
    Ok(SecretValues {
        client_secret: client_secret.map(Secret::new),
        crm_access_key: Secret::new(
            crm_access_key.context("crm_access_key is missing from the secrets")?,
        ),
    })
}

/// Reads `client_secret` and `crm_access_key` from a file or stdin (`-`): `key=value` lines or
/// a JSON object. Empty values count as missing.
fn read_secret_pairs(path: &PathBuf) -> Result<(Option<String>, Option<String>)> {
    let mut raw = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut raw)
            .context("reading secrets from stdin")?;
    } else {
        raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading secrets from {}", path.display()))?;
    }
    let mut client_secret = None;
    let mut crm_access_key = None;
    if raw.trim_start().starts_with('{') {
        let doc: serde_json::Value =
            serde_json::from_str(&raw).context("the secrets file is not valid JSON")?;
        client_secret = doc["client_secret"].as_str().map(str::to_owned);
        crm_access_key = doc["crm_access_key"].as_str().map(str::to_owned);
    } else {
        for line in raw
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let Some((key, value)) = line.split_once('=') else {
                bail!("secrets file: lines must look like key=value");
            };
            match key.trim() {
                "client_secret" => client_secret = Some(value.trim().to_owned()),
                "crm_access_key" => crm_access_key = Some(value.trim().to_owned()),
                other => bail!(
                    "secrets file: unknown key {other:?} (expected client_secret, crm_access_key)"
                ),
            }
        }
    }
    let non_empty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Ok((non_empty(client_secret), non_empty(crm_access_key)))
}
