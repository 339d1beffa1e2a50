//! Mailbox operations: calendarView delta, event list/get/create/update/delete and series
//! instances, with `$expand` of single-value extended properties and the one `$filter` Graph
//! supports on them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{json, Value};

use super::delta::{self, DeltaAnswer, DeltaRequest};
use super::errors::GraphErr;
use super::http::{json_answer, parse_prefer, GraphRequest, MailboxOp, MailboxRef};
use super::mailbox::{DeltaExpiry, MailboxState, Target};
use super::model::{with_extended, RenderPrefs, StoredEvent, View};
use super::time::parse_query_instant;
use super::Graph;

/// `'…'` strings following `marker` in an OData expression (`''` is an escaped quote).
fn quoted_after(text: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    let lower = text.to_ascii_lowercase();
    let marker = marker.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&marker) {
        let start = from + at + marker.len();
        let mut value = String::new();
        let mut chars = text[start..].char_indices().peekable();
        let mut end = text.len();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, n)| *n) == Some('\'') {
                    value.push('\'');
                    chars.next();
                    continue;
                }
                end = start + i + 1;
                break;
            }
            value.push(c);
        }
        found.push(value);
        from = end.min(text.len());
    }
    found
}

/// Property ids asked for with `$expand=singleValueExtendedProperties($filter=id eq '…')`.
fn expanded_properties(request: &GraphRequest) -> Option<Vec<String>> {
    let expand = request.param("$expand")?;
    if !expand
        .to_ascii_lowercase()
        .contains("singlevalueextendedproperties")
    {
        return None;
    }
    Some(quoted_after(&expand, "id eq '"))
}

fn context(graph: &Graph, oid: &str, tail: &str) -> String {
    format!("{}/v1.0/$metadata#users('{oid}')/{tail}", graph.base_url())
}

fn window(request: &GraphRequest) -> Result<(Timestamp, Timestamp), GraphErr> {
    let missing = || {
        GraphErr::bad_request(
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
        )
    };
    let from = request.param("startdatetime").ok_or_else(missing)?;
    let to = request.param("enddatetime").ok_or_else(missing)?;
    let parse = |v: &str| {
        parse_query_instant(v).ok_or_else(|| {
            GraphErr::bad_request(
                "ErrorInvalidParameter",
                &format!("The value '{v}' is not a valid date and time."),
            )
        })
    };
    Ok((parse(&from)?, parse(&to)?))
}

pub(crate) fn run(
    graph: &Graph,
    request: &GraphRequest,
    mailbox_ref: &MailboxRef,
    op: &MailboxOp,
    mailbox: &str,
) -> Response {
    let prefer = parse_prefer(&request.headers);
    let path = match mailbox_ref {
        MailboxRef::Me => "me".to_owned(),
        MailboxRef::User(id) => format!("users/{id}"),
    };
    let result = {
        let mut state = graph.lock();
        let default_page = state.default_page_size;
        let Some(mb) = state.mailboxes.get_mut(mailbox) else {
            return GraphErr::not_found().response(&request.headers);
        };
        let page_size = prefer.page_size.unwrap_or(default_page);
        match op {
            MailboxOp::Delta => {
                return delta_answer(
                    graph,
                    request,
                    mb,
                    &prefer.render,
                    page_size,
                    &path,
                    &prefer.applied,
                )
            }
            MailboxOp::GetEvent(id) => get_event(graph, request, mb, id, &prefer.render),
            MailboxOp::ListEvents => {
                list_events(graph, request, mb, &prefer.render, page_size, &path)
            }
            MailboxOp::CreateEvent => create_event(graph, request, mb, &prefer.render),
            MailboxOp::UpdateEvent(id) => update_event(graph, request, mb, id, &prefer.render),
            MailboxOp::DeleteEvent(id) => delete_event(request, mb, id),
            MailboxOp::Instances(id) => {
                instances(graph, request, mb, id, &prefer.render, page_size, &path)
            }
        }
    };
    match result {
        Ok((status, body)) => match body {
            Some(body) => json_answer(status, body.to_string(), &prefer.applied),
            None => status.into_response(),
        },
        Err(e) => e.response(&request.headers),
    }
}

type OpResult = Result<(StatusCode, Option<Value>), GraphErr>;

