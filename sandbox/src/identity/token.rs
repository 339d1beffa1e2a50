//! `POST /{tenant}/oauth2/v2.0/token`: client authentication and the three grants calsync uses.

use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::authorize::{parse_params, Params};
use super::errors::{add_token_response_headers, AadError, Diagnostics};
use super::scopes::{check_app_only_scope, AppScopeError, ScopeError, ScopeSet};
use super::state::{
    AccessTokenRecord, App, IdentityState, RefreshTokenProblem, RefreshTokenRecord, TenantRef, User,
};
use super::{credentials, jwt, pkce, AccessTokenInfo, Identity, TokenFault};
use crate::support::{aad_timestamp, base64url, random_token, unix_seconds};

/// Audience of the access tokens the sandbox issues: it knows one resource, Graph.
const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// ID tokens are valid for an hour at Microsoft, whatever the access token lifetime.
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// A successful token response, keys in Microsoft's order. No `Debug`: it holds tokens.
#[derive(Serialize)]
pub(crate) struct TokenSuccess {
    token_type: &'static str,
    /// Absent for the client credentials grant, as in Microsoft's responses.
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    expires_in: u64,
    ext_expires_in: u64,
    access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Grant {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|value| !value.is_empty())
}

pub(super) async fn token(
    State(identity): State<Identity>,
    Path(tenant_segment): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_params(&body);
    let diagnostics = Diagnostics::from_headers(&headers);
    let grant_type = param(&form, "grant_type");
    tracing::debug!(tenant = %tenant_segment, grant_type = ?grant_type, "token request");
    let fault = identity.with_state(|state| state.note_token_request(grant_type));
    match fault {
        Some(TokenFault::Unavailable { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return AadError::new(
                status,
                "temporarily_unavailable",
                90006,
                "The service is temporarily unavailable. Retry the request.",
            )
            .into_response(identity.base_url(), &diagnostics);
        }
        Some(TokenFault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }
    let base_url = identity.base_url();
    let outcome =
        identity.with_state(|state| redeem(state, base_url, &tenant_segment, &headers, &form));
    match outcome {
        Ok(success) => {
            let mut response = Json(success).into_response();
            add_token_response_headers(response.headers_mut(), &diagnostics);
            response
        }
        Err(error) => {
            tracing::debug!(
                error = error.error,
                code = error.code,
                "token request refused"
            );
            error.into_response(base_url, &diagnostics)
        }
    }
}

/// The token endpoint takes POST only; a browser landing here gets Microsoft's answer.
pub(super) async fn token_via_get(
    State(identity): State<Identity>,
    headers: HeaderMap,
) -> Response {
    AadError::invalid_request(
        900561,
        "The endpoint only accepts POST requests. Received a GET request.",
    )
    .into_response(identity.base_url(), &Diagnostics::from_headers(&headers))
}

fn redeem(
    state: &mut IdentityState,
    base_url: &str,
    tenant_segment: &str,
    headers: &HeaderMap,
    form: &Params,
) -> Result<TokenSuccess, AadError> {
    let tenant = state
        .resolve_tenant_segment(tenant_segment)
        .ok_or_else(|| {
            AadError::invalid_request(
                90002,
                format!("Tenant '{tenant_segment}' not found. Check the tenant id in the URL."),
            )
        })?;
    let grant = match param(form, "grant_type") {
        None => return Err(AadError::missing_parameter("grant_type")),
        Some("authorization_code") => Grant::AuthorizationCode,
        Some("refresh_token") => Grant::RefreshToken,
        Some("client_credentials") => Grant::ClientCredentials,
        Some(other) => {
            return Err(AadError::bad_request(
                "unsupported_grant_type",
                70003,
                format!("The grant type '{other}' is not supported by this endpoint."),
            ))
        }
    };
    let app = authenticate_client(state, base_url, &tenant, tenant_segment, headers, form)?;
    match grant {
        Grant::AuthorizationCode => redeem_code(state, base_url, tenant_segment, &app, form),
        Grant::RefreshToken => redeem_refresh_token(state, base_url, &tenant, &app, form),
        Grant::ClientCredentials => issue_app_token(state, base_url, &tenant, &app, form),
    }
}

fn authenticate_client(
    state: &IdentityState,
    base_url: &str,
    tenant: &TenantRef,
    tenant_segment: &str,
    headers: &HeaderMap,
    form: &Params,
) -> Result<App, AadError> {
    let body_secret = param(form, "client_secret");
    if let Some(assertion) = param(form, "client_assertion") {
        // RFC 6749 §2.3: a client uses one authentication method per request.
        if body_secret.is_some() || basic_credentials(headers)?.is_some() {
            return Err(one_method());
        }
        if param(form, "client_assertion_type") != Some(credentials::ASSERTION_TYPE) {
            return Err(AadError::invalid_request(
                900144,
                format!(
                    "The request body must contain the following parameter: \
                     'client_assertion_type' with the value '{}'.",
                    credentials::ASSERTION_TYPE
                ),
            ));
        }
        let client_id = credentials::claimed_client(assertion)?;
        if param(form, "client_id").is_some_and(|body_id| !body_id.eq_ignore_ascii_case(&client_id))
        {
            return Err(AadError::invalid_client(
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            ));
        }
        let app = find_app(state, tenant, tenant_segment, &client_id)?;
        let token_endpoint = format!("{base_url}/{tenant_segment}/oauth2/v2.0/token");
        credentials::verify_assertion(
            &app,
            assertion,
            &token_endpoint,
            unix_seconds(SystemTime::now()),
        )?;
        return Ok(app);
    }
    let (client_id, secret) = match basic_credentials(headers)? {
        Some(_) if body_secret.is_some() => return Err(one_method()),
        Some((client_id, secret)) => {
            if param(form, "client_id")
                .is_some_and(|body_id| !body_id.eq_ignore_ascii_case(&client_id))
            {
                return Err(AadError::invalid_request(
                    9002313,
                    "Invalid request. The client_id in the body differs from the one in the \
                     Authorization header.",
                ));
            }
            (client_id, Some(secret))
        }
        None => {
            let client_id =
                param(form, "client_id").ok_or_else(|| AadError::missing_parameter("client_id"))?;
            (client_id.to_owned(), body_secret.map(str::to_owned))
        }
    };
    let app = find_app(state, tenant, tenant_segment, &client_id)?;
    let Some(secret) = secret else {
        return Err(AadError::invalid_client(
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or \
             'client_secret'.",
        ));
    };
    // A plain comparison is enough: the sandbox protects nothing of value. An app with
    // certificates only has no secret to match.
    if app.registration.client_secret.is_empty() || secret != app.registration.client_secret {
        return Err(AadError::invalid_client(
            7000215,
            format!(
                "Invalid client secret provided for app '{}'. Send the secret's value, not its id.",
                app.client_id()
            ),
        ));
    }
    Ok(app)
}

fn one_method() -> AadError {
    AadError::invalid_request(
        9002313,
        "Invalid request. The client sent more than one credential (an Authorization header, a \
         client secret, a client assertion); use one method.",
    )
}

/// The app a token request names, if it may get tokens through this tenant segment.
fn find_app(
    state: &IdentityState,
    tenant: &TenantRef,
    tenant_segment: &str,
    client_id: &str,
) -> Result<App, AadError> {
    let app = state
        .app(client_id)
        .filter(|app| {
            tenant
                .specific()
                .is_none_or(|id| app.accepts_users_from(id))
        })
        .ok_or_else(|| {
            AadError::bad_request(
                "unauthorized_client",
                700016,
                format!(
                    "Application with identifier '{client_id}' was not found in the directory \
                     '{tenant_segment}'. The app may not be installed there, or the request went \
                     to the wrong tenant."
                ),
            )
        })?;
    if tenant.specific().is_none() && !app.registration.multi_tenant {
        return Err(AadError::bad_request(
            "unauthorized_client",
            50194,
            format!(
                "Application '{client_id}' is single-tenant, so the /{tenant_segment} endpoint \
                 cannot be used with it. Use the tenant-specific endpoint."
            ),
        ));
    }
    Ok(app.clone())
}

/// `Authorization: Basic base64(urlencode(client_id) ":" urlencode(secret))` (RFC 6749 §2.3.1).
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, AadError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let malformed = || {
        AadError::invalid_client(
            7000215,
            "The Authorization header does not carry valid Basic client credentials.",
        )
    };
    let text = value.to_str().map_err(|_| malformed())?;
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| malformed())?;
    let decoded = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (client_id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
    Ok(Some((form_decode(client_id), form_decode(secret))))
}

/// Decodes one application/x-www-form-urlencoded value (`+` is a space, `%XX` a byte).
fn form_decode(encoded: &str) -> String {
    let bytes = encoded.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => decoded.push(b' '),
            b'%' => {
                let hex = encoded.get(index + 1..index + 3);
                match hex.and_then(|hex| u8::from_str_radix(hex, 16).ok()) {
                    Some(byte) => {
                        decoded.push(byte);
                        index += 2;
                    }
                    None => decoded.push(b'%'),
                }
            }
            other => decoded.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn redeem_code(
    state: &mut IdentityState,
    base_url: &str,
    tenant_segment: &str,
    app: &App,
    form: &Params,
) -> Result<TokenSuccess, AadError> {
    let code_value = param(form, "code").ok_or_else(|| AadError::missing_parameter("code"))?;
    let code = state.codes.get_mut(code_value).ok_or_else(|| {
        AadError::invalid_grant(
            9002313,
            "Invalid request. The authorization code is malformed or was not issued here.",
        )
    })?;
    if code.redeemed {
        return Err(AadError::invalid_grant(
            54005,
            "The authorization code was already redeemed. Request a new code, or use the \
             refresh token issued with the first redemption.",
        ));
    }
    if Instant::now() >= code.expires_at {
        return Err(AadError::invalid_grant(
            70008,
            "The authorization code has expired. Send a new interactive authorization request.",
        ));
    }
    if code.client_id != app.client_id() {
        return Err(AadError::invalid_grant(
            70000,
            "The provided grant is invalid: the authorization code was issued to another \
             application.",
        ));
    }
    let segment = tenant_segment.to_ascii_lowercase();
    if segment != code.tenant_segment && segment != code.tenant_id {
        return Err(AadError::invalid_grant(
            700005,
            "The authorization code was issued for another tenant. Redeem it at the endpoint \
             (/common or /{tenant}) it was requested from.",
        ));
    }
    let redirect_uri =
        param(form, "redirect_uri").ok_or_else(|| AadError::missing_parameter("redirect_uri"))?;
    if redirect_uri != code.redirect_uri {
        return Err(AadError::invalid_grant(
            500112,
            format!(
                "The redirect_uri '{redirect_uri}' differs from the one the authorization code \
                 was requested with."
            ),
        ));
    }
    if let Some(challenge) = &code.pkce {
        match param(form, "code_verifier") {
            Some(verifier) if !pkce::is_well_formed(verifier) => {
                return Err(AadError::invalid_grant(
                    501481,
                    "The code_verifier is not a valid PKCE verifier: it needs 43 to 128 \
                     characters from A-Z, a-z, 0-9 and '-', '.', '_', '~'.",
                ))
            }
            Some(verifier) if challenge.is_satisfied_by(verifier) => {}
            _ => {
                return Err(AadError::invalid_grant(
                    50148,
                    "The code_verifier provided does not match the code_challenge of the \
                     authorization request.",
                ))
            }
        }
    }
    code.redeemed = true;
    let oid = code.oid.clone();
    let scopes = code.scopes.clone();
    let nonce = code.nonce.clone();
    let user = existing_user(state, &oid)?;
    Ok(issue_delegated(
        state,
        base_url,
        app,
        &user,
        &scopes,
        &scopes,
        nonce.as_deref(),
    ))
}

fn existing_user(state: &IdentityState, oid: &str) -> Result<User, AadError> {
    state.user(oid).cloned().ok_or_else(|| {
        AadError::invalid_grant(50034, "The user account no longer exists in the directory.")
    })
}

fn scope_error(error: ScopeError) -> AadError {
    match error {
        ScopeError::Missing => AadError::missing_parameter("scope"),
        ScopeError::Invalid(scope) => AadError::bad_request(
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. \
                 The scope {scope} is not valid."
            ),
        ),
    }
}

fn redeem_refresh_token(
    state: &mut IdentityState,
    base_url: &str,
    tenant: &TenantRef,
    app: &App,
    form: &Params,
) -> Result<TokenSuccess, AadError> {
    let token =
        param(form, "refresh_token").ok_or_else(|| AadError::missing_parameter("refresh_token"))?;
    let Some(record) = state.refresh_tokens.get(token) else {
        return Err(AadError::invalid_grant(
            9002313,
            "Invalid request. The refresh token is malformed or was not issued here.",
        ));
    };
    if record.client_id != app.client_id() {
        return Err(AadError::invalid_grant(
            70000,
            "The provided grant is invalid: the refresh token was issued to another application.",
        ));
    }
    if tenant
        .specific()
        .is_some_and(|tenant_id| tenant_id != record.tenant_id)
    {
        return Err(AadError::invalid_grant(
            70000,
            "The provided grant is invalid: the refresh token was issued in another tenant.",
        ));
    }
    let issued_at = aad_timestamp(record.issued_at);
    let (oid, granted) = (record.oid.clone(), record.scopes.clone());
    let record_tenant = record.tenant_id.clone();
    match state.refresh_token_problem(token) {
        Some(RefreshTokenProblem::Revoked) => {
            return Err(AadError::invalid_grant(
                50173,
                format!(
                    "The provided grant has expired because it was revoked, and a fresh sign-in \
                     is needed. The user or an administrator revoked the user's sessions after \
                     the grant was issued on '{issued_at}'."
                ),
            ))
        }
        Some(RefreshTokenProblem::Inactive) => {
            return Err(AadError::invalid_grant(
                700082,
                format!(
                    "The refresh token has expired due to inactivity. The token was issued on \
                     '{issued_at}' and was inactive for 90.00:00:00."
                ),
            ))
        }
        Some(RefreshTokenProblem::Unknown) | None => {}
    }
    let requested = match param(form, "scope") {
        None => granted.clone(),
        Some(raw) => {
            ScopeSet::parse(raw, &app.registration.delegated_permissions).map_err(scope_error)?
        }
    };
    if !granted.covers(&requested) {
        return Err(consent_missing(app));
    }
    let installed = state
        .tenants
        .get(&record_tenant)
        .is_some_and(|tenant| app.is_installed_in(tenant));
    if !installed {
        // The tenant's administrator deleted the app: its grants went with it.
        return Err(consent_missing(app));
    }
    let user = existing_user(state, &oid)?;
    Ok(issue_delegated(
        state, base_url, app, &user, &granted, &requested, None,
    ))
}

/// AADSTS65001 (DelegationDoesNotExist): no consent covers the request.
fn consent_missing(app: &App) -> AadError {
    AadError::invalid_grant(
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID \
             '{}' for the requested permissions. Send an interactive authorization request \
             for this user and resource.",
            app.client_id()
        ),
    )
}

