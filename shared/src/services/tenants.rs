//! Tenants: one CRM customer each. Non-secret settings live in the table; credentials live in
//! the secret store as one JSON document per tenant (`{prefix}{tenant}`), read once per
//! container and cached briefly.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use url::Url;

use crate::adapters::identity::{AppRegistration, ClientCredential};
use crate::adapters::secret_store::{SecretStore, SecretStoreError};
use crate::adapters::store::{
    item_to_record, record_to_item, ItemStore, Precondition, StoreError, WriteOp,
};
use crate::crypto::{random_key_hex, random_token, CryptoError, TokenKeys};
use crate::expiry::expiry_warning;
use crate::services::publisher::{Publisher, PublisherApp, PublisherError};
use calsync_core::ids::TenantId;
use calsync_core::secret::Secret;
use calsync_core::sync::ConflictPolicy;

/// How long a container trusts a cached tenant secret before reading it again (so a rotated
/// client secret takes effect within minutes without a redeploy).
const SECRET_CACHE_TTL: Duration = Duration::from_secs(300);
const SETTINGS_CACHE_TTL: Duration = Duration::from_secs(60);

/// The credentials of one tenant. Never logged: every secret field redacts in `Debug`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantSecret {
    /// The customer's Microsoft Entra tenant (directory) id, with their own app registration.
    /// The three Microsoft fields are empty for a tenant of the publisher app: it holds no
    /// Microsoft credential, and its directory is in the settings once it consented.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub azure_tenant_id: String,
    /// Where users sign in, when not the directory itself: `organizations` for a publisher-wide
    /// multi-tenant app. The signed-in user's `tid` must still be `azure_tenant_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    #[serde(default = "no_secret", skip_serializing_if = "Secret::is_empty")]
    pub client_secret: Secret,
    /// `YYYY-MM-DD`, when the client secret stops working (shown as a warning ahead of time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires: Option<String>,
    pub crm_url: String,
    pub crm_user: String,
    pub crm_access_key: Secret,
    /// Signs the links the CRM hands its users (HMAC-SHA256).
    pub link_key: Secret,
    /// Seals refresh and access tokens and PKCE verifiers at rest (AES-256-GCM key, hex): the
    /// newest token key, the only one that seals.
    pub token_key: Secret,
    /// The id sealed values name `token_key` by (`k1`, `k2`…). Absent on a key from before
    /// key ids, which seals values without one (`v1.`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key_id: Option<String>,
    /// When `token_key` began to seal (epoch seconds), set by a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key_since: Option<i64>,
    /// Earlier token keys, newest first: they open what they sealed and seal nothing, until
    /// they are retired.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_token_keys: Vec<PreviousTokenKey>,
    /// The link key before the last rotation: accepted on nudges (never on links) until its
    /// `until`, while the CRM's administrator types the new key into the module.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_link_key: Option<PreviousLinkKey>,
}

fn no_secret() -> Secret {
    Secret::new("")
}

/// A token key that no longer seals.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreviousTokenKey {
    /// Absent for the key from before key ids (it opens `v1.` values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub key: Secret,
}

/// A replaced link key and until when nudges signed with it are still taken.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PreviousLinkKey {
    pub key: Secret,
    /// Epoch seconds.
    pub until: i64,
}

/// How long after a token-key rotation the earlier keys may be retired: a function keeps a
/// tenant's secret five minutes ([`SECRET_CACHE_TTL`]) and a sync run uses what it read for up
/// to five more, so until then a container may still seal with the earlier key; a sign-in
/// state sealed then lives ten minutes. Twenty minutes covers them all.
pub const TOKEN_KEY_RETIRE_AFTER_SECS: i64 = 20 * 60;

/// The longest overlap a link-key rotation may give nudges signed with the earlier key.
pub const MAX_LINK_KEY_OVERLAP_SECS: i64 = 7 * 24 * 3600;

impl TenantSecret {
    /// A new tenant's secret: its CRM reached as `crm_user` with `crm_access_key`, a fresh link
    /// key and a fresh token key (`k1`), no Microsoft credential (a publisher-app tenant's;
    /// [`Self::with_own_app`] adds the customer's own).
    pub fn fresh(crm_url: &str, crm_user: &str, crm_access_key: Secret) -> Self {
        Self {
            azure_tenant_id: String::new(),
            authority: None,
            client_id: String::new(),
            client_secret: Secret::new(""),
            client_secret_expires: None,
            crm_url: crm_url.to_owned(),
            crm_user: crm_user.to_owned(),
            crm_access_key,
            link_key: Secret::new(crate::crypto::random_token(32)),
            token_key: crate::crypto::random_key_hex(),
            token_key_id: Some("k1".to_owned()),
            token_key_since: None,
            previous_token_keys: Vec::new(),
            previous_link_key: None,
        }
    }

