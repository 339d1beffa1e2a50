//! Token handling with Microsoft identity: the authorize URL (code flow with PKCE S256), code
//! redemption, refresh with rotation, and app-only tokens by client credentials. Built on the
//! `oauth2` crate over a reqwest client that never follows redirects and always times out.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse,
    BasicTokenIntrospectionResponse, BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

use crate::config::join_url;
use crate::ids::{CrmUserName, TenantId};
use crate::secret::Secret;
use crate::store::{ItemStore, Lease, LeaseError, StoreError};
use crate::tenant::{tenant_pk, TenantContext, TenantSecret};
use crate::users::{get_user, update_user, UserRecord, UserStatus};

/// Delegated scopes asked for when a user connects (DESIGN §2).
pub const USER_SCOPES: [&str; 5] = [
    "openid",
    "profile",
    "offline_access",
    "User.Read",
    "Calendars.ReadWrite",
];
/// App-only tokens name the resource with `.default`: every application permission granted.
pub const APP_SCOPE: &str = "https://graph.microsoft.com/.default";

/// A token is used only while it has at least this much life left.
const EXPIRY_MARGIN_SECS: i64 = 300;
/// How long a refresh may hold the per-user lease, and how long others wait for it.
const REFRESH_LEASE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}
impl ExtraTokenFields for IdTokenField {}

type MsTokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;
type MsClient = Client<
    BasicErrorResponse,
    MsTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// `invalid_grant`: the refresh token or code is no longer accepted; the user must sign in.
    #[error("Microsoft no longer accepts the user's sign-in ({error}{})", aadsts_suffix(*.aadsts))]
    ReconnectRequired { error: String, aadsts: Option<u32> },
    /// Any other refusal by the identity platform (bad client secret, missing consent…).
    #[error("Microsoft refused the token request: {error}{}", aadsts_suffix(*.aadsts))]
    Refused { error: String, aadsts: Option<u32> },
    #[error("Microsoft sign-in did not answer in time")]
    Timeout,
    #[error("Microsoft sign-in is unavailable: {0}")]
    Unavailable(String),
    #[error("Microsoft sign-in gave an answer calsync cannot use: {0}")]
    BadResponse(String),
    #[error("the user is not connected")]
    NotConnected,
    #[error("another token refresh for this user took too long")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("configuration: {0}")]
    Config(String),
}

fn aadsts_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(", AADSTS{c}")).unwrap_or_default()
}

impl From<LeaseError> for TokenError {
    fn from(e: LeaseError) -> Self {
        match e {
            LeaseError::Busy => TokenError::Busy,
            LeaseError::Store(s) => TokenError::Store(s),
        }
    }
}

/// What the ID token says about who signed in. Received straight from the token endpoint over
/// TLS, so its signature need not be checked (OpenID Connect Core §3.1.3.7); its audience,
/// tenant and expiry still are.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct IdClaims {
    pub tid: String,
    pub oid: String,
    #[serde(default)]
    pub preferred_username: String,
    #[serde(default)]
    pub name: String,
    pub aud: String,
    #[serde(default)]
    pub exp: i64,
}

/// The result of a code redemption or refresh.
#[derive(Debug)]
pub struct TokenSet {
    pub access_token: Secret,
    pub expires_at: i64,
    pub refresh_token: Option<Secret>,
    pub id_claims: Option<IdClaims>,
}

/// The start of a sign-in: where to send the browser, and what to keep for the callback.
pub struct AuthorizeRequest {
    pub url: Url,
    pub pkce_verifier: Secret,
}

#[derive(Clone)]
pub struct TokenService {
    http: reqwest::Client,
    login_url: Url,
    app_tokens: Arc<Mutex<HashMap<String, (Secret, i64)>>>,
    user_locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

/// An HTTP client for identity calls: rustls, no redirects (a token endpoint that redirects is
/// misconfigured or hostile), a timeout on every call.
pub fn identity_http_client(timeout: Duration) -> Result<reqwest::Client, TokenError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(|e| TokenError::Config(e.to_string()))
}

pub(crate) fn now_epoch() -> i64 {
    crate::store::now_epoch()
}

impl TokenService {
    pub fn new(login_url: Url, timeout: Duration) -> Result<Self, TokenError> {
        Ok(Self {
            http: identity_http_client(timeout)?,
            login_url,
            app_tokens: Arc::default(),
            user_locks: Arc::default(),
        })
    }

