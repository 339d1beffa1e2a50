//! The auth function's routes (DESIGN §2): connect a CRM user to Office 365, admin consent for
//! app-only mode, disconnect, and the user's status page. Every refusal is a clear page with the
//! right status code and leaves storage as it was.

pub mod pages;
mod state;

use serde_json::json;
use url::Url;

use crate::app::App;
use crate::config::join_url;
use crate::ids::{CrmUserName, TenantId};
use crate::links::{LinkClaims, LinkError};
use crate::queue::{JobReason, SyncJob};
use crate::store::{now_epoch, record_to_item, Precondition, StoreError, WriteOp};
use crate::subscription::SubscriptionError;
use crate::tenant::{tenant_pk, AccessMode, TenantContext, TenantError};
use crate::token::TokenError;
use crate::users::{get_user, ms_link_sk, update_user, user_item, UserRecord, UserStatus};
use crate::web::{escape_html, ParamError, Params, WebRequest, WebResponse};
use pages::{text, Lang, Msg, Page};
use state::{OAuthState, StateKind};

/// Why a request was refused; each maps to one page and status code.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("link: {0}")]
    Link(LinkError),
    #[error("unknown tenant")]
    TenantUnknown,
    #[error("return_to outside the tenant's CRM origin")]
    ReturnToRefused,
    #[error("unknown, used or expired state")]
    StateUnknown,
    #[error("the user declined consent")]
    ConsentDenied,
    #[error("Microsoft returned error {0}")]
    Microsoft(String),
    #[error("the ID token's tenant is not the tenant's")]
    WrongTenant,
    #[error("token endpoint: {0}")]
    Token(TokenError),
    #[error("the Microsoft account is linked to another CRM user")]
    AlreadyLinked,
    #[error("not connected")]
    NotConnected,
    #[error("internal: {0}")]
    Internal(String),
}

impl From<ParamError> for AuthError {
    fn from(e: ParamError) -> Self {
        AuthError::BadRequest(e.to_string())
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Internal(e.to_string())
    }
}

impl From<TenantError> for AuthError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotFound(_) => AuthError::TenantUnknown,
            other => AuthError::Internal(other.to_string()),
        }
    }
}

impl AuthError {
    fn page(&self, lang: Lang) -> WebResponse {
        use Msg::*;
        let page = match self {
            AuthError::BadRequest(_) => {
                Page::new(lang, 400, BadRequestTitle).para(BadRequest, None)
            }
            AuthError::Link(LinkError::Expired) => Page::new(lang, 403, LinkInvalidTitle)
                .para(LinkExpired, None)
                .para(AskCrmForNewLink, None),
            AuthError::Link(_) => Page::new(lang, 403, LinkInvalidTitle)
                .para(LinkInvalid, None)
                .para(AskCrmForNewLink, None),
            AuthError::TenantUnknown => {
                Page::new(lang, 404, BadRequestTitle).para(TenantUnknown, None)
            }
            AuthError::ReturnToRefused => {
                Page::new(lang, 400, BadRequestTitle).para(ReturnToRefused, None)
            }
            AuthError::StateUnknown => {
                Page::new(lang, 400, StateUnknownTitle).para(StateUnknown, None)
            }
            AuthError::ConsentDenied => {
                Page::new(lang, 403, ConsentDeniedTitle).para(ConsentDenied, None)
            }
            AuthError::Microsoft(code) => {
                Page::new(lang, 400, MicrosoftErrorTitle).para(MicrosoftError, Some(code))
            }
            AuthError::WrongTenant => {
                Page::new(lang, 403, WrongTenantTitle).para(WrongTenant, None)
            }
            AuthError::Token(TokenError::Timeout) => {
                Page::new(lang, 504, SignInFailedTitle).para(TokenTimeout, None)
            }
            AuthError::Token(TokenError::Unavailable(_)) => {
                Page::new(lang, 502, SignInFailedTitle).para(TokenUnavailable, None)
            }
            AuthError::Token(TokenError::ReconnectRequired { error, aadsts })
            | AuthError::Token(TokenError::Refused { error, aadsts }) => {
                let code = match aadsts {
                    Some(n) => format!("{error} (AADSTS{n})"),
                    None => error.clone(),
                };
                Page::new(lang, 400, SignInFailedTitle).para(TokenRefused, Some(&code))
            }
            AuthError::Token(_) => {
                Page::new(lang, 502, SignInFailedTitle).para(TokenUnavailable, None)
            }
            AuthError::AlreadyLinked => {
                Page::new(lang, 409, AlreadyLinkedTitle).para(AlreadyLinked, None)
            }
            AuthError::NotConnected => {
                Page::new(lang, 404, NotConnectedTitle).para(NotConnected, None)
            }
            AuthError::Internal(_) => Page::new(lang, 500, InternalTitle).para(Internal, None),
        };
        page.render()
    }
}

