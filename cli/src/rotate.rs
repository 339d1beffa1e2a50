//! `calsync tenant rotate-link-key | rotate-token-key | retire-token-keys | rotate-crm-key`:
//! replacing a tenant's keys without editing its secret by hand. Each new value is made (or
//! read from stdin) here, checked where it can be, and stored in the tenant's secret; the
//! functions read it within five minutes (the secret cache).

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context, Result};
use calsync::adapters::store::now_epoch;
use calsync::services::tenant_check::{self, CheckTargets, Outcome};
use calsync::services::tenants::{MAX_LINK_KEY_OVERLAP_SECS, TOKEN_KEY_RETIRE_AFTER_SECS};
use calsync::services::tokens::reseal_tenant;
use calsync::App;
use calsync_core::ids::TenantId;
use calsync_core::secret::Secret;

fn when(epoch: i64) -> String {
    jiff::Timestamp::from_second(epoch)
        .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|_| epoch.to_string())
}

/// `0`, `0s`… mean no overlap; anything else is a duration up to [`MAX_LINK_KEY_OVERLAP_SECS`].
fn overlap_secs(text: &str) -> Result<i64> {
    if text.trim().trim_end_matches(['s', 'm', 'h', 'd']) == "0" {
        return Ok(0);
    }
    let secs = crate::duration::parse(text)?;
    if secs > MAX_LINK_KEY_OVERLAP_SECS {
        bail!("--nudge-overlap goes up to 7d");
    }
    Ok(secs)
}

pub async fn link_key(app: &App, tenant: &str, overlap: &str) -> Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let overlap = overlap_secs(overlap)?;
    let now = now_epoch();
    let mut secret = app.tenants.secret(&tenant).await?;
    secret.rotate_link_key(overlap, now);
    app.tenants.put_secret(&tenant, &secret).await?;
    println!("tenant {tenant}: a new link key is stored.");
    println!(
        "Links signed with the old key are refused from now on (a function that read the old key keeps it up to five minutes more)."
    );
    match &secret.previous_link_key {
        Some(previous) => println!(
            "Nudges signed with the old key are still taken until {}, so CRM edits keep reaching Outlook at once meanwhile.",
            when(previous.until)
        ),
        None => println!(
            "Nudges signed with the old key are refused from now on: CRM edits reach Outlook at the next sweep until the module has the new key."
        ),
    }
    let auth = app
        .config
        .public_url
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_else(|| "AUTH_URL".to_owned());
    let webhook = app
        .config
        .webhook_url
        .as_ref()
        .map(|u| u.as_str().to_owned())
        .unwrap_or_else(|| "WEBHOOK_URL".to_owned());
    println!();
    println!(
        "Now the CRM's administrator gives the calsync module the new key, one way or the other:"
    );
    println!("  - in the CRM: Settings > Extensions > Office 365 (calsync), paste the key into");
    println!("    \"Link key\" and Save; the page checks it with calsync and shows \"accepted\";");
    println!(
        "  - or on the CRM server, from the calsync repository: run crm-module/tools/configure.php"
    );
    println!(
        "    again with the arguments the module was set up with and `-` for the key, the key"
    );
    println!("    on stdin (out of ps and history; crm-module/README.md has its arguments), e.g.");
    println!("      calsync tenant show {tenant} --reveal-link-key --json | jq -r .link_key |");
    println!("        sudo -u www-data php crm-module/tools/configure.php /var/www/vtiger {auth} {webhook} {tenant} -");
    println!("Print the new key with: calsync tenant show {tenant} --reveal-link-key");
    println!(
        "Until the module has it, its Office 365 panel cannot show users their status or connect them."
    );
    Ok(())
}

