//! Access tokens for Graph on behalf of a tenant's users: the stored access token while it
//! lasts, else a refresh whose rotated refresh token is stored (sealed) every time; app-only
//! tokens for tenants in app-only mode. Refreshes of one user are serialised in-process by a
//! mutex and across processes by a lease, so racing callers end with the newest refresh token
//! stored and a valid access token each. `invalid_grant` marks the user `reconnect_required`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::adapters::identity::{
    AppRegistration, Identity, IdentityError, TokenSet, EXPIRY_MARGIN_SECS,
};
use crate::adapters::store::{now_epoch, ItemStore, Lease, LeaseError, StoreError};
use crate::crypto::{CryptoError, TokenKeys};
use crate::services::tenants::{
    tenant_pk, AccessMode, AppSource, TenantContext, TenantError, Tenants,
};
use crate::services::users::{ResealError, UserRecord, UserStatus, UserWriteError, Users};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// How long a refresh may hold the per-user lease, and how long others wait for it.
const REFRESH_LEASE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The user was marked `reconnect_required` earlier (or just now).
    #[error("Microsoft no longer accepts the user's sign-in; they must connect again")]
    ReconnectRequired,
    #[error("the user is not connected")]
    NotConnected,
    #[error("another token refresh for this user took too long")]
    Busy,
    #[error("the stored refresh token does not open with the tenant's key")]
    Unsealable(#[source] CryptoError),
    #[error("a token could not be sealed")]
    Seal(#[source] CryptoError),
    #[error("reading the user")]
    Store(#[from] StoreError),
    #[error("recording the tokens")]
    Write(#[from] UserWriteError),
    #[error("reading the tenant's token keys")]
    Tenant(#[source] Box<TenantError>),
    /// Microsoft refused the app in the tenant's directory; the tenant is flagged.
    #[error(
        "Microsoft refused the app in the tenant's directory; its administrator must consent again"
    )]
    AccessRevoked,
}

impl TokenError {
    /// Retrying cannot help until the user signs in again, or the tenant's administrator
    /// consents again ([`TokenError::AccessRevoked`]): the run stops without a retry.
    pub fn is_reconnect_required(&self) -> bool {
        matches!(
            self,
            TokenError::ReconnectRequired
                | TokenError::AccessRevoked
                | TokenError::Identity(IdentityError::ReconnectRequired { .. })
        )
    }
}

impl From<LeaseError> for TokenError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Busy => TokenError::Busy,
            LeaseError::Store(s) => TokenError::Store(s),
        }
    }
}

/// The tenant's application registration as the identity adapter takes it.
pub fn app_registration(tenant: &TenantContext) -> AppRegistration<'_> {
    tenant.app()
}

