//! A local stand-in for the Microsoft identity platform v2.0 (`login.microsoftonline.com`).
//!
//! It implements the authorization code flow (with PKCE), refresh tokens, the client
//! credentials grant and admin consent, with Microsoft's error shapes and fault modes, and
//! lets tests steer it through [`Identity`]'s control methods or the `/_sandbox/identity`
//! HTTP endpoints.

mod authorize;
mod control;
mod credentials;
mod errors;
mod jwt;
mod pages;
mod pkce;
mod scopes;
mod state;
mod token;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};

pub use credentials::{
    self_signed_certificate, CertificateAndKey, CertificateError, DemoKey, ASSERTION_TYPE,
};
pub use errors::TokenErrorBody;

use state::{id_key, ActiveFault, IdentityState, MAX_LIFETIME};

/// The publisher's own directory and its multi-tenant app, as [`Identity::seed_publisher`]
/// registers them: one client id for every customer, a certificate credential, no secret.
pub const PUBLISHER_HOME_TENANT_ID: &str = "0c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
pub const PUBLISHER_CLIENT_ID: &str = "7e6d5c4b-3a29-4817-9f6e-5d4c3b2a1908";

/// Ids of the tenant, app and user that [`Identity::seed_demo`] creates.
pub const DEMO_TENANT_ID: &str = "5f0d7c8e-3b1a-4c2d-9e6f-7a8b9c0d1e2f";
pub const DEMO_CLIENT_ID: &str = "9d3c1b2a-8f7e-4d6c-b5a4-3e2f1d0c9b8a";
/// Not a secret: a fixed value so that a demo can be configured without reading logs.
pub const DEMO_CLIENT_SECRET: &str = "sandbox-demo-secret";
pub const DEMO_REDIRECT_URI: &str = "http://localhost/callback";
pub const DEMO_USER_OID: &str = "2b8e4f6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
pub const DEMO_USERNAME: &str = "adele.vance@contoso.example";
pub const DEMO_DISPLAY_NAME: &str = "Adele Vance";

/// An app registration: a confidential client that authenticates with its secret, or with a
/// client assertion signed by the key of one of its certificates.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistration {
    pub client_id: String,
    /// Empty: the app has no client secret (certificates only).
    #[serde(default)]
    pub client_secret: String,
    /// Certificates whose keys may sign client assertions.
    #[serde(default)]
    pub key_credentials: Vec<KeyCredential>,
    /// Compared with the request's `redirect_uri` as exact strings.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Multi-tenant apps accept users of any tenant and can be consented to by other tenants.
    #[serde(default)]
    pub multi_tenant: bool,
    /// Delegated Graph permissions configured on the app: what `.default` expands to.
    #[serde(default = "default_delegated_permissions")]
    pub delegated_permissions: Vec<String>,
    /// Application permissions (app roles) that admin consent grants to app-only tokens.
    #[serde(default = "default_application_permissions")]
    pub application_permissions: Vec<String>,
}

fn default_delegated_permissions() -> Vec<String> {
    vec!["User.Read".to_owned(), "Calendars.ReadWrite".to_owned()]
}

fn default_application_permissions() -> Vec<String> {
    vec!["Calendars.ReadWrite".to_owned(), "User.Read.All".to_owned()]
}

impl AppRegistration {
    /// A single-tenant app with the default permissions.
    pub fn new(client_id: &str, client_secret: &str, redirect_uris: &[&str]) -> Self {
        AppRegistration {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            key_credentials: Vec::new(),
            redirect_uris: redirect_uris.iter().map(|uri| (*uri).to_owned()).collect(),
            multi_tenant: false,
            delegated_permissions: default_delegated_permissions(),
            application_permissions: default_application_permissions(),
        }
    }
}

// Hand-written so that the secret never reaches a log.
impl fmt::Debug for AppRegistration {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("AppRegistration")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("key_credentials", &self.key_credentials.len())
            .field("redirect_uris", &self.redirect_uris)
            .field("multi_tenant", &self.multi_tenant)
            .field("delegated_permissions", &self.delegated_permissions)
            .field("application_permissions", &self.application_permissions)
            .finish()
    }
}

/// A certificate registered on an app (its public part only, as in Entra's `keyCredentials`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyCredential {
    /// The X.509 certificate, PEM.
    pub certificate_pem: String,
    /// Unix seconds after which assertions signed with its key are refused (AADSTS700027).
    pub end_date_time: u64,
}

