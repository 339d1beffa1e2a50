//! The Graph client and its per-mailbox handle. [`GraphClient`] is built once per container and
//! shared; [`MailboxClient`] binds it to one mailbox and one access token for a piece of work.

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use url::Url;

use super::error::GraphError;
use super::transport::{Call, Reply, Transport};
use crate::config::Config;
use calsync_core::secret::Secret;

/// Ask for UTC times, immutable ids and text bodies on every event call (docs/design.md §7).
pub const PREFER_UTC: &str = "outlook.timezone=\"UTC\"";
pub const PREFER_IMMUTABLE_IDS: &str = "IdType=\"ImmutableId\"";
pub const PREFER_TEXT_BODY: &str = "outlook.body-content-type=\"text\"";

/// Tunables of the client. Defaults follow Graph's documented limits.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// `https://graph.microsoft.com` (or the sandbox); API paths go under `v1.0/`.
    pub base_url: Url,
    /// Upper bound for one HTTP exchange.
    pub timeout: Duration,
    /// `Prefer: odata.maxpagesize` for delta pages (Graph may exceed it for series).
    pub page_size: u32,
    /// Outlook runs at most 4 requests at once per mailbox.
    pub per_mailbox_concurrency: usize,
    /// Requests in flight across all mailboxes of this process.
    pub global_concurrency: usize,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First backoff step when Graph gives no `Retry-After`.
    pub backoff_base: Duration,
    pub max_backoff: Duration,
    /// A longer `Retry-After` than this is handed back to the caller rather than slept on.
    pub max_retry_after: Duration,
    /// A call gives up once retrying would take longer than this in total.
    pub max_total_wait: Duration,
    /// Pages in a row that bring nothing new before a round is declared stuck.
    pub max_stalled_pages: u32,
    /// Hard cap on pages in one round.
    pub max_pages: u32,
}

impl GraphSettings {
    pub fn new(base_url: Url) -> Self {
        Self {
            base_url,
            timeout: Duration::from_secs(15),
            page_size: 100,
            per_mailbox_concurrency: 4,
            global_concurrency: 64,
            max_attempts: 6,
            backoff_base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            max_total_wait: Duration::from_secs(300),
            max_stalled_pages: 5,
            max_pages: 20_000,
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self {
            timeout: config.http_timeout,
            ..Self::new(config.graph_url.clone())
        }
    }
}

/// Whose calendar a call addresses. Delegated tokens reach their own mailbox as `/me`; app-only
/// tokens name the user. Either way the owner's object id keys the throttling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mailbox {
    oid: String,
    app_only: bool,
}

impl Mailbox {
    /// The signed-in user's own mailbox (delegated token).
    pub fn me(oid: impl Into<String>) -> Self {
        Self {
            oid: oid.into(),
            app_only: false,
        }
    }

    /// Any user's mailbox by object id (app-only token).
    pub fn user(oid: impl Into<String>) -> Self {
        Self {
            oid: oid.into(),
            app_only: true,
        }
    }

    pub fn oid(&self) -> &str {
        &self.oid
    }

    /// The path segments that address the mailbox: `me` or `users/{oid}`.
    pub fn segments(&self) -> Vec<&str> {
        if self.app_only {
            vec!["users", &self.oid]
        } else {
            vec!["me"]
        }
    }

    /// The same as a resource string (`me/events`, `users/{oid}/events`).
    pub fn resource(&self, rest: &str) -> String {
        format!("{}/{rest}", self.segments().join("/"))
    }
}

#[derive(Clone)]
pub struct GraphClient {
    transport: Arc<Transport>,
}

impl GraphClient {
    pub fn new(settings: GraphSettings) -> Result<Self, GraphError> {
        Ok(Self {
            transport: Arc::new(Transport::new(settings)?),
        })
    }

    pub fn settings(&self) -> &GraphSettings {
        &self.transport.settings
    }

    /// Binds the client to one mailbox and an access token for it.
    pub fn mailbox(&self, mailbox: Mailbox, token: Secret) -> MailboxClient {
        MailboxClient {
            graph: self.clone(),
            mailbox,
            token,
        }
    }

    /// Holds every call of a mailbox until `until` (after a 429 seen outside the transport).
    pub(crate) fn pause_mailbox(&self, oid: &str, until: tokio::time::Instant) {
        self.transport.throttle.pause(oid, until);
    }

