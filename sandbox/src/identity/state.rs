//! The in-memory directory and grant store behind the identity endpoints.
//!
//! Everything lives behind one std `Mutex` owned by `Identity`; the functions here run with
//! the lock held and never await.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use url::Url;

use super::pkce::PkceChallenge;
use super::scopes::ScopeSet;
use super::{
    AccessTokenInfo, AppRegistration, AuthorizeRequest, ControlError, TokenFault,
    TokenRequestCounts,
};
use crate::support::random_token;

/// Authorization codes live about ten minutes at Microsoft.
pub(crate) const DEFAULT_CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Microsoft's usual `expires_in` for a one-hour token.
pub(crate) const DEFAULT_ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3599);
/// Bounds the configurable lifetimes so that time arithmetic cannot overflow.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Spent codes and expired tokens are kept this long so that reuse still gets the precise
/// error (already redeemed, expired) rather than "unknown".
const TOMBSTONE_RETENTION: Duration = Duration::from_secs(3600);

pub(crate) struct Tenant {
    pub(crate) id: String,
    /// The user who is "already signed in and has consented": authorize answers at once.
    pub(crate) auto_approve_oid: Option<String>,
    pub(crate) deny_next_authorize: bool,
    pub(crate) deny_next_admin_consent: bool,
    /// The apps installed in this tenant (their service principals), by client id: what an
    /// administrator granted them tenant-wide. A user's own consent installs an app too.
    pub(crate) service_principals: HashMap<String, ServicePrincipal>,
}

/// An app's presence in a tenant other than its home, and what the tenant granted it.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServicePrincipal {
    /// An administrator consented for the whole organisation.
    pub(crate) admin_consented: bool,
    /// Delegated Graph permissions granted for every user (admin consent).
    pub(crate) delegated: Vec<String>,
    /// Application permissions granted to app-only tokens.
    pub(crate) roles: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct App {
    pub(crate) home_tenant: String,
    pub(crate) registration: AppRegistration,
}

impl App {
    pub(crate) fn client_id(&self) -> &str {
        &self.registration.client_id
    }

    /// Users of the home tenant can always sign in; users of other tenants only if the app is
    /// multi-tenant (their consent then installs it in their tenant).
    pub(crate) fn accepts_users_from(&self, tenant_id: &str) -> bool {
        self.home_tenant == tenant_id || self.registration.multi_tenant
    }

    /// The app has a service principal in the tenant: its home, or a tenant whose admin
    /// consented. App-only tokens need one.
    pub(crate) fn is_installed_in(&self, tenant: &Tenant) -> bool {
        self.home_tenant == tenant.id || tenant.service_principals.contains_key(self.client_id())
    }
}

#[derive(Clone)]
pub(crate) struct User {
    pub(crate) oid: String,
    pub(crate) tenant_id: String,
    pub(crate) preferred_username: String,
    pub(crate) display_name: String,
    /// Bumped by `revoke_user`; refresh tokens issued under an older value are dead.
    pub(crate) revocation_epoch: u64,
}

/// Where and how the authorize endpoint answers the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseMode {
    Query,
    Fragment,
    FormPost,
}

pub(crate) struct AuthorizationCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    /// The tenant path segment of the authorize request (a GUID, `common`, ...).
    pub(crate) tenant_segment: String,
    pub(crate) tenant_id: String,
    pub(crate) oid: String,
    pub(crate) scopes: ScopeSet,
    pub(crate) pkce: Option<PkceChallenge>,
    pub(crate) nonce: Option<String>,
    pub(crate) expires_at: Instant,
    pub(crate) redeemed: bool,
}

pub(crate) struct RefreshTokenRecord {
    pub(crate) client_id: String,
    pub(crate) tenant_id: String,
    pub(crate) oid: String,
    pub(crate) scopes: ScopeSet,
    pub(crate) revocation_epoch: u64,
    pub(crate) issued_at: SystemTime,
    /// Set by `expire_refresh_token` to play the 90-day inactivity expiry.
    pub(crate) inactive: bool,
}

pub(crate) struct AccessTokenRecord {
    pub(crate) info: AccessTokenInfo,
    pub(crate) expires_at: Instant,
}