#[derive(Clone)]
pub struct Tokens {
    identity: Identity,
    users: Users,
    tenants: Tenants,
    store: Arc<dyn ItemStore>,
    user_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl Tokens {
    pub fn new(
        identity: Identity,
        users: Users,
        tenants: Tenants,
        store: Arc<dyn ItemStore>,
    ) -> Self {
        Self {
            identity,
            users,
            tenants,
            store,
            user_locks: Arc::default(),
        }
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The token that reads and writes the user's mailbox: their own (delegated) or the
    /// tenant's app-only one.
    pub async fn for_mailbox(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
    ) -> Result<Secret, TokenError> {
        match tenant.settings.mode {
            AccessMode::Delegated => self.access_token_for(tenant, record).await,
            AccessMode::AppOnly => match self.identity.app_token(app_registration(tenant)).await {
                Ok(token) => Ok(token),
                Err(e) if watches_consent(tenant) && e.is_app_refused() => {
                    Err(self.revoked(tenant, &e).await)
                }
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Microsoft refused the app itself in the tenant's directory: flag the tenant, once, so
    /// the dispatcher and the jobs leave it alone until its administrator consents again.
    async fn revoked(&self, tenant: &TenantContext, error: &IdentityError) -> TokenError {
        let detail = match error {
            IdentityError::ReconnectRequired { error, aadsts }
            | IdentityError::Refused { error, aadsts } => match aadsts {
                Some(n) => format!("{error}, AADSTS{n}"),
                None => error.clone(),
            },
            other => other.to_string(),
        };
        tracing::warn!(tenant = %tenant.id, %detail, "Microsoft refused the app in the tenant's directory; tenant flagged");
        if let Err(e) = self
            .tenants
            .flag_access_revoked(&tenant.id, &detail, now_epoch())
            .await
        {
            tracing::error!(tenant = %tenant.id, error = %crate::errors::chain(&e), "the revocation could not be recorded");
        }
        TokenError::AccessRevoked
    }

    /// A refresh refused for the app (AADSTS65001, `unauthorized_client`) may be one user's
    /// consent or the whole directory's: a client-credentials token for the directory tells,
    /// since Microsoft refuses it only when the app is gone from there.
    async fn app_gone_from_directory(&self, tenant: &TenantContext) -> bool {
        matches!(
            self.identity.fresh_app_token(app_registration(tenant)).await,
            Err(e) if e.is_app_refused()
        )
    }

    /// Graph refused `refused` (a revoked grant, continuous access evaluation): forget it and
    /// get a new one, once. A refresh Microsoft turns down marks the user
    /// `reconnect_required` ([`TokenError::ReconnectRequired`]).
    pub async fn after_refusal(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
        refused: &Secret,
    ) -> Result<Secret, TokenError> {
        match tenant.settings.mode {
            AccessMode::Delegated => self.refresh(tenant, &record.user, Some(refused)).await,
            AccessMode::AppOnly => {
                self.identity
                    .forget_app_token(app_registration(tenant), refused);
                match self.identity.app_token(app_registration(tenant)).await {
                    Ok(token) => Ok(token),
                    Err(e) if watches_consent(tenant) && e.is_app_refused() => {
                        Err(self.revoked(tenant, &e).await)
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// A valid access token for a connected user, read from the store.
    pub async fn user_access_token(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
    ) -> Result<Secret, TokenError> {
        let record = self
            .users
            .get(&tenant.id, user)
            .await?
            .ok_or(TokenError::NotConnected)?
            .record;
        self.access_token_for(tenant, &record).await
    }

    /// A valid access token for a caller that has just read the user's record: the stored
    /// access token is taken from it without reading the item again.
    pub async fn access_token_for(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
    ) -> Result<Secret, TokenError> {
        if let Some(token) = usable_access_token(tenant, record)? {
            return Ok(token);
        }
        self.refresh(tenant, &record.user, None).await
    }

    /// Refreshes under the user's lock and refresh lease, so one refresh token is redeemed
    /// once however many runs and containers need a token at the same moment.
    async fn refresh(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        refused: Option<&Secret>,
    ) -> Result<Secret, TokenError> {
        let lock = self.user_lock(&tenant.id, user);
        let _in_process = lock.lock().await;
        let lease = Lease::acquire(
            self.store.as_ref(),
            &tenant_pk(&tenant.id),
            &format!("LEASE#token#{user}"),
            REFRESH_LEASE_TTL,
            REFRESH_LEASE_TTL,
        )
        .await?;
        let outcome = self.refresh_under_lease(tenant, user, refused).await;
        lease.release().await;
        outcome
    }

    fn user_lock(&self, tenant: &TenantId, user: &CrmUserName) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{tenant}\0{user}");
        match self.user_locks.lock() {
            Ok(mut locks) => locks.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Refreshes the user's tokens, unless the stored access token is usable and is not
    /// `refused` (another process refreshed while we waited for the lease).
    async fn refresh_under_lease(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        refused: Option<&Secret>,
    ) -> Result<Secret, TokenError> {
        let record = self
            .users
            .get(&tenant.id, user)
            .await?
            .ok_or(TokenError::NotConnected)?
            .record;
        if let Some(token) = usable_access_token(tenant, &record)? {
            if refused != Some(&token) {
                return Ok(token);
            }
        }
        let context = UserRecord::seal_context(&tenant.id, user);
        let sealed = record
            .refresh_token_sealed
            .as_deref()
            .ok_or(TokenError::NotConnected)?;
        // A token sealed with a key newer than this container's copy of the secret (a rotation
        // minutes ago): read the secret again rather than fail the user.
        let fresh: Option<TokenKeys>;
        let keys = match tenant.sealing_key.open(sealed, &context) {
            Err(CryptoError::UnknownKey) => {
                fresh = Some(
                    self.tenants
                        .fresh_token_keys(&tenant.id)
                        .await
                        .map_err(|e| TokenError::Tenant(Box::new(e)))?,
                );
                fresh.as_ref().unwrap_or(&tenant.sealing_key)
            }
            _ => &tenant.sealing_key,
        };
        let refresh_token = keys
            .open(sealed, &context)
            .map_err(TokenError::Unsealable)?;
        let now = now_epoch();
        match self
            .identity
            .refresh(app_registration(tenant), &refresh_token)
            .await
        {
            Ok(set) => {
                let (refresh, access) = seal_set_with(keys, &context, &set)?;
                self.users
                    .store_tokens(&tenant.id, user, refresh, access, set.expires_at, now)
                    .await?;
                Ok(set.access_token)
            }
            Err(e)
                if watches_consent(tenant)
                    && e.is_app_refused()
                    && self.app_gone_from_directory(tenant).await =>
            {
                Err(self.revoked(tenant, &e).await)
            }
            Err(e @ IdentityError::ReconnectRequired { .. }) => {
                let detail = format!("Microsoft no longer accepts this connection ({e}).");
                self.users
                    .require_reconnect(&tenant.id, user, detail, now)
                    .await?;
                Err(e.into())
            }
            Err(other) => Err(other.into()),
        }
    }
}

/// Whether a refusal of the app flags the tenant: a publisher-app tenant, whose access is
/// its administrator's consent. A tenant with its own registration keeps the per-user
/// handling it always had (its administrator manages the app and its secret directly).
fn watches_consent(tenant: &TenantContext) -> bool {
    tenant.settings.app == AppSource::Publisher
}

/// The refresh token (if any) and the access token of a set, sealed for the user.
pub fn seal_set(
    tenant: &TenantContext,
    context: &str,
    set: &TokenSet,
) -> Result<(Option<String>, String), TokenError> {
    seal_set_with(&tenant.sealing_key, context, set)
}

fn seal_set_with(
    keys: &TokenKeys,
    context: &str,
    set: &TokenSet,
) -> Result<(Option<String>, String), TokenError> {
    let seal = |value: &Secret| keys.seal(value, context).map_err(TokenError::Seal);
    let refresh = set.refresh_token.as_ref().map(seal).transpose()?;
    Ok((refresh, seal(&set.access_token)?))
}

/// The record's access token if it is still good for a while; errors for users who are not
/// connected.
fn usable_access_token(
    tenant: &TenantContext,
    record: &UserRecord,
) -> Result<Option<Secret>, TokenError> {
    match record.status {
        UserStatus::Connected => {}
        UserStatus::ReconnectRequired => return Err(TokenError::ReconnectRequired),
        UserStatus::Disconnected => return Err(TokenError::NotConnected),
    }
    let (Some(sealed), Some(expires_at)) =
        (&record.access_token_sealed, record.access_token_expires_at)
    else {
        return Ok(None);
    };
    if expires_at - EXPIRY_MARGIN_SECS <= now_epoch() {
        return Ok(None);
    }
    // A token that fails to open (key rotated) is simply refreshed.
    Ok(tenant
        .sealing_key
        .open(sealed, &UserRecord::seal_context(&tenant.id, &record.user))
        .ok())
}

/// What a re-seal pass over a tenant's users did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    /// Users whose item holds a sealed token.
    pub users_with_tokens: usize,
    /// Users whose tokens were sealed again with the newest key.
    pub resealed: usize,
    /// Users whose tokens no key held opens (they must connect again; retiring keys does not
    /// change that).
    pub unopenable: Vec<CrmUserName>,
}

/// Seals every stored token of the tenant's users with the newest token key (the one that
/// seals in `tenant`): each value is opened with the key it names and sealed again, through
/// the user service's conditional write. Values already under the newest key stay as they
/// are, so the pass can run again at any time.
pub async fn reseal_tenant(
    users: &Users,
    tenant: &TenantContext,
) -> Result<ResealReport, TokenError> {
    let mut report = ResealReport::default();
    let keys = &tenant.sealing_key;
    for record in users.list(&tenant.id).await? {
        if record.refresh_token_sealed.is_none() && record.access_token_sealed.is_none() {
            continue;
        }
        report.users_with_tokens += 1;
        let context = UserRecord::seal_context(&tenant.id, &record.user);
        let mut unopenable = false;
        let outcome = users
            .reseal_tokens(&tenant.id, &record.user, |sealed| {
                if keys.is_current(sealed) {
                    return Ok(None);
                }
                match keys.open(sealed, &context) {
                    Ok(plain) => keys.seal(&plain, &context).map(Some),
                    Err(CryptoError::Unseal | CryptoError::UnknownKey) => {
                        unopenable = true;
                        Ok(None)
                    }
                    Err(other) => Err(other),
                }
            })
            .await;
        match outcome {
            Ok(Some(true)) => report.resealed += 1,
            Ok(_) => {}
            Err(ResealError::Seal(e)) => return Err(TokenError::Seal(e)),
            Err(ResealError::Write(e)) => return Err(TokenError::Write(e)),
        }
        if unopenable {
            report.unopenable.push(record.user.clone());
        }
    }
    Ok(report)
}
