//! The webhook function's routes (docs/design.md §2): answer Graph's validation handshake,
//! turn change and lifecycle notifications into sync jobs, and answer fast. Nothing here calls
//! Graph: the handler checks, collapses, queues and returns, so Graph never sees a slow
//! endpoint.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{post, MethodRouter};
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

use crate::adapters::graph::notifications::{parse_collection, Notification};
use crate::adapters::queue::{JobReason, SyncJob};
use crate::adapters::store::StoreError;
use crate::app::App;
use crate::entry::html;
use crate::services::subscriptions::SubscriptionRecord;
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// Bodies larger than this are refused before parsing. Graph batches notifications, but a
/// thousand basic ones stay well under it.
pub const MAX_BODY_BYTES: usize = 512 * 1024;
/// Validation tokens are short opaque strings; anything longer is not from Graph.
const MAX_VALIDATION_TOKEN: usize = 2048;
/// Distinct subscription ids one request may make us look up. Graph's batches name a handful;
/// a body naming hundreds of random ids would cost a storage read each.
const MAX_SUBSCRIPTION_LOOKUPS: usize = 50;

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
) -> Result<(Vec<SyncJob>, Tally), StoreError> {
    let mut tally = Tally {
        received: notifications.len(),
        ..Tally::default()
    };
    // Everything this request causes shares one correlation id.
    let origin = crate::adapters::queue::JobOrigin::now();
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
            if records.len() >= MAX_SUBSCRIPTION_LOOKUPS {
                tally.unknown_subscription += 1;
                continue;
            }
            let record = app.subscriptions.record(id).await?;
            records.insert(id, record);
        }
        let Some(record) = records.get(id).and_then(Option::as_ref) else {
            tally.unknown_subscription += 1;
            continue;
        };
        let state = notification
            .client_state
            .as_ref()
            .map_or("", Secret::expose);
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
            origin: Some(origin.clone()),
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

fn receiving() -> MethodRouter<App> {
    post(
        |State(app): State<App>, RawQuery(query), body: Bytes| async move {
            receive(&app, query.as_deref().unwrap_or(""), &body).await
        },
    )
    .fallback(|| async { html::text(StatusCode::METHOD_NOT_ALLOWED, "") })
}

/// The webhook routes, for merging (no fallback, no state yet).
pub fn routes() -> Router<App> {
    Router::new()
        .route("/notifications", receiving())
        .route("/lifecycle", receiving())
        .route(
            "/nudge",
            post(|State(app): State<App>, body: Bytes| async move { nudge(&app, &body).await })
                .fallback(|| async { html::text(StatusCode::METHOD_NOT_ALLOWED, "") }),
        )
        // The body is refused before it is read, whole, past the limit.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
}

/// The webhook function: [`routes`] with its fallback and state.
pub fn router(app: App) -> Router {
    routes()
        .fallback(|| async { html::text(StatusCode::NOT_FOUND, "") })
        .with_state(app)
}

/// One POST to `/notifications` or `/lifecycle`.
pub async fn receive(app: &App, query: &str, body: &[u8]) -> Response {
    // The handshake: echo the decoded token as plain text, byte for byte, and nothing else.
    let token = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "validationToken")
        .map(|(_, v)| v.into_owned());
    if let Some(token) = token {
        if token.len() > MAX_VALIDATION_TOKEN {
            return html::text(StatusCode::BAD_REQUEST, "");
        }
        return html::text(StatusCode::OK, token);
    }
    let notifications = match parse_collection(body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %crate::errors::chain(&e), bytes = body.len(), "notification body refused");
            return html::text(StatusCode::BAD_REQUEST, "");
        }
    };
    let (jobs, tally) = match jobs_for(app, &notifications).await {
        Ok(checked) => checked,
        Err(e) => {
            tracing::error!(error = %crate::errors::chain(&e), "subscription lookup failed; asking Graph to retry");
            return html::text(StatusCode::SERVICE_UNAVAILABLE, "");
        }
    };
    if !jobs.is_empty() {
        if let Err(e) = app.queue.send(&jobs).await {
            // Not acknowledged: Graph delivers again (for up to four hours).
            tracing::error!(error = %crate::errors::chain(&e), jobs = jobs.len(), "jobs not queued; asking Graph to retry");
            return html::text(StatusCode::SERVICE_UNAVAILABLE, "");
        }
    }
    tracing::info!(
        received = tally.received,
        accepted = tally.accepted,
        jobs = tally.jobs,
        unknown_subscription = tally.unknown_subscription,
        bad_client_state = tally.bad_client_state,
        encrypted_refused = tally.encrypted_refused,
        lifecycle_ignored = tally.lifecycle_ignored,
        "notifications handled"
    );
    html::text(StatusCode::ACCEPTED, "")
}

/// One POST to `/nudge` from the CRM module. The sender does not wait on the answer: 202 for
/// every nudge taken (queued, collapsed, or for a user who does not sync), 403 for a bad one,
/// 409 for a replay, 503 when it could not be handled (the module sends the next one anyway).
pub async fn nudge(app: &App, body: &[u8]) -> Response {
    use crate::nudge::NudgeError;
    use crate::services::nudges::{accept, NudgeRefusal};
    let outcome = accept(
        app.store.as_ref(),
        &app.tenants,
        &app.users,
        app.queue.as_ref(),
        body,
        crate::adapters::store::now_epoch(),
    )
    .await;
    match outcome {
        Ok(outcome) => {
            tracing::info!(?outcome, "nudge taken");
            html::text(StatusCode::ACCEPTED, "")
        }
        Err(e) => {
            let status = match &e {
                NudgeRefusal::Refused(NudgeError::BadSignature | NudgeError::Stale) => {
                    StatusCode::FORBIDDEN
                }
                NudgeRefusal::Refused(_) => StatusCode::BAD_REQUEST,
                NudgeRefusal::Replayed => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            if status == StatusCode::SERVICE_UNAVAILABLE {
                tracing::error!(error = %crate::errors::chain(&e), "nudge not handled");
            } else {
                tracing::warn!(error = %crate::errors::chain(&e), "nudge refused");
            }
            html::text(status, "")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_published_lifecycle_sample_asks_for_reauthorization() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/graph/lifecycle-reauthorization-required.json");
        let parsed = parse_collection(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(
            job_reason(&parsed[0]),
            Some((JobReason::Reauthorize, false))
        );
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
