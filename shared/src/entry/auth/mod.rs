//! The auth function's routes (docs/design.md §2): connect a CRM user to Office 365, admin
//! consent for app-only mode, disconnect, and the user's status page. Every refusal is a clear
//! page with the right status code and leaves storage as it was.
//!
//! [`routes`] is an axum `Router` without a fallback, so `calsync serve` can merge it with the
//! webhook's; [`router`] is the whole auth function as Lambda serves it.

pub mod pages;
mod sign_in_state;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use maud::html;
use tower_http::limit::RequestBodyLimitLayer;
use url::Url;

use crate::adapters::crm::CrmPort;
use crate::adapters::identity::{aadsts_code, IdentityError};
use crate::adapters::queue::{JobReason, SyncJob};
use crate::adapters::store::{now_epoch, StoreError};
use crate::app::App;
use crate::config::join_url;
use crate::entry::html::{self, format_utc};
use crate::services::consent;
use crate::services::sync_run::JournalEntry;
use crate::services::tenants::{
    AccessMode, MicrosoftAccess, TenantApp, TenantContext, TenantError,
};
use crate::services::tokens::{app_registration, seal_refresh_token};
use crate::services::users::{
    ConnectError, Connection, ProblemCode, UserRecord, UserStatus, UserWriteError,
};
use crate::signed_url::{LinkRoute, SignedUrl, SignedUrlError, CONNECT_LINK_SECS};
use calsync_core::ids::{CrmUserName, InvalidId, TenantId};
use calsync_core::sync::Side;
use pages::{text, Lang, Msg, Page};
use sign_in_state::{SignInState, StateKind};

