//! `/_sandbox/identity/...`: the in-process control methods as JSON over HTTP, so that another
//! process (the demo, a script) can drive the sandbox. Tokens travel in bodies, never in URLs.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppRegistration, ControlError, Identity, IdentitySeed, TokenFault, UserAccount};

pub(super) fn router() -> Router<Identity> {
    Router::new()
        .route("/_sandbox/identity/seed", post(seed))
        .route("/_sandbox/identity/demo", post(seed_demo))
        .route("/_sandbox/identity/tenants", post(add_tenant))
        .route("/_sandbox/identity/tenants/{tenant_id}/apps", post(add_app))
        .route(
            "/_sandbox/identity/tenants/{tenant_id}/users",
            post(add_user),
        )
        .route(
            "/_sandbox/identity/tenants/{tenant_id}/admin-consents",
            post(grant_admin_consent),
        )
        .route(
            "/_sandbox/identity/tenants/{tenant_id}/auto-approve",
            put(set_auto_approve),
        )
        .route(
            "/_sandbox/identity/tenants/{tenant_id}/deny-next-authorize",
            post(deny_next_authorize),
        )
        .route(
            "/_sandbox/identity/tenants/{tenant_id}/deny-next-admin-consent",
            post(deny_next_admin_consent),
        )
        .route(
            "/_sandbox/identity/apps/{client_id}/redirect-uris",
            post(add_redirect_uri),
        )
        .route("/_sandbox/identity/users/{oid}/revoke", post(revoke_user))
        .route(
            "/_sandbox/identity/users/{oid}/latest-refresh-token",
            get(latest_refresh_token),
        )
        .route(
            "/_sandbox/identity/refresh-tokens/check",
            post(check_refresh_token),
        )
        .route(
            "/_sandbox/identity/refresh-tokens/expire",
            post(expire_refresh_token),
        )
        .route(
            "/_sandbox/identity/access-tokens/check",
            post(check_access_token),
        )
        .route("/_sandbox/identity/settings", put(update_settings))
        .route(
            "/_sandbox/identity/token-fault",
            put(set_token_fault).delete(clear_token_fault),
        )
        .route("/_sandbox/identity/token-requests", get(token_requests))
        .route(
            "/_sandbox/identity/authorize-requests",
            get(authorize_requests),
        )
        .route(
            "/_sandbox/identity/admin-consent-requests",
            get(admin_consent_requests),
        )
}

fn done(result: Result<(), ControlError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => {
            let status = match error {
                ControlError::UnknownTenant(_)
                | ControlError::UnknownApp(_)
                | ControlError::UnknownUser(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Json(json!({"error": error.to_string()}))).into_response()
        }
    }
}

async fn seed(State(identity): State<Identity>, Json(seed): Json<IdentitySeed>) -> Response {
    done(identity.apply_seed(&seed))
}

async fn seed_demo(State(identity): State<Identity>) -> Response {
    Json(identity.seed_demo()).into_response()
}

#[derive(Deserialize)]
struct NewTenant {
    tenant_id: String,
}

