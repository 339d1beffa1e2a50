//! The HTTP face: one catch-all route under `/v1.0`, parsed here so paths match Graph's
//! (case-insensitive segments, `/me` and `/users/{id}`), then authentication, mailbox access,
//! the per-mailbox in-flight count, faults, and the operation.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use super::errors::{
    bearer_token, graph_error, throttled, unauthorized, with_request_ids, GraphErr,
};
use super::faults::{pick, FaultRoute, GraphFault};
use super::model::RenderPrefs;
use super::time::resolve_zone;
use super::{key, Graph, RequestRecord};
use crate::identity::{AccessTokenInfo, AccessTokenStatus};

/// Larger request bodies are refused (Graph's own limit is 4 MB for most writes).
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

pub(crate) fn router(graph: Graph) -> Router {
    Router::new()
        .route("/v1.0/{*rest}", any(entry))
        .with_state(graph)
}

/// A request, already read, as the operations see it.
pub(crate) struct GraphRequest {
    pub method: Method,
    /// Path after `/v1.0`, percent-encoded as received.
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub remote: Option<SocketAddr>,
    pub in_batch: bool,
}

impl GraphRequest {
    /// Query parameters, names lower-cased (Graph's are case-insensitive).
    pub fn params(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn entry(State(graph): State<Graph>, request: Request) -> Response {
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return GraphErr::new(413, "RequestEntityTooLarge", "The request is too large.")
                .response(&parts.headers)
        }
    };
    let path = parts.uri.path();
    let request = GraphRequest {
        method: parts.method.clone(),
        path: path.strip_prefix("/v1.0").unwrap_or(path).to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
        remote,
        in_batch: false,
    };
    handle(&graph, request).await
}