/// The auth routes take small forms at most.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What is wrong with a request's parameters.
#[derive(Debug, thiserror::Error)]
enum BadInput {
    #[error(transparent)]
    Param(#[from] ParamError),
    #[error(transparent)]
    Id(#[from] InvalidId),
    #[error("exp is not a number")]
    Expiry,
    #[error("user is missing")]
    UserMissing,
    #[error("a tenant-wide link names no user")]
    UnexpectedUser,
}

/// Why a request was refused; each maps to one page and status code.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("bad request")]
    BadRequest(#[source] BadInput),
    #[error("signed URL refused")]
    SignedUrl(#[source] SignedUrlError),
    /// A link that was good but expired; `back` leads to the tenant's CRM.
    #[error("the signed URL has expired")]
    Expired { back: Option<String> },
    /// The callback came to a browser that did not start the sign-in (or keeps no cookies).
    #[error("the sign-in was started in another browser")]
    OtherBrowser,
    /// The tenant requires the Microsoft account to be the CRM user's own address.
    #[error("the Microsoft account is not the CRM user's e-mail")]
    EmailMismatch { microsoft: String },
    /// The CRM could not be asked for the user's e-mail.
    #[error("the CRM could not be reached to check the e-mail")]
    CrmUnreachable(#[source] crate::adapters::crm::CrmError),
    #[error("unknown tenant")]
    TenantUnknown,
    #[error("return_to outside the tenant's CRM origin")]
    ReturnToRefused,
    #[error("unknown, used or expired state")]
    StateUnknown,
    #[error("the user declined consent")]
    ConsentDenied,
    /// Microsoft's short error code (and AADSTS number), sanitised.
    #[error("Microsoft returned error {code}")]
    Microsoft { code: String },
    #[error("the ID token's tenant is not the tenant's")]
    WrongTenant,
    /// The tenant cannot use Microsoft now (no consent yet, or it was removed).
    #[error("the tenant's Microsoft access is {}", .0.as_str())]
    NotReady(MicrosoftAccess),
    /// A consent to the publisher app that does not activate the tenant.
    #[error("the consent was refused")]
    ConsentRefused(#[source] consent::ConsentRefused),
    #[error("the token endpoint refused or failed")]
    Identity(#[source] IdentityError),
    #[error("the Microsoft account is linked to another CRM user")]
    AlreadyLinked,
    #[error("not connected")]
    NotConnected,
    #[error("internal failure")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<BadInput> for AuthError {
    fn from(e: BadInput) -> Self {
        AuthError::BadRequest(e)
    }
}

impl From<ParamError> for AuthError {
    fn from(e: ParamError) -> Self {
        AuthError::BadRequest(e.into())
    }
}

impl From<InvalidId> for AuthError {
    fn from(e: InvalidId) -> Self {
        AuthError::BadRequest(e.into())
    }
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> AuthError {
    AuthError::Internal(Box::new(e))
}

fn connect_error(e: ConnectError) -> AuthError {
    match e {
        ConnectError::AccountTaken(_) => AuthError::AlreadyLinked,
        other => internal(other),
    }
}

fn tenant_error(e: TenantError) -> AuthError {
    match e {
        TenantError::NotFound(_) => AuthError::TenantUnknown,
        other => internal(other),
    }
}

impl AuthError {
    fn page(&self, lang: Lang) -> Response {
        use Msg::*;
        let page = match self {
            AuthError::BadRequest(_) => {
                Page::new(lang, StatusCode::BAD_REQUEST, BadRequestTitle).para(BadRequest, None)
            }
            AuthError::SignedUrl(SignedUrlError::Expired) => {
                Page::new(lang, StatusCode::FORBIDDEN, LinkInvalidTitle)
                    .para(LinkExpired, None)
                    .para(AskCrmForNewLink, None)
            }
            AuthError::Expired { back } => {
                let page = Page::new(lang, StatusCode::FORBIDDEN, LinkInvalidTitle)
                    .para(LinkExpired, None)
                    .para(AskCrmForNewLink, None);
                match back {
                    Some(back) => page.link(BackToCrm, back),
                    None => page,
                }
            }
            AuthError::EmailMismatch { microsoft } => {
                Page::new(lang, StatusCode::FORBIDDEN, EmailMismatchTitle)
                    .para(EmailMismatch, Some(microsoft))
            }
            AuthError::CrmUnreachable(_) => {
                Page::new(lang, StatusCode::BAD_GATEWAY, SignInFailedTitle)
                    .para(CrmUnreachable, None)
            }
            AuthError::OtherBrowser => {
                Page::new(lang, StatusCode::BAD_REQUEST, OtherBrowserTitle).para(OtherBrowser, None)
            }
            AuthError::SignedUrl(_) => Page::new(lang, StatusCode::FORBIDDEN, LinkInvalidTitle)
                .para(LinkInvalid, None)
                .para(AskCrmForNewLink, None),
            AuthError::TenantUnknown => {
                Page::new(lang, StatusCode::NOT_FOUND, BadRequestTitle).para(TenantUnknown, None)
            }
            AuthError::ReturnToRefused => Page::new(lang, StatusCode::BAD_REQUEST, BadRequestTitle)
                .para(ReturnToRefused, None),
            AuthError::StateUnknown => {
                Page::new(lang, StatusCode::BAD_REQUEST, StateUnknownTitle).para(StateUnknown, None)
            }
            AuthError::ConsentDenied => {
                Page::new(lang, StatusCode::FORBIDDEN, ConsentDeniedTitle).para(ConsentDenied, None)
            }
            AuthError::Microsoft { code } => {
                Page::new(lang, StatusCode::BAD_REQUEST, MicrosoftErrorTitle)
                    .para(MicrosoftError, Some(code))
            }
            AuthError::WrongTenant => {
                Page::new(lang, StatusCode::FORBIDDEN, WrongTenantTitle).para(WrongTenant, None)
            }
            AuthError::NotReady(access) => {
                let why = match access {
                    MicrosoftAccess::Revoked => AccessRevoked,
                    _ => AwaitingConsent,
                };
                Page::new(lang, StatusCode::CONFLICT, NotReadyTitle).para(why, None)
            }
            AuthError::ConsentRefused(why) => {
                let status = match why {
                    consent::ConsentRefused::Identity(_) | consent::ConsentRefused::Tenant(_) => {
                        StatusCode::BAD_GATEWAY
                    }
                    consent::ConsentRefused::BadDirectory(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::FORBIDDEN,
                };
                let reason = why.to_string();
                Page::new(lang, status, ConsentRefusedTitle).para(ConsentRefused, Some(&reason))
            }
            AuthError::Identity(IdentityError::Timeout) => {
                Page::new(lang, StatusCode::GATEWAY_TIMEOUT, SignInFailedTitle)
                    .para(TokenTimeout, None)
            }
            AuthError::Identity(
                IdentityError::ReconnectRequired { error, aadsts }
                | IdentityError::Refused { error, aadsts },
            ) => {
                let code = match aadsts {
                    Some(n) => format!("{error} (AADSTS{n})"),
                    None => error.clone(),
                };
                Page::new(lang, StatusCode::BAD_REQUEST, SignInFailedTitle)
                    .para(TokenRefused, Some(&code))
            }
            AuthError::Identity(_) => Page::new(lang, StatusCode::BAD_GATEWAY, SignInFailedTitle)
                .para(TokenUnavailable, None),
            AuthError::AlreadyLinked => {
                Page::new(lang, StatusCode::CONFLICT, AlreadyLinkedTitle).para(AlreadyLinked, None)
            }
            AuthError::NotConnected => {
                Page::new(lang, StatusCode::NOT_FOUND, NotConnectedTitle).para(NotConnected, None)
            }
            AuthError::Internal(_) => {
                Page::new(lang, StatusCode::INTERNAL_SERVER_ERROR, InternalTitle)
                    .para(Internal, None)
            }
        };
        page.render()
    }
}

enum Outcome {
    Page(Page),
    Redirect(String),
    /// A redirect that gives the browser a cookie (`Set-Cookie` value).
    RedirectWithCookie {
        location: String,
        cookie: String,
    },
}

/// What every handler gets from the request: the language, the headers, the query.
struct Request {
    lang: Lang,
    headers: HeaderMap,
    query: String,
}

impl Request {
    fn new(headers: HeaderMap, query: Option<String>) -> Self {
        let lang = Lang::from_accept_language(
            headers
                .get(header::ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok()),
        );
        Self {
            lang,
            headers,
            query: query.unwrap_or_default(),
        }
    }

    fn query_params(&self) -> Params {
        Params::new(
            url::form_urlencoded::parse(self.query.as_bytes())
                .into_owned()
                .collect(),
        )
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Turns a handler's outcome into the answer, logging refusals and failures.
fn answer(path: &str, lang: Lang, outcome: Result<Outcome, AuthError>) -> Response {
    match outcome {
        Ok(Outcome::Page(page)) => page.render(),
        Ok(Outcome::Redirect(location)) => html::redirect(&location),
        Ok(Outcome::RedirectWithCookie { location, cookie }) => {
            let mut response = html::redirect(&location);
            match header::HeaderValue::from_str(&cookie) {
                Ok(value) => {
                    response.headers_mut().append(header::SET_COOKIE, value);
                    response
                }
                // Only cookies calsync built get here; one that is not a header value is a bug.
                Err(_) => html::text(StatusCode::INTERNAL_SERVER_ERROR, ""),
            }
        }
        Err(error) => {
            let reason = crate::errors::chain(&error);
            // Refusals are expected traffic; failures of ours are not.
            match &error {
                AuthError::Internal(_) | AuthError::Identity(_) => {
                    tracing::error!(path, error = %reason, "auth request failed")
                }
                _ => tracing::warn!(path, error = %reason, "auth request refused"),
            }
            error.page(lang)
        }
    }
}

/// A route answering `method_not_allowed` with a page in the browser's language.
fn with_405(route: MethodRouter<App>) -> MethodRouter<App> {
    route.fallback(|headers: HeaderMap| async move {
        let request = Request::new(headers, None);
        Page::new(
            request.lang,
            StatusCode::METHOD_NOT_ALLOWED,
            Msg::BadRequestTitle,
        )
        .para(Msg::MethodNotAllowed, None)
        .render()
    })
}

/// The auth routes, for merging (no fallback, no state yet).
pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/connect",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    answer("/connect", request.lang, connect(&app, &request).await)
                },
            )),
        )
        .route(
            "/callback",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    answer("/callback", request.lang, callback(&app, &request).await)
                },
            )),
        )
        .route(
            "/admin-consent",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    answer(
                        "/admin-consent",
                        request.lang,
                        admin_consent(&app, &request).await,
                    )
                },
            )),
        )
        .route(
            "/admin-consent/callback",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    answer(
                        "/admin-consent/callback",
                        request.lang,
                        admin_consent_callback(&app, &request).await,
                    )
                },
            )),
        )
        .route(
            "/disconnect",
            with_405(post(
                |State(app): State<App>, headers, RawQuery(q), body: Bytes| async move {
                    let request = Request::new(headers, q);
                    answer(
                        "/disconnect",
                        request.lang,
                        disconnect(&app, &request, &body).await,
                    )
                },
            )),
        )
        .route(
            "/status",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    answer("/status", request.lang, status(&app, &request).await)
                },
            )),
        )
        .route(
            "/status.json",
            with_405(get(
                |State(app): State<App>, headers, RawQuery(q)| async move {
                    let request = Request::new(headers, q);
                    status_json(&app, &request).await
                },
            )),
        )
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
}