enum Outcome {
    Page(Page),
    Redirect(String),
}

/// Routes one request of the auth function.
pub async fn handle(app: &App, request: &WebRequest) -> WebResponse {
    let lang = Lang::from_accept_language(request.header("accept-language"));
    let outcome = match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/connect") => connect(app, request).await,
        ("GET", "/callback") => callback(app, request, lang).await,
        ("GET", "/admin-consent") => admin_consent(app, request).await,
        ("GET", "/admin-consent/callback") => admin_consent_callback(app, request, lang).await,
        ("POST", "/disconnect") => disconnect(app, request, lang).await,
        ("GET", "/status") => status(app, request, lang).await,
        (
            _,
            "/connect"
            | "/callback"
            | "/admin-consent"
            | "/admin-consent/callback"
            | "/disconnect"
            | "/status",
        ) => {
            return Page::new(lang, 405, Msg::BadRequestTitle)
                .para(Msg::MethodNotAllowed, None)
                .render()
        }
        _ => {
            return Page::new(lang, 404, Msg::NotFoundTitle)
                .para(Msg::NotFound, None)
                .render()
        }
    };
    match outcome {
        Ok(Outcome::Page(page)) => page.render(),
        Ok(Outcome::Redirect(location)) => WebResponse::redirect(&location),
        Err(error) => {
            // Refusals are expected traffic; failures of ours are not.
            match &error {
                AuthError::Internal(_) | AuthError::Token(_) => {
                    tracing::error!(path = %request.path, error = %error, "auth request failed")
                }
                _ => tracing::warn!(path = %request.path, error = %error, "auth request refused"),
            }
            error.page(lang)
        }
    }
}

/// Reads and checks a signed link's parameters; `user_required` for per-user routes.
async fn verified_link(
    app: &App,
    params: &Params,
    user_required: bool,
) -> Result<(LinkClaims, TenantContext), AuthError> {
    let tenant = TenantId::parse(params.required("tenant")?)
        .map_err(|e| AuthError::BadRequest(e.to_string()))?;
    let user = match (params.optional("user")?, user_required) {
        (Some(u), true) => {
            Some(CrmUserName::parse(u).map_err(|e| AuthError::BadRequest(e.to_string()))?)
        }
        (None, true) => return Err(AuthError::BadRequest("user is missing".into())),
        (Some(_), false) => return Err(AuthError::BadRequest("unexpected user".into())),
        (None, false) => None,
    };
    let expires_at = params
        .required("exp")?
        .parse::<i64>()
        .map_err(|_| AuthError::BadRequest("exp is not a number".into()))?;
    let claims = LinkClaims {
        tenant,
        user,
        expires_at,
        return_to: params.optional("return_to")?.map(str::to_owned),
    };
    let signature = params.required("sig")?;
    let tenant = app.tenants.context(&claims.tenant).await?;
    claims
        .verify(&tenant.secret.link_key, signature, now_epoch())
        .map_err(AuthError::Link)?;
    Ok((claims, tenant))
}

/// `return_to` must be on the tenant's CRM (same scheme, host and port): no open redirects.
fn check_return_to(return_to: &str, tenant: &TenantContext) -> Result<(), AuthError> {
    let url = Url::parse(return_to).map_err(|_| AuthError::ReturnToRefused)?;
    if url.origin().ascii_serialization() != tenant.settings.crm_origin {
        return Err(AuthError::ReturnToRefused);
    }
    Ok(())
}