pub(crate) struct ActiveFault {
    pub(crate) fault: TokenFault,
    /// None: until cleared.
    pub(crate) remaining: Option<u32>,
}

/// A sign-in page that is waiting for the user's Accept or Cancel.
pub(crate) struct PendingSignIn {
    pub(crate) started: Instant,
    pub(crate) tenant_segment: String,
    pub(crate) login_hint: Option<String>,
    pub(crate) request: PendingRequest,
}

pub(crate) enum PendingRequest {
    Authorize(super::authorize::ValidAuthorizeRequest),
    AdminConsent(super::authorize::ValidAdminConsentRequest),
}

/// A tenant path segment after lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TenantRef {
    Specific(String),
    /// `common` or `organizations`: the signing-in user decides the tenant.
    AnyOrganization(String),
}

impl TenantRef {
    pub(crate) fn specific(&self) -> Option<&str> {
        match self {
            TenantRef::Specific(id) => Some(id),
            TenantRef::AnyOrganization(_) => None,
        }
    }
}

pub(crate) struct IdentityState {
    pub(crate) tenants: HashMap<String, Tenant>,
    pub(crate) apps: HashMap<String, App>,
    pub(crate) users: HashMap<String, User>,
    pub(crate) codes: HashMap<String, AuthorizationCode>,
    pub(crate) refresh_tokens: HashMap<String, RefreshTokenRecord>,
    pub(crate) latest_refresh_token: HashMap<String, String>,
    pub(crate) access_tokens: HashMap<String, AccessTokenRecord>,
    pub(crate) pending_sign_ins: HashMap<String, PendingSignIn>,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) code_lifetime: Duration,
    pub(crate) token_fault: Option<ActiveFault>,
    pub(crate) token_requests: TokenRequestCounts,
    pub(crate) authorize_requests: Vec<AuthorizeRequest>,
    pub(crate) admin_consent_requests: Vec<AuthorizeRequest>,
}

/// Ids are GUIDs, which Microsoft compares without regard to case.
pub(crate) fn id_key(id: &str) -> String {
    id.trim().to_ascii_lowercase()
}

impl IdentityState {
    pub(crate) fn new() -> Self {
        IdentityState {
            tenants: HashMap::new(),
            apps: HashMap::new(),
            users: HashMap::new(),
            codes: HashMap::new(),
            refresh_tokens: HashMap::new(),
            latest_refresh_token: HashMap::new(),
            access_tokens: HashMap::new(),
            pending_sign_ins: HashMap::new(),
            access_token_lifetime: DEFAULT_ACCESS_TOKEN_LIFETIME,
            code_lifetime: DEFAULT_CODE_LIFETIME,
            token_fault: None,
            token_requests: TokenRequestCounts::default(),
            authorize_requests: Vec::new(),
            admin_consent_requests: Vec::new(),
        }
    }

    pub(crate) fn resolve_tenant_segment(&self, segment: &str) -> Option<TenantRef> {
        let key = id_key(segment);
        match key.as_str() {
            "common" | "organizations" => Some(TenantRef::AnyOrganization(key)),
            _ => self
                .tenants
                .contains_key(&key)
                .then_some(TenantRef::Specific(key)),
        }
    }

    pub(crate) fn tenant_mut(&mut self, tenant_id: &str) -> Result<&mut Tenant, ControlError> {
        self.tenants
            .get_mut(&id_key(tenant_id))
            .ok_or_else(|| ControlError::UnknownTenant(tenant_id.to_owned()))
    }

    pub(crate) fn app(&self, client_id: &str) -> Option<&App> {
        self.apps.get(&id_key(client_id))
    }

    pub(crate) fn user(&self, oid: &str) -> Option<&User> {
        self.users.get(&id_key(oid))
    }

    pub(crate) fn user_by_username(&self, username: &str) -> Option<&User> {
        let wanted = username.trim();
        self.users
            .values()
            .find(|user| user.preferred_username.eq_ignore_ascii_case(wanted))
    }

    pub(crate) fn add_tenant(&mut self, tenant_id: &str) {
        let key = id_key(tenant_id);
        self.tenants.entry(key.clone()).or_insert_with(|| Tenant {
            id: key,
            auto_approve_oid: None,
            deny_next_authorize: false,
            deny_next_admin_consent: false,
            service_principals: HashMap::new(),
        });
    }

