//! Graph's error envelope with its `innerError` block and request-id headers, and bearer-token
//! parsing.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::support::{graph_timestamp, new_guid};

/// An error answer in the making.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GraphErr {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl GraphErr {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    pub fn bad_request(code: &str, message: &str) -> Self {
        Self::new(400, code, message)
    }

    pub fn not_found() -> Self {
        Self::new(
            404,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        )
    }

    pub fn access_denied() -> Self {
        Self::new(
            403,
            "ErrorAccessDenied",
            "Access is denied. Check credentials and try again.",
        )
    }

    pub fn response(&self, headers: &HeaderMap) -> Response {
        graph_error(
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST),
            &self.code,
            &self.message,
            headers,
        )
    }
}

/// The `client-request-id` a client sent, or a fresh id.
pub(crate) fn client_request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("client-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Adds Graph's `request-id` and `client-request-id` headers.
pub(crate) fn with_request_ids(mut response: Response, request_headers: &HeaderMap) -> Response {
    let request_id = new_guid();
    let client_id = client_request_id(request_headers).unwrap_or_else(|| request_id.clone());
    let headers = response.headers_mut();
    for (name, value) in [
        ("request-id", &request_id),
        ("client-request-id", &client_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    response
}

/// A Graph error body with its `innerError` block and the request-id headers Graph sends.
pub(crate) fn graph_error(
    status: StatusCode,
    code: &str,
    message: &str,
    headers: &HeaderMap,
) -> Response {
    let request_id = new_guid();
    let client_request_id = client_request_id(headers).unwrap_or_else(|| request_id.clone());
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

/// Graph's throttling answer: the body of its documented sample, with `Retry-After`.
pub(crate) fn throttled(
    retry_after: Option<u64>,
    code: &str,
    message: &str,
    headers: &HeaderMap,
) -> Response {
    let request_id = new_guid();
    let body = json!({
        "error": {
            "code": code,
            "innerError": {
                "code": "429",
                "date": graph_timestamp(SystemTime::now()),
                "message": "Please retry after",
                "request-id": request_id,
                "status": "429"
            },
            "message": message
        }
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("request-id", value);
    }
    if let Some(client) = client_request_id(headers) {
        if let Ok(value) = HeaderValue::from_str(&client) {
            response.headers_mut().insert("client-request-id", value);
        }
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

/// 401 with the `WWW-Authenticate` challenge Graph sends.
pub(crate) fn unauthorized(message: &str, login_base: &str, headers: &HeaderMap) -> Response {
    let mut response = graph_error(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        message,
        headers,
    );
    let challenge = format!(
        "Bearer realm=\"\", authorization_uri=\"{login_base}/common/oauth2/authorize\", \
         client_id=\"00000003-0000-0000-c000-000000000000\""
    );
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