/// What a tenant's administrator granted an app, as [`Identity::tenant_grant`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantGrant {
    pub admin_consented: bool,
    pub delegated: Vec<String>,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccount {
    pub oid: String,
    pub preferred_username: String,
    pub display_name: String,
}

/// One tenant of a seed document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSeed {
    pub tenant_id: String,
    #[serde(default)]
    pub apps: Vec<AppRegistration>,
    #[serde(default)]
    pub users: Vec<UserAccount>,
    /// Username of the user whose sign-in is approved without a page.
    #[serde(default)]
    pub auto_approve: Option<String>,
    /// Client ids this tenant's administrator has consented to.
    #[serde(default)]
    pub admin_consents: Vec<String>,
}

/// The identity section of a seed file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySeed {
    #[serde(default)]
    pub tenants: Vec<TenantSeed>,
}

/// What [`Identity::seed_demo`] created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DemoTenant {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub user_oid: String,
    pub username: String,
    pub display_name: String,
}

/// One request to the authorize or admin consent endpoint, as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeRequest {
    /// The tenant path segment: a tenant id, `common` or `organizations`.
    pub tenant: String,
    /// Decoded query parameters (the first value of a repeated name).
    pub params: BTreeMap<String, String>,
}

impl AuthorizeRequest {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// PKCE is optional for confidential clients; this tells whether the client used it.
    pub fn uses_pkce(&self) -> bool {
        self.params.contains_key("code_challenge")
    }
}

/// A failure the token endpoint plays on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFault {
    /// Answer with this 5xx status and a `temporarily_unavailable` error body.
    Unavailable { status: u16 },
    /// Wait this long, then answer normally (to exercise client timeouts).
    Delay(Duration),
}

/// Token requests received, by grant type (failed and faulted ones included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequestCounts {
    pub authorization_code: u64,
    pub refresh_token: u64,
    pub client_credentials: u64,
    /// Missing or unsupported grant types.
    pub other: u64,
}

impl TokenRequestCounts {
    pub fn total(&self) -> u64 {
        self.authorization_code + self.refresh_token + self.client_credentials + self.other
    }
}

/// What an access token issued by the sandbox grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenInfo {
    pub tenant_id: String,
    /// The signed-in user; None for an app-only token.
    pub oid: Option<String>,
    pub client_id: String,
    /// Delegated Graph permissions (the `scp` claim), e.g. `Calendars.ReadWrite`.
    pub scopes: Vec<String>,
    /// Application permissions (the `roles` claim); empty without admin consent.
    pub roles: Vec<String>,
    pub app_only: bool,
    /// Expiry in Unix seconds (the `exp` claim).
    pub expires_on: u64,
}

pub(crate) enum AccessTokenStatus {
    Valid(AccessTokenInfo),
    Expired,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("unknown tenant {0}")]
    UnknownTenant(String),
    #[error("unknown app {0}")]
    UnknownApp(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("an app with client id {0} already exists")]
    DuplicateApp(String),
    #[error("a user {0} already exists")]
    DuplicateUser(String),
    #[error("user {user} is not in tenant {tenant_id}")]
    UserNotInTenant { user: String, tenant_id: String },
    #[error("redirect URI {0} is not an absolute URL")]
    InvalidRedirectUri(String),
    #[error("a token fault status must be 5xx, got {0}")]
    InvalidFaultStatus(u16),
    #[error("the certificate is not a PEM X.509 certificate")]
    InvalidCertificate,
}

/// Handle on the identity stand-in: cheap to clone, shared with the HTTP handlers.
#[derive(Clone)]
pub struct Identity {
    shared: Arc<Shared>,
}

struct Shared {
    base_url: String,
    state: Mutex<IdentityState>,
}

pub(crate) fn router(identity: Identity) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/authorize", get(authorize::authorize))
        .route("/{tenant}/login", post(authorize::sign_in))
        .route("/{tenant}/adminconsent", get(authorize::admin_consent))
        .route(
            "/{tenant}/v2.0/adminconsent",
            get(authorize::admin_consent_v2),
        )
        .route(
            "/{tenant}/oauth2/v2.0/token",
            post(token::token).get(token::token_via_get),
        )
        .route("/error", get(pages::error_lookup))
        .merge(control::router())
        .with_state(identity)
}

impl Identity {
    pub(crate) fn new(base_url: String) -> Self {
        Identity {
            shared: Arc::new(Shared {
                base_url,
                state: Mutex::new(IdentityState::new()),
            }),
        }
    }