fn delta_answer(
    graph: &Graph,
    request: &GraphRequest,
    mb: &mut MailboxState,
    prefs: &RenderPrefs,
    page_size: usize,
    path: &str,
    applied: &[String],
) -> Response {
    let delta_request = if let Some(token) = request.param("$skiptoken") {
        DeltaRequest::Skip(token)
    } else if let Some(token) = request.param("$deltatoken") {
        if token.is_empty() {
            // The empty token of a reset Location means: start over.
            return GraphErr::bad_request(
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
            )
            .response(&request.headers);
        }
        DeltaRequest::Delta(token)
    } else {
        match window(request) {
            Ok((from, to)) => DeltaRequest::Start { from, to },
            Err(e) => return e.response(&request.headers),
        }
    };
    match delta::serve(mb, delta_request, prefs, page_size, graph.base_url(), path) {
        Ok(DeltaAnswer::Page(page)) => json_answer(StatusCode::OK, page.body, applied),
        Ok(DeltaAnswer::Lost(how)) => lost_token(graph, request, path, how),
        Err(e) => e.response(&request.headers),
    }
}

/// The answer for a token the server no longer has.
fn lost_token(graph: &Graph, request: &GraphRequest, path: &str, how: DeltaExpiry) -> Response {
    match how {
        DeltaExpiry::Gone => {
            let mut response = GraphErr::new(
                410,
                "SyncStateNotFound",
                "The sync state generation is not found; generation=149;",
            )
            .response(&request.headers);
            let reset = format!(
                "{}/v1.0/{path}/calendarView/delta?$deltatoken=",
                graph.base_url()
            );
            if let Ok(value) = axum::http::HeaderValue::from_str(&reset) {
                response
                    .headers_mut()
                    .insert(axum::http::header::LOCATION, value);
            }
            response
        }
        DeltaExpiry::ResyncRequired => GraphErr::bad_request(
            "resyncRequired",
            "The delta token is no longer valid; a full resync is needed.",
        )
        .response(&request.headers),
        DeltaExpiry::InvalidDeltaToken => GraphErr::bad_request(
            "InvalidDeltaToken",
            "The delta token does not match this request.",
        )
        .response(&request.headers),
    }
}

fn render_target(
    mb: &MailboxState,
    target: &Target,
    prefs: &RenderPrefs,
) -> Option<(Value, String)> {
    let (event_id, date) = match target {
        Target::Event(id) => (id.clone(), None),
        Target::Instance(id, date) => (id.clone(), Some(*date)),
    };
    let event = mb.events.get(&event_id)?;
    Some((View { event, date }.full(prefs), event_id))
}

fn entity(graph: &Graph, mb: &MailboxState, rendered: Value) -> Value {
    let mut out = json!({ "@odata.context": context(graph, &mb.oid, "events/$entity") });
    if let (Some(out_map), Value::Object(fields)) = (out.as_object_mut(), rendered) {
        for (k, v) in fields {
            if k != "@odata.type" {
                out_map.insert(k, v);
            }
        }
    }
    out
}

fn get_event(
    graph: &Graph,
    request: &GraphRequest,
    mb: &MailboxState,
    id: &str,
    prefs: &RenderPrefs,
) -> OpResult {
    let target = mb.resolve(id).ok_or_else(GraphErr::not_found)?;
    let (mut rendered, event_id) =
        render_target(mb, &target, prefs).ok_or_else(GraphErr::not_found)?;
    if let (Some(wanted), Some(event)) = (expanded_properties(request), mb.events.get(&event_id)) {
        rendered = with_extended(rendered, event, &wanted);
    }
    Ok((StatusCode::OK, Some(entity(graph, mb, rendered))))
}

fn body_json(request: &GraphRequest) -> Result<Value, GraphErr> {
    serde_json::from_slice(&request.body)
        .map_err(|_| GraphErr::bad_request("BadRequest", "Unable to read JSON request payload."))
}

fn create_event(
    graph: &Graph,
    request: &GraphRequest,
    mb: &mut MailboxState,
    prefs: &RenderPrefs,
) -> OpResult {
    let body = body_json(request)?;
    let (id, _) = mb.create(&body, Timestamp::now())?;
    let (rendered, _) =
        render_target(mb, &Target::Event(id), prefs).ok_or_else(GraphErr::not_found)?;
    Ok((StatusCode::CREATED, Some(entity(graph, mb, rendered))))
}

fn update_event(
    graph: &Graph,
    request: &GraphRequest,
    mb: &mut MailboxState,
    id: &str,
    prefs: &RenderPrefs,
) -> OpResult {
    let body = body_json(request)?;
    let target = mb.resolve(id).ok_or_else(GraphErr::not_found)?;
    mb.update(&target, &body, request.header("if-match"), Timestamp::now())?;
    let (rendered, _) = render_target(mb, &target, prefs).ok_or_else(GraphErr::not_found)?;
    Ok((StatusCode::OK, Some(entity(graph, mb, rendered))))
}