    /// The customer's own app registration: its directory, client id and secret.
    pub fn with_own_app(
        mut self,
        azure_tenant_id: &str,
        client_id: &str,
        client_secret: Secret,
        client_secret_expires: Option<String>,
    ) -> Self {
        self.azure_tenant_id = azure_tenant_id.to_owned();
        self.client_id = client_id.to_owned();
        self.client_secret = client_secret;
        self.client_secret_expires = client_secret_expires;
        self
    }

    /// The identity-platform path segment users sign in through.
    pub fn authority(&self) -> &str {
        self.authority.as_deref().unwrap_or(&self.azure_tenant_id)
    }

    /// The ring of every token key held: the newest seals, all open.
    pub fn token_keys(&self) -> Result<TokenKeys, CryptoError> {
        TokenKeys::new(
            self.token_key_id.as_deref(),
            &self.token_key,
            self.previous_token_keys
                .iter()
                .map(|p| (p.id.as_deref(), &p.key)),
        )
    }

    /// Makes a new token key the sealing one; the current key joins the earlier ones, which
    /// still open. Returns the new key's id.
    pub fn rotate_token_key(&mut self, now: i64) -> String {
        let highest = std::iter::once(self.token_key_id.as_deref())
            .chain(self.previous_token_keys.iter().map(|p| p.id.as_deref()))
            .flatten()
            .filter_map(|id| id.strip_prefix('k').and_then(|n| n.parse::<u64>().ok()))
            .max()
            .unwrap_or(0);
        let id = format!("k{}", highest + 1);
        let earlier = PreviousTokenKey {
            id: self.token_key_id.take(),
            key: std::mem::replace(&mut self.token_key, random_key_hex()),
        };
        self.previous_token_keys.insert(0, earlier);
        self.token_key_id = Some(id.clone());
        self.token_key_since = Some(now);
        id
    }

    /// A new link key; nudges signed with the one it replaces are taken for `overlap_secs`
    /// more (none when 0).
    pub fn rotate_link_key(&mut self, overlap_secs: i64, now: i64) {
        let earlier = std::mem::replace(&mut self.link_key, Secret::new(random_token(32)));
        self.previous_link_key = (overlap_secs > 0).then_some(PreviousLinkKey {
            key: earlier,
            until: now + overlap_secs.min(MAX_LINK_KEY_OVERLAP_SECS),
        });
    }

    /// The earlier link key while nudges signed with it are still taken.
    pub fn nudge_fallback_key(&self, now: i64) -> Option<&Secret> {
        self.previous_link_key
            .as_ref()
            .filter(|p| now < p.until)
            .map(|p| &p.key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    /// Each user signs in; their refresh token is kept sealed.
    #[default]
    Delegated,
    /// A tenant admin consents once; calsync uses client-credentials tokens.
    AppOnly,
}

impl AccessMode {
    /// How a user's mailbox is addressed: `me` with their own token, `users/{oid}` app-only.
    pub fn mailbox(self, oid: String) -> crate::adapters::graph::Mailbox {
        match self {
            AccessMode::Delegated => crate::adapters::graph::Mailbox::me(oid),
            AccessMode::AppOnly => crate::adapters::graph::Mailbox::user(oid),
        }
    }
}

/// Non-secret tenant settings, stored on the tenant's item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantSettings {
    pub tenant: TenantId,
    pub display_name: String,
    /// Scheme, host and port of the CRM: the only place `return_to` may point to.
    pub crm_origin: String,
    #[serde(default)]
    pub mode: AccessMode,
    #[serde(default)]
    pub conflict_policy: ConflictPolicy,
    /// IANA zone of the CRM server's dates and times.
    pub crm_time_zone: String,
    pub window_past_days: u32,
    pub window_future_days: u32,
    /// Copied from the secret so status can warn without reading secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_consent_at: Option<i64>,
    /// How often the scheduler syncs each user even without notifications (the safety net
    /// under push). A user whose Outlook pushes and whose CRM nudges is swept less often:
    /// [`Self::sweep_minutes`].
    #[serde(default = "default_sync_interval")]
    pub sync_interval_minutes: u32,
    /// When a good nudge from the CRM module last arrived (kept to the hour): the CRM tells
    /// calsync about its changes itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nudges_seen_at: Option<i64>,
    /// A user may only connect the Microsoft account whose address is their CRM e-mail.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_matching_email: bool,
    /// How many runs may write to the CRM at once, across the fleet (the session slots of
    /// `services::crm_sessions`).
    #[serde(default = "default_crm_sessions")]
    pub crm_sessions: u32,
    /// Whose Microsoft app the tenant uses: its own registration (credentials in its secret)
    /// or the publisher app, which its administrator consents to.
    #[serde(default, skip_serializing_if = "AppSource::is_own")]
    pub app: AppSource,
    /// Publisher-app tenants: the directory whose administrator consented, taken from the
    /// `tid` of a token calsync obtained for it. None until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The directory the operator expects to consent (`tenant add --directory`): consent links
    /// go to it, and a consent from any other is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_directory: Option<String>,
    /// Microsoft refused the app in the directory (its administrator removed it or its
    /// consent): nothing syncs until the administrator consents again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_revoked: Option<AccessRevoked>,
    pub created_at: i64,
}

/// Whose Microsoft app a tenant signs in with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum AppSource {
    /// The customer's own app registration (id and secret in the tenant's secret).
    #[default]
    Own,
    /// The deployment's publisher app, consented to by the customer's administrator.
    Publisher,
}

