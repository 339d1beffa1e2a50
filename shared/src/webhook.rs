//! The webhook function's work (DESIGN §2): answer Graph's validation handshake, turn change
//! and lifecycle notifications into sync jobs, and answer fast. Nothing here calls Graph: the
//! handler checks, collapses, queues and returns, so Graph never sees a slow endpoint.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

use crate::app::App;
use crate::ids::{CrmUserName, TenantId};
use crate::queue::{JobReason, SyncJob};
use crate::subscription::SubscriptionRecord;
use crate::web::{WebRequest, WebResponse};

/// Bodies larger than this are refused before parsing. Graph batches notifications, but a
/// thousand basic ones stay well under it.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Validation tokens are short opaque strings; anything longer is not from Graph.
const MAX_VALIDATION_TOKEN: usize = 2048;
/// Items beyond this in one request are not from Graph either.
const MAX_ITEMS: usize = 1000;

/// One notification, read tolerantly (camelCase or PascalCase keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    pub subscription_id: String,
    pub client_state: Option<String>,
    pub change_type: Option<String>,
    pub resource: Option<String>,
    pub lifecycle_event: Option<String>,
    /// Rich notifications carry encrypted resource data, which calsync does not subscribe to.
    pub encrypted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body is not a notification collection")]
    NotACollection,
    #[error("too many notifications in one request")]
    TooMany,
}

/// The value of `key` in `object`, matching the key without regard to letter case.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    field(object, key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Parses a `changeNotificationCollection`. Items without a subscription id are skipped (they
/// cannot be attributed); a body that is not a collection at all is an error.
pub fn parse_collection(body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    let root: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    let root = root.as_object().ok_or(ParseError::NotACollection)?;
    let items = field(root, "value")
        .and_then(Value::as_array)
        .ok_or(ParseError::NotACollection)?;
    if items.len() > MAX_ITEMS {
        return Err(ParseError::TooMany);
    }
    let rich = field(root, "validationTokens").is_some();
    Ok(items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|item| {
            let subscription_id = text_field(item, "subscriptionId")?;
            Some(Notification {
                subscription_id,
                client_state: text_field(item, "clientState"),
                change_type: text_field(item, "changeType"),
                resource: text_field(item, "resource"),
                lifecycle_event: text_field(item, "lifecycleEvent"),
                encrypted: rich || field(item, "encryptedContent").is_some(),
            })
        })
        .collect())
}

/// The mailbox and event ids in a notification's resource path, in either of the styles Graph
/// uses: `Users/{user}/Events/{event}` or `Users('{user}')/Events('{event}')`.
pub fn resource_ids(resource: &str) -> Option<(String, String)> {
    // Flatten to name, id, name, id … whichever style was used.
    let mut flat: Vec<&str> = Vec::new();
    for segment in resource.trim_start_matches('/').split('/') {
        match segment.split_once("('") {
            Some((name, rest)) => {
                flat.push(name);
                flat.push(rest.strip_suffix("')")?);
            }
            None => flat.push(segment),
        }
    }
    match flat.as_slice() {
        [users, user, events, event]
            if users.eq_ignore_ascii_case("users") && events.eq_ignore_ascii_case("events") =>
        {
            Some(((*user).to_owned(), (*event).to_owned()))
        }
        _ => None,
    }
}

/// What one request did, for the log line and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: usize,
    pub accepted: usize,
    pub unknown_subscription: usize,
    pub bad_client_state: usize,
    pub encrypted_refused: usize,
    pub lifecycle_ignored: usize,
    pub jobs: usize,
}

/// Which job a notification asks for, or `None` for lifecycle events calsync does not act on.
fn job_reason(notification: &Notification) -> Option<(JobReason, bool)> {
    match notification.lifecycle_event.as_deref() {
        None => Some((JobReason::Notification, false)),
        Some(event) => match event.to_ascii_lowercase().as_str() {
            "reauthorizationrequired" => Some((JobReason::Reauthorize, false)),
            "subscriptionremoved" => Some((JobReason::RecreateSubscription, true)),
            "missed" => Some((JobReason::Missed, true)),
            _ => None,
        },
    }
}

