//! `calsync tenant check`: whether a tenant's credentials and settings work, asked of the
//! outside world itself — the Microsoft identity platform (the client id and secret get a
//! token; with app-only access, that token carries the calendar permission an admin consented
//! to), the CRM (the integration user logs in, is an administrator, and can query events and
//! users), and calsync's own webhook (it answers Graph's validation handshake). Each check
//! says what it found in one line; none writes anything, and no secret is ever in a line.

use std::time::Duration;

use serde::Serialize;
use url::Url;

use crate::adapters::crm::vtiger::client::VtigerClient;
use crate::adapters::crm::vtiger::AccessKey;
use crate::adapters::identity::Identity;
use crate::config::join_url;
use crate::services::tenants::{
    registration_for, AccessMode, AppSource, TenantApp, TenantSecret, TenantSettings,
};

/// The application permission calsync needs app-only: every user's calendar.
pub const APP_ROLE: &str = "Calendars.ReadWrite";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    /// Not applicable, or not possible without an earlier check passing.
    Skip,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Skip => "skip",
        }
    }
}

/// One check's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `entra-credentials`, `admin-consent`, `crm-login`, `crm-rights`, `webhook`.
    pub name: &'static str,
    pub outcome: Outcome,
    /// What was found, or why it failed and what to do.
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, outcome: Outcome, detail: impl Into<String>) -> Self {
        Self {
            name,
            outcome,
            detail: detail.into(),
        }
    }
}

/// Where the checks go.
pub struct CheckTargets<'a> {
    /// The identity platform (`CALSYNC_LOGIN_URL`).
    pub login_url: &'a Url,
    /// The webhook's public base URL (`CALSYNC_WEBHOOK_URL`), if there is one.
    pub webhook_url: Option<&'a Url>,
    pub timeout: Duration,
}

/// Runs every check for a tenant (stored or about to be), in order. `app` is whose Microsoft
/// app it uses (`None`: a publisher-app tenant while no publisher app is set).
pub async fn run(
    targets: &CheckTargets<'_>,
    settings: &TenantSettings,
    secret: &TenantSecret,
    app: Option<&TenantApp>,
) -> Vec<Check> {
    let mut checks = match app {
        Some(app) => entra(targets, settings, secret, app).await,
        None => vec![Check::new(
            "entra-credentials",
            Outcome::Fail,
            "the tenant uses the publisher app, which is not set (calsync publisher set)",
        )],
    };
    checks.extend(crm(targets, secret).await);
    checks.push(webhook(targets).await);
    checks
}

/// Whether every check passed or did not apply.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.outcome != Outcome::Fail)
}

async fn entra(
    targets: &CheckTargets<'_>,
    settings: &TenantSettings,
    secret: &TenantSecret,
    app: &TenantApp,
) -> Vec<Check> {
    if settings.app == AppSource::Publisher && settings.directory.is_none() {
        return vec![Check::new(
            "entra-credentials",
            Outcome::Skip,
            format!(
                "waiting for the customer's administrator to consent to the publisher app (calsync link --tenant {} --admin-consent)",
                settings.tenant
            ),
        )];
    }
    let registration = registration_for(settings, secret, app);
    // A client of its own: no token cached by an earlier call can stand in for this one.
    let identity = match Identity::new(targets.login_url.clone(), targets.timeout) {
        Ok(identity) => identity,
        Err(e) => {
            return vec![Check::new(
                "entra-credentials",
                Outcome::Fail,
                crate::errors::chain(&e),
            )]
        }
    };
    let token = match identity.app_token(registration).await {
        Ok(token) => token,
        Err(e) => {
            let consent = match settings.mode {
                AccessMode::AppOnly => Check::new(
                    "admin-consent",
                    Outcome::Skip,
                    "needs a token from the credentials",
                ),
                AccessMode::Delegated => not_app_only(),
            };
            return vec![
                Check::new(
                    "entra-credentials",
                    Outcome::Fail,
                    format!(
                        "{} — check the directory id, the client id and the client secret or certificate (and its expiry) in the app registration, and that the directory's administrator has not removed the app",
                        crate::errors::chain(&e)
                    ),
                ),
                consent,
            ];
        }
    };
    let credentials = Check::new(
        "entra-credentials",
        Outcome::Pass,
        format!(
            "the client id and credential get a token from directory {}",
            registration.directory
        ),
    );
    let consent = match settings.mode {
        AccessMode::Delegated => not_app_only(),
        AccessMode::AppOnly => match token_roles(token.expose()) {
            Some(roles) if roles.iter().any(|r| r == APP_ROLE) => Check::new(
                "admin-consent",
                Outcome::Pass,
                format!("an administrator granted {APP_ROLE} to the app"),
            ),
            Some(_) => Check::new(
                "admin-consent",
                Outcome::Fail,
                format!(
                    "the app-only token has no {APP_ROLE} permission: an administrator of the directory must grant admin consent (calsync link --tenant T --admin-consent)"
                ),
            ),
            None => Check::new(
                "admin-consent",
                Outcome::Fail,
                "the app-only token could not be read to see its permissions",
            ),
        },
    };
    vec![credentials, consent]
}

