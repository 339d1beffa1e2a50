//! What can go wrong talking to Graph, sorted by what the caller must do about it. Errors carry
//! Graph's `request-id` (for support) but never a token, a body or a query string.

use std::time::Duration;

use super::types::GraphErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// The delta cursor is gone (410, `syncStateNotFound`, `resyncRequired`,
    /// `InvalidDeltaToken`): drop it, run a full round and reconcile by id.
    #[error("Graph wants a full resync (HTTP {status}, {code})")]
    ResyncRequired { status: u16, code: String },
    /// A round kept returning pages that add nothing new.
    #[error("the delta round stopped making progress after {pages} pages")]
    NoProgress { pages: u32 },
    /// Still throttled after every allowed retry, or asked to wait longer than we may.
    #[error("Graph is throttling this mailbox (retry after {retry_after:?})")]
    Throttled { retry_after: Option<Duration> },
    /// 401: the token was refused.
    #[error("Graph refused the access token ({code})")]
    Unauthorized { code: String },
    /// 403: the token lacks a permission, or the mailbox is out of reach.
    #[error("Graph denied access ({code})")]
    Forbidden { code: String },
    #[error("not found ({code})")]
    NotFound { code: String },
    /// 412: the `If-Match` change key is stale; someone changed the item.
    #[error("the item changed since it was read ({code})")]
    Conflict { code: String },
    /// Any other answer that is not a success.
    #[error("Graph answered HTTP {status} {code}: {message}")]
    Status {
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    /// Graph was unreachable or kept failing (5xx, timeouts, dropped connections), after the
    /// retries allowed — or without any, for a request that may have been applied.
    #[error("Graph is unavailable{}", if *.retried { "" } else { " (not retried: the request may have been applied)" })]
    Unavailable {
        #[source]
        outage: Outage,
        retried: bool,
    },
    /// Graph answered something we cannot read.
    #[error("Graph answered something calsync cannot read (request-id {request_id:?})")]
    Decode {
        #[source]
        source: serde_json::Error,
        request_id: Option<String>,
    },
    /// A delta page with neither nextLink nor deltaLink.
    #[error("Graph answered a delta page that neither continues nor ends the round")]
    DeltaPageWithoutLink,
    /// A link Graph handed over that calsync will not follow (the token would go with it).
    #[error("a Graph link points elsewhere ({host:?})")]
    ForeignLink { host: String },
    #[error("a Graph link is malformed")]
    MalformedLink(#[source] url::ParseError),
    /// The caller asked for something calsync never sends (two batch items with one id).
    #[error("refused before sending: {0}")]
    Refused(&'static str),
    #[error("the access token cannot travel in a header")]
    UnusableToken,
    #[error("a request body could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error("the Graph URL cannot take a path")]
    BadBaseUrl,
    #[error("the HTTP client for Graph could not be built")]
    Client(#[source] reqwest::Error),
}

/// Why Graph gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Outage {
    #[error("it answered HTTP {0}")]
    Status(u16),
    /// The transport's error, its URL left out (query strings carry cursors).
    #[error("the request failed")]
    Transport(#[source] reqwest::Error),
}

impl GraphError {
    pub fn is_resync(&self) -> bool {
        matches!(self, GraphError::ResyncRequired { .. })
    }

    /// Worth trying again later (throttling and outages), as opposed to a bug or a refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GraphError::Throttled { .. } | GraphError::Unavailable { .. }
        )
    }
}

/// Error codes that mean "the delta token is no longer usable", compared without case.
const RESYNC_CODES: [&str; 3] = ["syncstatenotfound", "resyncrequired", "invaliddeltatoken"];

/// Whether an error status and code ask for a full resync.
pub fn is_resync_signal(status: u16, code: &str) -> bool {
    status == 410
        || RESYNC_CODES
            .iter()
            .any(|known| code.eq_ignore_ascii_case(known))
}

/// Builds the error for a non-success answer from its status and (maybe) Graph error body.
pub fn error_from_response(status: u16, body: &[u8], request_id: Option<String>) -> GraphError {
    let parsed = serde_json::from_slice::<GraphErrorBody>(body).ok();
    let (code, message) = match parsed {
        Some(b) => (b.error.code, b.error.message),
        None => (String::new(), String::new()),
    };
    // Some services put the resync code only in innerError or the message; the code is enough
    // in the cases documented, and status 410 covers the rest.
    if is_resync_signal(status, &code) {
        return GraphError::ResyncRequired {
            status,
            code: if code.is_empty() { "Gone".into() } else { code },
        };
    }
    match status {
        401 => GraphError::Unauthorized { code },
        403 => GraphError::Forbidden { code },
        404 => GraphError::NotFound { code },
        412 => GraphError::Conflict { code },
        429 => GraphError::Throttled { retry_after: None },
        _ => GraphError::Status {
            status,
            code,
            // Graph's messages can quote ids, never tokens; cap them anyway.
            message: message.chars().take(300).collect(),
            request_id,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_signals_in_any_case() {
        for (status, code) in [
            (410, ""),
            (410, "SyncStateNotFound"),
            (400, "syncStateNotFound"),
            (400, "RESYNCREQUIRED"),
            (400, "InvalidDeltaToken"),
            (404, "invaliddeltatoken"),
        ] {
            let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
            assert!(
                error_from_response(status, body.as_bytes(), None).is_resync(),
                "{status} {code}"
            );
        }
        assert!(!error_from_response(400, br#"{"error":{"code":"BadRequest"}}"#, None).is_resync());
        assert!(!error_from_response(500, b"<html>", None).is_resync());
    }
}