/// A page for addresses that are not routes.
pub async fn not_found(headers: HeaderMap) -> Response {
    let request = Request::new(headers, None);
    Page::new(request.lang, StatusCode::NOT_FOUND, Msg::NotFoundTitle)
        .para(Msg::NotFound, None)
        .render()
}

/// The auth function: [`routes`] with its fallback and state.
pub fn router(app: App) -> Router {
    routes().fallback(not_found).with_state(app)
}

/// Parameters where each name may appear at most once: a repeated name is refused rather than
/// guessed at, since these carry signatures.
pub struct Params(Vec<(String, String)>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParamError {
    #[error("parameter {0} is missing")]
    Missing(&'static str),
    #[error("parameter {0} is given more than once")]
    Repeated(&'static str),
    #[error("parameter {0} is too long")]
    TooLong(&'static str),
}

/// Longer values than this are refused before any work.
const MAX_PARAM_LEN: usize = 4096;

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    pub fn optional(&self, name: &'static str) -> Result<Option<&str>, ParamError> {
        let mut values = self
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(ParamError::Repeated(name));
        }
        match first {
            Some(v) if v.len() > MAX_PARAM_LEN => Err(ParamError::TooLong(name)),
            other => Ok(other),
        }
    }

    pub fn required(&self, name: &'static str) -> Result<&str, ParamError> {
        self.optional(name)?.ok_or(ParamError::Missing(name))
    }
}

/// Reads and checks a signed URL's parameters for `route` (tenant-wide for admin consent,
/// per user otherwise). An unknown tenant gets the answer a bad signature gets: a link says
/// nothing about which tenants exist.
async fn verified_url(
    app: &App,
    params: &Params,
    route: LinkRoute,
) -> Result<(SignedUrl, TenantContext), AuthError> {
    let user_required = route != LinkRoute::AdminConsent;
    let tenant = TenantId::parse(params.required("tenant")?)?;
    let user = match (params.optional("user")?, user_required) {
        (Some(u), true) => Some(CrmUserName::parse(u)?),
        (None, true) => return Err(BadInput::UserMissing.into()),
        (Some(_), false) => return Err(BadInput::UnexpectedUser.into()),
        (None, false) => None,
    };
    let expires_at = params
        .required("exp")?
        .parse::<i64>()
        .map_err(|_| BadInput::Expiry)?;
    let claims = SignedUrl {
        route,
        tenant,
        user,
        expires_at,
        return_to: params.optional("return_to")?.map(str::to_owned),
    };
    let signature = params.required("sig")?;
    let tenant = match app.tenants.context(&claims.tenant).await {
        Ok(tenant) => tenant,
        Err(TenantError::NotFound(_)) => {
            return Err(AuthError::SignedUrl(SignedUrlError::BadSignature))
        }
        Err(e) => return Err(internal(e)),
    };
    match claims.verify(&tenant.secret.link_key, signature, now_epoch()) {
        Ok(()) => Ok((claims, tenant)),
        // The signature held, so the way back it names (if it is the CRM's) can be offered.
        Err(SignedUrlError::Expired) => Err(AuthError::Expired {
            back: claims
                .return_to
                .clone()
                .filter(|url| check_return_to(url, &tenant).is_ok())
                .or_else(|| Some(tenant.settings.crm_origin.clone()).filter(|o| !o.is_empty())),
        }),
        Err(e) => Err(AuthError::SignedUrl(e)),
    }
}

/// The sign-in cookie: `__Host-` on https (Secure, whole host, no Domain), a plain name on a
/// local http address where a browser would drop a Secure cookie.
fn sign_in_cookie_name(public_url: &Url) -> &'static str {
    if public_url.scheme() == "https" {
        "__Host-calsync-sign-in"
    } else {
        "calsync-sign-in"
    }
}

fn sign_in_cookie(public_url: &Url, value: &str, max_age: i64) -> String {
    let secure = if public_url.scheme() == "https" {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
        sign_in_cookie_name(public_url)
    )
}

/// The sign-in cookie the browser sent, if any.
fn sign_in_cookie_value<'a>(request: &'a Request, public_url: &Url) -> Option<&'a str> {
    let name = sign_in_cookie_name(public_url);
    request
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// `return_to` must be on the tenant's CRM (same scheme, host and port): no open redirects.
fn check_return_to(return_to: &str, tenant: &TenantContext) -> Result<(), AuthError> {
    let url = Url::parse(return_to).map_err(|_| AuthError::ReturnToRefused)?;
    if url.origin().ascii_serialization() != tenant.settings.crm_origin {
        return Err(AuthError::ReturnToRefused);
    }
    Ok(())
}

