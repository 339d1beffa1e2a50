//! Access tokens for Graph on behalf of a tenant's users, and app-only tokens for tenants in
//! app-only mode.
//!
//! A user's access token lives only in the memory of the container that got it, until shortly
//! before it expires; the user's item keeps just the sealed refresh token. Microsoft rotates
//! the refresh token on every refresh without revoking the old one (it lapses after 90 days
//! without use), so a refresh stores its successor only once the stored one is
//! [`STORE_ROTATED_AFTER_SECS`] old: an hourly sweep then writes the item twice a day
//! instead of at every refresh, and racing refreshes in two containers both succeed.
//! Refreshes of one user in one container are serialised by a mutex. `invalid_grant` marks
//! the user `reconnect_required`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::adapters::identity::{
    AppRegistration, Identity, IdentityError, TokenSet, EXPIRY_MARGIN_SECS,
};
use crate::adapters::store::{now_epoch, StoreError};
use crate::crypto::{CryptoError, TokenKeys};
use crate::services::tenants::{AccessMode, AppSource, TenantContext, TenantError, Tenants};
use crate::services::users::{ResealError, UserRecord, UserStatus, UserWriteError, Users};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// How old the stored refresh token must be before a refresh stores the rotated one: far
/// inside Microsoft's 90 days, and rare enough that refreshes seldom write.
pub const STORE_ROTATED_AFTER_SECS: i64 = 12 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The user was marked `reconnect_required` earlier (or just now).
    #[error("Microsoft no longer accepts the user's sign-in; they must connect again")]
    ReconnectRequired,
    #[error("the user is not connected")]
    NotConnected,
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

/// The tenant's application registration as the identity adapter takes it.
pub fn app_registration(tenant: &TenantContext) -> AppRegistration<'_> {
    tenant.app()
}

/// An access token this container holds, and when it expires (epoch seconds).
struct HeldToken {
    token: Secret,
    expires_at: i64,
}

#[derive(Clone)]
pub struct Tokens {
    identity: Identity,
    users: Users,
    tenants: Tenants,
    user_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Access tokens by tenant, user and Microsoft account.
    held: Arc<Mutex<HashMap<String, HeldToken>>>,
}

/// The key of a user's access token in this container: a reconnect to another Microsoft
/// account must not reuse the old account's token.
fn held_key(tenant: &TenantId, record: &UserRecord) -> String {
    format!("{tenant}\0{}\0{}", record.user, record.ms_user_id)
}

impl Tokens {
    pub fn new(identity: Identity, users: Users, tenants: Tenants) -> Self {
        Self {
            identity,
            users,
            tenants,
            user_locks: Arc::default(),
            held: Arc::default(),
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
            AccessMode::Delegated => self.refresh(tenant, record, Some(refused)).await,
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

    /// A valid access token for a caller that has just read the user's record: this
    /// container's while it lasts, else a refresh with the record's refresh token.
    pub async fn access_token_for(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
    ) -> Result<Secret, TokenError> {
        check_connected(record)?;
        if let Some(token) = self.held_token(&tenant.id, record, None) {
            return Ok(token);
        }
        self.refresh(tenant, record, None).await
    }

    /// This container's access token for the user, if it is good for a while yet and is not
    /// `refused`.
    fn held_token(
        &self,
        tenant: &TenantId,
        record: &UserRecord,
        refused: Option<&Secret>,
    ) -> Option<Secret> {
        let held = self.held.lock().ok()?;
        let token = held.get(&held_key(tenant, record))?;
        let usable =
            token.expires_at - EXPIRY_MARGIN_SECS > now_epoch() && refused != Some(&token.token);
        usable.then(|| token.token.clone())
    }

    fn hold(&self, tenant: &TenantId, record: &UserRecord, set: &TokenSet) {
        if let Ok(mut held) = self.held.lock() {
            let now = now_epoch();
            held.retain(|_, token| token.expires_at > now);
            held.insert(
                held_key(tenant, record),
                HeldToken {
                    token: set.access_token.clone(),
                    expires_at: set.expires_at,
                },
            );
        }
    }

    fn forget(&self, tenant: &TenantId, record: &UserRecord) {
        if let Ok(mut held) = self.held.lock() {
            held.remove(&held_key(tenant, record));
        }
    }

    /// Refreshes under the user's lock in this container, so its callers at one moment share
    /// one refresh. Unless `refused`, a token another caller got while this one waited is
    /// taken instead.
    async fn refresh(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
        refused: Option<&Secret>,
    ) -> Result<Secret, TokenError> {
        let lock = self.user_lock(&tenant.id, &record.user);
        let _in_process = lock.lock().await;
        if let Some(token) = self.held_token(&tenant.id, record, refused) {
            return Ok(token);
        }
        self.redeem(tenant, record).await
    }

    fn user_lock(&self, tenant: &TenantId, user: &CrmUserName) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{tenant}\0{user}");
        match self.user_locks.lock() {
            Ok(mut locks) => locks.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Redeems the record's refresh token, holds the new access token, and stores the rotated
    /// refresh token when the stored one is old enough.
    async fn redeem(
        &self,
        tenant: &TenantContext,
        record: &UserRecord,
    ) -> Result<Secret, TokenError> {
        let user = &record.user;
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
                self.hold(&tenant.id, record, &set);
                let stored_long_ago = record
                    .refresh_token_stored_at
                    .is_none_or(|at| now - at >= STORE_ROTATED_AFTER_SECS);
                if let (Some(rotated), true) = (&set.refresh_token, stored_long_ago) {
                    let sealed = keys.seal(rotated, &context).map_err(TokenError::Seal)?;
                    // The stored token still works, so a failed write costs nothing now; the
                    // next refresh tries again.
                    if let Err(e) = self
                        .users
                        .store_refresh_token(&tenant.id, user, sealed, now)
                        .await
                    {
                        tracing::warn!(tenant = %tenant.id, %user, error = %crate::errors::chain(&e), "rotated refresh token not stored");
                    }
                }
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
                self.forget(&tenant.id, record);
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

/// The refresh token of a sign-in, sealed for the user.
pub fn seal_refresh_token(
    tenant: &TenantContext,
    context: &str,
    set: &TokenSet,
) -> Result<Option<String>, TokenError> {
    set.refresh_token
        .as_ref()
        .map(|token| {
            tenant
                .sealing_key
                .seal(token, context)
                .map_err(TokenError::Seal)
        })
        .transpose()
}

/// Errors for users who are not connected.
fn check_connected(record: &UserRecord) -> Result<(), TokenError> {
    match record.status {
        UserStatus::Connected => Ok(()),
        UserStatus::ReconnectRequired => Err(TokenError::ReconnectRequired),
        UserStatus::Disconnected => Err(TokenError::NotConnected),
    }
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
        if record.refresh_token_sealed.is_none() {
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
