//! Subscriptions that behave like Graph's: creation validates the notification URL (and the
//! lifecycle URL) with a `validationToken` request first and fails with 400 if the echo is not
//! right within 10 seconds; changes are POSTed to the notification URL with the `clientState`;
//! lifecycle events are sent on demand; renewals, reauthorization and deletes.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};

use super::errors::GraphErr;
use super::http::{
    json_answer, may_use_calendars, reach_mailbox, GraphRequest, MailboxRef, SubscriptionOp,
};
use super::time::graph_instant;
use super::{Graph, GraphControlError, GraphState};
use crate::identity::AccessTokenInfo;
use crate::support::new_guid;

/// Graph gives the endpoint 10 s to echo the validation token.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Graph's delivery client gives up after 3 s.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// The newest published maximum for basic event subscriptions.
const MAX_LIFETIME_MINUTES: i64 = 10_080;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    ReauthorizationRequired,
    SubscriptionRemoved,
    Missed,
}

impl LifecycleEvent {
    fn name(self) -> &'static str {
        match self {
            LifecycleEvent::ReauthorizationRequired => "reauthorizationRequired",
            LifecycleEvent::SubscriptionRemoved => "subscriptionRemoved",
            LifecycleEvent::Missed => "missed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    Validation,
    Change,
    Lifecycle,
}

/// One POST the sandbox made to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub kind: DeliveryKind,
    /// The URL as called (with `?validationToken=` for validations).
    pub url: String,
    pub subscription_id: Option<String>,
    /// What was sent (the token for validations, JSON otherwise).
    pub sent: String,
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub answer: Option<String>,
    pub error: Option<String>,
    pub elapsed: Duration,
}

/// A subscription as tests see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    pub id: String,
    pub resource: String,
    pub mailbox: String,
    pub change_type: String,
    pub notification_url: String,
    pub lifecycle_notification_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration: Timestamp,
    pub application_id: String,
    pub creator_id: Option<String>,
    pub immutable_ids: bool,
    pub needs_reauthorization: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct SubscriptionState {
    pub id: String,
    pub resource: String,
    pub mailbox: String,
    pub change_types: Vec<String>,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: Option<String>,
    pub expiration: Timestamp,
    pub application_id: String,
    pub creator_id: Option<String>,
    pub tenant_id: String,
    pub immutable_ids: bool,
    pub needs_reauthorization: bool,
}

impl SubscriptionState {
    pub fn info(&self) -> SubscriptionInfo {
        SubscriptionInfo {
            id: self.id.clone(),
            resource: self.resource.clone(),
            mailbox: self.mailbox.clone(),
            change_type: self.change_types.join(","),
            notification_url: self.notification_url.clone(),
            lifecycle_notification_url: self.lifecycle_url.clone(),
            client_state: self.client_state.clone(),
            expiration: self.expiration,
            application_id: self.application_id.clone(),
            creator_id: self.creator_id.clone(),
            immutable_ids: self.immutable_ids,
            needs_reauthorization: self.needs_reauthorization,
        }
    }

    fn render(&self, base_url: &str) -> Value {
        json!({
            "@odata.context": format!("{base_url}/v1.0/$metadata#subscriptions/$entity"),
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_types.join(","),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": null,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": graph_instant(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": null,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": null,
            "encryptionCertificateId": null,
            "notificationUrlAppId": null,
            "notificationContentType": null,
        })
    }

    fn active(&self) -> bool {
        self.expiration > Timestamp::now()
    }
}

fn text<'a>(value: &'a Value, name: &str) -> Option<&'a str> {
    value.get(name).and_then(Value::as_str)
}

/// Graph wants HTTPS; the sandbox also accepts plain HTTP to loopback, where tests listen.
fn acceptable_url(raw: &str) -> bool {
    let Ok(url) = url::Url::parse(raw) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => {
            matches!(
                url.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                || url.host_str() == Some("localhost")
        }
        _ => false,
    }
}

/// The mailbox a resource names: `me/events` or `users/{id}/events`.
fn resource_mailbox(resource: &str) -> Option<MailboxRef> {
    let parts: Vec<&str> = resource
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
    match lower
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["me", "events"] | ["me", "calendar", "events"] => Some(MailboxRef::Me),
        ["users", _, "events"] | ["users", _, "calendar", "events"] => {
            Some(MailboxRef::User(parts[1].to_owned()))
        }
        _ => None,
    }
}