/// Why the auth function's own address is unknown.
#[derive(Debug, thiserror::Error)]
#[error("CALSYNC_PUBLIC_URL is not set and the request has no usable Host")]
struct NoPublicUrl;

/// The auth function's public base URL: the configured one, or else this request's own host —
/// a Lambda Function URL only receives requests addressed to its own domain, and a function
/// cannot be told its own URL at deploy time.
fn public_base(app: &App, request: &Request) -> Result<Url, AuthError> {
    if let Some(url) = &app.config.public_url {
        return Ok(url.clone());
    }
    let host = request
        .header(header::HOST)
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        })
        .ok_or_else(|| internal(NoPublicUrl))?;
    Url::parse(&format!("https://{host}/")).map_err(internal)
}

fn redirect_uri(app: &App, request: &Request) -> Result<String, AuthError> {
    Ok(join_url(&public_base(app, request)?, "callback"))
}

async fn connect(app: &App, request: &Request) -> Result<Outcome, AuthError> {
    let params = request.query_params();
    let (claims, tenant) = verified_url(app, &params, LinkRoute::Connect).await?;
    if let Some(return_to) = &claims.return_to {
        check_return_to(return_to, &tenant)?;
    }
    let user = claims.user.clone().ok_or(BadInput::UserMissing)?;
    match tenant.settings.microsoft_access() {
        MicrosoftAccess::Active => {}
        other => return Err(AuthError::NotReady(other)),
    }
    let redirect_uri = redirect_uri(app, request)?;
    let state_id = sign_in_state::new_state_id();
    let login_hint = app
        .users
        .get(&tenant.id, &user)
        .await
        .map_err(internal)?
        .map(|u| u.record.ms_username)
        .filter(|name| !name.is_empty());
    let authorize = app
        .tokens
        .identity()
        .authorize_url(
            app_registration(&tenant),
            &redirect_uri,
            &state_id,
            login_hint.as_deref(),
        )
        .map_err(internal)?;
    let browser = crate::crypto::random_token(32);
    let state = SignInState {
        kind: StateKind::Connect,
        tenant: tenant.id.clone(),
        user: Some(user),
        return_to: claims.return_to.clone(),
        browser_hash: Some(crate::crypto::sha256_hex(&browser)),
        pkce_verifier_sealed: Some(
            tenant
                .sealing_key
                .seal(
                    &authorize.pkce_verifier,
                    &sign_in_state::seal_context(&state_id),
                )
                .map_err(internal)?,
        ),
    };
    state
        .store(app.store.as_ref(), &state_id)
        .await
        .map_err(internal)?;
    let public_url = public_base(app, request)?;
    Ok(Outcome::RedirectWithCookie {
        location: authorize.url.to_string(),
        cookie: sign_in_cookie(&public_url, &browser, sign_in_state::STATE_TTL_SECS),
    })
}

/// Microsoft's `error` on a redirect back: the user declined, or something else went wrong.
fn microsoft_error(params: &Params) -> Result<Option<AuthError>, AuthError> {
    let Some(error) = params.optional("error")? else {
        return Ok(None);
    };
    if matches!(
        error,
        "access_denied" | "consent_required" | "permission_denied"
    ) {
        return Ok(Some(AuthError::ConsentDenied));
    }
    let aadsts = params.optional("error_description")?.and_then(aadsts_code);
    // Only the short code is echoed, never Microsoft's free text.
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    Ok(Some(AuthError::Microsoft {
        code: match aadsts {
            Some(n) => format!("{code} (AADSTS{n})"),
            None => code,
        },
    }))
}

