//! `GET /{tenant}/oauth2/v2.0/authorize`, the sign-in page and `GET /{tenant}/adminconsent`.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::errors::Diagnostics;
use super::pages::{self, SignInPurpose, SignInView};
use super::pkce::{self, ChallengeMethod, PkceChallenge};
use super::scopes::{ScopeError, ScopeSet};
use super::state::{
    App, AuthorizationCode, IdentityState, PendingRequest, PendingSignIn, ResponseMode, TenantRef,
};
use super::Identity;
use crate::support::{new_guid, random_token};

pub(crate) type Params = BTreeMap<String, String>;

/// Query or form pairs; the first occurrence of a repeated name wins.
pub(crate) fn parse_params(encoded: &[u8]) -> Params {
    let mut params = Params::new();
    for (name, value) in url::form_urlencoded::parse(encoded) {
        params
            .entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    params
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params.get(name).map(String::as_str)
}

/// How to answer the client once its redirect URI is known to be registered.
#[derive(Debug, Clone)]
pub(crate) struct ReplyTarget {
    redirect_uri: String,
    mode: ResponseMode,
    state: Option<String>,
}

impl ReplyTarget {
    fn code(&self, code: &str) -> Response {
        let session_state = new_guid();
        let mut fields = vec![("code", code)];
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        fields.push(("session_state", &session_state));
        self.deliver(&fields)
    }

    /// Microsoft's answer to a missing or unknown scope.
    fn scope_error(&self, problem: ScopeError) -> Response {
        match problem {
            ScopeError::Missing => self.error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'scope'.",
            ),
            ScopeError::Invalid(scope) => self.error(
                "invalid_scope",
                70011,
                &format!(
                    "The provided value for the input parameter 'scope' is not valid. \
                     The scope {scope} is not valid."
                ),
            ),
        }
    }

    fn error(&self, error: &str, code: u32, message: &str) -> Response {
        let description = Diagnostics::new(None).describe(code, message);
        let mut fields = vec![("error", error), ("error_description", &description)];
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        self.deliver(&fields)
    }

    /// `admin_consent=True&tenant=…&state=…`, and on the v2.0 endpoint `scope`: what was
    /// granted, as Microsoft's example reply has it.
    fn admin_consent_granted(&self, tenant_id: &str, scope: Option<&str>) -> Response {
        let mut fields = vec![("admin_consent", "True"), ("tenant", tenant_id)];
        if let Some(state) = &self.state {
            fields.push(("state", state));
        }
        if let Some(scope) = scope {
            fields.push(("scope", scope));
        }
        self.deliver(&fields)
    }

    fn deliver(&self, fields: &[(&str, &str)]) -> Response {
        if self.mode == ResponseMode::FormPost {
            return pages::form_post_page(&self.redirect_uri, fields);
        }
        // Registration checked that the URI parses, so this fails only on a broken invariant.
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        match self.mode {
            ResponseMode::Fragment => {
                let encoded = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish();
                url.set_fragment(Some(&encoded));
            }
            // Appending keeps whatever query the registered redirect URI already has.
            _ => {
                url.query_pairs_mut().extend_pairs(fields);
            }
        }
        found(url.as_str())
    }
}