    pub(crate) fn register_app(
        &mut self,
        tenant_id: &str,
        mut registration: AppRegistration,
    ) -> Result<(), ControlError> {
        let home_tenant = self.tenant_mut(tenant_id)?.id.clone();
        registration.client_id = id_key(&registration.client_id);
        if self.apps.contains_key(&registration.client_id) {
            return Err(ControlError::DuplicateApp(registration.client_id));
        }
        for uri in &registration.redirect_uris {
            check_redirect_uri(uri)?;
        }
        self.apps.insert(
            registration.client_id.clone(),
            App {
                home_tenant,
                registration,
            },
        );
        Ok(())
    }

    pub(crate) fn add_redirect_uri(
        &mut self,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<(), ControlError> {
        check_redirect_uri(redirect_uri)?;
        let app = self
            .apps
            .get_mut(&id_key(client_id))
            .ok_or_else(|| ControlError::UnknownApp(client_id.to_owned()))?;
        if !app
            .registration
            .redirect_uris
            .iter()
            .any(|uri| uri == redirect_uri)
        {
            app.registration.redirect_uris.push(redirect_uri.to_owned());
        }
        Ok(())
    }

    pub(crate) fn add_user(
        &mut self,
        tenant_id: &str,
        oid: &str,
        preferred_username: &str,
        display_name: &str,
    ) -> Result<(), ControlError> {
        let tenant_id = self.tenant_mut(tenant_id)?.id.clone();
        let oid = id_key(oid);
        if self.users.contains_key(&oid) {
            return Err(ControlError::DuplicateUser(oid));
        }
        if self.user_by_username(preferred_username).is_some() {
            return Err(ControlError::DuplicateUser(preferred_username.to_owned()));
        }
        self.users.insert(
            oid.clone(),
            User {
                oid,
                tenant_id,
                preferred_username: preferred_username.trim().to_owned(),
                display_name: display_name.to_owned(),
                revocation_epoch: 0,
            },
        );
        Ok(())
    }

    pub(crate) fn set_auto_approve(
        &mut self,
        tenant_id: &str,
        username: Option<&str>,
    ) -> Result<(), ControlError> {
        let oid = match username {
            None => None,
            Some(username) => {
                let user = self
                    .user_by_username(username)
                    .ok_or_else(|| ControlError::UnknownUser(username.to_owned()))?;
                if user.tenant_id != id_key(tenant_id) {
                    return Err(ControlError::UserNotInTenant {
                        user: username.to_owned(),
                        tenant_id: tenant_id.to_owned(),
                    });
                }
                Some(user.oid.clone())
            }
        };
        self.tenant_mut(tenant_id)?.auto_approve_oid = oid;
        Ok(())
    }

    /// Admin consent to everything configured on the app (`.default`): its delegated
    /// permissions for every user and its application permissions.
    pub(crate) fn grant_admin_consent(
        &mut self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<(), ControlError> {
        let app = self
            .app(client_id)
            .cloned()
            .ok_or_else(|| ControlError::UnknownApp(client_id.to_owned()))?;
        let delegated = app.registration.delegated_permissions.clone();
        let roles = app.registration.application_permissions.clone();
        self.record_admin_consent(tenant_id, app.client_id(), delegated, roles)
    }

    /// What an administrator accepted: adds to what the tenant granted the app before.
    pub(crate) fn record_admin_consent(
        &mut self,
        tenant_id: &str,
        client_id: &str,
        delegated: Vec<String>,
        roles: Vec<String>,
    ) -> Result<(), ControlError> {
        let principal = self
            .tenant_mut(tenant_id)?
            .service_principals
            .entry(id_key(client_id))
            .or_default();
        principal.admin_consented = true;
        for (granted, new) in [
            (&mut principal.delegated, delegated),
            (&mut principal.roles, roles),
        ] {
            for permission in new {
                if !granted.iter().any(|g| g.eq_ignore_ascii_case(&permission)) {
                    granted.push(permission);
                }
            }
        }
        Ok(())
    }

    /// A user of a tenant other than the app's home consented for themselves: the app gets a
    /// service principal there (with nothing granted tenant-wide).
    pub(crate) fn note_user_consent(&mut self, tenant_id: &str, client_id: &str) {
        let Some(app) = self.app(client_id) else {
            return;
        };
        if app.home_tenant == id_key(tenant_id) {
            return;
        }
        let client_id = app.client_id().to_owned();
        if let Some(tenant) = self.tenants.get_mut(&id_key(tenant_id)) {
            tenant.service_principals.entry(client_id).or_default();
        }
    }

    /// The tenant's administrator deletes the app (its enterprise application): every grant
    /// goes with it, its refresh tokens in the tenant stop working and, as under continuous
    /// access evaluation, so do its access tokens there. False when it was not installed.
    pub(crate) fn remove_app_from_tenant(
        &mut self,
        tenant_id: &str,
        client_id: &str,
    ) -> Result<bool, ControlError> {
        let client_id = id_key(client_id);
        let tenant_key = self.tenant_mut(tenant_id)?.id.clone();
        let removed = self
            .tenant_mut(tenant_id)?
            .service_principals
            .remove(&client_id)
            .is_some();
        self.access_tokens.retain(|_, token| {
            !(token.info.client_id == client_id && token.info.tenant_id == tenant_key)
        });
        Ok(removed)
    }

    pub(crate) fn revoke_user(&mut self, oid: &str) -> Result<(), ControlError> {
        let user = self
            .users
            .get_mut(&id_key(oid))
            .ok_or_else(|| ControlError::UnknownUser(oid.to_owned()))?;
        user.revocation_epoch += 1;
        Ok(())
    }

    /// Why a refresh token cannot be redeemed, if it cannot.
    pub(crate) fn refresh_token_problem(&self, token: &str) -> Option<RefreshTokenProblem> {
        let Some(record) = self.refresh_tokens.get(token) else {
            return Some(RefreshTokenProblem::Unknown);
        };
        let current_epoch = self.user(&record.oid).map(|user| user.revocation_epoch);
        if current_epoch != Some(record.revocation_epoch) {
            return Some(RefreshTokenProblem::Revoked);
        }
        record.inactive.then_some(RefreshTokenProblem::Inactive)
    }

    /// Counts a token request and consumes one use of the configured fault, if any.
    pub(crate) fn note_token_request(&mut self, grant_type: Option<&str>) -> Option<TokenFault> {
        let counts = &mut self.token_requests;
        match grant_type {
            Some("authorization_code") => counts.authorization_code += 1,
            Some("refresh_token") => counts.refresh_token += 1,
            Some("client_credentials") => counts.client_credentials += 1,
            _ => counts.other += 1,
        }
        let active = self.token_fault.as_mut()?;
        let fault = active.fault.clone();
        match active.remaining.as_mut() {
            None => {}
            Some(remaining) if *remaining > 1 => *remaining -= 1,
            Some(_) => self.token_fault = None,
        }
        Some(fault)
    }

    pub(crate) fn new_code(&mut self, code: AuthorizationCode) -> String {
        let value = random_token(48);
        self.codes.insert(value.clone(), code);
        value
    }

    pub(crate) fn new_refresh_token(&mut self, record: RefreshTokenRecord) -> String {
        let value = format!("0.{}", random_token(96));
        self.latest_refresh_token
            .insert(record.oid.clone(), value.clone());
        self.refresh_tokens.insert(value.clone(), record);
        value
    }

    pub(crate) fn record_request(
        log: &mut Vec<AuthorizeRequest>,
        tenant_segment: &str,
        params: &BTreeMap<String, String>,
    ) {
        log.push(AuthorizeRequest {
            tenant: tenant_segment.to_owned(),
            params: params.clone(),
        });
    }

    /// Drops spent codes, long-expired access tokens and abandoned sign-in pages.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.codes
            .retain(|_, code| code.expires_at + TOMBSTONE_RETENTION > now);
        self.access_tokens
            .retain(|_, token| token.expires_at + TOMBSTONE_RETENTION > now);
        self.pending_sign_ins
            .retain(|_, pending| pending.started + TOMBSTONE_RETENTION > now);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefreshTokenProblem {
    Unknown,
    Revoked,
    Inactive,
}

fn check_redirect_uri(uri: &str) -> Result<(), ControlError> {
    Url::parse(uri)
        .map(|_| ())
        .map_err(|_| ControlError::InvalidRedirectUri(uri.to_owned()))
}