fn parse_expiration(body: &Value) -> Result<Timestamp, GraphErr> {
    let raw = text(body, "expirationDateTime").ok_or_else(|| {
        GraphErr::bad_request("InvalidRequest", "expirationDateTime is required.")
    })?;
    let at: Timestamp = raw.parse().map_err(|_| {
        GraphErr::bad_request(
            "InvalidRequest",
            "expirationDateTime is not a valid date and time.",
        )
    })?;
    let now = Timestamp::now();
    if at <= now {
        return Err(GraphErr::bad_request(
            "InvalidRequest",
            "Subscription expiration must be in the future.",
        ));
    }
    if at.duration_since(now) > SignedDuration::from_mins(MAX_LIFETIME_MINUTES) {
        return Err(GraphErr::bad_request(
            "InvalidRequest",
            &format!(
                "Subscription expiration can only be {MAX_LIFETIME_MINUTES} minutes in the future."
            ),
        ));
    }
    Ok(at)
}

pub(crate) async fn run(
    graph: &Graph,
    request: &GraphRequest,
    op: &SubscriptionOp,
    info: &AccessTokenInfo,
) -> Response {
    let result = match op {
        SubscriptionOp::Create => create(graph, request, info).await,
        SubscriptionOp::List => {
            let state = graph.lock();
            let value: Vec<Value> = state
                .subscriptions
                .values()
                .filter(|s| s.application_id == info.client_id)
                .map(|s| s.render(graph.base_url()))
                .collect();
            Ok((StatusCode::OK, Some(json!({"value": value}))))
        }
        SubscriptionOp::Get(id) => with_own(graph, info, id, |s, _| {
            Ok((StatusCode::OK, Some(s.render(graph.base_url()))))
        }),
        SubscriptionOp::Update(id) => {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
            match parse_expiration(&body) {
                Err(e) => Err(e),
                Ok(at) => with_own(graph, info, id, |s, _| {
                    s.expiration = at;
                    s.needs_reauthorization = false;
                    Ok((StatusCode::OK, Some(s.render(graph.base_url()))))
                }),
            }
        }
        SubscriptionOp::Reauthorize(id) => with_own(graph, info, id, |s, _| {
            s.needs_reauthorization = false;
            Ok((StatusCode::NO_CONTENT, None))
        }),
        SubscriptionOp::Delete(id) => with_own(graph, info, id, |_, remove| {
            *remove = true;
            Ok((StatusCode::NO_CONTENT, None))
        }),
    };
    match result {
        Ok((status, Some(body))) => json_answer(status, body.to_string(), &[]),
        Ok((status, None)) => status.into_response(),
        Err(e) => e.response(&request.headers),
    }
}

type OpResult = Result<(StatusCode, Option<Value>), GraphErr>;

/// Runs `work` on a subscription the caller's app owns; `remove` deletes it afterwards.
fn with_own(
    graph: &Graph,
    info: &AccessTokenInfo,
    id: &str,
    work: impl FnOnce(&mut SubscriptionState, &mut bool) -> OpResult,
) -> OpResult {
    let mut state = graph.lock();
    let not_found = || {
        GraphErr::new(
            404,
            "ResourceNotFound",
            &format!("The object was not found: subscription {id}."),
        )
    };
    let sub = state.subscriptions.get_mut(id).ok_or_else(not_found)?;
    if sub.application_id != info.client_id {
        return Err(not_found());
    }
    let mut remove = false;
    let result = work(sub, &mut remove)?;
    if remove {
        state.subscriptions.remove(id);
    }
    Ok(result)
}