/// When several notifications for one user meet in a request, the job keeps the weightiest
/// reason: recreating a subscription covers reauthorizing it, which covers a plain sync.
fn weight(reason: JobReason) -> u8 {
    match reason {
        JobReason::RecreateSubscription => 4,
        JobReason::Missed => 3,
        JobReason::Reauthorize => 2,
        _ => 1,
    }
}

/// Checks every notification and collapses the good ones into one job per user. A storage
/// failure is an error, not an "unknown subscription": the caller must answer 5xx so Graph
/// delivers again, or the change would be lost.
pub async fn jobs_for(
    app: &App,
    notifications: &[Notification],
) -> Result<(Vec<SyncJob>, Tally), crate::store::StoreError> {
    let mut tally = Tally {
        received: notifications.len(),
        ..Tally::default()
    };
    // One storage read per distinct subscription, however many notifications name it.
    let mut records: HashMap<&str, Option<SubscriptionRecord>> = HashMap::new();
    let mut jobs: BTreeMap<(TenantId, CrmUserName), SyncJob> = BTreeMap::new();
    for notification in notifications {
        if notification.encrypted {
            tally.encrypted_refused += 1;
            continue;
        }
        let id = notification.subscription_id.as_str();
        if !records.contains_key(id) {
            let record = SubscriptionRecord::load(app.store.as_ref(), id).await?;
            records.insert(id, record);
        }
        let Some(record) = records.get(id).and_then(Option::as_ref) else {
            tally.unknown_subscription += 1;
            continue;
        };
        let state = notification.client_state.as_deref().unwrap_or("");
        if !record.client_state_matches(state) {
            tally.bad_client_state += 1;
            continue;
        }
        let Some((reason, full)) = job_reason(notification) else {
            tracing::info!(lifecycle_event = ?notification.lifecycle_event, "lifecycle event ignored");
            tally.lifecycle_ignored += 1;
            continue;
        };
        tally.accepted += 1;
        let key = (record.tenant.clone(), record.user.clone());
        let job = jobs.entry(key).or_insert_with(|| SyncJob {
            tenant: record.tenant.clone(),
            user: record.user.clone(),
            reason,
            full: false,
            confirm_deletions: false,
        });
        if weight(reason) > weight(job.reason) {
            job.reason = reason;
        }
        job.full |= full;
    }
    let jobs: Vec<SyncJob> = jobs.into_values().collect();
    tally.jobs = jobs.len();
    Ok((jobs, tally))
}