fn not_app_only() -> Check {
    Check::new(
        "admin-consent",
        Outcome::Skip,
        "delegated mode: each user consents when they connect",
    )
}

/// The `roles` claim of an access token (a JWT read without checking its signature: it came
/// straight from the token endpoint over TLS). `None` when it is not a readable JWT.
fn token_roles(jwt: &str) -> Option<Vec<String>> {
    crate::adapters::identity::access_token_claims(jwt).map(|claims| claims.roles)
}

/// The CRM checks alone: `crm-login`, then `crm-rights` (skipped without a login).
pub async fn crm(targets: &CheckTargets<'_>, secret: &TenantSecret) -> Vec<Check> {
    let skipped_rights = || Check::new("crm-rights", Outcome::Skip, "needs a CRM login");
    let client = match VtigerClient::new(
        &secret.crm_url,
        &secret.crm_user,
        AccessKey::new(secret.crm_access_key.expose()),
        targets.timeout,
    ) {
        Ok(client) => client,
        Err(e) => {
            return vec![
                Check::new("crm-login", Outcome::Fail, crate::errors::chain(&e)),
                skipped_rights(),
            ]
        }
    };
    let session = match client.session().await {
        Ok(session) => session,
        Err(e) => {
            return vec![
                Check::new(
                    "crm-login",
                    Outcome::Fail,
                    format!(
                        "{} — check the CRM URL, the integration user {:?} and its access key (My Preferences → Access Key)",
                        crate::errors::chain(&e),
                        secret.crm_user
                    ),
                ),
                skipped_rights(),
            ]
        }
    };
    let version = if session.vtiger_version.is_empty() {
        String::new()
    } else {
        format!(" (vtiger {})", session.vtiger_version)
    };
    let login = Check::new(
        "crm-login",
        Outcome::Pass,
        format!("{} logs in{version}", secret.crm_user),
    );
    let mut problems = Vec::new();
    if session.is_admin == Some(false) {
        problems.push(format!(
            "{} is not a CRM administrator: calsync would see and write only its own events",
            secret.crm_user
        ));
    }
    for (module, vtql) in [
        ("Events", "SELECT id FROM Events LIMIT 1;"),
        ("Users", "SELECT id, user_name FROM Users LIMIT 1;"),
    ] {
        if let Err(e) = client.get("query", &[("query", vtql)]).await {
            problems.push(format!(
                "querying {module} failed: {}",
                crate::errors::chain(&e)
            ));
        }
    }
    let rights = if problems.is_empty() {
        Check::new(
            "crm-rights",
            Outcome::Pass,
            "the integration user is an administrator and can query Events and Users",
        )
    } else {
        Check::new("crm-rights", Outcome::Fail, problems.join("; "))
    };
    vec![login, rights]
}

async fn webhook(targets: &CheckTargets<'_>) -> Check {
    let Some(base) = targets.webhook_url else {
        return Check::new(
            "webhook",
            Outcome::Skip,
            "CALSYNC_WEBHOOK_URL is not set: no Graph subscriptions, users sync on schedule only",
        );
    };
    let token = format!("calsync check {}", crate::crypto::random_token(12));
    let url = join_url(base, "notifications");
    let client = match reqwest::Client::builder()
        .timeout(targets.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => return Check::new("webhook", Outcome::Fail, crate::errors::chain(&e)),
    };
    let answer = client
        .post(&url)
        .query(&[("validationToken", token.as_str())])
        .header("content-type", "text/plain")
        .send()
        .await;
    let failed = |why: String| {
        Check::new(
            "webhook",
            Outcome::Fail,
            format!("{url} {why}: Graph could not create subscriptions (check the URL and that the webhook function is deployed)"),
        )
    };
    match answer {
        Err(e) => failed(format!(
            "could not be reached ({})",
            crate::errors::chain(&e.without_url())
        )),
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if status == 200 && body == token {
                Check::new(
                    "webhook",
                    Outcome::Pass,
                    format!("{url} answers the validation handshake"),
                )
            } else if status == 200 {
                failed("answered 200 without echoing the validation token".to_owned())
            } else {
                failed(format!("answered HTTP {status}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    fn jwt(payload: &serde_json::Value) -> String {
        format!(
            "e30.{}.sig",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap())
        )
    }

    #[test]
    fn roles_are_read_from_the_token() {
        let with = jwt(&serde_json::json!({"roles": ["Calendars.ReadWrite"]}));
        assert_eq!(token_roles(&with).unwrap(), ["Calendars.ReadWrite"]);
        let without = jwt(&serde_json::json!({"aud": "x"}));
        assert!(token_roles(&without).unwrap().is_empty());
        assert_eq!(token_roles("opaque"), None);
    }

    #[test]
    fn a_skip_is_not_a_failure() {
        let checks = [
            Check::new("a", Outcome::Pass, ""),
            Check::new("b", Outcome::Skip, ""),
        ];
        assert!(all_passed(&checks));
        let failed = [Check::new("c", Outcome::Fail, "")];
        assert!(!all_passed(&failed));
    }
}