/// The auth function's public base URL: the configured one, or else this request's own host —
/// a Lambda Function URL only receives requests addressed to its own domain, and a function
/// cannot be told its own URL at deploy time.
fn public_base(app: &App, request: &WebRequest) -> Result<Url, AuthError> {
    if let Some(url) = &app.config.public_url {
        return Ok(url.clone());
    }
    let host = request
        .header("host")
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 253
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        })
        .ok_or_else(|| {
            AuthError::Internal(
                "CALSYNC_PUBLIC_URL is not set and the request has no usable Host".into(),
            )
        })?;
    Url::parse(&format!("https://{host}/")).map_err(|e| AuthError::Internal(e.to_string()))
}

fn redirect_uri(app: &App, request: &WebRequest) -> Result<String, AuthError> {
    Ok(join_url(&public_base(app, request)?, "callback"))
}

async fn connect(app: &App, request: &WebRequest) -> Result<Outcome, AuthError> {
    let params = Params::new(request.query_pairs());
    let (claims, tenant) = verified_link(app, &params, true).await?;
    if let Some(return_to) = &claims.return_to {
        check_return_to(return_to, &tenant)?;
    }
    let user = claims
        .user
        .clone()
        .ok_or_else(|| AuthError::BadRequest("user is missing".into()))?;
    let redirect_uri = redirect_uri(app, request)?;
    let state_id = state::new_state_id();
    let login_hint = get_user(app.store.as_ref(), &tenant.id, &user)
        .await?
        .map(|u| u.record.ms_username)
        .filter(|name| !name.is_empty());
    let authorize = app
        .tokens
        .authorize_url(
            &tenant.secret,
            &redirect_uri,
            &state_id,
            login_hint.as_deref(),
        )
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    let state = OAuthState {
        kind: StateKind::Connect,
        tenant: tenant.id.clone(),
        user: Some(user),
        return_to: claims.return_to.clone(),
        pkce_verifier_sealed: Some(
            tenant
                .sealing_key
                .seal(&authorize.pkce_verifier, &state::seal_context(&state_id))
                .map_err(|e| AuthError::Internal(e.to_string()))?,
        ),
    };
    state.store(app.store.as_ref(), &state_id).await?;
    Ok(Outcome::Redirect(authorize.url.to_string()))
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
    let aadsts = params
        .optional("error_description")?
        .and_then(crate::token::aadsts_code);
    // Only the short code is echoed, never Microsoft's free text.
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect();
    Ok(Some(AuthError::Microsoft(match aadsts {
        Some(n) => format!("{code} (AADSTS{n})"),
        None => code,
    })))
}

