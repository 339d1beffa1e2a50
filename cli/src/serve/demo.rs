//! The sandbox demo: the local stand-ins for Microsoft identity, Graph and the vtiger CRM, and
//! one tenant wired to them the way an operator would wire a real customer — an app
//! registration whose redirect URI is this server, CRM users with an admin integration user,
//! Microsoft accounts with mailboxes, and a few events on both sides.

use anyhow::{Context, Result};
use calsync::adapters::store::now_epoch;
use calsync::crypto::{random_key_hex, random_token};
use calsync::services::tenants::{TenantSecret, TenantSettings};
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use calsync_sandbox::vtiger::{SeedEvent, UserSpec};
use calsync_sandbox::Sandbox;
use serde_json::json;
use url::Url;

use super::{DemoInfo, DemoUser};

const DEMO_TENANT: &str = "demo";
const CRM_ADMIN: &str = "admin";

/// The second demo account (the first is the sandbox's own demo user).
const SECOND_OID: &str = "7c1d3e5f-2a4b-4c6d-8e0f-1a2b3c4d5e6f";
const SECOND_USERNAME: &str = "alex.wilber@contoso.example";
const SECOND_NAME: &str = "Alex Wilber";

/// Starts the sandbox and points the configuration at it: sign-in, Graph, and Graph's
/// notifications back to this server.
pub async fn start_sandbox(mut config: Config, public_url: &Url) -> Result<(Sandbox, Config)> {
    let sandbox = Sandbox::start().await.context("starting the sandbox")?;
    let base = Url::parse(&sandbox.base_url())?;
    config.login_url = base.clone();
    config.graph_url = base;
    config.public_url = Some(public_url.clone());
    config.webhook_url = Some(public_url.clone());
    Ok((sandbox, config))
}

/// Creates the demo tenant on both sides and returns what the banner and status page show.
pub async fn seed(app: &App, sandbox: &Sandbox, public_url: &Url) -> Result<DemoInfo> {
    let identity = sandbox.identity();
    let azure = identity.seed_demo();
    // A sign-in page instead of instant approval, so the demo walks the real flow.
    identity.set_auto_approve(&azure.tenant_id, None)?;
    for route in ["callback", "admin-consent/callback"] {
        identity.add_redirect_uri(
            &azure.client_id,
            &calsync::config::join_url(public_url, route),
        )?;
    }
    identity.add_user(&azure.tenant_id, SECOND_OID, SECOND_USERNAME, SECOND_NAME)?;
    let accounts = [
        (
            "adele",
            azure.user_oid.as_str(),
            azure.username.as_str(),
            azure.display_name.as_str(),
        ),
        ("alex", SECOND_OID, SECOND_USERNAME, SECOND_NAME),
    ];

    let crm = sandbox.crm();
    let crm_key = random_token(12);
    crm.add_user(UserSpec::new(CRM_ADMIN, crm_key.clone()).admin());
    let today = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    let tomorrow = today.tomorrow()?;
    let mut users = Vec::new();
    for (crm_name, oid, email, display_name) in accounts {
        let (first, last) = display_name.split_once(' ').unwrap_or((display_name, ""));
        let mut spec = UserSpec::new(crm_name, random_token(12));
        spec.first_name = first.to_owned();
        spec.last_name = last.to_owned();
        spec.email = email.to_owned();
        let owner = crm.add_user(spec);
        crm.seed_event(SeedEvent {
            owner,
            fields: [
                (
                    "subject",
                    format!("Visit to Fabrikam ({first}, from the CRM)"),
                ),
                ("date_start", tomorrow.to_string()),
                ("time_start", "11:00:00".to_owned()),
                ("due_date", tomorrow.to_string()),
                ("time_end", "12:00:00".to_owned()),
                ("activitytype", "Meeting".to_owned()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            ..SeedEvent::default()
        });
        sandbox.graph().seed_events(
            oid,
            &[json!({
                "subject": format!("Call with a supplier ({first}, from Outlook)"),
                "start": {"dateTime": format!("{tomorrow}T09:00:00"), "timeZone": "UTC"},
                "end": {"dateTime": format!("{tomorrow}T09:30:00"), "timeZone": "UTC"},
            })],
        )?;
        users.push(DemoUser {
            crm_user: CrmUserName::parse(crm_name)?,
            email: email.to_owned(),
            display_name: display_name.to_owned(),
        });
    }

    let tenant = TenantId::parse(DEMO_TENANT)?;
    let crm_url = sandbox.base_url();
    let now = now_epoch();
    let mut settings = TenantSettings::new(
        tenant.clone(),
        "Contoso (sandbox demo)".into(),
        &crm_url,
        now,
    )?;
    // An expiry three weeks out, so the status page shows how secret-expiry warnings look.
    let expires = today.checked_add(jiff::Span::new().days(21))?;
    settings.client_secret_expires = Some(expires.to_string());
    // CRM edits have no push; a one-minute interval lets a person watching the demo see them
    // reach Outlook within a scheduler tick or two.
    settings.sync_interval_minutes = 1;
    let secret = TenantSecret {
        azure_tenant_id: azure.tenant_id.clone(),
        authority: None,
        client_id: azure.client_id.clone(),
        client_secret: Secret::new(azure.client_secret.clone()),
        client_secret_expires: settings.client_secret_expires.clone(),
        crm_url: crm_url.clone(),
        crm_user: CRM_ADMIN.to_owned(),
        crm_access_key: Secret::new(crm_key),
        link_key: Secret::new(random_token(32)),
        token_key: random_key_hex(),
        token_key_id: Some("k1".to_owned()),
        token_key_since: None,
        previous_token_keys: Vec::new(),
        previous_link_key: None,
    };
    app.tenants
        .add(&settings, &secret)
        .await
        .context("adding the demo tenant")?;
    Ok(DemoInfo {
        tenant,
        users,
        calendars_url: sandbox.calendars_url(),
        sandbox_url: crm_url,
    })
}
