//! The sandbox demo: the local stand-ins for Microsoft identity, Graph and the vtiger CRM, and
//! one tenant wired to them the way an operator would wire a real customer — an app
//! registration whose redirect URI is this server, CRM users with an admin integration user,
//! Microsoft accounts with mailboxes, and a few events on both sides.

use anyhow::{Context, Result};
use calsync::adapters::store::now_epoch;
use calsync::crypto::random_token;
use calsync::services::tenants::{TenantSecret, TenantSettings};
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use calsync_sandbox::vtiger::{SeedEvent, UserSpec};
use calsync_sandbox::Sandbox;
use serde_json::json;
use url::Url;

use super::{ConsentDemo, DemoInfo, DemoUser};

const DEMO_TENANT: &str = "demo";
/// The second demo tenant: a customer onboarded by consent to the publisher app.
const CONSENT_TENANT: &str = "fabrikam";
const CONSENT_DIRECTORY: &str = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
const CONSENT_ADMIN: &str = "admin@fabrikam.example";
const CONSENT_ADMIN_OID: &str = "4b5c6d7e-8f90-4a1b-9c2d-3e4f5a6b7c8d";
const CONSENT_USER: &str = "lee";
const CONSENT_USER_OID: &str = "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d";
const CONSENT_USER_EMAIL: &str = "lee.chen@fabrikam.example";
const CONSENT_USER_NAME: &str = "Lee Chen";
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
    let secret = TenantSecret::fresh(&crm_url, CRM_ADMIN, Secret::new(crm_key)).with_own_app(
        &azure.tenant_id,
        &azure.client_id,
        Secret::new(azure.client_secret.clone()),
        settings.client_secret_expires.clone(),
    );
    app.tenants
        .add(&settings, &secret)
        .await
        .context("adding the demo tenant")?;
    let consent = seed_consent(app, sandbox, public_url, &crm_url).await?;
    Ok(DemoInfo {
        tenant,
        users,
        consent: Some(consent),
        calendars_url: sandbox.calendars_url(),
        sandbox_url: crm_url,
    })
}

/// The consent path: the publisher's multi-tenant app with a certificate (stored as an
/// operator would with `calsync publisher set`), a customer directory with an administrator
/// and a user, and a tenant that uses the publisher app and waits for that consent.
async fn seed_consent(
    app: &App,
    sandbox: &Sandbox,
    public_url: &Url,
    crm_url: &str,
) -> Result<ConsentDemo> {
    use calsync::services::publisher::{StoredCredential, StoredPublisher};
    use calsync::services::tenants::AppSource;
    let identity = sandbox.identity();
    let callback = calsync::config::join_url(public_url, "callback");
    let consent_callback = calsync::config::join_url(public_url, "admin-consent/callback");
    // A year of validity: the certificate's expiry is tracked like a client secret's.
    let not_after = now_epoch() + 365 * 86_400;
    let credential = identity
        .seed_publisher(&[&callback, &consent_callback], not_after)
        .map_err(|e| anyhow::anyhow!("seeding the publisher app: {e}"))?;
    identity.add_tenant(CONSENT_DIRECTORY);
    identity.add_user(
        CONSENT_DIRECTORY,
        CONSENT_ADMIN_OID,
        CONSENT_ADMIN,
        "Fabrikam administrator",
    )?;
    identity.add_user(
        CONSENT_DIRECTORY,
        CONSENT_USER_OID,
        CONSENT_USER_EMAIL,
        CONSENT_USER_NAME,
    )?;
    app.tenants
        .publisher()
        .set(&StoredPublisher {
            client_id: calsync_sandbox::identity::PUBLISHER_CLIENT_ID.to_owned(),
            credential: StoredCredential::Certificate {
                certificate: credential.certificate_pem,
                private_key: Secret::new(credential.private_key_pem),
            },
            set_at: now_epoch(),
        })
        .await
        .context("storing the publisher app")?;

    let crm = sandbox.crm();
    let mut spec = UserSpec::new(CONSENT_USER, random_token(12));
    spec.first_name = "Lee".to_owned();
    spec.last_name = "Chen".to_owned();
    spec.email = CONSENT_USER_EMAIL.to_owned();
    crm.add_user(spec);
    let crm_key = random_token(12);
    crm.add_user(UserSpec::new("fabrikam-admin", crm_key.clone()).admin());

    let tenant = TenantId::parse(CONSENT_TENANT)?;
    let mut settings = TenantSettings::new(
        tenant.clone(),
        "Fabrikam (sandbox demo, by consent)".into(),
        crm_url,
        now_epoch(),
    )?;
    settings.app = AppSource::Publisher;
    settings.sync_interval_minutes = 1;
    // No Microsoft credential: the publisher app's is the deployment's.
    let secret = TenantSecret::fresh(crm_url, "fabrikam-admin", Secret::new(crm_key));
    app.tenants
        .add(&settings, &secret)
        .await
        .context("adding the consent demo tenant")?;
    Ok(ConsentDemo {
        tenant,
        admin: CONSENT_ADMIN.to_owned(),
        user: DemoUser {
            crm_user: CrmUserName::parse(CONSENT_USER)?,
            email: CONSENT_USER_EMAIL.to_owned(),
            display_name: CONSENT_USER_NAME.to_owned(),
        },
    })
}