async fn create(graph: &Graph, request: &GraphRequest, info: &AccessTokenInfo) -> OpResult {
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|_| GraphErr::bad_request("BadRequest", "Unable to read JSON request payload."))?;
    let change_types: Vec<String> = text(&body, "changeType")
        .unwrap_or_default()
        .split(',')
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect();
    if change_types.is_empty()
        || change_types
            .iter()
            .any(|c| !matches!(c.as_str(), "created" | "updated" | "deleted"))
    {
        return Err(GraphErr::bad_request(
            "InvalidRequest",
            "changeType must be a comma-separated list of created, updated and deleted.",
        ));
    }
    let notification_url = text(&body, "notificationUrl")
        .unwrap_or_default()
        .to_owned();
    let lifecycle_url = text(&body, "lifecycleNotificationUrl").map(str::to_owned);
    for url in std::iter::once(&notification_url).chain(lifecycle_url.as_ref()) {
        if !acceptable_url(url) {
            return Err(GraphErr::bad_request(
                "InvalidRequest",
                "The notification URL must be an absolute HTTPS URL.",
            ));
        }
    }
    let client_state = text(&body, "clientState").map(str::to_owned);
    if client_state
        .as_ref()
        .is_some_and(|c| c.chars().count() > 128)
    {
        return Err(GraphErr::bad_request(
            "InvalidRequest",
            "clientState must be at most 128 characters.",
        ));
    }
    let resource = text(&body, "resource").unwrap_or_default().to_owned();
    let Some(mailbox_ref) = resource_mailbox(&resource) else {
        return Err(GraphErr::bad_request(
            "ExtensionError",
            &format!("The resource '{resource}' is not supported for subscriptions."),
        ));
    };
    let expiration = parse_expiration(&body)?;
    if !may_use_calendars(info, false) {
        return Err(GraphErr::access_denied());
    }
    let mailbox = reach_mailbox(graph, info, &mailbox_ref, false)?;
    // Graph checks the endpoint before anything is created.
    let id = new_guid();
    validate(graph, &notification_url, &id).await?;
    if let Some(lifecycle) = &lifecycle_url {
        validate(graph, lifecycle, &id).await?;
    }
    let immutable_ids = request
        .header("prefer")
        .is_some_and(|p| p.to_ascii_lowercase().contains("immutableid"));
    let sub = SubscriptionState {
        id: id.clone(),
        resource,
        mailbox,
        change_types,
        notification_url,
        lifecycle_url,
        client_state,
        expiration,
        application_id: info.client_id.clone(),
        creator_id: info.oid.clone(),
        tenant_id: info.tenant_id.clone(),
        immutable_ids,
        needs_reauthorization: false,
    };
    let rendered = sub.render(graph.base_url());
    graph.lock().subscriptions.insert(id, sub);
    Ok((StatusCode::CREATED, Some(rendered)))
}

/// The validation handshake: the endpoint must answer 200, `text/plain`, the decoded token.
async fn validate(graph: &Graph, endpoint: &str, subscription_id: &str) -> Result<(), GraphErr> {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        new_guid()
    );
    let failed = || {
        GraphErr::bad_request(
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        )
    };
    let Ok(mut url) = url::Url::parse(endpoint) else {
        return Err(failed());
    };
    url.query_pairs_mut().append_pair("validationToken", &token);
    let started = std::time::Instant::now();
    let outcome = graph
        .http()
        .post(url.clone())
        .header("content-type", "text/plain; charset=utf-8")
        .timeout(VALIDATION_TIMEOUT)
        .send()
        .await;
    let mut delivery = Delivery {
        kind: DeliveryKind::Validation,
        url: url.to_string(),
        subscription_id: Some(subscription_id.to_owned()),
        sent: token.clone(),
        status: None,
        content_type: None,
        answer: None,
        error: None,
        elapsed: Duration::ZERO,
    };
    let ok = match outcome {
        Ok(response) => {
            delivery.status = Some(response.status().as_u16());
            delivery.content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let status_ok = response.status().as_u16() == 200;
            let answer = response.text().await.unwrap_or_default();
            let plain = delivery
                .content_type
                .as_deref()
                .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/plain"));
            let ok = status_ok && plain && answer == token;
            delivery.answer = Some(answer);
            ok
        }
        Err(e) => {
            delivery.error = Some(if e.is_timeout() {
                "timed out".into()
            } else {
                "could not connect".into()
            });
            false
        }
    };
    delivery.elapsed = started.elapsed();
    graph.lock().deliveries.push(delivery);
    if ok {
        Ok(())
    } else {
        Err(failed())
    }
}

/// A notification waiting to be POSTed.
pub(crate) struct Pending {
    url: String,
    subscription_id: String,
    body: String,
    kind: DeliveryKind,
}

