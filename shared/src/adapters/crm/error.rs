//! Errors of the CRM port. Every bad answer a CRM can give ends here as a value, never a panic.

use std::fmt;
use std::time::Duration;

/// vtiger's webservice error codes that calsync tells apart; the rest are kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CrmErrorCode {
    AuthenticationRequired,
    InvalidSessionId,
    SessionLeftIdle,
    SessionExpired,
    InvalidAuthToken,
    InvalidUserCredentials,
    AccessKeyUndefined,
    AccessDenied,
    InvalidIdAttribute,
    RecordNotFound,
    MandatoryFieldsMissing,
    ReferenceInvalid,
    QuerySyntaxError,
    DatabaseQueryError,
    OperationNotSupported,
    InternalServerError,
    Other(String),
}

impl CrmErrorCode {
    pub fn parse(code: &str) -> Self {
        match code {
            "AUTHENTICATION_REQUIRED" => Self::AuthenticationRequired,
            "INVALID_SESSIONID" => Self::InvalidSessionId,
            "SESSION_LEFT_IDLE" => Self::SessionLeftIdle,
            "SESSION_EXPIRED" => Self::SessionExpired,
            "INVALID_AUTH_TOKEN" => Self::InvalidAuthToken,
            "INVALID_USER_CREDENTIALS" => Self::InvalidUserCredentials,
            "ACCESSKEY_UNDEFINED" => Self::AccessKeyUndefined,
            "ACCESS_DENIED" => Self::AccessDenied,
            "INVALID_ID_ATTRIBUTE" => Self::InvalidIdAttribute,
            "RECORD_NOT_FOUND" => Self::RecordNotFound,
            "MANDATORY_FIELDS_MISSING" => Self::MandatoryFieldsMissing,
            "REFERENCE_INVALID" => Self::ReferenceInvalid,
            "QUERY_SYNTAX_ERROR" => Self::QuerySyntaxError,
            "DATABASE_QUERY_ERROR" => Self::DatabaseQueryError,
            "OPERATION_NOT_SUPPORTED" => Self::OperationNotSupported,
            "INTERNAL_SERVER_ERROR" => Self::InternalServerError,
            other => Self::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::AuthenticationRequired => "AUTHENTICATION_REQUIRED",
            Self::InvalidSessionId => "INVALID_SESSIONID",
            Self::SessionLeftIdle => "SESSION_LEFT_IDLE",
            Self::SessionExpired => "SESSION_EXPIRED",
            Self::InvalidAuthToken => "INVALID_AUTH_TOKEN",
            Self::InvalidUserCredentials => "INVALID_USER_CREDENTIALS",
            Self::AccessKeyUndefined => "ACCESSKEY_UNDEFINED",
            Self::AccessDenied => "ACCESS_DENIED",
            Self::InvalidIdAttribute => "INVALID_ID_ATTRIBUTE",
            Self::RecordNotFound => "RECORD_NOT_FOUND",
            Self::MandatoryFieldsMissing => "MANDATORY_FIELDS_MISSING",
            Self::ReferenceInvalid => "REFERENCE_INVALID",
            Self::QuerySyntaxError => "QUERY_SYNTAX_ERROR",
            Self::DatabaseQueryError => "DATABASE_QUERY_ERROR",
            Self::OperationNotSupported => "OPERATION_NOT_SUPPORTED",
            Self::InternalServerError => "INTERNAL_SERVER_ERROR",
            Self::Other(code) => code,
        }
    }

    /// The session is no longer usable: log in again and retry.
    pub fn is_session_error(&self) -> bool {
        matches!(
            self,
            Self::AuthenticationRequired
                | Self::InvalidSessionId
                | Self::SessionLeftIdle
                | Self::SessionExpired
        )
    }
}