async fn add_tenant(State(identity): State<Identity>, Json(body): Json<NewTenant>) -> Response {
    identity.add_tenant(&body.tenant_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn add_app(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
    Json(app): Json<AppRegistration>,
) -> Response {
    done(identity.register_app(&tenant_id, app))
}

async fn add_user(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
    Json(user): Json<UserAccount>,
) -> Response {
    done(identity.add_user(
        &tenant_id,
        &user.oid,
        &user.preferred_username,
        &user.display_name,
    ))
}

#[derive(Deserialize)]
struct ClientRef {
    client_id: String,
}

async fn grant_admin_consent(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
    Json(body): Json<ClientRef>,
) -> Response {
    done(identity.grant_admin_consent(&tenant_id, &body.client_id))
}

#[derive(Deserialize)]
struct AutoApprove {
    username: Option<String>,
}

async fn set_auto_approve(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
    Json(body): Json<AutoApprove>,
) -> Response {
    done(identity.set_auto_approve(&tenant_id, body.username.as_deref()))
}

async fn deny_next_authorize(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
) -> Response {
    done(identity.deny_next_authorize(&tenant_id))
}

async fn deny_next_admin_consent(
    State(identity): State<Identity>,
    Path(tenant_id): Path<String>,
) -> Response {
    done(identity.deny_next_admin_consent(&tenant_id))
}

#[derive(Deserialize)]
struct NewRedirectUri {
    redirect_uri: String,
}

async fn add_redirect_uri(
    State(identity): State<Identity>,
    Path(client_id): Path<String>,
    Json(body): Json<NewRedirectUri>,
) -> Response {
    done(identity.add_redirect_uri(&client_id, &body.redirect_uri))
}

async fn revoke_user(State(identity): State<Identity>, Path(oid): Path<String>) -> Response {
    done(identity.revoke_user(&oid))
}

async fn latest_refresh_token(
    State(identity): State<Identity>,
    Path(oid): Path<String>,
) -> Response {
    match identity.latest_refresh_token(&oid) {
        Some(token) => Json(json!({"refresh_token": token})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no refresh token was issued to user {oid}")})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct RefreshTokenRef {
    refresh_token: String,
}

async fn check_refresh_token(
    State(identity): State<Identity>,
    Json(body): Json<RefreshTokenRef>,
) -> Response {
    Json(json!({"valid": identity.refresh_token_valid(&body.refresh_token)})).into_response()
}

async fn expire_refresh_token(
    State(identity): State<Identity>,
    Json(body): Json<RefreshTokenRef>,
) -> Response {
    Json(json!({"expired": identity.expire_refresh_token(&body.refresh_token)})).into_response()
}

#[derive(Deserialize)]
struct AccessTokenRef {
    access_token: String,
}

async fn check_access_token(
    State(identity): State<Identity>,
    Json(body): Json<AccessTokenRef>,
) -> Response {
    match identity.validate_access_token(&body.access_token) {
        Some(info) => Json(json!({"valid": true, "info": info})).into_response(),
        None => Json(json!({"valid": false})).into_response(),
    }
}

#[derive(Deserialize)]
struct Settings {
    access_token_lifetime_secs: Option<u64>,
    authorization_code_lifetime_secs: Option<u64>,
}

async fn update_settings(
    State(identity): State<Identity>,
    Json(settings): Json<Settings>,
) -> Response {
    if let Some(seconds) = settings.access_token_lifetime_secs {
        identity.set_access_token_lifetime(Duration::from_secs(seconds));
    }
    if let Some(seconds) = settings.authorization_code_lifetime_secs {
        identity.set_authorization_code_lifetime(Duration::from_secs(seconds));
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FaultSpec {
    Unavailable { status: u16 },
    Delay { millis: u64 },
}

#[derive(Deserialize)]
struct FaultRequest {
    #[serde(flatten)]
    fault: FaultSpec,
    /// How many token requests it applies to; absent means until cleared.
    times: Option<u32>,
}

async fn set_token_fault(
    State(identity): State<Identity>,
    Json(request): Json<FaultRequest>,
) -> Response {
    let fault = match request.fault {
        FaultSpec::Unavailable { status } => TokenFault::Unavailable { status },
        FaultSpec::Delay { millis } => TokenFault::Delay(Duration::from_millis(millis)),
    };
    done(identity.set_token_fault(fault, request.times))
}

async fn clear_token_fault(State(identity): State<Identity>) -> Response {
    identity.clear_token_fault();
    StatusCode::NO_CONTENT.into_response()
}

async fn token_requests(State(identity): State<Identity>) -> Response {
    Json(identity.token_request_counts()).into_response()
}

async fn authorize_requests(State(identity): State<Identity>) -> Response {
    Json(identity.authorize_requests()).into_response()
}

async fn admin_consent_requests(State(identity): State<Identity>) -> Response {
    Json(identity.admin_consent_requests()).into_response()
}