/// Whose calendar a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MailboxRef {
    Me,
    User(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MailboxOp {
    Delta,
    ListEvents,
    CreateEvent,
    GetEvent(String),
    UpdateEvent(String),
    DeleteEvent(String),
    Instances(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubscriptionOp {
    List,
    Create,
    Get(String),
    Update(String),
    Delete(String),
    Reauthorize(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    Profile,
    Mailbox(MailboxRef, MailboxOp),
    Subscriptions(SubscriptionOp),
    Batch,
}

impl Route {
    fn fault_route(&self) -> FaultRoute {
        match self {
            Route::Profile => FaultRoute::Profile,
            Route::Batch => FaultRoute::Batch,
            Route::Subscriptions(_) => FaultRoute::Subscriptions,
            Route::Mailbox(_, op) => match op {
                MailboxOp::Delta => FaultRoute::Delta,
                MailboxOp::ListEvents | MailboxOp::GetEvent(_) => FaultRoute::EventReads,
                MailboxOp::Instances(_) => FaultRoute::Instances,
                MailboxOp::CreateEvent | MailboxOp::UpdateEvent(_) | MailboxOp::DeleteEvent(_) => {
                    FaultRoute::EventWrites
                }
            },
        }
    }

    fn writes(&self) -> bool {
        matches!(
            self,
            Route::Mailbox(
                _,
                MailboxOp::CreateEvent | MailboxOp::UpdateEvent(_) | MailboxOp::DeleteEvent(_)
            )
        )
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            urlencoding::decode(s)
                .map(|d| d.into_owned())
                .unwrap_or_else(|_| s.to_owned())
        })
        .collect()
}

fn unknown_segment(segment: &str) -> GraphErr {
    GraphErr::bad_request(
        "BadRequest",
        &format!("Resource not found for the segment '{segment}'."),
    )
}

fn method_not_allowed() -> GraphErr {
    GraphErr::new(
        405,
        "Request_BadRequest",
        "Specified HTTP method is not allowed for the request target.",
    )
}

/// Maps method and path to an operation, with Graph's errors for the rest.
pub(crate) fn parse_route(method: &Method, path: &str) -> Result<Route, GraphErr> {
    let segs = segments(path);
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
    let (mailbox, rest_at) = match lower.as_slice() {
        ["me"] => {
            return match *method {
                Method::GET => Ok(Route::Profile),
                _ => Err(method_not_allowed()),
            }
        }
        ["$batch"] => {
            return match *method {
                Method::POST => Ok(Route::Batch),
                _ => Err(method_not_allowed()),
            }
        }
        ["subscriptions", rest @ ..] => {
            let op = match (method.clone(), rest) {
                (Method::GET, []) => SubscriptionOp::List,
                (Method::POST, []) => SubscriptionOp::Create,
                (Method::GET, [_]) => SubscriptionOp::Get(segs[1].clone()),
                (Method::PATCH, [_]) => SubscriptionOp::Update(segs[1].clone()),
                (Method::DELETE, [_]) => SubscriptionOp::Delete(segs[1].clone()),
                (Method::POST, [_, "reauthorize"]) => SubscriptionOp::Reauthorize(segs[1].clone()),
                (_, [] | [_] | [_, "reauthorize"]) => return Err(method_not_allowed()),
                (_, [_, other, ..]) => return Err(unknown_segment(other)),
            };
            return Ok(Route::Subscriptions(op));
        }
        ["me", ..] => (MailboxRef::Me, 1),
        ["users", _, ..] => (MailboxRef::User(segs[1].clone()), 2),
        [first, ..] => return Err(unknown_segment(first)),
        [] => return Err(unknown_segment("")),
    };
    // Ids keep their original spelling (they are case-sensitive); names do not.
    let (mut original, mut rest) = (segs[rest_at..].to_vec(), lower[rest_at..].to_vec());
    // The primary calendar's paths mean the same.
    if rest.first() == Some(&"calendar") {
        original.remove(0);
        rest.remove(0);
    }
    let id = |i: usize| original[i].clone();
    let op = match (method.clone(), rest.as_slice()) {
        (Method::GET, ["calendarview", "delta"]) => MailboxOp::Delta,
        (Method::GET, ["events"]) => MailboxOp::ListEvents,
        (Method::POST, ["events"]) => MailboxOp::CreateEvent,
        (Method::GET, ["events", _]) => MailboxOp::GetEvent(id(1)),
        (Method::PATCH, ["events", _]) => MailboxOp::UpdateEvent(id(1)),
        (Method::DELETE, ["events", _]) => MailboxOp::DeleteEvent(id(1)),
        (Method::GET, ["events", _, "instances"]) => MailboxOp::Instances(id(1)),
        (
            _,
            ["calendarview", "delta"] | ["events"] | ["events", _] | ["events", _, "instances"],
        ) => return Err(method_not_allowed()),
        (_, [other, ..]) => return Err(unknown_segment(other)),
        (_, []) => return Err(unknown_segment("")),
    };
    Ok(Route::Mailbox(mailbox, op))
}

/// What a client asked for with `Prefer` headers.
pub(crate) struct Prefer {
    pub page_size: Option<usize>,
    pub render: RenderPrefs,
    pub applied: Vec<String>,
}

pub(crate) fn parse_prefer(headers: &HeaderMap) -> Prefer {
    let mut prefer = Prefer {
        page_size: None,
        render: RenderPrefs::default(),
        applied: Vec::new(),
    };
    for value in headers.get_all("prefer") {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for part in value.split(',') {
            let Some((name, raw)) = part.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let val = raw.trim().trim_matches('"');
            if name.eq_ignore_ascii_case("odata.maxpagesize") {
                if let Ok(n) = val.parse::<usize>() {
                    prefer.page_size = Some(n.max(1));
                    prefer.applied.push(format!("odata.maxpagesize={n}"));
                }
            } else if name.eq_ignore_ascii_case("outlook.timezone") {
                if let Some(zone) = resolve_zone(val) {
                    prefer.render.zone = zone;
                    prefer.render.zone_name = val.to_owned();
                    prefer.applied.push(format!("outlook.timezone=\"{val}\""));
                }
            } else if name.eq_ignore_ascii_case("IdType") {
                prefer.render.immutable_ids = val.eq_ignore_ascii_case("ImmutableId");
                prefer.applied.push(format!("IdType=\"{val}\""));
            } else if name.eq_ignore_ascii_case("outlook.body-content-type") {
                let kind = val.to_ascii_lowercase();
                if kind == "text" || kind == "html" {
                    prefer
                        .applied
                        .push(format!("outlook.body-content-type=\"{kind}\""));
                    prefer.render.body_type = Some(kind);
                }
            }
        }
    }
    prefer
}

/// A JSON answer with Graph's content type and the preferences it applied.
pub(crate) fn json_answer(status: StatusCode, body: String, applied: &[String]) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(
            "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
        ),
    );
    if !applied.is_empty() {
        if let Ok(value) = HeaderValue::from_str(&applied.join(",")) {
            headers.insert("preference-applied", value);
        }
    }
    response
}

/// Who is calling, from the bearer token.
pub(crate) fn authenticate(
    graph: &Graph,
    headers: &HeaderMap,
) -> Result<AccessTokenInfo, Box<Response>> {
    let login = graph.identity().base_url().to_owned();
    let Some(token) = bearer_token(headers) else {
        return Err(Box::new(unauthorized(
            "Access token is empty.",
            &login,
            headers,
        )));
    };
    match graph.identity().access_token_status(token) {
        AccessTokenStatus::Valid(info) => Ok(info),
        AccessTokenStatus::Expired => Err(Box::new(unauthorized(
            "Lifetime validation failed, the token is expired.",
            &login,
            headers,
        ))),
        AccessTokenStatus::Unknown => Err(Box::new(unauthorized(
            "Access token validation failure.",
            &login,
            headers,
        ))),
    }
}

/// Whether the token carries a calendar permission (write: `Calendars.ReadWrite`).
pub(crate) fn may_use_calendars(info: &AccessTokenInfo, write: bool) -> bool {
    let granted = if info.app_only {
        &info.roles
    } else {
        &info.scopes
    };
    granted.iter().any(|g| {
        let name = g.rsplit('/').next().unwrap_or(g).to_ascii_lowercase();
        name == "calendars.readwrite" || (!write && name == "calendars.read")
    })
}

/// The mailbox key a path reaches with this token, or Graph's refusal.
pub(crate) fn reach_mailbox(
    graph: &Graph,
    info: &AccessTokenInfo,
    mailbox: &MailboxRef,
    write: bool,
) -> Result<String, GraphErr> {
    let oid = match (mailbox, info.app_only, &info.oid) {
        (MailboxRef::Me, true, _) | (MailboxRef::Me, _, None) => {
            return Err(GraphErr::bad_request(
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            ))
        }
        (MailboxRef::Me, false, Some(oid)) => oid.clone(),
        (MailboxRef::User(id), true, _) => id.clone(),
        (MailboxRef::User(_), false, None) => return Err(GraphErr::access_denied()),
        (MailboxRef::User(id), false, Some(oid)) => {
            // Delegated tokens reach only their own mailbox here (no shared calendars).
            if key(id) != key(oid) {
                return Err(GraphErr::access_denied());
            }
            oid.clone()
        }
    };
    if !may_use_calendars(info, write) {
        return Err(GraphErr::access_denied());
    }
    let mut state = graph.lock();
    graph.mailbox_mut(&mut state, &oid).map_err(|_| {
        GraphErr::new(
            404,
            "ErrorInvalidUser",
            &format!("The requested user '{oid}' is invalid."),
        )
    })?;
    Ok(key(&oid))
}

/// Keeps the in-flight count of a mailbox while a request is being answered.
struct InFlightGuard {
    graph: Graph,
    mailbox: String,
}

impl InFlightGuard {
    /// Counts the request in; `Err` when the mailbox is over its concurrency limit.
    fn enter(graph: &Graph, mailbox: &str) -> (Self, bool) {
        let mut state = graph.lock();
        let limit = state.concurrency_limit;
        let flight = state.in_flight.entry(mailbox.to_owned()).or_default();
        flight.now += 1;
        flight.peak = flight.peak.max(flight.now);
        let over = limit.is_some_and(|l| flight.now > l);
        (
            Self {
                graph: graph.clone(),
                mailbox: mailbox.to_owned(),
            },
            over,
        )
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if let Some(flight) = self.graph.lock().in_flight.get_mut(&self.mailbox) {
            flight.now = flight.now.saturating_sub(1);
        }
    }
}

/// Answers one request (a top-level one or a `$batch` item). Boxed because a batch item comes
/// back here through the batch handler.
pub(crate) fn handle(
    graph: &Graph,
    request: GraphRequest,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send + '_>> {
    Box::pin(handle_inner(graph, request))
}

async fn handle_inner(graph: &Graph, request: GraphRequest) -> Response {
    let route = match parse_route(&request.method, &request.path) {
        Ok(route) => route,
        Err(e) => return e.response(&request.headers),
    };
    if route == Route::Batch && request.in_batch {
        return GraphErr::bad_request("BadRequest", "A batch cannot contain a batch.")
            .response(&request.headers);
    }
    let info = match authenticate(graph, &request.headers) {
        Ok(info) => info,
        Err(response) => return *response,
    };
    let mailbox = match &route {
        Route::Mailbox(mailbox, _) => match reach_mailbox(graph, &info, mailbox, route.writes()) {
            Ok(key) => Some(key),
            Err(e) => return e.response(&request.headers),
        },
        // Subscription calls count against the signed-in user's mailbox.
        Route::Subscriptions(_) | Route::Profile => info.oid.as_deref().map(key),
        // Each item of a batch counts on its own.
        Route::Batch => None,
    };
    let record = graph.record_start(RequestRecord {
        method: request.method.to_string(),
        path: request.path.clone(),
        query: request.query.clone(),
        mailbox: mailbox.clone(),
        status: 0,
        client_request_id: request.header("client-request-id").map(str::to_owned),
        prefer: request.header("prefer").map(str::to_owned),
        remote: request.remote,
        started: graph.since_start(),
        finished: graph.since_start(),
        in_batch: request.in_batch,
        fault: None,
    });
    let (_guard, over_limit) = match &mailbox {
        Some(m) => {
            let (guard, over) = InFlightGuard::enter(graph, m);
            (Some(guard), over)
        }
        None => (None, false),
    };
    let (response, fault) = if over_limit {
        (
            throttled(
                Some(1),
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency limit.",
                &request.headers,
            ),
            Some("concurrency-limit".to_owned()),
        )
    } else {
        answer(graph, &request, &route, &info, mailbox.as_deref()).await
    };
    let response = if response.headers().contains_key("request-id") {
        response
    } else {
        with_request_ids(response, &request.headers)
    };
    graph.record_finish(record, response.status().as_u16(), fault);
    graph.flush_notifications();
    response
}

/// Plays a fault if one fires, then runs the operation.
async fn answer(
    graph: &Graph,
    request: &GraphRequest,
    route: &Route,
    info: &AccessTokenInfo,
    mailbox: Option<&str>,
) -> (Response, Option<String>) {
    let (fault, poisoned) = {
        let mut state = graph.lock();
        let poisoned = request
            .remote
            .is_some_and(|addr| state.poisoned.contains(&addr));
        (
            pick(&mut state.faults, route.fault_route(), mailbox),
            poisoned,
        )
    };
    if poisoned && !request.in_batch {
        return (
            unavailable(None, &request.headers),
            Some("503 on a failed connection".into()),
        );
    }
    let label = fault.as_ref().map(|f| format!("{f:?}"));
    let drop_answer = matches!(fault, Some(GraphFault::Drop));
    match fault {
        Some(GraphFault::Throttle { retry_after }) => {
            return (
                throttled(
                    retry_after,
                    "TooManyRequests",
                    "Please retry again later.",
                    &request.headers,
                ),
                label,
            )
        }
        Some(GraphFault::Unavailable { retry_after }) => {
            if let (Some(addr), false) = (request.remote, request.in_batch) {
                graph.lock().poisoned.insert(addr);
            }
            return (unavailable(retry_after, &request.headers), label);
        }
        Some(GraphFault::GatewayTimeout) => {
            return (
                graph_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "GatewayTimeout",
                    "The gateway did not receive a response in time.",
                    &request.headers,
                ),
                label,
            )
        }
        Some(GraphFault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(GraphFault::UserEditsFirst(patch)) => {
            if let (
                Route::Mailbox(_, MailboxOp::UpdateEvent(id) | MailboxOp::DeleteEvent(id)),
                Some(mailbox),
            ) = (route, mailbox)
            {
                // Whether the edit applies is the test's business; the request goes on.
                let _ = graph.update_event(mailbox, id, patch);
            }
        }
        Some(GraphFault::Drop) | None => {}
    }
    let response = match route {
        Route::Profile => super::profile::me(graph, info, &request.headers),
        Route::Mailbox(mailbox_ref, op) => {
            let mailbox = mailbox.unwrap_or_default();
            super::events::run(graph, request, mailbox_ref, op, mailbox)
        }
        Route::Subscriptions(op) => super::subscriptions::run(graph, request, op, info).await,
        Route::Batch => super::batch::run(graph, request).await,
    };
    // A dropped connection loses the answer of work already done: what makes retried
    // creates dangerous without a transactionId.
    if drop_answer {
        let lost = if request.in_batch {
            graph_error(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "The gateway did not receive a response in time.",
                &request.headers,
            )
        } else {
            dropped()
        };
        return (lost, label);
    }
    (response, label)
}

fn unavailable(retry_after: Option<u64>, headers: &HeaderMap) -> Response {
    let mut response = graph_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        "The service is temporarily unavailable. Please try again later.",
        headers,
    );
    if let Some(seconds) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// An answer that starts and never finishes: the client sees the connection drop.
fn dropped() -> Response {
    crate::support::cut_answer(Bytes::from_static(b"{\"value\":["), "application/json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse_like_graph() {
        let get = Method::GET;
        assert_eq!(
            parse_route(&get, "/me/calendarView/delta"),
            Ok(Route::Mailbox(MailboxRef::Me, MailboxOp::Delta))
        );
        assert_eq!(
            parse_route(&get, "/users/ABC/calendarview/delta"),
            Ok(Route::Mailbox(
                MailboxRef::User("ABC".into()),
                MailboxOp::Delta
            ))
        );
        assert_eq!(
            parse_route(&get, "/me/events/AAk%2Fx%3D"),
            Ok(Route::Mailbox(
                MailboxRef::Me,
                MailboxOp::GetEvent("AAk/x=".into())
            ))
        );
        assert_eq!(
            parse_route(&get, "/me/calendar/events/Id1/instances"),
            Ok(Route::Mailbox(
                MailboxRef::Me,
                MailboxOp::Instances("Id1".into())
            ))
        );
        assert_eq!(parse_route(&Method::POST, "/$batch"), Ok(Route::Batch));
        assert_eq!(
            parse_route(&Method::POST, "/subscriptions/s1/reauthorize"),
            Ok(Route::Subscriptions(SubscriptionOp::Reauthorize(
                "s1".into()
            )))
        );
        assert_eq!(parse_route(&get, "/me/contacts").unwrap_err().status, 400);
        assert_eq!(
            parse_route(&Method::PUT, "/me/events").unwrap_err().status,
            405
        );
    }

    #[test]
    fn prefer_values_are_read() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "prefer",
            HeaderValue::from_static(
                "odata.maxpagesize=2, outlook.timezone=\"Pacific Standard Time\", IdType=\"ImmutableId\"",
            ),
        );
        headers.append(
            "prefer",
            HeaderValue::from_static("outlook.body-content-type=\"text\""),
        );
        let prefer = parse_prefer(&headers);
        assert_eq!(prefer.page_size, Some(2));
        assert!(prefer.render.immutable_ids);
        assert_eq!(prefer.render.zone_name, "Pacific Standard Time");
        assert_eq!(prefer.render.body_type.as_deref(), Some("text"));
    }
}