async fn callback(app: &App, request: &WebRequest, lang: Lang) -> Result<Outcome, AuthError> {
    let params = Params::new(request.query_pairs());
    if let Some(error) = microsoft_error(&params)? {
        return Err(error);
    }
    let state_id = params.required("state")?;
    let code = params.required("code")?;
    let state = OAuthState::load(app.store.as_ref(), state_id)
        .await?
        .filter(|s| s.kind == StateKind::Connect)
        .ok_or(AuthError::StateUnknown)?;
    let user = state.user.clone().ok_or(AuthError::StateUnknown)?;
    let tenant = app.tenants.context(&state.tenant).await?;
    let verifier = state
        .pkce_verifier_sealed
        .as_deref()
        .and_then(|sealed| {
            tenant
                .sealing_key
                .open(sealed, &state::seal_context(state_id))
                .ok()
        })
        .ok_or(AuthError::StateUnknown)?;

    let tokens = app
        .tokens
        .redeem_code(
            &tenant.secret,
            &redirect_uri(app, request)?,
            code,
            &verifier,
        )
        .await
        .map_err(AuthError::Token)?;
    let claims = tokens
        .id_claims
        .clone()
        .ok_or_else(|| AuthError::Token(TokenError::BadResponse("no ID token".into())))?;
    if !claims
        .tid
        .eq_ignore_ascii_case(&tenant.secret.azure_tenant_id)
    {
        return Err(AuthError::WrongTenant);
    }
    let refresh_token = tokens
        .refresh_token
        .clone()
        .ok_or_else(|| AuthError::Token(TokenError::BadResponse("no refresh token".into())))?;

    // One Outlook calendar feeds one CRM user: refuse a second link while the first is live.
    let store = app.store.as_ref();
    let pk = tenant_pk(&tenant.id);
    if let Some(link) = store.get(&pk, &ms_link_sk(&claims.oid)).await? {
        let linked_user = link.data.get("user").and_then(|v| v.as_str()).unwrap_or("");
        if linked_user != user.as_str() {
            let other_live = match CrmUserName::parse(linked_user) {
                Ok(other) => get_user(store, &tenant.id, &other)
                    .await?
                    .is_some_and(|u| u.record.status != UserStatus::Disconnected),
                Err(_) => false,
            };
            if other_live {
                return Err(AuthError::AlreadyLinked);
            }
        }
    }

    // The state is spent only now, so every refusal above leaves storage untouched; a replay
    // racing this one loses here.
    match store
        .delete(
            &OAuthState::pk(state_id),
            state::STATE_SK,
            Precondition::Exists,
        )
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) | Err(StoreError::ConditionFailed) => return Err(AuthError::StateUnknown),
        Err(e) => return Err(e.into()),
    }

    let now = now_epoch();
    let seal_context = UserRecord::seal_context(&tenant.id, &user);
    let seal = |value| {
        tenant
            .sealing_key
            .seal(value, &seal_context)
            .map_err(|e| AuthError::Internal(e.to_string()))
    };
    let existing = get_user(store, &tenant.id, &user).await?;
    let version = existing.as_ref().map(|u| u.version).unwrap_or(0);
    let previous = existing.map(|u| u.record);
    let record = UserRecord {
        tenant: tenant.id.clone(),
        user: user.clone(),
        status: UserStatus::Connected,
        ms_tenant_id: claims.tid.clone(),
        ms_user_id: claims.oid.clone(),
        ms_username: claims.preferred_username.clone(),
        refresh_token_sealed: Some(seal(&refresh_token)?),
        access_token_sealed: Some(seal(&tokens.access_token)?),
        access_token_expires_at: Some(tokens.expires_at),
        connected_at: now,
        updated_at: now,
        problems: Vec::new(),
        // A reconnect keeps what the sync knows; only the credentials and status change.
        subscription_id: previous.as_ref().and_then(|p| p.subscription_id.clone()),
        subscription_expires_at: previous.as_ref().and_then(|p| p.subscription_expires_at),
        last_sync: previous.as_ref().and_then(|p| p.last_sync.clone()),
        // The runner drops cursors and mappings that belong to another Microsoft account.
        sync_state: previous.as_ref().and_then(|p| p.sync_state.clone()),
    };
    let link = record_to_item(&pk, ms_link_sk(&claims.oid), &json!({ "user": user }))?;
    let mut ops = vec![
        WriteOp::Put(user_item(&record, version)?, Precondition::Version(version)),
        WriteOp::Put(link, Precondition::None),
    ];
    // Switching Microsoft accounts frees the old account's index entry.
    if let Some(old) = previous
        .as_ref()
        .filter(|p| !p.ms_user_id.is_empty() && p.ms_user_id != claims.oid)
    {
        ops.push(WriteOp::Delete {
            pk: pk.clone(),
            sk: ms_link_sk(&old.ms_user_id),
            precondition: Precondition::None,
        });
    }
    app.store.transact(ops).await?;
    tracing::info!(tenant = %tenant.id, user = %user, "user connected");

    after_connect(app, &tenant, &user, &tokens.access_token).await;
    let queued = app
        .queue
        .send(&[SyncJob {
            tenant: tenant.id.clone(),
            user: user.clone(),
            reason: JobReason::Connected,
            full: true,
            confirm_deletions: false,
        }])
        .await;
    if let Err(e) = &queued {
        tracing::error!(tenant = %tenant.id, user = %user, error = %e, "initial sync not queued; the scheduler will pick the user up");
        note_problem(
            app,
            &tenant.id,
            &user,
            "initial_sync_not_queued",
            "The first sync could not be queued; the scheduled sync will run it.",
        )
        .await;
    }

    if let Some(return_to) = state.return_to {
        let mut url = Url::parse(&return_to).map_err(|_| AuthError::ReturnToRefused)?;
        url.query_pairs_mut().append_pair("calsync", "connected");
        return Ok(Outcome::Redirect(url.to_string()));
    }
    let who = format!("{} → {}", claims.preferred_username, user);
    Ok(Outcome::Page(
        Page::new(lang, 200, Msg::ConnectedTitle)
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

/// Creates the Graph subscription through the seam and records the outcome on the user.
async fn after_connect(
    app: &App,
    tenant: &TenantContext,
    user: &CrmUserName,
    access_token: &crate::secret::Secret,
) {
    match app
        .subscriptions
        .create_for_user(tenant, user, access_token)
        .await
    {
        Ok(created) => {
            let result = update_user(app.store.as_ref(), &tenant.id, user, |r| {
                r.subscription_id = Some(created.id.clone());
                r.subscription_expires_at = Some(created.expires_at);
                r.clear_problem("notifications_unavailable");
                r.clear_problem("subscription_failed");
            })
            .await;
            if let Err(e) = result {
                tracing::error!(tenant = %tenant.id, user = %user, error = %e, "subscription created but not recorded");
            }
        }
        Err(SubscriptionError::NotAvailable(why)) => {
            note_problem(app, &tenant.id, user, "notifications_unavailable", why).await;
        }
        Err(SubscriptionError::Failed(why)) => {
            tracing::warn!(tenant = %tenant.id, user = %user, error = %why, "subscription not created");
            note_problem(
                app,
                &tenant.id,
                user,
                "subscription_failed",
                "Change notifications could not be set up yet; calsync retries on its next round.",
            )
            .await;
        }
    }
}

async fn note_problem(app: &App, tenant: &TenantId, user: &CrmUserName, code: &str, detail: &str) {
    let now = now_epoch();
    let result = update_user(app.store.as_ref(), tenant, user, |r| {
        r.set_problem(code, detail, now)
    })
    .await;
    if let Err(e) = result {
        tracing::error!(tenant = %tenant, user = %user, error = %e, "could not record a problem");
    }
}

async fn admin_consent(app: &App, request: &WebRequest) -> Result<Outcome, AuthError> {
    let params = Params::new(request.query_pairs());
    let (_claims, tenant) = verified_link(app, &params, false).await?;
    let redirect_uri = join_url(&public_base(app, request)?, "admin-consent/callback");
    let state_id = state::new_state_id();
    let url = app
        .tokens
        .admin_consent_url(&tenant.secret, &redirect_uri, &state_id)
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    OAuthState {
        kind: StateKind::AdminConsent,
        tenant: tenant.id.clone(),
        user: None,
        return_to: None,
        pkce_verifier_sealed: None,
    }
    .store(app.store.as_ref(), &state_id)
    .await?;
    Ok(Outcome::Redirect(url.to_string()))
}

async fn admin_consent_callback(
    app: &App,
    request: &WebRequest,
    lang: Lang,
) -> Result<Outcome, AuthError> {
    let params = Params::new(request.query_pairs());
    if let Some(error) = microsoft_error(&params)? {
        return Err(error);
    }
    let state_id = params.required("state")?;
    let state = OAuthState::load(app.store.as_ref(), state_id)
        .await?
        .filter(|s| s.kind == StateKind::AdminConsent)
        .ok_or(AuthError::StateUnknown)?;
    let tenant = app.tenants.context(&state.tenant).await?;
    if params
        .optional("admin_consent")?
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some("true")
    {
        return Err(AuthError::ConsentDenied);
    }
    let consented_tenant = params.required("tenant")?;
    if !consented_tenant.eq_ignore_ascii_case(&tenant.secret.azure_tenant_id) {
        return Err(AuthError::WrongTenant);
    }
    match app
        .store
        .delete(
            &OAuthState::pk(state_id),
            state::STATE_SK,
            Precondition::Exists,
        )
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) | Err(StoreError::ConditionFailed) => return Err(AuthError::StateUnknown),
        Err(e) => return Err(e.into()),
    }
    let now = now_epoch();
    app.tenants
        .update_settings(&tenant.id, |s| {
            s.admin_consent_at = Some(now);
            s.mode = AccessMode::AppOnly;
        })
        .await?;
    tracing::info!(tenant = %tenant.id, "admin consent granted");
    Ok(Outcome::Page(
        Page::new(lang, 200, Msg::AdminConsentTitle).para(Msg::AdminConsentDone, None),
    ))
}