/// Why the token response cannot finish a sign-in.
#[derive(Debug, thiserror::Error)]
#[error("the token response has no {0}")]
struct Missing(&'static str);

async fn callback(app: &App, request: &Request) -> Result<Outcome, AuthError> {
    let lang = request.lang;
    let params = request.query_params();
    if let Some(error) = microsoft_error(&params)? {
        return Err(error);
    }
    let state_id = params.required("state")?;
    let code = params.required("code")?;
    let state = SignInState::load(app.store.as_ref(), state_id)
        .await
        .map_err(internal)?
        .filter(|s| s.kind == StateKind::Connect)
        .ok_or(AuthError::StateUnknown)?;
    let user = state.user.clone().ok_or(AuthError::StateUnknown)?;
    // Only the browser that started this sign-in may finish it.
    let public_url = public_base(app, request)?;
    let from_that_browser = match (
        sign_in_cookie_value(request, &public_url),
        &state.browser_hash,
    ) {
        (Some(cookie), Some(hash)) => {
            crate::crypto::constant_time_eq(&crate::crypto::sha256_hex(cookie), hash)
        }
        _ => false,
    };
    if !from_that_browser {
        return Err(AuthError::OtherBrowser);
    }
    let tenant = app
        .tenants
        .context(&state.tenant)
        .await
        .map_err(tenant_error)?;
    let sealed = state
        .pkce_verifier_sealed
        .as_deref()
        .ok_or(AuthError::StateUnknown)?;
    let seal_context = sign_in_state::seal_context(state_id);
    let verifier = match tenant.sealing_key.open(sealed, &seal_context) {
        Ok(verifier) => verifier,
        // Sealed by a container that already had a token key newer than this one's cached
        // secret (a rotation minutes ago): read the keys again.
        Err(crate::crypto::CryptoError::UnknownKey) => app
            .tenants
            .fresh_token_keys(&tenant.id)
            .await
            .map_err(tenant_error)?
            .open(sealed, &seal_context)
            .map_err(|_| AuthError::StateUnknown)?,
        Err(_) => return Err(AuthError::StateUnknown),
    };

    let tokens = app
        .tokens
        .identity()
        .redeem_code(
            app_registration(&tenant),
            &redirect_uri(app, request)?,
            code,
            &verifier,
        )
        .await
        .map_err(AuthError::Identity)?;
    let claims = tokens
        .id_claims
        .clone()
        .ok_or(AuthError::Identity(IdentityError::Missing("ID token")))?;
    if tenant.directory().is_empty() || !claims.tid.eq_ignore_ascii_case(tenant.directory()) {
        return Err(AuthError::WrongTenant);
    }
    if tokens.refresh_token.is_none() {
        return Err(AuthError::Identity(IdentityError::Missing("refresh token")));
    }
    if tenant.settings.require_matching_email {
        let crm = app
            .runner
            .crm_for(&tenant)
            .map_err(AuthError::CrmUnreachable)?;
        let crm_user = crm
            .resolve_user(user.as_str())
            .await
            .map_err(AuthError::CrmUnreachable)?;
        let same = crm_user.email.as_deref().is_some_and(|email| {
            email
                .trim()
                .eq_ignore_ascii_case(claims.preferred_username.trim())
        });
        if !same {
            return Err(AuthError::EmailMismatch {
                microsoft: claims.preferred_username.clone(),
            });
        }
    }
    // One Outlook calendar feeds one CRM user: refuse a second link while the first is live.
    app.users
        .check_account_free(&tenant.id, &claims.oid, &user)
        .await
        .map_err(connect_error)?;

    // The state is spent only now, so every refusal above leaves storage untouched; a replay
    // racing this one loses here.
    if !SignInState::consume(app.store.as_ref(), state_id)
        .await
        .map_err(internal)?
    {
        return Err(AuthError::StateUnknown);
    }

    let now = now_epoch();
    let refresh = seal_refresh_token(
        &tenant,
        &UserRecord::seal_context(&tenant.id, &user),
        &tokens,
    )
    .map_err(internal)?;
    let record = app
        .users
        .connect(
            Connection {
                tenant: tenant.id.clone(),
                user: user.clone(),
                ms_tenant_id: claims.tid.clone(),
                ms_user_id: claims.oid.clone(),
                ms_username: claims.preferred_username.clone(),
                refresh_token_sealed: refresh.ok_or_else(|| internal(Missing("refresh token")))?,
            },
            now,
        )
        .await
        .map_err(connect_error)?;
    tracing::info!(tenant = %tenant.id, user = %user, "user connected");

    app.subscriptions
        .after_connect(&tenant, &record, &tokens.access_token)
        .await;
    let queued = app
        .queue
        .send(&[SyncJob {
            tenant: tenant.id.clone(),
            user: user.clone(),
            reason: JobReason::Connected,
            full: true,
            origin: None,
        }])
        .await;
    if let Err(e) = &queued {
        tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(e), "initial sync not queued; the scheduler will pick the user up");
        if let Err(e) = app
            .users
            .note_problem(
                &tenant.id,
                &user,
                ProblemCode::InitialSyncNotQueued,
                "The first sync could not be queued; the scheduled sync will run it.",
                now,
            )
            .await
        {
            tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "could not record a problem");
        }
    }

    if let Some(return_to) = state.return_to {
        let mut url = Url::parse(&return_to).map_err(|_| AuthError::ReturnToRefused)?;
        url.query_pairs_mut().append_pair("calsync", "connected");
        return Ok(Outcome::Redirect(url.to_string()));
    }
    let who = format!("{} → {}", claims.preferred_username, user);
    Ok(Outcome::Page(
        Page::new(lang, StatusCode::OK, Msg::ConnectedTitle)
            .para(Msg::Connected, Some(&who))
            .para(
                if queued.is_ok() {
                    Msg::FirstSyncQueued
                } else {
                    Msg::FirstSyncLater
                },
                None,
            ),
    ))
}