    /// The authority base: `{base_url}/{tenant}/oauth2/v2.0/...`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    fn lock(&self) -> MutexGuard<'_, IdentityState> {
        // A test that panicked mid-call must not wedge every later request.
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` with the state locked. Callers must not await inside.
    pub(crate) fn with_state<T>(&self, work: impl FnOnce(&mut IdentityState) -> T) -> T {
        work(&mut self.lock())
    }

    /// Adds a tenant; adding an existing one changes nothing.
    pub fn add_tenant(&self, tenant_id: &str) {
        self.lock().add_tenant(tenant_id);
    }

    /// Registers a single-tenant app in `tenant_id` with the default permissions.
    pub fn add_app(
        &self,
        tenant_id: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uris: &[&str],
    ) -> Result<(), ControlError> {
        self.register_app(
            tenant_id,
            AppRegistration::new(client_id, client_secret, redirect_uris),
        )
    }

    /// Registers an app whose home is `tenant_id`.
    pub fn register_app(
        &self,
        tenant_id: &str,
        registration: AppRegistration,
    ) -> Result<(), ControlError> {
        self.lock().register_app(tenant_id, registration)
    }

    pub fn add_redirect_uri(
        &self,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<(), ControlError> {
        self.lock().add_redirect_uri(client_id, redirect_uri)
    }

    pub fn add_user(
        &self,
        tenant_id: &str,
        oid: &str,
        preferred_username: &str,
        display_name: &str,
    ) -> Result<(), ControlError> {
        self.lock()
            .add_user(tenant_id, oid, preferred_username, display_name)
    }

    /// Records admin consent as if an administrator had completed `/adminconsent`.
    pub fn grant_admin_consent(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<(), ControlError> {
        self.lock().grant_admin_consent(tenant_id, client_id)
    }

    pub fn has_admin_consent(&self, tenant_id: &str, client_id: &str) -> bool {
        self.lock()
            .tenants
            .get(&id_key(tenant_id))
            .and_then(|tenant| tenant.service_principals.get(&id_key(client_id)))
            .is_some_and(|principal| principal.admin_consented)
    }

    /// What the tenant's administrator granted the app for the whole organisation: its
    /// delegated permissions and its application permissions. None when the app is not
    /// installed there (or this is its home tenant).
    pub fn tenant_grant(&self, tenant_id: &str, client_id: &str) -> Option<TenantGrant> {
        self.lock()
            .tenants
            .get(&id_key(tenant_id))
            .and_then(|tenant| tenant.service_principals.get(&id_key(client_id)))
            .map(|principal| TenantGrant {
                admin_consented: principal.admin_consented,
                delegated: principal.delegated.clone(),
                roles: principal.roles.clone(),
            })
    }

    /// The tenant's administrator deletes the app from the organisation (Enterprise
    /// applications → Delete), which removes its consent: app-only tokens are refused there
    /// (AADSTS700016), refresh tokens of its users stop working (AADSTS65001) and Graph
    /// refuses the access tokens already issued. False when the app was not installed there.
    pub fn remove_app_from_tenant(
        &self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<bool, ControlError> {
        self.lock().remove_app_from_tenant(tenant_id, client_id)
    }

    /// Adds a certificate credential to the app (as `keyCredentials` in its registration):
    /// client assertions signed with its key are accepted until `end_date_time` (Unix seconds).
    pub fn add_certificate(
        &self,
        client_id: &str,
        certificate_pem: &str,
        end_date_time: u64,
    ) -> Result<(), ControlError> {
        credentials::certificate_der(certificate_pem).ok_or(ControlError::InvalidCertificate)?;
        let mut state = self.lock();
        let app = state
            .apps
            .get_mut(&id_key(client_id))
            .ok_or_else(|| ControlError::UnknownApp(client_id.to_owned()))?;
        app.registration.key_credentials.push(KeyCredential {
            certificate_pem: certificate_pem.to_owned(),
            end_date_time,
        });
        Ok(())
    }

    /// With `Some(username)`, sign-ins to the tenant complete at once as that user (as if the
    /// user already had a session and had consented); with None, a sign-in page is shown.
    pub fn set_auto_approve(
        &self,
        tenant_id: &str,
        username: Option<&str>,
    ) -> Result<(), ControlError> {
        self.lock().set_auto_approve(tenant_id, username)
    }

    /// The next authorize request for the tenant fails as if the user declined consent.
    pub fn deny_next_authorize(&self, tenant_id: &str) -> Result<(), ControlError> {
        self.lock().tenant_mut(tenant_id)?.deny_next_authorize = true;
        Ok(())
    }

    /// The next admin consent request for the tenant fails as if the admin declined.
    pub fn deny_next_admin_consent(&self, tenant_id: &str) -> Result<(), ControlError> {
        self.lock().tenant_mut(tenant_id)?.deny_next_admin_consent = true;
        Ok(())
    }

    /// "Revoke sessions": every refresh token issued to the user so far stops working
    /// (AADSTS50173). Tokens from a later sign-in work again.
    pub fn revoke_user(&self, oid: &str) -> Result<(), ControlError> {
        self.lock().revoke_user(oid)
    }

    /// A critical event under continuous access evaluation (sessions revoked, a risky sign-in,
    /// a network change): Graph refuses the user's access tokens issued so far at once, before
    /// they expire.
    pub fn revoke_access_tokens(&self, oid: &str) {
        self.lock().access_tokens.retain(|_, token| {
            token
                .info
                .oid
                .as_deref()
                .is_none_or(|o| !o.eq_ignore_ascii_case(oid))
        });
    }

    /// Lifetime of access tokens issued from now on (`expires_in`); zero issues tokens that
    /// are already expired.
    pub fn set_access_token_lifetime(&self, lifetime: Duration) {
        self.lock().access_token_lifetime = lifetime.min(MAX_LIFETIME);
    }

    /// Lifetime of authorization codes issued from now on (ten minutes by default).
    pub fn set_authorization_code_lifetime(&self, lifetime: Duration) {
        self.lock().code_lifetime = lifetime.min(MAX_LIFETIME);
    }

    /// Makes the token endpoint fail or stall for the next `times` requests (None: until
    /// [`Identity::clear_token_fault`]).
    pub fn set_token_fault(
        &self,
        fault: TokenFault,
        times: Option<u32>,
    ) -> Result<(), ControlError> {
        if let TokenFault::Unavailable { status } = fault {
            if !(500..=599).contains(&status) {
                return Err(ControlError::InvalidFaultStatus(status));
            }
        }
        let fault = match fault {
            TokenFault::Delay(delay) => TokenFault::Delay(delay.min(MAX_LIFETIME)),
            unavailable => unavailable,
        };
        self.lock().token_fault = match times {
            Some(0) => None,
            remaining => Some(ActiveFault { fault, remaining }),
        };
        Ok(())
    }

    pub fn clear_token_fault(&self) {
        self.lock().token_fault = None;
    }

    pub fn token_request_counts(&self) -> TokenRequestCounts {
        self.lock().token_requests
    }

    /// The refresh token most recently issued to the user, whatever its state.
    pub fn latest_refresh_token(&self, oid: &str) -> Option<String> {
        self.lock().latest_refresh_token.get(&id_key(oid)).cloned()
    }

    /// True when the refresh token would be accepted now.
    pub fn refresh_token_valid(&self, refresh_token: &str) -> bool {
        self.lock().refresh_token_problem(refresh_token).is_none()
    }

    /// Ages the refresh token past the inactivity window (AADSTS700082 from now on).
    /// False when the token is unknown.
    pub fn expire_refresh_token(&self, refresh_token: &str) -> bool {
        match self.lock().refresh_tokens.get_mut(refresh_token) {
            Some(record) => {
                record.inactive = true;
                true
            }
            None => false,
        }
    }

    pub fn authorize_requests(&self) -> Vec<AuthorizeRequest> {
        self.lock().authorize_requests.clone()
    }

    pub fn admin_consent_requests(&self) -> Vec<AuthorizeRequest> {
        self.lock().admin_consent_requests.clone()
    }

    /// What a valid, unexpired access token issued here grants; None otherwise.
    pub fn validate_access_token(&self, access_token: &str) -> Option<AccessTokenInfo> {
        match self.access_token_status(access_token) {
            AccessTokenStatus::Valid(info) => Some(info),
            AccessTokenStatus::Expired | AccessTokenStatus::Unknown => None,
        }
    }

    pub(crate) fn access_token_status(&self, access_token: &str) -> AccessTokenStatus {
        match self.lock().access_tokens.get(access_token) {
            None => AccessTokenStatus::Unknown,
            Some(record) if Instant::now() >= record.expires_at => AccessTokenStatus::Expired,
            Some(record) => AccessTokenStatus::Valid(record.info.clone()),
        }
    }

    /// The directory entry of a user, for routes that serve user profiles.
    pub fn user_profile(&self, oid: &str) -> Option<UserAccount> {
        self.lock().user(oid).map(|user| UserAccount {
            oid: user.oid.clone(),
            preferred_username: user.preferred_username.clone(),
            display_name: user.display_name.clone(),
        })
    }

    /// Loads a seed document (see [`IdentitySeed`]).
    pub fn apply_seed(&self, seed: &IdentitySeed) -> Result<(), ControlError> {
        load_seed(&mut self.lock(), seed)
    }

    /// One tenant, one single-tenant app (redirect URI [`DEMO_REDIRECT_URI`]) and one user who
    /// is auto-approved; admin consent is not granted. Calling it again resets those entries.
    pub fn seed_demo(&self) -> DemoTenant {
        let demo = DemoTenant {
            tenant_id: DEMO_TENANT_ID.to_owned(),
            client_id: DEMO_CLIENT_ID.to_owned(),
            client_secret: DEMO_CLIENT_SECRET.to_owned(),
            redirect_uri: DEMO_REDIRECT_URI.to_owned(),
            user_oid: DEMO_USER_OID.to_owned(),
            username: DEMO_USERNAME.to_owned(),
            display_name: DEMO_DISPLAY_NAME.to_owned(),
        };
        let mut state = self.lock();
        state.apps.remove(&id_key(DEMO_CLIENT_ID));
        state.users.remove(&id_key(DEMO_USER_OID));
        state.tenants.remove(&id_key(DEMO_TENANT_ID));
        let seed = IdentitySeed {
            tenants: vec![TenantSeed {
                tenant_id: demo.tenant_id.clone(),
                apps: vec![AppRegistration::new(
                    DEMO_CLIENT_ID,
                    DEMO_CLIENT_SECRET,
                    &[DEMO_REDIRECT_URI],
                )],
                users: vec![UserAccount {
                    oid: demo.user_oid.clone(),
                    preferred_username: demo.username.clone(),
                    display_name: demo.display_name.clone(),
                }],
                auto_approve: Some(demo.username.clone()),
                admin_consents: Vec::new(),
            }],
        };
        // The entries were just removed, so loading them again cannot conflict.
        if let Err(error) = load_seed(&mut state, &seed) {
            tracing::warn!(%error, "seeding the demo tenant failed");
        }
        demo
    }
}

impl Identity {
    /// Registers the publisher's multi-tenant app in its own directory, with `redirect_uris`
    /// and the certificate (the demo key's) valid until `not_after` (Unix seconds), and
    /// returns the certificate and key the operator would hold. Its permissions: the delegated
    /// ones users connect with, and `Calendars.ReadWrite` as an application permission, which
    /// only a `.default` admin consent grants.
    pub fn seed_publisher(
        &self,
        redirect_uris: &[&str],
        not_after: i64,
    ) -> Result<CertificateAndKey, ControlError> {
        let now = crate::support::unix_seconds(std::time::SystemTime::now()) as i64;
        let credential = self_signed_certificate(
            DemoKey::Publisher,
            "calsync publisher (sandbox)",
            (now - 3600).min(not_after - 86_400),
            not_after,
        )
        .map_err(|_| ControlError::InvalidCertificate)?;
        self.add_tenant(PUBLISHER_HOME_TENANT_ID);
        let mut registration = AppRegistration::new(PUBLISHER_CLIENT_ID, "", redirect_uris);
        registration.multi_tenant = true;
        registration.application_permissions = vec!["Calendars.ReadWrite".to_owned()];
        self.register_app(PUBLISHER_HOME_TENANT_ID, registration)?;
        self.add_certificate(
            PUBLISHER_CLIENT_ID,
            &credential.certificate_pem,
            u64::try_from(not_after).unwrap_or(0),
        )?;
        Ok(credential)
    }
}

/// Loads tenants, then apps and users, then consents and auto-approval, so that a tenant may
/// consent to a multi-tenant app seeded under another tenant.
fn load_seed(state: &mut IdentityState, seed: &IdentitySeed) -> Result<(), ControlError> {
    for tenant in &seed.tenants {
        state.add_tenant(&tenant.tenant_id);
    }
    for tenant in &seed.tenants {
        for app in &tenant.apps {
            state.register_app(&tenant.tenant_id, app.clone())?;
        }
        for user in &tenant.users {
            state.add_user(
                &tenant.tenant_id,
                &user.oid,
                &user.preferred_username,
                &user.display_name,
            )?;
        }
    }
    for tenant in &seed.tenants {
        for client_id in &tenant.admin_consents {
            state.grant_admin_consent(&tenant.tenant_id, client_id)?;
        }
        if let Some(username) = &tenant.auto_approve {
            state.set_auto_approve(&tenant.tenant_id, Some(username))?;
        }
    }
    Ok(())
}