    fn endpoint(&self, azure_tenant: &str, path: &str) -> String {
        join_url(&self.login_url, &format!("{azure_tenant}/{path}"))
    }

    fn client(
        &self,
        secret: &TenantSecret,
        redirect_uri: Option<&str>,
    ) -> Result<MsClient, TokenError> {
        let bad = |e: url::ParseError| TokenError::Config(e.to_string());
        let client = Client::new(ClientId::new(secret.client_id.clone()))
            .set_client_secret(ClientSecret::new(secret.client_secret.expose().to_owned()))
            .set_auth_uri(
                AuthUrl::new(self.endpoint(secret.authority(), "oauth2/v2.0/authorize"))
                    .map_err(bad)?,
            )
            .set_token_uri(
                TokenUrl::new(self.endpoint(secret.authority(), "oauth2/v2.0/token"))
                    .map_err(bad)?,
            )
            .set_auth_type(AuthType::RequestBody);
        Ok(match redirect_uri {
            Some(uri) => client.set_redirect_uri(RedirectUrl::new(uri.to_owned()).map_err(bad)?),
            None => client,
        })
    }

    /// The authorize URL for a user's sign-in: code flow, PKCE S256, our one-time `state`.
    pub fn authorize_url(
        &self,
        secret: &TenantSecret,
        redirect_uri: &str,
        state: &str,
        login_hint: Option<&str>,
    ) -> Result<AuthorizeRequest, TokenError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(secret, Some(redirect_uri))?;
        let state = state.to_owned();
        let mut request = client
            .authorize_url(move || CsrfToken::new(state))
            .add_scopes(USER_SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .add_extra_param("prompt", "select_account");
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let (url, _) = request.url();
        Ok(AuthorizeRequest {
            url,
            pkce_verifier: Secret::new(verifier.secret().to_owned()),
        })
    }