/// The tenant-wide link the operator hands the customer's administrator. For a tenant with
/// its own app it switches the tenant to app-only mode; for a publisher-app tenant it is the
/// onboarding consent: the delegated permissions users connect with (and, in app-only mode,
/// the application permission), for the directory the operator expects or any organisation.
async fn admin_consent(app: &App, request: &Request) -> Result<Outcome, AuthError> {
    let params = request.query_params();
    let (_claims, tenant) = verified_url(app, &params, LinkRoute::AdminConsent).await?;
    let redirect_uri = join_url(&public_base(app, request)?, "admin-consent/callback");
    let state_id = sign_in_state::new_state_id();
    let identity = app.tokens.identity();
    let url = match &tenant.app_credential {
        TenantApp::Own => {
            identity.admin_consent_url(app_registration(&tenant), &redirect_uri, &state_id)
        }
        TenantApp::Publisher(publisher) => {
            let settings = &tenant.settings;
            let authority = settings
                .directory
                .as_deref()
                .or(settings.expected_directory.as_deref())
                .unwrap_or(crate::services::tenants::MULTI_TENANT_AUTHORITY);
            identity.scoped_admin_consent_url(
                authority,
                &publisher.client_id,
                consent::consent_scopes(settings.mode),
                &redirect_uri,
                &state_id,
            )
        }
    }
    .map_err(internal)?;
    SignInState {
        kind: StateKind::AdminConsent,
        tenant: tenant.id.clone(),
        user: None,
        return_to: None,
        pkce_verifier_sealed: None,
        browser_hash: None,
    }
    .store(app.store.as_ref(), &state_id)
    .await
    .map_err(internal)?;
    Ok(Outcome::Redirect(url.to_string()))
}

async fn admin_consent_callback(app: &App, request: &Request) -> Result<Outcome, AuthError> {
    let params = request.query_params();
    if let Some(error) = microsoft_error(&params)? {
        return Err(error);
    }
    let state_id = params.required("state")?;
    let state = SignInState::load(app.store.as_ref(), state_id)
        .await
        .map_err(internal)?
        .filter(|s| s.kind == StateKind::AdminConsent)
        .ok_or(AuthError::StateUnknown)?;
    let tenant = app
        .tenants
        .context(&state.tenant)
        .await
        .map_err(tenant_error)?;
    if params
        .optional("admin_consent")?
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("true")
    {
        return Err(AuthError::ConsentDenied);
    }
    let consented_tenant = params.required("tenant")?;
    if let TenantApp::Publisher(publisher) = &tenant.app_credential {
        return onboarding_consent(app, request, &tenant, publisher, state_id, consented_tenant)
            .await;
    }
    if !consented_tenant.eq_ignore_ascii_case(tenant.directory()) {
        return Err(AuthError::WrongTenant);
    }
    if !SignInState::consume(app.store.as_ref(), state_id)
        .await
        .map_err(internal)?
    {
        return Err(AuthError::StateUnknown);
    }
    let now = now_epoch();
    app.tenants
        .update_settings(&tenant.id, |s| {
            s.admin_consent_at = Some(now);
            s.mode = AccessMode::AppOnly;
        })
        .await
        .map_err(tenant_error)?;
    tracing::info!(tenant = %tenant.id, "admin consent granted");
    Ok(Outcome::Page(
        Page::new(request.lang, StatusCode::OK, Msg::AdminConsentTitle)
            .para(Msg::AdminConsentDone, None),
    ))
}

/// The publisher app's consent came back for `tenant`: the state is spent first (a replay
/// loses), then the consent is checked against Microsoft and the tenant activated, or
/// refused with nothing changed but the spent state.
async fn onboarding_consent(
    app: &App,
    request: &Request,
    tenant: &TenantContext,
    publisher: &crate::services::publisher::PublisherApp,
    state_id: &str,
    consented_tenant: &str,
) -> Result<Outcome, AuthError> {
    let granted_scope = request.query_params().optional("scope")?.map(str::to_owned);
    if !SignInState::consume(app.store.as_ref(), state_id)
        .await
        .map_err(internal)?
    {
        return Err(AuthError::StateUnknown);
    }
    let directory = consent::confirm(
        app.tokens.identity(),
        &app.tenants,
        &tenant.id,
        &tenant.settings,
        publisher,
        consented_tenant,
        granted_scope.as_deref(),
    )
    .await
    .map_err(AuthError::ConsentRefused)?;
    tracing::info!(tenant = %tenant.id, %directory, "the directory's administrator consented; tenant active");
    Ok(Outcome::Page(
        Page::new(request.lang, StatusCode::OK, Msg::AdminConsentTitle)
            .para(Msg::OnboardedDone, None),
    ))
}

