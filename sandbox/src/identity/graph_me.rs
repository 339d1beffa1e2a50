//! `GET /v1.0/me`: the one Graph call the identity part answers, so that tests can check an
//! access token end to end. The Graph part of the sandbox should take this route over.

use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::{AccessTokenStatus, Identity};
use crate::support::{graph_timestamp, new_guid};

/// A Graph error body with its `innerError` block and the request-id headers Graph sends.
pub(crate) fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &HeaderMap,
) -> Response {
    let request_id = new_guid();
    let client_request_id = headers
        .get("client-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    let body = json!({
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": graph_timestamp(SystemTime::now()),
                "request-id": request_id,
                "client-request-id": client_request_id,
            }
        }
    });
    let mut response = (status, Json(body)).into_response();
    let response_headers = response.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_request_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name, value);
        }
    }
    response
}

fn unauthorized(message: &str, identity: &Identity, headers: &HeaderMap) -> Response {
    let mut response = graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
        headers,
    );
    let challenge = format!(
        "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", \
         client_id=\"00000003-0000-0000-c000-000000000000\"",
        identity.base_url()
    );
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}

/// The token of an `Authorization: Bearer` header, if there is one.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(super) async fn me(State(identity): State<Identity>, headers: HeaderMap) -> Response {
    let Some(token) = bearer_token(&headers) else {
        return unauthorized("Access token is empty.", &identity, &headers);
    };
    let info = match identity.access_token_status(token) {
        AccessTokenStatus::Valid(info) => info,
        AccessTokenStatus::Expired => {
            return unauthorized(
                "Lifetime validation failed, the token is expired.",
                &identity,
                &headers,
            )
        }
        AccessTokenStatus::Unknown => {
            return unauthorized("Access token validation failure.", &identity, &headers)
        }
    };
    let Some(oid) = info.oid.as_deref() else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
            &headers,
        );
    };
    // Reading the signed-in user's profile needs one of the User.* permissions.
    let may_read_profile = info
        .scopes
        .iter()
        .any(|scope| scope.to_ascii_lowercase().starts_with("user."));
    if !may_read_profile {
        return graph_error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
            &headers,
        );
    }
    let Some(user) = identity.user_profile(oid) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{oid}' does not exist or one of its queried reference-property objects are not present."),
            &headers,
        );
    };
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#users/$entity", identity.base_url()),
        "businessPhones": [],
        "displayName": user.display_name,
        "givenName": null,
        "jobTitle": null,
        "mail": user.preferred_username,
        "mobilePhone": null,
        "officeLocation": null,
        "preferredLanguage": null,
        "surname": null,
        "userPrincipalName": user.preferred_username,
        "id": user.oid,
    }))
    .into_response()
}