pub async fn token_key(app: &App, tenant: &str) -> Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let now = now_epoch();
    let mut secret = app.tenants.secret(&tenant).await?;
    let id = secret.rotate_token_key(now);
    app.tenants.put_secret(&tenant, &secret).await?;
    println!("tenant {tenant}: token key {id} now seals; the earlier keys still open.");
    // The store's secret, just written: the pass seals with the new key.
    let context = app.tenants.context(&tenant).await?;
    let report = reseal_tenant(&app.users, &context)
        .await
        .context("the re-seal pass stopped; run `calsync tenant rotate-token-key` again later is not needed: `calsync tenant retire-token-keys` repeats the pass")?;
    println!(
        "re-sealed the tokens of {} of {} user(s) with {id}",
        report.resealed, report.users_with_tokens
    );
    for user in &report.unopenable {
        println!("  {user}: a stored token opens with no key held; the user must connect again");
    }
    println!(
        "Functions read the new key within five minutes (one that meets a token sealed with {id} earlier reads the secret again)."
    );
    println!(
        "Retire the earlier keys from {} on: calsync tenant retire-token-keys {tenant}",
        when(now + TOKEN_KEY_RETIRE_AFTER_SECS)
    );
    Ok(())
}

pub async fn retire_token_keys(app: &App, tenant: &str) -> Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let now = now_epoch();
    let secret = app.tenants.secret(&tenant).await?;
    if secret.previous_token_keys.is_empty() {
        println!("tenant {tenant}: only one token key is held; nothing to retire");
        return Ok(());
    }
    if let Some(since) = secret.token_key_since {
        if now < since + TOKEN_KEY_RETIRE_AFTER_SECS {
            bail!(
                "the token key was rotated at {}: until {} a function may still seal with an earlier key; run this again then",
                when(since),
                when(since + TOKEN_KEY_RETIRE_AFTER_SECS)
            );
        }
    }
    let context = app.tenants.context(&tenant).await?;
    let report = reseal_tenant(&app.users, &context)
        .await
        .context("the re-seal pass stopped; nothing was retired")?;
    println!(
        "re-sealed the tokens of {} of {} user(s) with {}",
        report.resealed,
        report.users_with_tokens,
        context
            .sealing_key
            .current_id()
            .unwrap_or("the current key")
    );
    // Only if the keys are still those the pass sealed with (no rotation meanwhile).
    let mut latest = app.tenants.secret(&tenant).await?;
    if latest.token_key_id != secret.token_key_id {
        bail!("the token key was rotated again meanwhile; nothing was retired");
    }
    let retired: Vec<String> = latest
        .previous_token_keys
        .drain(..)
        .map(|p| p.id.unwrap_or_else(|| "(the key without id)".to_owned()))
        .collect();
    app.tenants.put_secret(&tenant, &latest).await?;
    println!(
        "tenant {tenant}: retired token key(s) {}",
        retired.join(", ")
    );
    for user in &report.unopenable {
        println!("  {user}: a stored token opened with no key held; the user must connect again");
    }
    Ok(())
}

/// The new key: one line on stdin, bare or as `crm_access_key=…`.
fn read_key() -> Result<Secret> {
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("type the new access key, then Enter and Ctrl-D:");
    }
    let mut raw = String::new();
    stdin
        .read_to_string(&mut raw)
        .context("reading the key from stdin")?;
    let line = raw.trim();
    let key = line.strip_prefix("crm_access_key=").unwrap_or(line).trim();
    if key.is_empty() {
        bail!("no access key on stdin");
    }
    if key.contains(char::is_whitespace) {
        bail!("an access key is one word; stdin held more than one");
    }
    Ok(Secret::new(key))
}

pub async fn crm_key(app: &App, tenant: &str) -> Result<()> {
    let tenant = TenantId::parse(tenant)?;
    let key = read_key()?;
    let mut secret = app.tenants.secret(&tenant).await?;
    secret.crm_access_key = key;
    let targets = CheckTargets {
        login_url: &app.config.login_url,
        webhook_url: None,
        timeout: app.config.http_timeout,
    };
    let checks = tenant_check::crm(&targets, &secret).await;
    crate::tenant_cmd::print_checks(&checks);
    let logged_in = checks
        .iter()
        .any(|c| c.name == "crm-login" && c.outcome == Outcome::Pass);
    if !logged_in {
        bail!("tenant {tenant}: the new key does not log in; nothing was stored");
    }
    app.tenants.put_secret(&tenant, &secret).await?;
    println!(
        "tenant {tenant}: the CRM access key is replaced; functions use it within five minutes"
    );
    Ok(())
}