async fn disconnect(app: &App, request: &WebRequest, lang: Lang) -> Result<Outcome, AuthError> {
    // The signed fields come in the form body (the status page's button) or the query string.
    let mut pairs = request.form_pairs();
    if pairs.is_empty() {
        pairs = request.query_pairs();
    }
    let params = Params::new(pairs);
    let (claims, tenant) = verified_link(app, &params, true).await?;
    let user = claims.user.ok_or(AuthError::NotConnected)?;
    disconnect_user(app, &tenant, &user).await?;
    Ok(Outcome::Page(
        Page::new(lang, 200, Msg::DisconnectedTitle).para(Msg::Disconnected, None),
    ))
}

/// Deletes the subscription and the tokens and marks the user disconnected. Mappings and
/// cursors stay, so connecting again continues where the sync left off, without duplicates.
pub async fn disconnect_user(
    app: &App,
    tenant: &TenantContext,
    user: &CrmUserName,
) -> Result<(), DisconnectError> {
    let store = app.store.as_ref();
    let Some(current) = get_user(store, &tenant.id, user)
        .await
        .map_err(DisconnectError::from_store)?
    else {
        return Err(DisconnectError::NotConnected);
    };
    if let Some(subscription_id) = &current.record.subscription_id {
        match app.tokens.user_access_token(store, tenant, user).await {
            Ok(token) => {
                if let Err(e) = app
                    .subscriptions
                    .delete(tenant, subscription_id, &token)
                    .await
                {
                    tracing::warn!(tenant = %tenant.id, user = %user, error = %e, "subscription not deleted; it lapses on its own");
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, user = %user, error = %e, "no token to delete the subscription; it lapses on its own")
            }
        }
    }
    let now = now_epoch();
    let ms_user_id = current.record.ms_user_id.clone();
    update_user(store, &tenant.id, user, |r| {
        r.status = UserStatus::Disconnected;
        r.refresh_token_sealed = None;
        r.access_token_sealed = None;
        r.access_token_expires_at = None;
        r.subscription_id = None;
        r.subscription_expires_at = None;
        r.problems.clear();
        r.updated_at = now;
    })
    .await
    .map_err(DisconnectError::from_store)?;
    if !ms_user_id.is_empty() {
        store
            .delete(
                &tenant_pk(&tenant.id),
                &ms_link_sk(&ms_user_id),
                Precondition::None,
            )
            .await
            .map_err(DisconnectError::from_store)?;
    }
    tracing::info!(tenant = %tenant.id, user = %user, "user disconnected");
    Ok(())
}