    /// The tenant-wide admin consent URL (for app-only mode).
    pub fn admin_consent_url(
        &self,
        secret: &TenantSecret,
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, TokenError> {
        let mut url = Url::parse(&self.endpoint(&secret.azure_tenant_id, "adminconsent"))
            .map_err(|e| TokenError::Config(e.to_string()))?;
        url.query_pairs_mut()
            .append_pair("client_id", &secret.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(url)
    }

    pub async fn redeem_code(
        &self,
        secret: &TenantSecret,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &Secret,
    ) -> Result<TokenSet, TokenError> {
        let client = self.client(secret, Some(redirect_uri))?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        token_set(response, &secret.client_id)
    }

    /// Redeems a refresh token. Microsoft answers with a new refresh token every time.
    pub async fn refresh(
        &self,
        secret: &TenantSecret,
        refresh_token: &Secret,
    ) -> Result<TokenSet, TokenError> {
        let client = self.client(secret, None)?;
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let response = client
            .exchange_refresh_token(&token)
            .add_scopes(USER_SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        token_set(response, &secret.client_id)
    }

    /// An app-only Graph token for the tenant, cached until shortly before it expires.
    pub async fn app_token(&self, secret: &TenantSecret) -> Result<Secret, TokenError> {
        let key = format!("{}\0{}", secret.azure_tenant_id, secret.client_id);
        let now = now_epoch();
        if let Ok(cache) = self.app_tokens.lock() {
            if let Some((token, expires_at)) = cache.get(&key) {
                if *expires_at - EXPIRY_MARGIN_SECS > now {
                    return Ok(token.clone());
                }
            }
        }
        let client = self.client(secret, None)?;
        let response = client
            .exchange_client_credentials()
            .add_scope(Scope::new(APP_SCOPE.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(classify)?;
        let set = token_set(response, &secret.client_id)?;
        if let Ok(mut cache) = self.app_tokens.lock() {
            cache.insert(key, (set.access_token.clone(), set.expires_at));
        }
        Ok(set.access_token)
    }

    fn user_lock(&self, tenant: &TenantId, user: &CrmUserName) -> Arc<tokio::sync::Mutex<()>> {
        let key = format!("{tenant}\0{user}");
        match self.user_locks.lock() {
            Ok(mut locks) => locks.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// A valid access token for a connected user. Reuses the stored one while it lasts;
    /// otherwise refreshes, storing the rotated refresh token (sealed) every time. Refreshes of
    /// one user are serialised in-process by a mutex and across processes by a lease, so racing
    /// callers end with the newest refresh token stored and a valid access token each.
    /// `invalid_grant` marks the user `reconnect_required`.
    pub async fn user_access_token(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantContext,
        user: &CrmUserName,
    ) -> Result<Secret, TokenError> {
        let record = get_user(store, &tenant.id, user)
            .await?
            .ok_or(TokenError::NotConnected)?
            .record;
        self.access_token_for(store, tenant, &record).await
    }

    /// [`Self::user_access_token`] for a caller that has just read the user's record: the
    /// stored access token is taken from it without reading the item again.
    pub async fn access_token_for(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantContext,
        record: &UserRecord,
    ) -> Result<Secret, TokenError> {
        let user = &record.user;
        if let Some(token) = usable_access_token(tenant, record)? {
            return Ok(token);
        }
        let lock = self.user_lock(&tenant.id, user);
        let _in_process = lock.lock().await;
        let lease = Lease::acquire(
            store,
            &tenant_pk(&tenant.id),
            &format!("LEASE#token#{user}"),
            REFRESH_LEASE_TTL,
            REFRESH_LEASE_TTL,
        )
        .await?;
        let outcome = self.refresh_under_lease(store, tenant, user).await;
        lease.release().await;
        outcome
    }

    async fn refresh_under_lease(
        &self,
        store: &dyn ItemStore,
        tenant: &TenantContext,
        user: &CrmUserName,
    ) -> Result<Secret, TokenError> {
        // Another process may have refreshed while we waited for the lease.
        if let Some(token) = stored_access_token(store, tenant, user).await? {
            return Ok(token);
        }
        let record = get_user(store, &tenant.id, user)
            .await?
            .ok_or(TokenError::NotConnected)?
            .record;
        let context = UserRecord::seal_context(&tenant.id, user);
        let sealed = record
            .refresh_token_sealed
            .as_deref()
            .ok_or(TokenError::NotConnected)?;
        let refresh_token = tenant
            .sealing_key
            .open(sealed, &context)
            .map_err(|e| TokenError::BadResponse(format!("stored refresh token: {e}")))?;
        match self.refresh(&tenant.secret, &refresh_token).await {
            Ok(set) => {
                let new_refresh = match &set.refresh_token {
                    Some(rt) => Some(seal(tenant, &context, rt)?),
                    None => None,
                };
                let access = seal(tenant, &context, &set.access_token)?;
                let now = now_epoch();
                update_user(store, &tenant.id, user, |r| {
                    if let Some(rt) = &new_refresh {
                        r.refresh_token_sealed = Some(rt.clone());
                    }
                    r.access_token_sealed = Some(access.clone());
                    r.access_token_expires_at = Some(set.expires_at);
                    r.updated_at = now;
                })
                .await?;
                Ok(set.access_token)
            }
            Err(TokenError::ReconnectRequired { error, aadsts }) => {
                let now = now_epoch();
                let detail = format!(
                    "Microsoft no longer accepts this connection ({error}{}).",
                    aadsts_suffix(aadsts)
                );
                update_user(store, &tenant.id, user, |r| {
                    r.status = UserStatus::ReconnectRequired;
                    r.access_token_sealed = None;
                    r.access_token_expires_at = None;
                    r.set_problem("reconnect_required", detail.clone(), now);
                    r.updated_at = now;
                })
                .await?;
                Err(TokenError::ReconnectRequired { error, aadsts })
            }
            Err(other) => Err(other),
        }
    }
}

fn seal(tenant: &TenantContext, context: &str, value: &Secret) -> Result<String, TokenError> {
    tenant
        .sealing_key
        .seal(value, context)
        .map_err(|e| TokenError::Config(e.to_string()))
}

/// The user's stored access token if it is still good for a while; errors for users who are
/// not connected.
async fn stored_access_token(
    store: &dyn ItemStore,
    tenant: &TenantContext,
    user: &CrmUserName,
) -> Result<Option<Secret>, TokenError> {
    let record = get_user(store, &tenant.id, user)
        .await?
        .ok_or(TokenError::NotConnected)?
        .record;
    usable_access_token(tenant, &record)
}

/// The record's access token if it is still good for a while; errors for users who are not
/// connected.
fn usable_access_token(
    tenant: &TenantContext,
    record: &UserRecord,
) -> Result<Option<Secret>, TokenError> {
    let user = &record.user;
    match record.status {
        UserStatus::Connected => {}
        UserStatus::ReconnectRequired => {
            return Err(TokenError::ReconnectRequired {
                error: "reconnect_required".into(),
                aadsts: None,
            })
        }
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
        .open(sealed, &UserRecord::seal_context(&tenant.id, user))
        .ok())
}

fn token_set(response: MsTokenResponse, client_id: &str) -> Result<TokenSet, TokenError> {
    let expires_in = response
        .expires_in()
        .map(|d| d.as_secs() as i64)
        .unwrap_or(3600);
    let id_claims = match &response.extra_fields().id_token {
        Some(jwt) => Some(parse_id_token(jwt, client_id)?),
        None => None,
    };
    Ok(TokenSet {
        access_token: Secret::new(response.access_token().secret().to_owned()),
        expires_at: now_epoch() + expires_in,
        refresh_token: response
            .refresh_token()
            .map(|rt| Secret::new(rt.secret().to_owned())),
        id_claims,
    })
}

/// Reads the claims of an ID token received from the token endpoint and checks the audience
/// and expiry.
pub fn parse_id_token(jwt: &str, client_id: &str) -> Result<IdClaims, TokenError> {
    let bad = |why: &str| TokenError::BadResponse(format!("ID token: {why}"));
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a JWT"));
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| bad("payload is not base64url"))?;
    let claims: IdClaims =
        serde_json::from_slice(&bytes).map_err(|_| bad("missing tid, oid or aud"))?;
    if claims.aud != client_id {
        return Err(bad("issued for another application"));
    }
    // A little leeway for clock skew.
    if claims.exp != 0 && claims.exp + 300 < now_epoch() {
        return Err(bad("expired"));
    }
    Ok(claims)
}

/// Extracts the AADSTS number Microsoft puts at the start of `error_description`.
pub fn aadsts_code(description: &str) -> Option<u32> {
    let start = description.find("AADSTS")? + "AADSTS".len();
    let digits: String = description[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

type OauthError = RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>;

/// Sorts a failed token call into what the caller must do about it. Raw response bodies never
/// make it into the error: they may hold tokens.
fn classify(error: OauthError) -> TokenError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let aadsts = response.error_description().and_then(|d| aadsts_code(d));
            let code = response.error().to_string();
            match response.error() {
                BasicErrorResponseType::InvalidGrant => TokenError::ReconnectRequired {
                    error: code,
                    aadsts,
                },
                BasicErrorResponseType::Extension(ext) if ext == "temporarily_unavailable" => {
                    TokenError::Unavailable(format!(
                        "temporarily_unavailable{}",
                        aadsts_suffix(aadsts)
                    ))
                }
                _ => TokenError::Refused {
                    error: code,
                    aadsts,
                },
            }
        }
        RequestTokenError::Request(oauth2::HttpClientError::Reqwest(e)) => {
            if e.is_timeout() {
                TokenError::Timeout
            } else {
                TokenError::Unavailable(without_url(&e))
            }
        }
        RequestTokenError::Request(other) => TokenError::Unavailable(other.to_string()),
        // An unparseable answer is usually an HTML error page from a proxy or an outage.
        RequestTokenError::Parse(_, _) => TokenError::Unavailable(
            "the token endpoint answered something that is not a token response".into(),
        ),
        RequestTokenError::Other(message) => TokenError::Unavailable(message),
    }
}

/// A reqwest error's text without its URL (query strings can carry codes).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off or malformed"
    } else {
        "the request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: serde_json::Value) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    #[test]
    fn id_token_claims_are_read_and_checked() {
        let token = jwt(
            serde_json::json!({"tid":"t","oid":"o","aud":"app","preferred_username":"u@x","exp": now_epoch() + 600}),
        );
        let claims = parse_id_token(&token, "app").unwrap();
        assert_eq!((claims.tid.as_str(), claims.oid.as_str()), ("t", "o"));
        assert!(parse_id_token(&token, "other-app").is_err());
        let expired = jwt(serde_json::json!({"tid":"t","oid":"o","aud":"app","exp": 1000}));
        assert!(parse_id_token(&expired, "app").is_err());
        assert!(parse_id_token("not.a", "app").is_err());
    }

    #[test]
    fn aadsts_codes_are_extracted() {
        assert_eq!(
            aadsts_code("AADSTS70008: The refresh token has expired"),
            Some(70008)
        );
        assert_eq!(aadsts_code("no code"), None);
    }
}