    /// `{base}/v1.0/` + segments, each percent-encoded (ids may hold `/`, `+`, `=`).
    pub(crate) fn api_url(&self, segments: &[&str]) -> Result<Url, GraphError> {
        let mut url = self.transport.settings.base_url.clone();
        url.set_query(None);
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|_| GraphError::BadBaseUrl)?;
            path.pop_if_empty().push("v1.0");
            path.extend(segments);
        }
        Ok(url)
    }

    /// A link Graph handed us (nextLink, deltaLink), used verbatim — but only towards Graph's
    /// own host, since the bearer token goes with it.
    pub(crate) fn graph_link(&self, link: &str) -> Result<Url, GraphError> {
        let url = Url::parse(link).map_err(GraphError::MalformedLink)?;
        if url.origin() != self.transport.settings.base_url.origin() {
            return Err(GraphError::ForeignLink {
                host: url.host_str().unwrap_or("?").to_owned(),
            });
        }
        Ok(url)
    }
}

/// The client bound to one mailbox and token. Cheap to clone.
#[derive(Clone)]
pub struct MailboxClient {
    pub(crate) graph: GraphClient,
    pub(crate) mailbox: Mailbox,
    pub(crate) token: Secret,
}

impl std::fmt::Debug for MailboxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxClient")
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

/// The pieces of one request, before the transport adds the rest.
pub(crate) struct RequestSpec<'a> {
    pub method: Method,
    pub url: Url,
    pub prefer: &'a [String],
    pub if_match: Option<&'a str>,
    pub body: Option<Vec<u8>>,
    pub idempotent: bool,
}

impl MailboxClient {
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    pub fn graph(&self) -> &GraphClient {
        &self.graph
    }

    /// The standard preferences of event calls.
    pub(crate) fn event_prefer(&self) -> Vec<String> {
        vec![
            PREFER_UTC.to_owned(),
            PREFER_IMMUTABLE_IDS.to_owned(),
            PREFER_TEXT_BODY.to_owned(),
        ]
    }

    /// A URL under the mailbox: `{base}/v1.0/me/...` or `{base}/v1.0/users/{oid}/...`.
    pub(crate) fn mailbox_url(&self, rest: &[&str]) -> Result<Url, GraphError> {
        let mut segments = self.mailbox.segments();
        segments.extend_from_slice(rest);
        self.graph.api_url(&segments)
    }

    pub(crate) async fn send(&self, spec: RequestSpec<'_>) -> Result<Reply, GraphError> {
        self.send_carrying(spec, 1).await
    }

    /// Sends a request that carries `requests` requests (a `$batch`): each counts against the
    /// mailbox's requests in flight.
    pub(crate) async fn send_carrying(
        &self,
        spec: RequestSpec<'_>,
        requests: usize,
    ) -> Result<Reply, GraphError> {
        self.graph
            .transport
            .execute(&Call {
                requests,
                method: spec.method,
                url: spec.url,
                token: &self.token,
                mailbox: self.mailbox.oid(),
                prefer: spec.prefer,
                if_match: spec.if_match,
                body: spec.body,
                idempotent: spec.idempotent,
            })
            .await
    }

    /// GET with the event preferences, decoded as `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<T, GraphError> {
        let prefer = self.event_prefer();
        self.send(RequestSpec {
            method: Method::GET,
            url,
            prefer: &prefer,
            if_match: None,
            body: None,
            idempotent: true,
        })
        .await?
        .json()
    }
}

/// A query string for OData options: values percent-encoded (spaces as `%20`, which Graph
/// reads reliably, unlike `+`), names kept as they are (`$expand`).
pub(crate) fn odata_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

pub(crate) fn to_json_body<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, GraphError> {
    serde_json::to_vec(value).map_err(GraphError::Encode)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> GraphClient {
        GraphClient::new(GraphSettings::new(
            Url::parse("https://graph.microsoft.com").unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn urls_encode_ids_and_stay_on_graph() {
        let graph = client();
        let mailbox = graph.mailbox(Mailbox::user("u-1"), Secret::new("token-value"));
        let url = mailbox.mailbox_url(&["events", "AAk/+x=="]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users/u-1/events/AAk%2F+x=="
        );
        assert!(graph
            .graph_link("https://graph.microsoft.com/v1.0/me/calendarView/delta?$skiptoken=a")
            .is_ok());
        assert!(graph.graph_link("https://evil.example/v1.0/me").is_err());
        assert!(!format!("{mailbox:?}").contains("token-value"));
        assert_eq!(
            odata_query(&[("$filter", "id eq 'a b'")]),
            "$filter=id%20eq%20%27a%20b%27"
        );
    }
}