impl fmt::Display for CrmErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("CRM {operation} timed out after {after:?}")]
    Timeout { operation: String, after: Duration },

    /// The request never reached the CRM (no connection). The source leaves the URL out: a
    /// GET's carries the session.
    #[error("CRM {operation} could not be sent")]
    Transport {
        operation: String,
        #[source]
        source: reqwest::Error,
    },

    /// The request went out but its answer was cut off: the CRM may have carried it out.
    #[error("CRM {operation}: the answer was lost after the request was sent")]
    AnswerLost {
        operation: String,
        #[source]
        source: reqwest::Error,
    },

    /// A non-2xx status (vtiger answers handled errors with 200; 5xx means a PHP fatal error).
    #[error("CRM {operation} answered HTTP {status}: {body_start:?}")]
    Http {
        operation: String,
        status: u16,
        body_start: String,
    },

    /// A 200 whose body is not a webservice envelope: an HTML page, truncated JSON, ...
    #[error("CRM {operation} answered something that is not a webservice reply ({reason}): {body_start:?}")]
    Malformed {
        operation: String,
        reason: &'static str,
        body_start: String,
    },

    /// Login refused: wrong access key, inactive user, user without a key.
    #[error("CRM refused the login of {user_name}: {code} ({message})")]
    Login {
        user_name: String,
        code: CrmErrorCode,
        message: String,
    },

    /// `success:false` with a code that the call could not absorb; `message` is the CRM's.
    #[error("CRM {operation} failed: {code} ({message})")]
    Api {
        operation: String,
        code: CrmErrorCode,
        message: String,
    },

    /// The record changed after the version a write was planned from: nothing was written.
    #[error("CRM record {id} changed at {modified} (after {expected}): not overwritten")]
    ChangedMeanwhile {
        id: String,
        modified: String,
        expected: String,
    },

    /// A well-formed reply whose content does not fit (missing field, bad date, ...).
    #[error("CRM {operation} returned unusable data{}", record_suffix(.record))]
    InvalidData {
        operation: String,
        /// The record it was about, when it was about one.
        record: Option<String>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A reply of the wrong shape altogether.
    #[error("CRM {operation} returned {what}")]
    Unexpected {
        operation: String,
        what: &'static str,
    },

    /// What calsync was asked to write cannot be expressed in the CRM's fields.
    #[error("the event cannot be written to the CRM")]
    Unwritable(#[source] super::vtiger::mapping::MappingError),

    #[error("CRM user {user_name:?} does not exist")]
    UnknownUser { user_name: String },

    #[error("the CRM adapter is misconfigured")]
    Config(#[source] ConfigProblem),
}

/// What is wrong with the CRM adapter's configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigProblem {
    #[error("the CRM URL {url:?} is not a URL")]
    BadUrl {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("the CRM URL {url:?} is not http(s)")]
    NotHttp { url: String },
    #[error("the server zone {zone:?} is unknown")]
    BadZone {
        zone: String,
        #[source]
        source: jiff::Error,
    },
    #[error("the CRM user name is empty")]
    EmptyUser,
    #[error("the HTTP client could not be built")]
    Client(#[source] reqwest::Error),
    #[error("the CRM feed returned no cursor")]
    NoCursor,
}

fn record_suffix(record: &Option<String>) -> String {
    record
        .as_ref()
        .map(|id| format!(" for record {id}"))
        .unwrap_or_default()
}

impl CrmError {
    /// Worth retrying later (the CRM or the network may recover); the others need a change of
    /// data or configuration first.
    pub fn is_transient(&self) -> bool {
        match self {
            CrmError::Timeout { .. }
            | CrmError::Transport { .. }
            | CrmError::AnswerLost { .. }
            | CrmError::Malformed { .. } => true,
            CrmError::Http { status, .. } => *status >= 500 || *status == 429,
            CrmError::Api { code, .. } => {
                matches!(
                    code,
                    CrmErrorCode::DatabaseQueryError
                        | CrmErrorCode::InternalServerError
                        | CrmErrorCode::InvalidAuthToken
                ) || code.is_session_error()
            }
            CrmError::Login { code, .. } => *code == CrmErrorCode::InvalidAuthToken,
            CrmError::InvalidData { .. }
            | CrmError::ChangedMeanwhile { .. }
            | CrmError::Unexpected { .. }
            | CrmError::Unwritable(_)
            | CrmError::UnknownUser { .. }
            | CrmError::Config(_) => false,
        }
    }

    /// The webservice error code, when the CRM gave one.
    pub fn code(&self) -> Option<&CrmErrorCode> {
        match self {
            CrmError::Api { code, .. } | CrmError::Login { code, .. } => Some(code),
            _ => None,
        }
    }
}