/// Why `disconnect_user` could not disconnect (it is also the CLI's `user disconnect`).
#[derive(Debug, thiserror::Error)]
pub enum DisconnectError {
    #[error("the user has never connected")]
    NotConnected,
    #[error("storage: {0}")]
    Store(String),
}

impl DisconnectError {
    fn from_store(e: StoreError) -> Self {
        DisconnectError::Store(e.to_string())
    }
}

impl From<DisconnectError> for AuthError {
    fn from(e: DisconnectError) -> Self {
        match e {
            DisconnectError::NotConnected => AuthError::NotConnected,
            DisconnectError::Store(s) => AuthError::Internal(s),
        }
    }
}

async fn status(app: &App, request: &WebRequest, lang: Lang) -> Result<Outcome, AuthError> {
    let params = Params::new(request.query_pairs());
    let (claims, tenant) = verified_link(app, &params, true).await?;
    let user = claims.user.clone().ok_or(AuthError::NotConnected)?;
    let record = get_user(app.store.as_ref(), &tenant.id, &user)
        .await?
        .map(|u| u.record);
    let public_url = &public_base(app, request)?;
    // The status link's signature is a connect signature too (same fields), so the page can
    // offer to connect or reconnect without a new link from the CRM.
    let connect_href = claims.url(public_url, "connect", &tenant.secret.link_key);
    let mut page = Page::new(lang, 200, Msg::StatusTitle);
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
    let details = format!(
        "<dl><dt>CRM</dt><dd>{user}</dd><dt>{ms}</dt><dd>{account}</dd><dt>{since_label}</dt><dd>{since}</dd>\
<dt>{to_crm}</dt><dd>{to_crm_at}</dd><dt>{to_outlook}</dt><dd>{to_outlook_at}</dd>\
<dt>{linked_label}</dt><dd>{linked}</dd></dl>",
        user = escape_html(user.as_str()),
        ms = escape_html(text(lang, Msg::MicrosoftAccount)),
        account = escape_html(&record.ms_username),
        since_label = escape_html(text(lang, Msg::ConnectedSince)),
        since = escape_html(&format_utc(record.connected_at)),
        to_crm = escape_html(text(lang, Msg::LastSyncToCrm)),
        to_crm_at = escape_html(&last(sync.to_crm_at)),
        to_outlook = escape_html(text(lang, Msg::LastSyncToOutlook)),
        to_outlook_at = escape_html(&last(sync.to_outlook_at)),
        linked_label = escape_html(text(lang, Msg::LinkedEvents)),
        linked = sync.linked_events,
    );
    page = page
        .html_block(format!(
            "<p><strong>{}</strong></p>",
            escape_html(text(lang, status_text))
        ))
        .html_block(details)
        .html_block(format!(
            "<h2>{}</h2>",
            escape_html(text(lang, Msg::Problems))
        ));
    if record.problems.is_empty() {
        page = page.para(Msg::NoProblems, None);
    } else {
        let items: String = record
            .problems
            .iter()
            .map(|p| {
                format!(
                    "<li><code>{}</code> {}</li>",
                    escape_html(&p.code),
                    escape_html(&p.detail)
                )
            })
            .collect();
        page = page.html_block(format!("<ul>{items}</ul>"));
    }
    match record.status {
        UserStatus::Connected => {
            page = page.html_block(disconnect_form(lang, &claims, &tenant));
        }
        UserStatus::ReconnectRequired => page = page.link(Msg::ReconnectAction, &connect_href),
        UserStatus::Disconnected => page = page.link(Msg::ConnectAction, &connect_href),
    }
    Ok(Outcome::Page(page))
}

fn disconnect_form(lang: Lang, claims: &LinkClaims, tenant: &TenantContext) -> String {
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            name,
            escape_html(value)
        )
    };
    let mut fields = hidden("tenant", claims.tenant.as_str());
    if let Some(user) = &claims.user {
        fields.push_str(&hidden("user", user.as_str()));
    }
    fields.push_str(&hidden("exp", &claims.expires_at.to_string()));
    if let Some(r) = &claims.return_to {
        fields.push_str(&hidden("return_to", r));
    }
    fields.push_str(&hidden("sig", &claims.sign(&tenant.secret.link_key)));
    format!(
        "<form method=\"post\" action=\"disconnect\">{fields}<button class=\"secondary\" type=\"submit\">{}</button></form>",
        escape_html(text(lang, Msg::DisconnectAction))
    )
}

/// `2026-11-27 09:30 UTC` from epoch seconds (as pages and the CLI show times).
pub fn format_utc(epoch: i64) -> String {
    match jiff::Timestamp::from_second(epoch) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => format!("@{epoch}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_782_600), "2026-11-27 12:30 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
    }
}
