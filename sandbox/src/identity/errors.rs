//! Error replies of the identity endpoints, shaped like Entra ID's.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::support::{aad_timestamp, new_guid};

/// The JSON body of a failed token request, field for field as Entra ID sends it. Unknown
/// fields are accepted when parsing: real responses may add some (`suberror`, `claims`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorBody {
    pub error: String,
    /// `AADSTSnnnn: message` followed by the trace id, correlation id and timestamp lines.
    pub error_description: String,
    pub error_codes: Vec<u32>,
    pub timestamp: String,
    pub trace_id: String,
    pub correlation_id: String,
    /// Sent only when Microsoft has a help page for the code; the sandbox always sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

/// The request ids Entra stamps on every failure so that a report can be traced.
pub(crate) struct Diagnostics {
    pub(crate) trace_id: String,
    pub(crate) correlation_id: String,
    pub(crate) timestamp: String,
}

impl Diagnostics {
    /// Entra reuses a caller's `client-request-id` as the correlation id.
    pub(crate) fn new(client_request_id: Option<&str>) -> Self {
        let correlation_id = client_request_id
            .filter(|id| looks_like_guid(id))
            .map(str::to_ascii_lowercase)
            .unwrap_or_else(new_guid);
        Diagnostics {
            trace_id: new_guid(),
            correlation_id,
            timestamp: aad_timestamp(SystemTime::now()),
        }
    }

    pub(crate) fn from_headers(headers: &HeaderMap) -> Self {
        Self::new(
            headers
                .get("client-request-id")
                .and_then(|value| value.to_str().ok()),
        )
    }

    /// The multi-line `error_description` text.
    pub(crate) fn describe(&self, code: u32, message: &str) -> String {
        format!(
            "AADSTS{code}: {message}\r\nTrace ID: {}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            self.trace_id, self.correlation_id, self.timestamp
        )
    }
}

fn looks_like_guid(text: &str) -> bool {
    text.len() == 36
        && text.chars().enumerate().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A token endpoint failure before it is rendered.
#[derive(Debug, Clone)]
pub(crate) struct AadError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) code: u32,
    pub(crate) message: String,
}

impl AadError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        code: u32,
        message: impl Into<String>,
    ) -> Self {
        AadError {
            status,
            error,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, code, message)
    }

    pub(crate) fn invalid_request(code: u32, message: impl Into<String>) -> Self {
        Self::bad_request("invalid_request", code, message)
    }

    pub(crate) fn invalid_grant(code: u32, message: impl Into<String>) -> Self {
        Self::bad_request("invalid_grant", code, message)
    }

    /// Client authentication failures are the one case answered with 401.
    pub(crate) fn invalid_client(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", code, message)
    }

    pub(crate) fn missing_parameter(name: &str) -> Self {
        Self::invalid_request(
            900144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub(crate) fn body(&self, base_url: &str, diagnostics: &Diagnostics) -> TokenErrorBody {
        TokenErrorBody {
            error: self.error.to_owned(),
            error_description: diagnostics.describe(self.code, &self.message),
            error_codes: vec![self.code],
            timestamp: diagnostics.timestamp.clone(),
            trace_id: diagnostics.trace_id.clone(),
            correlation_id: diagnostics.correlation_id.clone(),
            error_uri: Some(format!("{base_url}/error?code={}", self.code)),
        }
    }

    pub(crate) fn into_response(self, base_url: &str, diagnostics: &Diagnostics) -> Response {
        let body = self.body(base_url, diagnostics);
        let mut response = (self.status, Json(body)).into_response();
        add_token_response_headers(response.headers_mut(), diagnostics);
        response
    }
}

/// Token responses must never be cached (RFC 6749 §5.1); Entra also names its request id.
pub(crate) fn add_token_response_headers(headers: &mut HeaderMap, diagnostics: &Diagnostics) {
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if let Ok(trace_id) = HeaderValue::from_str(&diagnostics.trace_id) {
        headers.insert("x-ms-request-id", trace_id);
    }
}