async fn disconnect(app: &App, request: &Request, body: &[u8]) -> Result<Outcome, AuthError> {
    // The signed fields come in the form body (the status page's button) or the query string.
    let is_form = request
        .header(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let params = if is_form && !body.is_empty() {
        Params::new(url::form_urlencoded::parse(body).into_owned().collect())
    } else {
        request.query_params()
    };
    let (claims, tenant) = verified_url(app, &params, LinkRoute::Disconnect).await?;
    if let Some(return_to) = &claims.return_to {
        check_return_to(return_to, &tenant)?;
    }
    let user = claims.user.ok_or(AuthError::NotConnected)?;
    disconnect_user(app, &tenant, &user)
        .await
        .map_err(|e| match e {
            DisconnectError::NotConnected => AuthError::NotConnected,
            other => internal(other),
        })?;
    // From the CRM's panel: back to it (`return_to` is signed and on the CRM's origin).
    if let Some(return_to) = claims.return_to {
        let mut url = Url::parse(&return_to).map_err(|_| AuthError::ReturnToRefused)?;
        url.query_pairs_mut().append_pair("calsync", "disconnected");
        return Ok(Outcome::Redirect(url.to_string()));
    }
    Ok(Outcome::Page(
        Page::new(request.lang, StatusCode::OK, Msg::DisconnectedTitle)
            .para(Msg::Disconnected, None),
    ))
}

/// Why `disconnect_user` could not disconnect (it is also the CLI's `user disconnect`).
#[derive(Debug, thiserror::Error)]
pub enum DisconnectError {
    #[error("the user has never connected")]
    NotConnected,
    #[error("reading the user")]
    Read(#[from] StoreError),
    #[error("recording the disconnection")]
    Write(#[from] UserWriteError),
}

/// Deletes the subscription and the tokens and marks the user disconnected. Links and
/// cursors stay, so connecting again continues where the sync left off, without duplicates.
pub async fn disconnect_user(
    app: &App,
    tenant: &TenantContext,
    user: &CrmUserName,
) -> Result<(), DisconnectError> {
    let Some(current) = app.users.get(&tenant.id, user).await? else {
        return Err(DisconnectError::NotConnected);
    };
    // While the tokens are still there: the subscription is deleted at Graph too.
    app.subscriptions.drop_for(tenant, &current.record).await;
    app.users
        .disconnect(&tenant.id, user, now_epoch())
        .await?
        .ok_or(DisconnectError::NotConnected)?;
    tracing::info!(tenant = %tenant.id, user = %user, "user disconnected");
    Ok(())
}

/// The user's status as JSON, for the CRM module's panel, which asks server to server with a
/// status link it signs for the moment: connected or not, as which Microsoft account, the last
/// sync each way, and the problems with what to do. Refusals are JSON too.
async fn status_json(app: &App, request: &Request) -> Response {
    let params = request.query_params();
    let refused =
        |status: StatusCode, why: &str| html::json(status, &serde_json::json!({ "error": why }));
    let (claims, tenant) = match verified_url(app, &params, LinkRoute::Status).await {
        Ok(verified) => verified,
        Err(AuthError::BadRequest(_)) => return refused(StatusCode::BAD_REQUEST, "bad_request"),
        Err(AuthError::Internal(e)) => {
            tracing::error!(error = %crate::errors::chain(&*e), "status.json failed");
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        }
        Err(_) => return refused(StatusCode::FORBIDDEN, "link_refused"),
    };
    let Some(user) = claims.user else {
        return refused(StatusCode::BAD_REQUEST, "bad_request");
    };
    let record = match app.users.get_for_status(&tenant.id, &user).await {
        Ok(record) => record,
        Err(e) => {
            tracing::error!(error = %crate::errors::chain(&e), "status.json failed");
            return refused(StatusCode::INTERNAL_SERVER_ERROR, "internal");
        }
    };
    // A tenant without Microsoft access says so first, to every user's panel.
    let access = tenant.settings.microsoft_access();
    let tenant_problem = (access != MicrosoftAccess::Active).then(|| {
        serde_json::json!({
            "code": match access {
                MicrosoftAccess::Revoked => "microsoft_access_revoked",
                _ => "microsoft_consent_pending",
            },
            "detail": match access {
                MicrosoftAccess::Revoked => "Your organisation's Microsoft 365 administrator removed calsync's access: nothing syncs until they consent again.",
                _ => "Waiting for your organisation's Microsoft 365 administrator to consent to calsync.",
            },
            "since": tenant.settings.access_revoked.as_ref().map(|r| r.at),
        })
    });
    let mut body = match record {
        None => serde_json::json!({ "user": user, "status": "never_connected", "problems": [] }),
        Some(record) => {
            let sync = record.last_sync.clone().unwrap_or_default();
            serde_json::json!({
                "user": user,
                "status": record.status.as_str(),
                "microsoft_account": record.ms_username,
                "connected_at": record.connected_at,
                "last_sync_to_crm_at": sync.to_crm_at,
                "last_sync_to_outlook_at": sync.to_outlook_at,
                "linked_events": sync.linked_events,
                "problems": record.problems.iter().map(|p| serde_json::json!({
                    "code": p.code.as_str(),
                    "detail": p.detail,
                    "since": p.since,
                })).collect::<Vec<_>>(),
            })
        }
    };
    body["microsoft_access"] = access.as_str().into();
    if let (Some(problem), Some(problems)) = (tenant_problem, body["problems"].as_array_mut()) {
        problems.insert(0, problem);
    }
    html::json(StatusCode::OK, &body)
}

async fn status(app: &App, request: &Request) -> Result<Outcome, AuthError> {
    let lang = request.lang;
    let params = request.query_params();
    let (claims, tenant) = verified_url(app, &params, LinkRoute::Status).await?;
    let user = claims.user.clone().ok_or(AuthError::NotConnected)?;
    let record = app
        .users
        .get_for_status(&tenant.id, &user)
        .await
        .map_err(internal)?;
    let public_url = &public_base(app, request)?;
    // The page offers to connect or reconnect with a connect link of its own, fresh and short.
    let connect_href = SignedUrl {
        route: LinkRoute::Connect,
        expires_at: now_epoch() + CONNECT_LINK_SECS,
        ..claims.clone()
    }
    .url(public_url, &tenant.secret.link_key);
    let mut page = Page::new(lang, StatusCode::OK, Msg::StatusTitle);
    let Some(record) = record else {
        page = page
            .para(Msg::StatusNever, None)
            .link(Msg::ConnectAction, &connect_href);
        return Ok(Outcome::Page(page));
    };
    let status_text = match record.status {
        UserStatus::Connected => Msg::StatusConnected,
        UserStatus::Disconnected => Msg::StatusDisconnected,
        UserStatus::ReconnectRequired => Msg::StatusReconnect,
    };
    let last = |at: Option<i64>| {
        at.map(format_utc)
            .unwrap_or_else(|| text(lang, Msg::NoSyncYet).to_owned())
    };
    let sync = record.last_sync.clone().unwrap_or_default();
    page = page
        .block(html! { p { strong { (text(lang, status_text)) } } })
        .block(html! {
            dl {
                dt { "CRM" } dd { (user.as_str()) }
                dt { (text(lang, Msg::MicrosoftAccount)) } dd { (record.ms_username) }
                dt { (text(lang, Msg::ConnectedSince)) } dd { (format_utc(record.connected_at)) }
                dt { (text(lang, Msg::LastSyncToCrm)) } dd { (last(sync.to_crm_at)) }
                dt { (text(lang, Msg::LastSyncToOutlook)) } dd { (last(sync.to_outlook_at)) }
                dt { (text(lang, Msg::LinkedEvents)) } dd { (sync.linked_events) }
            }
        })
        .block(html! { h2 { (text(lang, Msg::Problems)) } });
    if record.problems.is_empty() {
        page = page.para(Msg::NoProblems, None);
    } else {
        page = page.block(html! {
            ul {
                @for problem in &record.problems {
                    li { code { (problem.code.as_str()) } " " (problem.detail) }
                }
            }
        });
    }
    let journal = app
        .runner
        .journal(&tenant.id, &user, STATUS_JOURNAL_ENTRIES)
        .await
        .map_err(internal)?;
    page = page.block(journal_block(lang, &journal));
    match record.status {
        UserStatus::Connected => {
            page = page.block(disconnect_form(lang, &claims, &tenant));
        }
        UserStatus::ReconnectRequired => page = page.link(Msg::ReconnectAction, &connect_href),
        UserStatus::Disconnected => page = page.link(Msg::ConnectAction, &connect_href),
    }
    Ok(Outcome::Page(page))
}

/// How many journal entries the status page shows, newest first.
const STATUS_JOURNAL_ENTRIES: usize = 20;

/// The journal as a table: what calsync settled, which side's value it kept, and the value it
/// did not keep.
fn journal_block(lang: Lang, journal: &[JournalEntry]) -> maud::Markup {
    let side = |side: Side| match side {
        Side::Crm => "CRM",
        Side::Outlook => "Outlook",
    };
    html! {
        h2 { (text(lang, Msg::Journal)) }
        p { (text(lang, Msg::JournalIntro)) }
        @if journal.is_empty() {
            p { (text(lang, Msg::NoJournal)) }
        } @else {
            table.journal {
                thead { tr {
                    th { (text(lang, Msg::JournalWhen)) }
                    th { (text(lang, Msg::JournalEvent)) }
                    th { (text(lang, Msg::JournalWhat)) }
                    th { (text(lang, Msg::JournalKept)) }
                    th { (text(lang, Msg::JournalNotKept)) }
                } }
                tbody {
                    @for entry in journal {
                        tr data-reason=(entry.conflict.reason.code()) {
                            td { (format_utc(entry.at)) }
                            td { (entry.conflict.subject) }
                            td { code { (entry.what()) } }
                            td { (side(entry.conflict.winner)) }
                            td { (entry.not_kept().unwrap_or_else(|| text(lang, Msg::JournalDeleted).to_owned())) }
                        }
                    }
                }
            }
        }
    }
}

fn disconnect_form(lang: Lang, claims: &SignedUrl, tenant: &TenantContext) -> maud::Markup {
    // A disconnect signature of its own, for an hour: the status link cannot disconnect.
    let claims = SignedUrl {
        route: LinkRoute::Disconnect,
        expires_at: now_epoch() + LinkRoute::Disconnect.max_lifetime_secs(),
        ..claims.clone()
    };
    let signature = claims.sign(&tenant.secret.link_key);
    html! {
        form method="post" action="disconnect" {
            input type="hidden" name="tenant" value=(claims.tenant.as_str());
            @if let Some(user) = &claims.user {
                input type="hidden" name="user" value=(user.as_str());
            }
            input type="hidden" name="exp" value=(claims.expires_at);
            @if let Some(return_to) = &claims.return_to {
                input type="hidden" name="return_to" value=(return_to);
            }
            input type="hidden" name="sig" value=(signature);
            button.secondary type="submit" { (text(lang, Msg::DisconnectAction)) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_and_missing_params_are_refused() {
        let p = Params::new(vec![("a".into(), "1".into()), ("a".into(), "2".into())]);
        assert_eq!(p.optional("a"), Err(ParamError::Repeated("a")));
        assert_eq!(p.required("b"), Err(ParamError::Missing("b")));
        let long = Params::new(vec![("a".into(), "x".repeat(MAX_PARAM_LEN + 1))]);
        assert_eq!(long.optional("a"), Err(ParamError::TooLong("a")));
    }
}