fn issue_app_token(
    state: &mut IdentityState,
    base_url: &str,
    tenant: &TenantRef,
    app: &App,
    form: &Params,
) -> Result<TokenSuccess, AadError> {
    let tenant_id = match tenant {
        TenantRef::Specific(tenant_id) => tenant_id.clone(),
        TenantRef::AnyOrganization(segment) if segment == "common" => {
            return Err(AadError::invalid_request(
                9001023,
                "The grant type is not supported over the /common endpoint. Use the \
                 tenant-specific endpoint.",
            ))
        }
        TenantRef::AnyOrganization(_) => {
            return Err(AadError::invalid_request(
                50059,
                "No tenant-identifying information found in the request. Use the \
                 tenant-specific endpoint.",
            ))
        }
    };
    match check_app_only_scope(param(form, "scope").unwrap_or_default()) {
        Ok(()) => {}
        Err(AppScopeError::Missing) => return Err(AadError::missing_parameter("scope")),
        Err(AppScopeError::NotDefault(scope)) => {
            return Err(AadError::bad_request(
                "invalid_scope",
                1002012,
                format!(
                    "The provided value for scope {scope} is not valid. The client credentials \
                     flow needs one scope: the resource identifier followed by /.default."
                ),
            ))
        }
        Err(AppScopeError::UnknownResource(resource)) => {
            return Err(AadError::bad_request(
                "invalid_resource",
                500011,
                format!(
                    "The resource principal named {resource} was not found in the tenant \
                     named {tenant_id}."
                ),
            ))
        }
    }
    let Some(tenant) = state.tenants.get(&tenant_id) else {
        return Err(AadError::invalid_request(
            90002,
            format!("Tenant '{tenant_id}' not found."),
        ));
    };
    if !app.is_installed_in(tenant) {
        return Err(AadError::bad_request(
            "unauthorized_client",
            700016,
            format!(
                "Application with identifier '{}' was not found in the directory '{tenant_id}'. \
                 An administrator of the tenant has to consent to the application first.",
                app.client_id()
            ),
        ));
    }
    // Without admin consent Microsoft still issues the token, only with no `roles` claim;
    // Graph is the one that refuses it.
    let roles = tenant
        .service_principals
        .get(app.client_id())
        .map(|principal| principal.roles.clone())
        .unwrap_or_default();
    state.prune(Instant::now());
    let (access_token, lifetime) = mint_access_token(
        state,
        base_url,
        Subject {
            tenant_id: &tenant_id,
            client_id: app.client_id(),
            user: None,
            scopes: &[],
            roles: &roles,
        },
    );
    Ok(TokenSuccess {
        token_type: "Bearer",
        scope: None,
        expires_in: lifetime.as_secs(),
        ext_expires_in: lifetime.as_secs(),
        access_token,
        refresh_token: None,
        id_token: None,
    })
}