impl AppSource {
    fn is_own(&self) -> bool {
        *self == AppSource::Own
    }
}

/// When and how calsync found the app's access to the directory gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessRevoked {
    pub at: i64,
    /// Microsoft's code, e.g. `unauthorized_client (AADSTS700016)`.
    pub detail: String,
}

/// Where a tenant's access to Microsoft stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicrosoftAccess {
    Active,
    /// A publisher-app tenant whose administrator has not consented yet.
    AwaitingConsent,
    Revoked,
}

impl MicrosoftAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            MicrosoftAccess::Active => "active",
            MicrosoftAccess::AwaitingConsent => "awaiting_consent",
            MicrosoftAccess::Revoked => "revoked",
        }
    }
}

/// CRM session slots per tenant when the tenant does not say otherwise
/// ([`crate::services::crm_sessions`]).
pub const DEFAULT_CRM_SESSIONS: u32 = 4;

fn default_crm_sessions() -> u32 {
    DEFAULT_CRM_SESSIONS
}

/// With Graph push and CRM nudges both live, the schedule only catches what both missed (a
/// nudge that could not be sent, a notification Graph lost): an hour is enough for that, and
/// costs a quarter of the runs of the default quarter-hour.
pub const SAFETY_SWEEP_MINUTES: u32 = 60;
/// Nudges count as live when one came within this long.
pub const NUDGES_LIVE_SECS: i64 = 24 * 3600;

fn default_sync_interval() -> u32 {
    15
}

impl TenantSettings {
    pub fn new(
        tenant: TenantId,
        display_name: String,
        crm_url: &str,
        now: i64,
    ) -> Result<Self, TenantError> {
        Ok(Self {
            tenant,
            display_name,
            crm_origin: origin_of(crm_url)?,
            mode: AccessMode::Delegated,
            conflict_policy: ConflictPolicy::Latest,
            crm_time_zone: "UTC".into(),
            window_past_days: 30,
            window_future_days: 365,
            client_secret_expires: None,
            admin_consent_at: None,
            sync_interval_minutes: default_sync_interval(),
            nudges_seen_at: None,
            require_matching_email: false,
            crm_sessions: default_crm_sessions(),
            app: AppSource::Own,
            directory: None,
            expected_directory: None,
            access_revoked: None,
            created_at: now,
        })
    }

    /// Whether calsync may use Microsoft for the tenant now.
    pub fn microsoft_access(&self) -> MicrosoftAccess {
        if self.access_revoked.is_some() {
            MicrosoftAccess::Revoked
        } else if self.app == AppSource::Publisher && self.directory.is_none() {
            MicrosoftAccess::AwaitingConsent
        } else {
            MicrosoftAccess::Active
        }
    }

    /// How often the scheduler sweeps a user: the tenant's interval, or at least
    /// [`SAFETY_SWEEP_MINUTES`] when the user has a Graph subscription (Outlook pushes) and the
    /// tenant's CRM nudges.
    pub fn sweep_minutes(&self, has_subscription: bool, now: i64) -> u32 {
        if has_subscription && self.nudging(now) {
            self.sync_interval_minutes.max(SAFETY_SWEEP_MINUTES)
        } else {
            self.sync_interval_minutes
        }
    }

    /// Whether the tenant's CRM module nudges calsync (one came within [`NUDGES_LIVE_SECS`]).
    pub fn nudging(&self, now: i64) -> bool {
        self.nudges_seen_at
            .is_some_and(|at| now - at <= NUDGES_LIVE_SECS)
    }

    /// Warnings an operator should act on (status, `tenant show`, the dispatcher's log).
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let mut warnings = Vec::new();
        match (self.microsoft_access(), &self.access_revoked) {
            (MicrosoftAccess::Revoked, Some(revoked)) => warnings.push(format!(
                "Microsoft refused the app in the customer's directory since {} ({}): their administrator removed it or its consent; nothing syncs until they consent again (calsync link --tenant {} --admin-consent)",
                jiff::Timestamp::from_second(revoked.at)
                    .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default(),
                revoked.detail,
                self.tenant
            )),
            (MicrosoftAccess::AwaitingConsent, _) => warnings.push(format!(
                "waiting for the customer's Microsoft 365 administrator to consent (calsync link --tenant {} --admin-consent)",
                self.tenant
            )),
            _ => {}
        }
        let expiry = self
            .client_secret_expires
            .as_deref()
            .and_then(|d| d.parse::<jiff::civil::Date>().ok());
        if let Some(expires) = expiry {
            warnings.extend(expiry_warning(
                "the client secret",
                expires,
                now,
                "rotate it before then (calsync tenant rotate-secret)",
            ));
        }
        warnings
    }
}

