//! `GET /v1.0/me`: the signed-in user's profile (moved here from the identity part, which
//! served it until Graph existed).

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::errors::graph_error;
use super::Graph;
use crate::identity::AccessTokenInfo;

pub(crate) fn me(graph: &Graph, info: &AccessTokenInfo, headers: &HeaderMap) -> Response {
    let Some(oid) = info.oid.as_deref() else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "/me request is only valid with delegated authentication flow.",
            headers,
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
            headers,
        );
    }
    let Some(user) = graph.identity().user_profile(oid) else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            &format!("Resource '{oid}' does not exist or one of its queried reference-property objects are not present."),
            headers,
        );
    };
    Json(json!({
        "@odata.context": format!("{}/v1.0/$metadata#users/$entity", graph.base_url()),
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