/// Issues the tokens of a delegated grant. `granted` is what the refresh token will carry,
/// `requested` what this access token is for.
fn issue_delegated(
    state: &mut IdentityState,
    base_url: &str,
    app: &App,
    user: &User,
    granted: &ScopeSet,
    requested: &ScopeSet,
    nonce: Option<&str>,
) -> TokenSuccess {
    let now = SystemTime::now();
    state.prune(Instant::now());
    let (access_token, lifetime) = mint_access_token(
        state,
        base_url,
        Subject {
            tenant_id: &user.tenant_id,
            client_id: app.client_id(),
            user: Some(user),
            scopes: &requested.graph,
            roles: &[],
        },
    );
    let refresh_token = granted.offline_access.then(|| {
        state.new_refresh_token(RefreshTokenRecord {
            client_id: app.client_id().to_owned(),
            tenant_id: user.tenant_id.clone(),
            oid: user.oid.clone(),
            scopes: granted.clone(),
            revocation_epoch: user.revocation_epoch,
            issued_at: now,
            inactive: false,
        })
    });
    let id_token = requested
        .openid
        .then(|| id_token(base_url, app, user, nonce, now));
    TokenSuccess {
        token_type: "Bearer",
        scope: Some(requested.granted_scope_string()),
        expires_in: lifetime.as_secs(),
        ext_expires_in: lifetime.as_secs(),
        access_token,
        refresh_token,
        id_token,
    }
}