/// `https://crm.example.com:8443` from any URL on that site.
pub fn origin_of(raw: &str) -> Result<String, TenantError> {
    let url = Url::parse(raw).map_err(TenantError::CrmUrl)?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(TenantError::Invalid("the CRM URL must be http(s)://host"));
    }
    Ok(url.origin().ascii_serialization())
}

/// A CRM URL an operator gives: https, or plain http only on a loopback address (tests,
/// `calsync serve`, a CRM on the same machine) — the integration user's access key and every
/// event travel on it.
pub fn check_crm_url(raw: &str) -> Result<(), TenantError> {
    let url = Url::parse(raw).map_err(TenantError::CrmUrl)?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(TenantError::Invalid(
            "the CRM URL must be https (plain http only on a loopback address)",
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} does not exist")]
    NotFound(TenantId),
    #[error("tenant {0} already exists")]
    AlreadyExists(TenantId),
    #[error("invalid tenant configuration: {0}")]
    Invalid(&'static str),
    #[error("invalid tenant configuration: the CRM URL is not a URL")]
    CrmUrl(#[source] url::ParseError),
    #[error("the tenant's secret could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the secret of tenant {0} is unreadable")]
    BadSecret(TenantId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Secrets(#[from] SecretStoreError),
    #[error("the token key of the tenant is unusable: {0}")]
    Key(#[from] CryptoError),
    #[error("tenant {0} uses the publisher app, which is not set (calsync publisher set)")]
    NoPublisher(TenantId),
    #[error(transparent)]
    Publisher(#[from] PublisherError),
    #[error("directory {directory} already belongs to tenant {owner}")]
    DirectoryTaken { directory: String, owner: TenantId },
}

/// A tenant loaded for work: settings, credentials and the keys that seal its tokens.
pub struct TenantContext {
    pub id: TenantId,
    pub settings: TenantSettings,
    pub secret: TenantSecret,
    /// The token keys: the newest seals, every key held opens.
    pub sealing_key: TokenKeys,
    /// The app it signs in with.
    pub app_credential: TenantApp,
}

/// Whose app a loaded tenant signs in with.
#[derive(Debug, Clone)]
pub enum TenantApp {
    /// Its own registration: the credentials are in [`TenantContext::secret`].
    Own,
    Publisher(Arc<PublisherApp>),
}

/// Users of a publisher-app tenant sign in through the multi-tenant authority; their `tid`
/// must still be the tenant's directory.
pub const MULTI_TENANT_AUTHORITY: &str = "organizations";

impl TenantContext {
    /// The tenant's directory: its own registration's, or the one that consented to the
    /// publisher app (empty until then).
    pub fn directory(&self) -> &str {
        self.app().directory
    }

    /// The registration the identity platform is asked with.
    pub fn app(&self) -> AppRegistration<'_> {
        registration_for(&self.settings, &self.secret, &self.app_credential)
    }
}

/// The registration a tenant signs in with: its own (from its secret), or the publisher app
/// through the multi-tenant authority, for the directory that consented (empty until then).
pub fn registration_for<'a>(
    settings: &'a TenantSettings,
    secret: &'a TenantSecret,
    app: &'a TenantApp,
) -> AppRegistration<'a> {
    match app {
        TenantApp::Own => AppRegistration {
            directory: &secret.azure_tenant_id,
            authority: secret.authority(),
            client_id: &secret.client_id,
            credential: ClientCredential::Secret(&secret.client_secret),
        },
        TenantApp::Publisher(publisher) => AppRegistration {
            directory: settings.directory.as_deref().unwrap_or_default(),
            authority: MULTI_TENANT_AUTHORITY,
            client_id: &publisher.client_id,
            credential: publisher.credential(),
        },
    }
}

pub(crate) fn tenant_pk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

const SETTINGS_SK: &str = "SETTINGS";
const DIRECTORY_SK: &str = "DIRECTORY";

/// The directory index: which tenant a consented directory belongs to (one at most).
fn directory_pk(directory: &str) -> String {
    format!("DIRECTORY#{}", directory.to_ascii_lowercase())
}
const REGISTRY_PK: &str = "TENANTS";

fn registry_sk(tenant: &TenantId) -> String {
    format!("TENANT#{tenant}")
}

/// Tenant settings and secrets, with a short per-container cache of secrets.
#[derive(Clone)]
pub struct Tenants {
    store: Arc<dyn ItemStore>,
    secrets: Arc<dyn SecretStore>,
    secret_prefix: String,
    cache: Arc<Mutex<HashMap<TenantId, (Instant, TenantSecret)>>>,
    /// Settings as the sync runs read them: a warm container syncing many users of a tenant
    /// reads the settings item once a minute, not once per user.
    settings_cache: Arc<Mutex<HashMap<TenantId, (Instant, TenantSettings)>>>,
    publisher: Publisher,
}

impl Tenants {
    pub fn new(
        store: Arc<dyn ItemStore>,
        secrets: Arc<dyn SecretStore>,
        secret_prefix: String,
    ) -> Self {
        let publisher = Publisher::new(secrets.clone(), &secret_prefix);
        Self {
            store,
            secrets,
            secret_prefix,
            cache: Arc::default(),
            settings_cache: Arc::default(),
            publisher,
        }
    }

    /// The deployment's publisher app.
    pub fn publisher(&self) -> &Publisher {
        &self.publisher
    }

    /// Everything about the tenant an operator should act on: its own warnings and, when it
    /// uses the publisher app, the publisher credential's.
    pub async fn warnings(&self, settings: &TenantSettings, now: i64) -> Vec<String> {
        let mut warnings = settings.warnings(now);
        if settings.app == AppSource::Publisher {
            match self.publisher.get().await {
                Ok(Some(publisher)) => warnings.extend(publisher.warnings(now)),
                Ok(None) => warnings.push(
                    "the tenant uses the publisher app, which is not set (calsync publisher set)"
                        .to_owned(),
                ),
                Err(e) => warnings.push(format!("the publisher app is unusable: {e}")),
            }
        }
        warnings
    }

    /// Binds the tenant to the directory that consented and lets it work: the settings and the
    /// directory index in one transaction, so one directory never serves two tenants. A
    /// consent again after a revocation clears the revocation.
    pub async fn activate(
        &self,
        tenant: &TenantId,
        directory: &str,
    ) -> Result<TenantSettings, TenantError> {
        let directory = directory.to_ascii_lowercase();
        let index_pk = directory_pk(&directory);
        // Written only if still absent (or still this tenant's), so two tenants consenting
        // with one directory at the same moment cannot both get it.
        let index_condition = match self.store.get(&index_pk, DIRECTORY_SK).await? {
            Some(item) => {
                let owner: DirectoryOwner = item_to_record(&item)?;
                if &owner.tenant != tenant {
                    return Err(TenantError::DirectoryTaken {
                        directory,
                        owner: owner.tenant,
                    });
                }
                Precondition::Version(item.version)
            }
            None => Precondition::Absent,
        };
        let item = self
            .store
            .get(&tenant_pk(tenant), SETTINGS_SK)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
        let mut settings: TenantSettings = item_to_record(&item)?;
        settings.directory = Some(directory.clone());
        settings.access_revoked = None;
        let mut next = record_to_item(tenant_pk(tenant), SETTINGS_SK, &settings)?;
        next.version = item.version;
        let mut index = record_to_item(
            index_pk,
            DIRECTORY_SK,
            &DirectoryOwner {
                tenant: tenant.clone(),
            },
        )?;
        if let Precondition::Version(version) = index_condition {
            index.version = version;
        }
        let outcome = self
            .store
            .transact(vec![
                WriteOp::Put(next, Precondition::Version(item.version)),
                WriteOp::Put(index, index_condition),
            ])
            .await;
        match outcome {
            Ok(()) => {
                self.forget_cached_settings(tenant);
                Ok(settings)
            }
            // The settings moved meanwhile (another consent, an update), or another tenant took
            // the directory: refuse rather than guess; the administrator's consent stands at
            // Microsoft and opening the link again binds it, or says who has the directory.
            Err(StoreError::ConditionFailed) => Err(TenantError::Invalid(
                "the tenant or its directory changed while the consent was recorded; open the consent link again",
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Microsoft refused the app in the tenant's directory: flag the tenant so nothing is
    /// tried until its administrator consents again. Flagging twice keeps the first time.
    pub async fn flag_access_revoked(
        &self,
        tenant: &TenantId,
        detail: &str,
        now: i64,
    ) -> Result<(), TenantError> {
        self.update_settings(tenant, |settings| {
            if settings.access_revoked.is_none() {
                settings.access_revoked = Some(AccessRevoked {
                    at: now,
                    detail: detail.to_owned(),
                });
            }
        })
        .await?;
        self.forget_cached_settings(tenant);
        Ok(())
    }

    fn forget_cached_settings(&self, tenant: &TenantId) {
        if let Ok(mut cache) = self.settings_cache.lock() {
            cache.remove(tenant);
        }
    }

    pub fn secret_name(&self, tenant: &TenantId) -> String {
        format!("{}{}", self.secret_prefix, tenant)
    }

    pub async fn add(
        &self,
        settings: &TenantSettings,
        secret: &TenantSecret,
    ) -> Result<(), TenantError> {
        let tenant = &settings.tenant;
        if self.settings(tenant).await?.is_some() {
            return Err(TenantError::AlreadyExists(tenant.clone()));
        }
        self.put_secret(tenant, secret).await?;
        let settings_item = record_to_item(tenant_pk(tenant), SETTINGS_SK, settings)?;
        let registry_item = record_to_item(
            REGISTRY_PK,
            registry_sk(tenant),
            &serde_json::json!({ "tenant": tenant }),
        )?;
        match self
            .store
            .transact(vec![
                WriteOp::Put(settings_item, Precondition::Absent),
                WriteOp::Put(registry_item, Precondition::None),
            ])
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed) => Err(TenantError::AlreadyExists(tenant.clone())),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn settings(&self, tenant: &TenantId) -> Result<Option<TenantSettings>, TenantError> {
        match self.store.get(&tenant_pk(tenant), SETTINGS_SK).await? {
            Some(item) => Ok(Some(item_to_record(&item)?)),
            None => Ok(None),
        }
    }

    /// Replaces the settings with `update(settings)` under optimistic concurrency.
    pub async fn update_settings(
        &self,
        tenant: &TenantId,
        update: impl Fn(&mut TenantSettings),
    ) -> Result<TenantSettings, TenantError> {
        loop {
            let item = self
                .store
                .get(&tenant_pk(tenant), SETTINGS_SK)
                .await?
                .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
            let mut settings: TenantSettings = item_to_record(&item)?;
            update(&mut settings);
            let mut next = record_to_item(tenant_pk(tenant), SETTINGS_SK, &settings)?;
            next.version = item.version;
            match self
                .store
                .put(&next, Precondition::Version(item.version))
                .await
            {
                Ok(_) => return Ok(settings),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn list(&self) -> Result<Vec<TenantSettings>, TenantError> {
        let mut out = Vec::new();
        for item in self.store.query(REGISTRY_PK, "TENANT#").await? {
            let Some(id) = item.sk.strip_prefix("TENANT#") else {
                continue;
            };
            let Ok(tenant) = TenantId::parse(id) else {
                continue;
            };
            if let Some(settings) = self.settings(&tenant).await? {
                out.push(settings);
            }
        }
        Ok(out)
    }

    /// Removes the tenant's own items: its settings, every item of its partition (users with
    /// their sealed tokens, the account index) and its secret. `App::remove_tenant` first
    /// removes what lives elsewhere (subscriptions, links, journals).
    pub async fn remove(&self, tenant: &TenantId) -> Result<bool, TenantError> {
        if let Some(directory) = self.settings(tenant).await?.and_then(|s| s.directory) {
            self.store
                .delete(&directory_pk(&directory), DIRECTORY_SK, Precondition::None)
                .await?;
        }
        let pk = tenant_pk(tenant);
        let items = self.store.query(&pk, "").await?;
        let existed = !items.is_empty();
        for item in items {
            self.store
                .delete(&item.pk, &item.sk, Precondition::None)
                .await?;
        }
        self.store
            .delete(REGISTRY_PK, &registry_sk(tenant), Precondition::None)
            .await?;
        let secret_existed = self.secrets.delete(&self.secret_name(tenant)).await?;
        self.forget_cached(tenant);
        Ok(existed || secret_existed)
    }

    pub async fn put_secret(
        &self,
        tenant: &TenantId,
        secret: &TenantSecret,
    ) -> Result<(), TenantError> {
        validate_secret(secret)?;
        let json = serde_json::to_string(secret).map_err(TenantError::Encode)?;
        self.secrets
            .put(&self.secret_name(tenant), &Secret::new(json))
            .await?;
        self.forget_cached(tenant);
        Ok(())
    }

    /// The tenant's secret, from the cache when it is fresh.
    pub async fn secret(&self, tenant: &TenantId) -> Result<TenantSecret, TenantError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, secret)) = cache.get(tenant) {
                if at.elapsed() < SECRET_CACHE_TTL {
                    return Ok(secret.clone());
                }
            }
        }
        let raw = self
            .secrets
            .get(&self.secret_name(tenant))
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
        let secret: TenantSecret = serde_json::from_str(raw.expose())
            .map_err(|_| TenantError::BadSecret(tenant.clone()))?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(tenant.clone(), (Instant::now(), secret.clone()));
        }
        Ok(secret)
    }

    /// The tenant's token keys as the secret store has them now, past the cache (which is
    /// refreshed): for a value sealed with a key newer than the cached secret knows.
    pub async fn fresh_token_keys(&self, tenant: &TenantId) -> Result<TokenKeys, TenantError> {
        self.forget_cached(tenant);
        Ok(self.secret(tenant).await?.token_keys()?)
    }

    fn forget_cached(&self, tenant: &TenantId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(tenant);
        }
    }

    /// Settings, secret and sealing key together; `NotFound` if either half is missing.
    pub async fn context(&self, tenant: &TenantId) -> Result<TenantContext, TenantError> {
        let settings = self
            .settings(tenant)
            .await?
            .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
        self.context_with(tenant, settings).await
    }

    /// [`Self::context`] with settings up to a minute old: for the sync runs,
    /// where a setting changed a minute ago may apply from the next run.
    pub async fn context_cached(&self, tenant: &TenantId) -> Result<TenantContext, TenantError> {
        let cached = self.settings_cache.lock().ok().and_then(|cache| {
            cache
                .get(tenant)
                .filter(|(at, _)| at.elapsed() < SETTINGS_CACHE_TTL)
                .map(|(_, settings)| settings.clone())
        });
        let settings = match cached {
            Some(settings) => settings,
            None => {
                let settings = self
                    .settings(tenant)
                    .await?
                    .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
                if let Ok(mut cache) = self.settings_cache.lock() {
                    cache.insert(tenant.clone(), (Instant::now(), settings.clone()));
                }
                settings
            }
        };
        self.context_with(tenant, settings).await
    }

    async fn context_with(
        &self,
        tenant: &TenantId,
        settings: TenantSettings,
    ) -> Result<TenantContext, TenantError> {
        let secret = self.secret(tenant).await?;
        let sealing_key = secret.token_keys()?;
        let app_credential = match settings.app {
            AppSource::Own => TenantApp::Own,
            AppSource::Publisher => TenantApp::Publisher(
                self.publisher
                    .get()
                    .await?
                    .ok_or_else(|| TenantError::NoPublisher(tenant.clone()))?,
            ),
        };
        Ok(TenantContext {
            id: tenant.clone(),
            settings,
            secret,
            sealing_key,
            app_credential,
        })
    }
}

fn validate_secret(secret: &TenantSecret) -> Result<(), TenantError> {
    // A publisher-app tenant holds no Microsoft credential at all; an own-app tenant all three.
    let publisher_shaped = secret.azure_tenant_id.is_empty()
        && secret.client_id.is_empty()
        && secret.client_secret.is_empty()
        && secret.authority.is_none()
        && secret.client_secret_expires.is_none();
    if !publisher_shaped {
        validate_own_app(secret)?;
    }
    validate_rest(secret)
}

fn validate_own_app(secret: &TenantSecret) -> Result<(), TenantError> {
    if secret.azure_tenant_id.trim().is_empty() {
        return Err(TenantError::Invalid("the Azure tenant id is missing"));
    }
    if let Some(authority) = &secret.authority {
        let ok = !authority.is_empty()
            && authority
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !ok {
            return Err(TenantError::Invalid(
                "the authority must be a tenant id, domain or 'organizations'",
            ));
        }
    }
    if secret.client_id.trim().is_empty() {
        return Err(TenantError::Invalid("the client id is missing"));
    }
    if secret.client_secret.is_empty() {
        return Err(TenantError::Invalid("the client secret is missing"));
    }
    if let Some(date) = &secret.client_secret_expires {
        if !is_iso_date(date) {
            return Err(TenantError::Invalid(
                "the client secret expiry must be a date like 2027-03-31",
            ));
        }
    }
    Ok(())
}

fn validate_rest(secret: &TenantSecret) -> Result<(), TenantError> {
    if secret.link_key.expose().len() < 32 {
        return Err(TenantError::Invalid(
            "the link key must be at least 32 characters",
        ));
    }
    secret.token_keys()?;
    if let Some(previous) = &secret.previous_link_key {
        if previous.key.expose().len() < 32 {
            return Err(TenantError::Invalid(
                "the previous link key must be at least 32 characters",
            ));
        }
    }
    origin_of(&secret.crm_url)?;
    Ok(())
}

/// The directory index's item.
#[derive(Debug, Serialize, Deserialize)]
struct DirectoryOwner {
    tenant: TenantId,
}

pub(crate) use crate::expiry::is_iso_date;

#[cfg(test)]
mod tests {
    use super::*;

    fn date_of(epoch: i64) -> String {
        jiff::Timestamp::from_second(epoch)
            .unwrap()
            .strftime("%Y-%m-%d")
            .to_string()
    }

    #[test]
    fn crm_urls_are_https_but_on_loopback() {
        assert!(check_crm_url("https://crm.acme.es/").is_ok());
        assert!(check_crm_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_crm_url("http://localhost/vtiger").is_ok());
        assert!(check_crm_url("http://[::1]:9/").is_ok());
        assert!(check_crm_url("http://crm.acme.es/").is_err());
        assert!(check_crm_url("ftp://crm.acme.es/").is_err());
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://crm.acme.es/index.php?x=1").unwrap(),
            "https://crm.acme.es"
        );
        assert_eq!(
            origin_of("http://localhost:8080/").unwrap(),
            "http://localhost:8080"
        );
        assert!(origin_of("javascript:alert(1)").is_err());
    }

    #[test]
    fn push_and_nudges_make_the_schedule_a_safety_sweep() {
        let mut settings = TenantSettings::new(
            TenantId::parse("t").unwrap(),
            "T".into(),
            "https://crm.x",
            0,
        )
        .unwrap();
        let now = 1_000_000;
        assert_eq!(settings.sweep_minutes(true, now), 15, "no nudges yet");
        settings.nudges_seen_at = Some(now - 3600);
        assert_eq!(settings.sweep_minutes(true, now), SAFETY_SWEEP_MINUTES);
        assert_eq!(
            settings.sweep_minutes(false, now),
            15,
            "Outlook does not push"
        );
        settings.nudges_seen_at = Some(now - NUDGES_LIVE_SECS - 1);
        assert_eq!(settings.sweep_minutes(true, now), 15, "the nudges stopped");
        settings.nudges_seen_at = Some(now);
        settings.sync_interval_minutes = 90;
        assert_eq!(
            settings.sweep_minutes(true, now),
            90,
            "a longer interval stands"
        );
    }

    #[test]
    fn secret_expiry_warnings_start_30_days_ahead() {
        let mut settings = TenantSettings::new(
            TenantId::parse("t").unwrap(),
            "T".into(),
            "https://crm.x",
            0,
        )
        .unwrap();
        let day = 86_400;
        let now = 20_000 * day; // 2024-10-04
        assert!(settings.warnings(now).is_empty());
        settings.client_secret_expires = Some(date_of(now + 45 * day));
        assert!(settings.warnings(now).is_empty());
        settings.client_secret_expires = Some(date_of(now + 29 * day));
        assert!(settings.warnings(now)[0].contains("rotate it before then"));
        settings.client_secret_expires = Some(date_of(now - day));
        assert!(settings.warnings(now)[0].contains("expired"));
    }

    fn secret() -> TenantSecret {
        TenantSecret {
            azure_tenant_id: "d".into(),
            authority: None,
            client_id: "c".into(),
            client_secret: Secret::new("s"),
            client_secret_expires: None,
            crm_url: "https://crm.x".into(),
            crm_user: "admin".into(),
            crm_access_key: Secret::new("k"),
            link_key: Secret::new(random_token(32)),
            token_key: random_key_hex(),
            token_key_id: None,
            token_key_since: None,
            previous_token_keys: Vec::new(),
            previous_link_key: None,
        }
    }

    #[test]
    fn token_key_rotations_number_the_keys_and_keep_the_earlier_ones() {
        let mut secret = secret();
        let context = "t\0u";
        let legacy_value = secret
            .token_keys()
            .unwrap()
            .seal(&Secret::new("rt"), context)
            .unwrap();
        assert!(legacy_value.starts_with("v1."));
        assert_eq!(secret.rotate_token_key(100), "k1");
        assert_eq!(secret.rotate_token_key(200), "k2");
        assert_eq!(secret.token_key_since, Some(200));
        let ids: Vec<_> = secret
            .previous_token_keys
            .iter()
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(ids, [Some("k1".to_owned()), None]);
        let keys = secret.token_keys().unwrap();
        assert_eq!(keys.open(&legacy_value, context).unwrap().expose(), "rt");
        assert!(keys
            .seal(&Secret::new("x"), context)
            .unwrap()
            .starts_with("v2.k2."));
        assert!(validate_secret(&secret).is_ok());
        // The stored form reads back the same, and a secret from before key ids still reads.
        let json = serde_json::to_string(&secret).unwrap();
        assert_eq!(serde_json::from_str::<TenantSecret>(&json).unwrap(), secret);
        let mut old: serde_json::Value = serde_json::to_value(self::secret()).unwrap();
        old.as_object_mut().unwrap().remove("token_key_id");
        let old: TenantSecret = serde_json::from_value(old).unwrap();
        assert!(old.previous_token_keys.is_empty() && old.token_key_id.is_none());
    }

    #[test]
    fn a_link_key_rotation_keeps_the_old_key_for_nudges_for_the_overlap_only() {
        let mut secret = secret();
        let old = secret.link_key.clone();
        secret.rotate_link_key(3600, 1_000);
        assert_ne!(secret.link_key, old);
        assert_eq!(secret.nudge_fallback_key(1_000), Some(&old));
        assert_eq!(secret.nudge_fallback_key(4_600), None);
        secret.rotate_link_key(0, 5_000);
        assert!(secret.previous_link_key.is_none());
        secret.rotate_link_key(365 * 86_400, 0);
        assert_eq!(
            secret.previous_link_key.as_ref().map(|p| p.until),
            Some(MAX_LINK_KEY_OVERLAP_SECS)
        );
    }

    #[test]
    fn dates() {
        assert!(is_iso_date("2027-03-31"));
        assert!(!is_iso_date("31/03/2027"));
    }
}