fn found(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// An authorize request that passed every check and waits for a user.
pub(crate) struct ValidAuthorizeRequest {
    client_id: String,
    redirect_uri: String,
    reply: ReplyTarget,
    scopes: ScopeSet,
    pkce: Option<PkceChallenge>,
    nonce: Option<String>,
    tenant_segment: String,
    tenant: TenantRef,
}

/// An admin consent request that passed every check and waits for an administrator.
pub(crate) struct ValidAdminConsentRequest {
    client_id: String,
    reply: ReplyTarget,
    tenant: TenantRef,
    grant: ConsentGrant,
}

/// What an administrator's Accept grants the app in their tenant.
#[derive(Clone)]
struct ConsentGrant {
    delegated: Vec<String>,
    roles: Vec<String>,
    /// The v2.0 endpoint's `scope` reply; None on the original endpoint, which has none.
    reply_scope: Option<String>,
}

impl ConsentGrant {
    /// `/adminconsent` and `.default` grant everything configured on the registration; named
    /// scopes (v2.0 only) grant those delegated permissions and no application permission,
    /// which can only be configured statically.
    fn from_scope(app: &App, scope: Option<&str>) -> Result<Self, ScopeError> {
        let registration = &app.registration;
        let everything = || ConsentGrant {
            delegated: registration.delegated_permissions.clone(),
            roles: registration.application_permissions.clone(),
            reply_scope: None,
        };
        let Some(raw) = scope else {
            return Ok(everything());
        };
        let parsed = ScopeSet::parse(raw, &registration.delegated_permissions)?;
        let uses_default = raw
            .split_whitespace()
            .any(|item| item.to_ascii_lowercase().ends_with("/.default") || item == ".default");
        let mut grant = if uses_default {
            everything()
        } else {
            ConsentGrant {
                delegated: parsed.graph,
                roles: Vec::new(),
                reply_scope: None,
            }
        };
        grant.reply_scope = Some(raw.split_whitespace().collect::<Vec<_>>().join(" "));
        Ok(grant)
    }
}

pub(super) async fn authorize(
    State(identity): State<Identity>,
    Path(tenant_segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_params(query.unwrap_or_default().as_bytes());
    identity.with_state(|state| {
        IdentityState::record_request(&mut state.authorize_requests, &tenant_segment, &params);
        begin_authorize(state, &tenant_segment, &params)
    })
}

/// `/{tenant}/adminconsent`: consent to everything configured on the app.
pub(super) async fn admin_consent(
    State(identity): State<Identity>,
    Path(tenant_segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    consent_request(&identity, &tenant_segment, query, false)
}

/// `/{tenant}/v2.0/adminconsent`: consent to the permissions `scope` names (required).
pub(super) async fn admin_consent_v2(
    State(identity): State<Identity>,
    Path(tenant_segment): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    consent_request(&identity, &tenant_segment, query, true)
}

/// Records an admin-consent request and begins it (`v2`: the scope-naming endpoint).
fn consent_request(
    identity: &Identity,
    tenant_segment: &str,
    query: Option<String>,
    v2: bool,
) -> Response {
    let params = parse_params(query.unwrap_or_default().as_bytes());
    identity.with_state(|state| {
        IdentityState::record_request(&mut state.admin_consent_requests, tenant_segment, &params);
        begin_admin_consent(state, tenant_segment, &params, v2)
    })
}

pub(super) async fn sign_in(
    State(identity): State<Identity>,
    Path(tenant_segment): Path<String>,
    Form(fields): Form<HashMap<String, String>>,
) -> Response {
    identity.with_state(|state| finish_sign_in(state, &tenant_segment, &fields))
}

fn bad_request_page(code: u32, message: &str) -> Response {
    pages::error_page(StatusCode::BAD_REQUEST, code, message)
}

/// A request the endpoint must not redirect for; rendered with [`bad_request_page`].
struct UntrustedRequest {
    code: u32,
    message: String,
}

impl UntrustedRequest {
    fn new(code: u32, message: impl Into<String>) -> Self {
        UntrustedRequest {
            code,
            message: message.into(),
        }
    }

    fn page(&self) -> Response {
        bad_request_page(self.code, &self.message)
    }
}

/// Checks that must pass before the endpoint may redirect anywhere: tenant, app, redirect URI.
fn trusted_client(
    state: &IdentityState,
    tenant_segment: &str,
    params: &Params,
) -> Result<(TenantRef, App, String), UntrustedRequest> {
    let tenant = state
        .resolve_tenant_segment(tenant_segment)
        .ok_or_else(|| {
            UntrustedRequest::new(
                90002,
                format!("Tenant '{tenant_segment}' not found. Check the tenant id in the URL."),
            )
        })?;
    let Some(client_id) = param(params, "client_id") else {
        return Err(UntrustedRequest::new(
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        ));
    };
    let app = state
        .app(client_id)
        .filter(|app| match &tenant {
            TenantRef::Specific(tenant_id) => app.accepts_users_from(tenant_id),
            TenantRef::AnyOrganization(_) => true,
        })
        .ok_or_else(|| {
            UntrustedRequest::new(
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant_segment}'. The app may not be installed there, or the request \
                     went to the wrong tenant."
                ),
            )
        })?;
    if matches!(tenant, TenantRef::AnyOrganization(_)) && !app.registration.multi_tenant {
        return Err(UntrustedRequest::new(
            50194,
            format!(
                "Application '{client_id}' is single-tenant, so the /{tenant_segment} endpoint \
                 cannot be used with it. Use the tenant-specific endpoint."
            ),
        ));
    }
    let Some(redirect_uri) = param(params, "redirect_uri") else {
        return Err(UntrustedRequest::new(900971, "No reply address provided."));
    };
    // Exact string comparison, as Microsoft does for web redirect URIs.
    if !app
        .registration
        .redirect_uris
        .iter()
        .any(|registered| registered == redirect_uri)
    {
        return Err(UntrustedRequest::new(
            50011,
            format!(
                "The redirect URI '{redirect_uri}' in the request does not match any redirect \
                 URI registered for the application '{client_id}'."
            ),
        ));
    }
    Ok((tenant, app.clone(), redirect_uri.to_owned()))
}

/// The tenant whose sign-in settings apply: the one in the path, else the hinted user's,
/// else the app's home tenant.
fn signing_tenant(
    state: &IdentityState,
    tenant: &TenantRef,
    login_hint: Option<&str>,
    app: &App,
) -> String {
    if let Some(tenant_id) = tenant.specific() {
        return tenant_id.to_owned();
    }
    login_hint
        .and_then(|hint| state.user_by_username(hint))
        .filter(|user| app.accepts_users_from(&user.tenant_id))
        .map(|user| user.tenant_id.clone())
        .unwrap_or_else(|| app.home_tenant.clone())
}

/// The auto-approve user of the tenant, unless the client hinted at someone else.
fn auto_approved_user(
    state: &IdentityState,
    tenant_id: &str,
    login_hint: Option<&str>,
) -> Option<String> {
    let oid = state.tenants.get(tenant_id)?.auto_approve_oid.as_deref()?;
    let user = state.user(oid)?;
    let hint_matches =
        login_hint.is_none_or(|hint| hint.trim().eq_ignore_ascii_case(&user.preferred_username));
    hint_matches.then(|| user.oid.clone())
}

fn begin_authorize(state: &mut IdentityState, tenant_segment: &str, params: &Params) -> Response {
    let (tenant, app, redirect_uri) = match trusted_client(state, tenant_segment, params) {
        Ok(trusted) => trusted,
        Err(untrusted) => return untrusted.page(),
    };
    let requested_mode = param(params, "response_mode");
    let mode = match requested_mode {
        None | Some("query") => Some(ResponseMode::Query),
        Some("fragment") => Some(ResponseMode::Fragment),
        Some("form_post") => Some(ResponseMode::FormPost),
        Some(_) => None,
    };
    let reply = ReplyTarget {
        redirect_uri: redirect_uri.clone(),
        mode: mode.unwrap_or(ResponseMode::Query),
        state: params.get("state").cloned(),
    };
    if mode.is_none() {
        return reply.error(
            "invalid_request",
            70007,
            &format!(
                "The response_mode '{}' is not supported.",
                requested_mode.unwrap_or_default()
            ),
        );
    }
    match param(params, "response_type") {
        Some("code") => {}
        None => {
            return reply.error(
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'response_type'.",
            )
        }
        Some(other) => {
            return reply.error(
                "unsupported_response_type",
                70005,
                &format!(
                    "The response_type '{other}' is not enabled for this application; \
                     only the authorization code flow is."
                ),
            )
        }
    }
    let scopes = match ScopeSet::parse(
        param(params, "scope").unwrap_or_default(),
        &app.registration.delegated_permissions,
    ) {
        Ok(scopes) => scopes,
        Err(problem) => return reply.scope_error(problem),
    };
    let pkce = match param(params, "code_challenge") {
        None => None,
        Some(challenge) => {
            let method_name = param(params, "code_challenge_method");
            let Some(method) = ChallengeMethod::parse(method_name) else {
                return reply.error(
                    "invalid_request",
                    9002313,
                    &format!(
                        "Invalid request. The code_challenge_method '{}' is not supported; \
                         use S256.",
                        method_name.unwrap_or_default()
                    ),
                );
            };
            if !pkce::is_well_formed(challenge) {
                return reply.error(
                    "invalid_request",
                    501491,
                    "Invalid size of Code_Challenge parameter.",
                );
            }
            Some(PkceChallenge {
                challenge: challenge.to_owned(),
                method,
            })
        }
    };
    let login_hint = param(params, "login_hint");
    let tenant_id = signing_tenant(state, &tenant, login_hint, &app);
    if let Some(settings) = state.tenants.get_mut(&tenant_id) {
        if settings.deny_next_authorize {
            settings.deny_next_authorize = false;
            return reply.error(
                "access_denied",
                65004,
                "User declined to consent to access the app.",
            );
        }
    }
    let request = ValidAuthorizeRequest {
        client_id: app.client_id().to_owned(),
        redirect_uri,
        reply,
        scopes,
        pkce,
        nonce: params.get("nonce").cloned(),
        tenant_segment: tenant_segment.to_ascii_lowercase(),
        tenant,
    };
    if let Some(oid) = auto_approved_user(state, &tenant_id, login_hint) {
        return complete_authorize(state, request, &oid, &tenant_id);
    }
    if param(params, "prompt") == Some("none") {
        return request.reply.error(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        );
    }
    show_sign_in(
        state,
        tenant_segment,
        login_hint,
        PendingRequest::Authorize(request),
    )
}

fn complete_authorize(
    state: &mut IdentityState,
    request: ValidAuthorizeRequest,
    oid: &str,
    tenant_id: &str,
) -> Response {
    let now = Instant::now();
    state.prune(now);
    // Consenting installs a multi-tenant app in the user's tenant.
    state.note_user_consent(tenant_id, &request.client_id);
    let code = state.new_code(AuthorizationCode {
        client_id: request.client_id,
        redirect_uri: request.redirect_uri,
        tenant_segment: request.tenant_segment,
        tenant_id: tenant_id.to_owned(),
        oid: oid.to_owned(),
        scopes: request.scopes,
        pkce: request.pkce,
        nonce: request.nonce,
        expires_at: now + state.code_lifetime,
        redeemed: false,
    });
    request.reply.code(&code)
}

fn begin_admin_consent(
    state: &mut IdentityState,
    tenant_segment: &str,
    params: &Params,
    v2: bool,
) -> Response {
    let (tenant, app, redirect_uri) = match trusted_client(state, tenant_segment, params) {
        Ok(trusted) => trusted,
        Err(untrusted) => return untrusted.page(),
    };
    let reply = ReplyTarget {
        redirect_uri,
        mode: ResponseMode::Query,
        state: params.get("state").cloned(),
    };
    let scope = if v2 {
        match param(params, "scope") {
            Some(scope) => Some(scope),
            None => {
                return reply.error(
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'scope'.",
                )
            }
        }
    } else {
        None
    };
    let grant = match ConsentGrant::from_scope(&app, scope) {
        Ok(grant) => grant,
        Err(problem) => return reply.scope_error(problem),
    };
    let login_hint = param(params, "login_hint");
    let tenant_id = signing_tenant(state, &tenant, login_hint, &app);
    if let Some(settings) = state.tenants.get_mut(&tenant_id) {
        if settings.deny_next_admin_consent {
            settings.deny_next_admin_consent = false;
            return admin_declined(&reply);
        }
    }
    let request = ValidAdminConsentRequest {
        client_id: app.client_id().to_owned(),
        reply,
        tenant,
        grant,
    };
    if auto_approved_user(state, &tenant_id, login_hint).is_some() {
        return complete_admin_consent(state, request, &tenant_id);
    }
    show_sign_in(
        state,
        tenant_segment,
        login_hint,
        PendingRequest::AdminConsent(request),
    )
}

/// Microsoft's documented failure for admin consent is `permission_denied`.
fn admin_declined(reply: &ReplyTarget) -> Response {
    reply.error(
        "permission_denied",
        65004,
        "The administrator declined to grant the requested permissions.",
    )
}

fn complete_admin_consent(
    state: &mut IdentityState,
    request: ValidAdminConsentRequest,
    tenant_id: &str,
) -> Response {
    let grant = request.grant;
    // The tenant exists: its user just signed in.
    if state
        .record_admin_consent(tenant_id, &request.client_id, grant.delegated, grant.roles)
        .is_err()
    {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    request
        .reply
        .admin_consent_granted(tenant_id, grant.reply_scope.as_deref())
}

fn show_sign_in(
    state: &mut IdentityState,
    tenant_segment: &str,
    login_hint: Option<&str>,
    request: PendingRequest,
) -> Response {
    let now = Instant::now();
    state.prune(now);
    let flow_id = random_token(24);
    let pending = PendingSignIn {
        started: now,
        tenant_segment: tenant_segment.to_owned(),
        login_hint: login_hint.map(str::to_owned),
        request,
    };
    let page = render_sign_in(&flow_id, &pending, None);
    state.pending_sign_ins.insert(flow_id, pending);
    page
}

fn render_sign_in(flow_id: &str, pending: &PendingSignIn, problem: Option<&str>) -> Response {
    let (client_id, purpose) = match &pending.request {
        PendingRequest::Authorize(request) => (&request.client_id, SignInPurpose::UserConsent),
        PendingRequest::AdminConsent(request) => (&request.client_id, SignInPurpose::AdminConsent),
    };
    pages::sign_in_page(&SignInView {
        tenant_segment: &pending.tenant_segment,
        flow_id,
        client_id,
        purpose,
        username: pending.login_hint.as_deref(),
        problem,
    })
}

fn finish_sign_in(
    state: &mut IdentityState,
    tenant_segment: &str,
    fields: &HashMap<String, String>,
) -> Response {
    let flow_id = fields.get("flow").map(String::as_str).unwrap_or_default();
    let Some(pending) = state
        .pending_sign_ins
        .remove(flow_id)
        .filter(|pending| pending.tenant_segment.eq_ignore_ascii_case(tenant_segment))
    else {
        return bad_request_page(
            50089,
            "This sign-in session is unknown or has expired. Start the sign-in again.",
        );
    };
    match fields.get("action").map(String::as_str) {
        Some("accept") => {}
        _ => {
            return match pending.request {
                PendingRequest::Authorize(request) => request.reply.error(
                    "access_denied",
                    65004,
                    "User declined to consent to access the app.",
                ),
                PendingRequest::AdminConsent(request) => admin_declined(&request.reply),
            }
        }
    }
    let username = fields
        .get("username")
        .map(String::as_str)
        .unwrap_or_default();
    let allowed_user = state.user_by_username(username).filter(|user| {
        let (tenant, client_id) = match &pending.request {
            PendingRequest::Authorize(request) => (&request.tenant, &request.client_id),
            PendingRequest::AdminConsent(request) => (&request.tenant, &request.client_id),
        };
        let tenant_fits = tenant
            .specific()
            .is_none_or(|tenant_id| tenant_id == user.tenant_id);
        let app_fits = state
            .app(client_id)
            .is_some_and(|app| app.accepts_users_from(&user.tenant_id));
        tenant_fits && app_fits
    });
    let Some(user) = allowed_user.cloned() else {
        let page = render_sign_in(
            flow_id,
            &pending,
            Some("AADSTS50034: We couldn't find an account with that username in this directory."),
        );
        state.pending_sign_ins.insert(flow_id.to_owned(), pending);
        return page;
    };
    match pending.request {
        PendingRequest::Authorize(request) => {
            complete_authorize(state, request, &user.oid, &user.tenant_id)
        }
        PendingRequest::AdminConsent(request) => {
            complete_admin_consent(state, request, &user.tenant_id)
        }
    }
}