struct Subject<'a> {
    tenant_id: &'a str,
    client_id: &'a str,
    /// None for an app-only token.
    user: Option<&'a User>,
    scopes: &'a [String],
    roles: &'a [String],
}

/// `sub` is pairwise: the same user gets a different value in each app.
fn pairwise_subject(tenant_id: &str, oid: &str, client_id: &str) -> String {
    base64url(Sha256::digest(format!("{tenant_id}:{oid}:{client_id}").as_bytes()).as_slice())
}

fn mint_access_token(
    state: &mut IdentityState,
    base_url: &str,
    subject: Subject<'_>,
) -> (String, Duration) {
    let lifetime = state.access_token_lifetime;
    let issued = SystemTime::now();
    let expires_on = unix_seconds(issued + lifetime);
    let mut claims = json!({
        "aud": GRAPH_AUDIENCE,
        "iss": format!("{base_url}/{}/", subject.tenant_id),
        "iat": unix_seconds(issued),
        "nbf": unix_seconds(issued),
        "exp": expires_on,
        "tid": subject.tenant_id,
        "appid": subject.client_id,
        "uti": random_token(16),
        "ver": "1.0",
    });
    if let Value::Object(map) = &mut claims {
        match subject.user {
            Some(user) => {
                map.insert("idtyp".into(), "user".into());
                map.insert("oid".into(), user.oid.clone().into());
                map.insert(
                    "sub".into(),
                    pairwise_subject(subject.tenant_id, &user.oid, subject.client_id).into(),
                );
                map.insert("upn".into(), user.preferred_username.clone().into());
                map.insert("name".into(), user.display_name.clone().into());
                map.insert("scp".into(), subject.scopes.join(" ").into());
            }
            None => {
                map.insert("idtyp".into(), "app".into());
                map.insert("sub".into(), subject.client_id.into());
                if !subject.roles.is_empty() {
                    map.insert("roles".into(), subject.roles.into());
                }
            }
        }
    }
    let token = jwt::encode(&claims);
    state.access_tokens.insert(
        token.clone(),
        AccessTokenRecord {
            info: AccessTokenInfo {
                tenant_id: subject.tenant_id.to_owned(),
                oid: subject.user.map(|user| user.oid.clone()),
                client_id: subject.client_id.to_owned(),
                scopes: subject.scopes.to_vec(),
                roles: subject.roles.to_vec(),
                app_only: subject.user.is_none(),
                expires_on,
            },
            expires_at: Instant::now() + lifetime,
        },
    );
    (token, lifetime)
}

fn id_token(
    base_url: &str,
    app: &App,
    user: &User,
    nonce: Option<&str>,
    issued: SystemTime,
) -> String {
    let mut claims = json!({
        "aud": app.client_id(),
        "iss": format!("{base_url}/{}/v2.0", user.tenant_id),
        "iat": unix_seconds(issued),
        "nbf": unix_seconds(issued),
        "exp": unix_seconds(issued + ID_TOKEN_LIFETIME),
        "tid": user.tenant_id,
        "oid": user.oid,
        "sub": pairwise_subject(&user.tenant_id, &user.oid, app.client_id()),
        "preferred_username": user.preferred_username,
        "name": user.display_name,
        "ver": "2.0",
    });
    if let (Value::Object(map), Some(nonce)) = (&mut claims, nonce) {
        map.insert("nonce".into(), nonce.into());
    }
    jwt::encode(&claims)
}

#[cfg(test)]
mod tests {
    use super::form_decode;

    #[test]
    fn decodes_basic_credential_parts() {
        assert_eq!(form_decode("a%2Bb+c%3A%25"), "a+b c:%");
        assert_eq!(form_decode("100%"), "100%");
    }
}
