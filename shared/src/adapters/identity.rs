//! The Microsoft identity platform: the authorize URL (code flow with PKCE S256), the admin
//! consent URL, code redemption, refresh with rotation, and app-only tokens by client
//! credentials (cached until shortly before they expire). Built on the `oauth2` crate over a
//! reqwest client that never follows redirects and always times out.
//!
//! What a token means for a CRM user (whose it is, where it is kept, when to refresh) is the
//! token service's business (`services::tokens`); this module only talks to Microsoft.

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

use crate::adapters::client_assertion::{CertificateCredential, ASSERTION_TYPE};
use crate::config::join_url;
use calsync_core::secret::Secret;

/// Delegated scopes asked for when a user connects.
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
pub const EXPIRY_MARGIN_SECS: i64 = 300;

/// The application registration calsync signs in with for one tenant.
#[derive(Debug, Clone, Copy)]
pub struct AppRegistration<'a> {
    /// The customer's directory (tenant) id: app-only tokens and admin consent are for it.
    pub directory: &'a str,
    /// Where users sign in: the directory itself, or `organizations` for a multi-tenant app.
    pub authority: &'a str,
    pub client_id: &'a str,
    pub credential: ClientCredential<'a>,
}

/// How the app proves itself at the token endpoint.
#[derive(Debug, Clone, Copy)]
pub enum ClientCredential<'a> {
    Secret(&'a Secret),
    /// A client assertion signed with the certificate's key, made for each request.
    Certificate(&'a CertificateCredential),
}

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
type OauthError = RequestTokenError<oauth2::HttpClientError<reqwest::Error>, BasicErrorResponse>;

/// What is wrong with an ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenProblem {
    #[error("not a JWT")]
    NotAJwt,
    #[error("its payload is not base64url")]
    NotBase64,
    #[error("it lacks tid, oid or aud")]
    MissingClaims,
    #[error("it was issued for another application")]
    OtherAudience,
    #[error("it has expired")]
    Expired,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// `invalid_grant`: the refresh token or code is no longer accepted; the user must sign in.
    #[error("Microsoft no longer accepts the user's sign-in ({error}{})", aadsts_suffix(*.aadsts))]
    ReconnectRequired { error: String, aadsts: Option<u32> },
    /// Any other refusal (bad client secret, missing consent…). `error` is Microsoft's code.
    #[error("Microsoft refused the token request: {error}{}", aadsts_suffix(*.aadsts))]
    Refused { error: String, aadsts: Option<u32> },
    #[error("Microsoft sign-in did not answer in time")]
    Timeout,
    #[error("Microsoft sign-in is temporarily unavailable{}", aadsts_suffix(*.aadsts))]
    TemporarilyUnavailable { aadsts: Option<u32> },
    /// The request did not get an answer (connection refused, cut off). The URL is left out
    /// of the source: query strings can carry codes.
    #[error("Microsoft sign-in could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("Microsoft sign-in could not be reached")]
    Transport(#[source] oauth2::HttpClientError<reqwest::Error>),
    /// Usually an HTML error page from a proxy or an outage.
    #[error("the token endpoint answered something that is not a token response")]
    NotATokenResponse,
    #[error("the ID token is unusable: {0}")]
    BadIdToken(#[source] IdTokenProblem),
    #[error("the token response has no {0}")]
    Missing(&'static str),
    #[error("an identity endpoint URL is invalid")]
    BadEndpoint(#[source] url::ParseError),
    #[error("the HTTP client for Microsoft sign-in could not be built")]
    Client(#[source] reqwest::Error),
    #[error("the client assertion could not be made")]
    Assertion(#[source] crate::adapters::client_assertion::CertificateError),
}

impl IdentityError {
    /// Microsoft's answer says the app itself is no longer allowed in the directory: it was
    /// removed, or its consent revoked (AADSTS65001, or `unauthorized_client` such as
    /// AADSTS700016 "application not found in the directory"). Whether that is the whole
    /// directory or one user is for the caller to find out.
    pub fn is_app_refused(&self) -> bool {
        match self {
            IdentityError::ReconnectRequired { aadsts, .. } => *aadsts == Some(65001),
            IdentityError::Refused { error, aadsts } => {
                error == "unauthorized_client" || *aadsts == Some(65001)
            }
            _ => false,
        }
    }
}

fn aadsts_suffix(code: Option<u32>) -> String {
    code.map(|c| format!(", AADSTS{c}")).unwrap_or_default()
}

/// What the ID token says about who signed in. Received straight from the token endpoint over
/// TLS, so its signature need not be checked (OpenID Connect Core §3.1.3.7); its audience and
/// expiry still are.
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

/// The Microsoft identity platform as calsync uses it. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    http: reqwest::Client,
    login_url: Url,
    app_tokens: Arc<Mutex<HashMap<String, (Secret, i64)>>>,
}

/// An HTTP client for identity calls: rustls, no redirects (a token endpoint that redirects is
/// misconfigured or hostile), a timeout on every call.
pub fn identity_http_client(timeout: Duration) -> Result<reqwest::Client, IdentityError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .build()
        .map_err(IdentityError::Client)
}

impl Identity {
    pub fn new(login_url: Url, timeout: Duration) -> Result<Self, IdentityError> {
        Ok(Self {
            http: identity_http_client(timeout)?,
            login_url,
            app_tokens: Arc::default(),
        })
    }

    fn endpoint(&self, azure_tenant: &str, path: &str) -> String {
        join_url(&self.login_url, &format!("{azure_tenant}/{path}"))
    }

    fn client(
        &self,
        app: AppRegistration<'_>,
        redirect_uri: Option<&str>,
    ) -> Result<MsClient, IdentityError> {
        let client = Client::new(ClientId::new(app.client_id.to_owned()));
        let client = match app.credential {
            ClientCredential::Secret(secret) => {
                client.set_client_secret(ClientSecret::new(secret.expose().to_owned()))
            }
            // Without a secret the client id goes in the body, next to the assertion.
            ClientCredential::Certificate(_) => client,
        };
        let client = client
            .set_auth_uri(
                AuthUrl::new(self.endpoint(app.authority, "oauth2/v2.0/authorize"))
                    .map_err(IdentityError::BadEndpoint)?,
            )
            .set_token_uri(
                TokenUrl::new(self.endpoint(app.authority, "oauth2/v2.0/token"))
                    .map_err(IdentityError::BadEndpoint)?,
            )
            .set_auth_type(AuthType::RequestBody);
        Ok(match redirect_uri {
            Some(uri) => client.set_redirect_uri(
                RedirectUrl::new(uri.to_owned()).map_err(IdentityError::BadEndpoint)?,
            ),
            None => client,
        })
    }

    /// The client assertion of a token request to `authority`, when the app uses a certificate.
    fn assertion(
        &self,
        app: AppRegistration<'_>,
        authority: &str,
    ) -> Result<Option<Secret>, IdentityError> {
        match app.credential {
            ClientCredential::Secret(_) => Ok(None),
            ClientCredential::Certificate(certificate) => certificate
                .assertion(
                    app.client_id,
                    &self.endpoint(authority, "oauth2/v2.0/token"),
                    now_epoch(),
                )
                .map(Some)
                .map_err(IdentityError::Assertion),
        }
    }

    /// The authorize URL for a user's sign-in: code flow, PKCE S256, our one-time `state`.
    pub fn authorize_url(
        &self,
        app: AppRegistration<'_>,
        redirect_uri: &str,
        state: &str,
        login_hint: Option<&str>,
    ) -> Result<AuthorizeRequest, IdentityError> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let client = self.client(app, Some(redirect_uri))?;
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

    /// The tenant-wide admin consent URL (for app-only mode): everything configured on the
    /// app, at the directory.
    pub fn admin_consent_url(
        &self,
        app: AppRegistration<'_>,
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, IdentityError> {
        let mut url = Url::parse(&self.endpoint(app.directory, "adminconsent"))
            .map_err(IdentityError::BadEndpoint)?;
        url.query_pairs_mut()
            .append_pair("client_id", app.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(url)
    }

    /// The v2.0 admin consent URL for the permissions `scopes` names, for the whole
    /// organisation of whoever signs in at `authority` (a directory, or `organizations`).
    pub fn scoped_admin_consent_url(
        &self,
        authority: &str,
        client_id: &str,
        scopes: &[&str],
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, IdentityError> {
        let mut url = Url::parse(&self.endpoint(authority, "v2.0/adminconsent"))
            .map_err(IdentityError::BadEndpoint)?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(url)
    }

    pub async fn redeem_code(
        &self,
        app: AppRegistration<'_>,
        redirect_uri: &str,
        code: &str,
        pkce_verifier: &Secret,
    ) -> Result<TokenSet, IdentityError> {
        let client = self.client(app, Some(redirect_uri))?;
        let mut request = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_owned()));
        let assertion = self.assertion(app, app.authority)?;
        if let Some(assertion) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.expose().to_owned());
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        token_set(response, app.client_id)
    }

    /// Redeems a refresh token. Microsoft answers with a new refresh token every time.
    pub async fn refresh(
        &self,
        app: AppRegistration<'_>,
        refresh_token: &Secret,
    ) -> Result<TokenSet, IdentityError> {
        let client = self.client(app, None)?;
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = client
            .exchange_refresh_token(&token)
            .add_scopes(USER_SCOPES.iter().map(|s| Scope::new((*s).to_owned())));
        let assertion = self.assertion(app, app.authority)?;
        if let Some(assertion) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.expose().to_owned());
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        token_set(response, app.client_id)
    }

    /// Forgets the cached app-only token if it is `refused` (Graph turned it down): the next
    /// [`Self::app_token`] asks for a new one.
    pub fn forget_app_token(&self, app: AppRegistration<'_>, refused: &Secret) {
        let key = format!("{}\0{}", app.directory, app.client_id);
        if let Ok(mut cache) = self.app_tokens.lock() {
            if cache.get(&key).is_some_and(|(token, _)| token == refused) {
                cache.remove(&key);
            }
        }
    }

    /// An app-only Graph token for the directory, cached until shortly before it expires.
    pub async fn app_token(&self, app: AppRegistration<'_>) -> Result<Secret, IdentityError> {
        let key = format!("{}\0{}", app.directory, app.client_id);
        let now = now_epoch();
        if let Ok(cache) = self.app_tokens.lock() {
            if let Some((token, expires_at)) = cache.get(&key) {
                if *expires_at - EXPIRY_MARGIN_SECS > now {
                    return Ok(token.clone());
                }
            }
        }
        // Client credentials go to the directory itself, never to a multi-tenant authority.
        let client = self.client(
            AppRegistration {
                authority: app.directory,
                ..app
            },
            None,
        )?;
        let mut request = client
            .exchange_client_credentials()
            .add_scope(Scope::new(APP_SCOPE.to_owned()));
        let assertion = self.assertion(app, app.directory)?;
        if let Some(assertion) = &assertion {
            request = request
                .add_extra_param("client_assertion_type", ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion.expose().to_owned());
        }
        let response = request.request_async(&self.http).await.map_err(classify)?;
        let set = token_set(response, app.client_id)?;
        if let Ok(mut cache) = self.app_tokens.lock() {
            cache.insert(key, (set.access_token.clone(), set.expires_at));
        }
        Ok(set.access_token)
    }

    /// A new app-only token for the directory, past the cache: what Microsoft says about the
    /// app there now (consent checks, revocation probes).
    pub async fn fresh_app_token(&self, app: AppRegistration<'_>) -> Result<Secret, IdentityError> {
        let key = format!("{}\0{}", app.directory, app.client_id);
        if let Ok(mut cache) = self.app_tokens.lock() {
            cache.remove(&key);
        }
        self.app_token(app).await
    }
}

fn now_epoch() -> i64 {
    crate::adapters::store::now_epoch()
}

fn token_set(response: MsTokenResponse, client_id: &str) -> Result<TokenSet, IdentityError> {
    let expires_in = response
        .expires_in()
        .map(|d| d.as_secs() as i64)
        .unwrap_or(3600);
    let id_claims = match &response.extra_fields().id_token {
        Some(jwt) => Some(parse_id_token(jwt, client_id).map_err(IdentityError::BadIdToken)?),
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
pub fn parse_id_token(jwt: &str, client_id: &str) -> Result<IdClaims, IdTokenProblem> {
    let mut parts = jwt.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(IdTokenProblem::NotAJwt);
    };
    let bytes = URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| IdTokenProblem::NotBase64)?;
    let claims: IdClaims =
        serde_json::from_slice(&bytes).map_err(|_| IdTokenProblem::MissingClaims)?;
    if claims.aud != client_id {
        return Err(IdTokenProblem::OtherAudience);
    }
    // A little leeway for clock skew.
    if claims.exp != 0 && claims.exp + 300 < now_epoch() {
        return Err(IdTokenProblem::Expired);
    }
    Ok(claims)
}

/// What calsync reads from an access token it just received from the token endpoint (over
/// TLS, so unsigned reading is enough): the directory it was issued in and the application
/// permissions it carries.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    #[serde(default)]
    pub tid: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The claims of a JWT access token; None when it is not a readable JWT.
pub fn access_token_claims(jwt: &str) -> Option<AccessClaims> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
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

/// Sorts a failed token call into what the caller must do about it. Raw response bodies never
/// make it into the error: they may hold tokens.
fn classify(error: OauthError) -> IdentityError {
    match error {
        RequestTokenError::ServerResponse(response) => {
            let aadsts = response.error_description().and_then(|d| aadsts_code(d));
            let code = response.error().to_string();
            match response.error() {
                BasicErrorResponseType::InvalidGrant => IdentityError::ReconnectRequired {
                    error: code,
                    aadsts,
                },
                BasicErrorResponseType::Extension(ext) if ext == "temporarily_unavailable" => {
                    IdentityError::TemporarilyUnavailable { aadsts }
                }
                _ => IdentityError::Refused {
                    error: code,
                    aadsts,
                },
            }
        }
        RequestTokenError::Request(oauth2::HttpClientError::Reqwest(e)) => {
            if e.is_timeout() {
                IdentityError::Timeout
            } else {
                IdentityError::Unreachable(e.without_url())
            }
        }
        RequestTokenError::Request(other) => IdentityError::Transport(other),
        RequestTokenError::Parse(_, _) | RequestTokenError::Other(_) => {
            IdentityError::NotATokenResponse
        }
    }
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
        assert_eq!(
            parse_id_token(&token, "other-app"),
            Err(IdTokenProblem::OtherAudience)
        );
        let expired = jwt(serde_json::json!({"tid":"t","oid":"o","aud":"app","exp": 1000}));
        assert_eq!(
            parse_id_token(&expired, "app"),
            Err(IdTokenProblem::Expired)
        );
        assert_eq!(parse_id_token("not.a", "app"), Err(IdTokenProblem::NotAJwt));
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
