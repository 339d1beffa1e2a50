//! A customer's administrator consents to the publisher app for their whole organisation
//! (Microsoft's v2.0 admin consent endpoint), and calsync checks what came back before it
//! lets the tenant work. The callback's query string is only a hint: the directory is the
//! `tid` of a client-credentials token calsync obtains for it itself, which Microsoft issues
//! only once the app is installed there.
//!
//! What the consent asks for: the delegated permissions users connect with, for every user;
//! for a tenant in app-only mode, `.default` instead, which adds the publisher app's one
//! application permission, `Calendars.ReadWrite` (application permissions cannot be asked for
//! by name, only configured on the app).

use crate::adapters::identity::{access_token_claims, AppRegistration, Identity, IdentityError};
use crate::services::publisher::{is_guid, PublisherApp};
use crate::services::tenant_check::APP_ROLE;
use crate::services::tenants::{AccessMode, TenantError, TenantSettings, Tenants};
use calsync_core::ids::TenantId;

/// What a delegated tenant's administrator consents to: what users sign in with.
pub const DELEGATED_CONSENT: [&str; 5] = [
    "openid",
    "profile",
    "offline_access",
    "https://graph.microsoft.com/User.Read",
    "https://graph.microsoft.com/Calendars.ReadWrite",
];
/// What an app-only tenant's administrator consents to: everything configured on the app.
pub const APP_ONLY_CONSENT: [&str; 1] = ["https://graph.microsoft.com/.default"];

/// The scopes a tenant's consent link asks for.
pub fn consent_scopes(mode: AccessMode) -> &'static [&'static str] {
    match mode {
        AccessMode::Delegated => &DELEGATED_CONSENT,
        AccessMode::AppOnly => &APP_ONLY_CONSENT,
    }
}

/// Why a consent does not activate the tenant. Each says what happened in words an operator
/// and the administrator can act on.
#[derive(Debug, thiserror::Error)]
pub enum ConsentRefused {
    #[error("the callback names no directory calsync can check ({0:?})")]
    BadDirectory(String),
    #[error(
        "the publisher app is not installed in directory {0}: no administrator consented there"
    )]
    NotInstalled(String),
    #[error("the consent is for directory {consented}, but the tenant is bound to {expected}")]
    OtherDirectory { consented: String, expected: String },
    #[error("directory {0} is already the directory of another tenant")]
    DirectoryTaken(String),
    #[error("the consent lacks {0}")]
    MissingPermission(String),
    #[error("Microsoft could not be asked about the consent")]
    Identity(#[source] IdentityError),
    #[error("the tenant could not be activated")]
    Tenant(#[source] TenantError),
}

/// Checks a consent the callback reports for `tenant` and, if it holds, binds the directory
/// and activates the tenant. `hinted` is the callback's `tenant`, `granted_scope` its `scope`.
pub async fn confirm(
    identity: &Identity,
    tenants: &Tenants,
    tenant: &TenantId,
    settings: &TenantSettings,
    publisher: &PublisherApp,
    hinted: &str,
    granted_scope: Option<&str>,
) -> Result<String, ConsentRefused> {
    if !is_guid(hinted) {
        return Err(ConsentRefused::BadDirectory(
            hinted.chars().take(64).collect(),
        ));
    }
    let hinted = hinted.to_ascii_lowercase();
    let app = AppRegistration {
        directory: &hinted,
        authority: &hinted,
        client_id: &publisher.client_id,
        credential: publisher.credential(),
    };
    let token = match identity.fresh_app_token(app).await {
        Ok(token) => token,
        Err(e) if e.is_app_refused() => return Err(ConsentRefused::NotInstalled(hinted)),
        Err(e) => return Err(ConsentRefused::Identity(e)),
    };
    let claims = access_token_claims(token.expose()).ok_or(ConsentRefused::Identity(
        IdentityError::Missing("readable access token"),
    ))?;
    let directory = claims.tid.to_ascii_lowercase();
    if directory != hinted {
        return Err(ConsentRefused::OtherDirectory {
            consented: directory,
            expected: hinted,
        });
    }
    for bound in [&settings.expected_directory, &settings.directory]
        .into_iter()
        .flatten()
    {
        if !bound.eq_ignore_ascii_case(&directory) {
            return Err(ConsentRefused::OtherDirectory {
                consented: directory,
                expected: bound.to_ascii_lowercase(),
            });
        }
    }
    match settings.mode {
        AccessMode::AppOnly => {
            if !claims.roles.iter().any(|r| r == APP_ROLE) {
                return Err(ConsentRefused::MissingPermission(format!(
                    "the application permission {APP_ROLE}"
                )));
            }
        }
        AccessMode::Delegated => {
            // Tenant-wide delegated grants do not show in an app-only token; Microsoft's
            // answer lists what the administrator accepted.
            let granted: Vec<String> = granted_scope
                .unwrap_or_default()
                .split_whitespace()
                .map(normalise_scope)
                .collect();
            for wanted in DELEGATED_CONSENT {
                if !granted.contains(&normalise_scope(wanted)) {
                    let name = wanted.trim_start_matches("https://graph.microsoft.com/");
                    return Err(ConsentRefused::MissingPermission(format!(
                        "the delegated permission {name}"
                    )));
                }
            }
        }
    }
    match tenants.activate(tenant, &directory).await {
        Ok(_) => Ok(directory),
        Err(TenantError::DirectoryTaken { directory, .. }) => {
            Err(ConsentRefused::DirectoryTaken(directory))
        }
        Err(e) => Err(ConsentRefused::Tenant(e)),
    }
}

/// `https://graph.microsoft.com/User.Read` and `User.Read` are one permission.
fn normalise_scope(scope: &str) -> String {
    let lower = scope.to_ascii_lowercase();
    lower
        .strip_prefix("https://graph.microsoft.com/")
        .map(str::to_owned)
        .unwrap_or(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_compare_with_or_without_graph_prefix() {
        assert_eq!(
            normalise_scope("https://graph.microsoft.com/Calendars.ReadWrite"),
            normalise_scope("calendars.readwrite")
        );
        assert_eq!(normalise_scope("openid"), "openid");
    }
}