/// Turns the mailboxes' queued changes into notifications for their active subscriptions.
pub(crate) fn collect_notifications(state: &mut GraphState) -> Vec<Pending> {
    let mut pending = Vec::new();
    let mailboxes: Vec<String> = state.mailboxes.keys().cloned().collect();
    for mailbox in mailboxes {
        let notes = match state.mailboxes.get_mut(&mailbox) {
            Some(mb) => mb.drain_notes(),
            None => continue,
        };
        if notes.is_empty() {
            continue;
        }
        for sub in state.subscriptions.values() {
            if sub.mailbox != mailbox || !sub.active() {
                continue;
            }
            for note in &notes {
                if !sub.change_types.iter().any(|c| c == note.change_type) {
                    continue;
                }
                let id = if sub.immutable_ids {
                    &note.immutable_id
                } else {
                    &note.rest_id
                };
                let resource = format!("Users/{}/Events/{id}", sub.mailbox);
                let body = json!({
                    "value": [{
                        "id": crate::support::random_token(9),
                        "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": graph_instant(sub.expiration),
                        "clientState": sub.client_state,
                        "changeType": note.change_type,
                        "resource": resource,
                        "tenantId": sub.tenant_id,
                        "resourceData": {
                            "@odata.type": "#Microsoft.Graph.Event",
                            "@odata.id": resource,
                            "@odata.etag": note.etag,
                            "id": id,
                        }
                    }]
                });
                pending.push(Pending {
                    url: sub.notification_url.clone(),
                    subscription_id: sub.id.clone(),
                    body: body.to_string(),
                    kind: DeliveryKind::Change,
                });
            }
        }
    }
    pending
}

async fn deliver(graph: &Graph, pending: Pending) -> Delivery {
    let started = std::time::Instant::now();
    let outcome = graph
        .http()
        .post(&pending.url)
        .header("content-type", "application/json")
        .body(pending.body.clone())
        .timeout(DELIVERY_TIMEOUT)
        .send()
        .await;
    let mut delivery = Delivery {
        kind: pending.kind,
        url: pending.url,
        subscription_id: Some(pending.subscription_id),
        sent: pending.body,
        status: None,
        content_type: None,
        answer: None,
        error: None,
        elapsed: Duration::ZERO,
    };
    match outcome {
        Ok(response) => {
            delivery.status = Some(response.status().as_u16());
            delivery.answer = response.text().await.ok();
        }
        Err(e) => {
            delivery.error = Some(if e.is_timeout() {
                "timed out".into()
            } else {
                "could not connect".into()
            })
        }
    }
    delivery.elapsed = started.elapsed();
    graph.lock().deliveries.push(delivery.clone());
    delivery
}

/// POSTs notifications in the background (Graph does not wait for edits to be delivered).
pub(crate) fn spawn_deliveries(graph: &Graph, pending: Vec<Pending>) {
    if pending.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no async runtime: change notifications dropped");
        return;
    };
    for item in pending {
        let graph = graph.clone();
        runtime.spawn(async move {
            deliver(&graph, item).await;
        });
    }
}

pub(crate) async fn send_lifecycle(
    graph: &Graph,
    subscription_id: &str,
    event: LifecycleEvent,
) -> Result<Delivery, GraphControlError> {
    let pending = {
        let mut state = graph.lock();
        let sub = state
            .subscriptions
            .get_mut(subscription_id)
            .ok_or_else(|| GraphControlError::UnknownSubscription(subscription_id.to_owned()))?;
        let url = sub.lifecycle_url.clone().ok_or_else(|| {
            GraphControlError::Rejected("the subscription has no lifecycleNotificationUrl".into())
        })?;
        if event == LifecycleEvent::ReauthorizationRequired {
            sub.needs_reauthorization = true;
        }
        let body = json!({
            "value": [{
                "subscriptionId": sub.id,
                "subscriptionExpirationDateTime": graph_instant(sub.expiration),
                "tenantId": sub.tenant_id,
                "clientState": sub.client_state,
                "lifecycleEvent": event.name(),
            }]
        });
        let pending = Pending {
            url,
            subscription_id: sub.id.clone(),
            body: body.to_string(),
            kind: DeliveryKind::Lifecycle,
        };
        if event == LifecycleEvent::SubscriptionRemoved {
            state.subscriptions.remove(subscription_id);
        }
        pending
    };
    Ok(deliver(graph, pending).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_name_a_mailbox() {
        assert_eq!(resource_mailbox("me/events"), Some(MailboxRef::Me));
        assert_eq!(
            resource_mailbox("/users/AbC/events"),
            Some(MailboxRef::User("AbC".into()))
        );
        assert_eq!(resource_mailbox("me/messages"), None);
    }

    #[test]
    fn only_https_or_loopback_http() {
        assert!(acceptable_url("https://hooks.example.com/notifications"));
        assert!(acceptable_url("http://127.0.0.1:8080/notifications"));
        assert!(acceptable_url("http://localhost:1/x"));
        assert!(!acceptable_url("http://hooks.example.com/notifications"));
        assert!(!acceptable_url("ftp://x"));
    }
}