fn delete_event(request: &GraphRequest, mb: &mut MailboxState, id: &str) -> OpResult {
    let target = mb.resolve(id).ok_or_else(GraphErr::not_found)?;
    mb.delete(&target, request.header("if-match"))?;
    Ok((StatusCode::NO_CONTENT, None))
}

/// `$top`/`$skip` paging for plain lists, with a nextLink that keeps the other options.
fn page_of(
    graph: &Graph,
    request: &GraphRequest,
    items: Vec<Value>,
    page_size: usize,
    path: &str,
    context: String,
) -> Value {
    let top = request
        .param("$top")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(page_size)
        .max(1);
    let skip = request
        .param("$skip")
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(0);
    let total = items.len();
    let value: Vec<Value> = items.into_iter().skip(skip).take(top).collect();
    let mut page = json!({ "@odata.context": context, "value": value });
    if skip + top < total {
        let mut query: Vec<(String, String)> =
            url::form_urlencoded::parse(request.query.as_bytes())
                .into_owned()
                .filter(|(k, _)| !k.eq_ignore_ascii_case("$skip"))
                .collect();
        query.push(("$skip".into(), (skip + top).to_string()));
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(query)
            .finish();
        page["@odata.nextLink"] = json!(format!(
            "{}/v1.0/{path}{}?{encoded}",
            graph.base_url(),
            op_tail(&request.path)
        ));
    }
    page
}

/// The path after the mailbox segments (`/events`, `/events/{id}/instances`).
fn op_tail(path: &str) -> String {
    let trimmed = path.trim_start_matches('/');
    let rest = if let Some(r) = trimmed.strip_prefix("me") {
        r.to_owned()
    } else {
        trimmed
            .splitn(3, '/')
            .nth(2)
            .map(|r| format!("/{r}"))
            .unwrap_or_default()
    };
    rest
}

fn list_events(
    graph: &Graph,
    request: &GraphRequest,
    mb: &MailboxState,
    prefs: &RenderPrefs,
    page_size: usize,
    path: &str,
) -> OpResult {
    let filter =
        match request.param("$filter") {
            None => None,
            Some(f) => {
                let ids = quoted_after(&f, "ep/id eq '");
                let values = quoted_after(&f, "ep/value eq '");
                match (ids.first(), values.first()) {
                    (Some(id), Some(value)) => Some((id.clone(), value.clone())),
                    _ => return Err(GraphErr::bad_request(
                        "ErrorInvalidUrlQueryFilter",
                        "The sandbox supports only $filter on a single-value extended property.",
                    )),
                }
            }
        };
    let wanted = expanded_properties(request);
    let matches = |e: &StoredEvent| match &filter {
        None => true,
        Some((id, value)) => e
            .extended
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case(id) && v == value),
    };
    let items: Vec<Value> = mb
        .events
        .values()
        .filter(|e| matches(e))
        .map(|event| {
            let rendered = View { event, date: None }.full(prefs);
            match &wanted {
                Some(ids) => with_extended(rendered, event, ids),
                None => rendered,
            }
        })
        .collect();
    Ok((
        StatusCode::OK,
        Some(page_of(
            graph,
            request,
            items,
            page_size,
            path,
            context(graph, &mb.oid, "events"),
        )),
    ))
}

fn instances(
    graph: &Graph,
    request: &GraphRequest,
    mb: &MailboxState,
    id: &str,
    prefs: &RenderPrefs,
    page_size: usize,
    path: &str,
) -> OpResult {
    let (from, to) = window(request)?;
    let Some(Target::Event(master_id)) = mb.resolve(id) else {
        return Err(GraphErr::not_found());
    };
    let event = mb.events.get(&master_id).ok_or_else(GraphErr::not_found)?;
    if event.series.is_none() {
        return Err(GraphErr::bad_request(
            "ErrorInvalidRequest",
            "The event is not a recurring series master.",
        ));
    }
    let items: Vec<Value> = event
        .instances(from, to)
        .into_iter()
        .map(|instance| {
            View {
                event,
                date: instance.date,
            }
            .full(prefs)
        })
        .collect();
    Ok((
        StatusCode::OK,
        Some(page_of(
            graph,
            request,
            items,
            page_size,
            path,
            format!("{}/v1.0/$metadata#Collection(event)", graph.base_url()),
        )),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_extracted() {
        let f = "singleValueExtendedProperties/Any(ep: ep/id eq 'String {x} Name y' and ep/value eq 'O''Brien')";
        assert_eq!(quoted_after(f, "ep/id eq '"), ["String {x} Name y"]);
        assert_eq!(quoted_after(f, "ep/value eq '"), ["O'Brien"]);
        assert_eq!(
            op_tail("/users/abc/events/x/instances"),
            "/events/x/instances"
        );
        assert_eq!(op_tail("/me/events"), "/events");
    }
}