/// Handles one request to the webhook function.
pub async fn handle(app: &App, request: &WebRequest) -> WebResponse {
    let endpoint_known = matches!(request.path.as_str(), "/notifications" | "/lifecycle");
    if !endpoint_known {
        return WebResponse::text(404, "");
    }
    if request.method != "POST" {
        return WebResponse::text(405, "");
    }
    // The handshake: echo the decoded token as plain text, byte for byte, and nothing else.
    let token = url::form_urlencoded::parse(request.query.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned());
    if let Some(token) = token {
        if token.len() > MAX_VALIDATION_TOKEN {
            return WebResponse::text(400, "");
        }
        return WebResponse::text(200, token);
    }
    if request.body.len() > MAX_BODY_BYTES {
        return WebResponse::text(413, "");
    }
    let notifications = match parse_collection(&request.body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, bytes = request.body.len(), "notification body refused");
            return WebResponse::text(400, "");
        }
    };
    let (jobs, tally) = match jobs_for(app, &notifications).await {
        Ok(checked) => checked,
        Err(e) => {
            tracing::error!(error = %e, "subscription lookup failed; asking Graph to retry");
            return WebResponse::text(503, "");
        }
    };
    if !jobs.is_empty() {
        if let Err(e) = app.queue.send(&jobs).await {
            // Not acknowledged: Graph delivers again (for up to four hours).
            tracing::error!(error = %e, jobs = jobs.len(), "jobs not queued; asking Graph to retry");
            return WebResponse::text(503, "");
        }
    }
    tracing::info!(
        path = %request.path,
        received = tally.received,
        accepted = tally.accepted,
        jobs = tally.jobs,
        unknown_subscription = tally.unknown_subscription,
        bad_client_state = tally.bad_client_state,
        encrypted_refused = tally.encrypted_refused,
        lifecycle_ignored = tally.lifecycle_ignored,
        "notifications handled"
    );
    WebResponse::text(202, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_parse_in_either_letter_case() {
        let camel = br#"{"value":[{"subscriptionId":"s1","clientState":"c","changeType":"updated","resource":"Users/u/Events/e"}]}"#;
        let pascal = br#"{"Value":[{"SubscriptionId":"s1","ClientState":"c","ChangeType":"updated","Resource":"Users/u/Events/e"}]}"#;
        assert_eq!(
            parse_collection(camel).unwrap(),
            parse_collection(pascal).unwrap()
        );
        let parsed = parse_collection(camel).unwrap();
        assert_eq!(parsed[0].subscription_id, "s1");
        assert_eq!(parsed[0].client_state.as_deref(), Some("c"));
        assert!(!parsed[0].encrypted);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert_eq!(parse_collection(b"not json"), Err(ParseError::NotJson));
        assert_eq!(parse_collection(b"[1,2]"), Err(ParseError::NotACollection));
        assert_eq!(
            parse_collection(b"{\"value\":3}"),
            Err(ParseError::NotACollection)
        );
        assert_eq!(parse_collection(b"{\"value\":[]}"), Ok(vec![]));
        assert_eq!(parse_collection(b"{\"value\":[1, {\"x\":1}]}"), Ok(vec![]));
    }

    #[test]
    fn the_published_samples_parse() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/graph");
        let basic = std::fs::read(dir.join("change-notification-basic.json")).unwrap();
        let parsed = parse_collection(&basic).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].client_state.as_deref(), Some("secretClientValue"));
        let lifecycle = std::fs::read(dir.join("lifecycle-reauthorization-required.json")).unwrap();
        let parsed = parse_collection(&lifecycle).unwrap();
        assert_eq!(
            parsed[0].lifecycle_event.as_deref(),
            Some("reauthorizationRequired")
        );
        assert_eq!(
            job_reason(&parsed[0]),
            Some((JobReason::Reauthorize, false))
        );
    }

    #[test]
    fn rich_notifications_are_marked() {
        let rich = br#"{"value":[{"subscriptionId":"s","encryptedContent":{"data":"x"}}],"validationTokens":["t"]}"#;
        assert!(parse_collection(rich).unwrap()[0].encrypted);
    }

    #[test]
    fn resource_paths_in_both_styles() {
        let want = Some(("u1".to_owned(), "AAMk=".to_owned()));
        assert_eq!(resource_ids("Users/u1/Events/AAMk="), want);
        assert_eq!(resource_ids("users('u1')/events('AAMk=')"), want);
        assert_eq!(resource_ids("/Users/u1/Events/AAMk="), want);
        assert_eq!(resource_ids("Users/u1/Messages/x"), None);
    }

    #[test]
    fn lifecycle_events_map_to_jobs() {
        let with = |event: &str| Notification {
            lifecycle_event: Some(event.to_owned()),
            ..Notification::default()
        };
        assert_eq!(
            job_reason(&with("subscriptionRemoved")),
            Some((JobReason::RecreateSubscription, true))
        );
        assert_eq!(job_reason(&with("missed")), Some((JobReason::Missed, true)));
        assert_eq!(job_reason(&with("somethingNew")), None);
    }
}
