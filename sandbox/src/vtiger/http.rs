//! The HTTP face of the emulator: one URL, dispatch on `operation`, GET operations read the
//! query string and POST operations the form body (as PHP's `$_GET` / `$_POST`), every handled
//! error is HTTP 200 with `success:false`, and PHP fatals are HTTP 500 with an empty HTML body.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};

use super::store::{Mandatory, Outcome, WsError};
use super::{Fault, LoggedRequest, VtigerState};

pub fn router(state: VtigerState) -> axum::Router {
    axum::Router::new()
        .route("/webservice.php", get(webservice).post(webservice))
        .with_state(state)
}

type Params = BTreeMap<String, String>;

fn form(bytes: &[u8]) -> Params {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get,
    Post,
}

/// (HTTP type, usable before login) of each registered operation.
fn operation_info(operation: &str) -> Option<(Kind, bool)> {
    Some(match operation {
        "getchallenge" => (Kind::Get, true),
        "login" => (Kind::Post, true),
        "extendsession" => (Kind::Post, true),
        "logout" => (Kind::Post, false),
        "listtypes" | "describe" | "retrieve" | "query" | "sync" => (Kind::Get, false),
        "create" | "update" | "revise" | "delete" => (Kind::Post, false),
        _ => return None,
    })
}

fn envelope(outcome: Outcome) -> Response {
    match outcome {
        Outcome::Ok(result) => json_response(json!({"success": true, "result": result})),
        Outcome::Error(err) => json_response(
            json!({"success": false, "error": {"code": err.code, "message": err.message}}),
        ),
        Outcome::Fatal => fatal(),
    }
}

fn json_response(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fatal() -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "text/html; charset=UTF-8")],
        String::new(),
    )
        .into_response()
}

fn redacted(params: &Params) -> Params {
    params
        .iter()
        .map(|(key, value)| {
            let shown = if matches!(key.as_str(), "sessionName" | "accessKey") {
                "***".to_owned()
            } else {
                value.clone()
            };
            (key.clone(), shown)
        })
        .collect()
}

async fn webservice(
    State(state): State<VtigerState>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let get_params = form(query.unwrap_or_default().as_bytes());
    // Only a form body is parsed; a JSON body leaves $_POST empty.
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    let post_params = if method == Method::POST && is_form {
        form(&body)
    } else {
        Params::new()
    };
    // $_REQUEST: the body wins over the query string.
    let mut request = get_params.clone();
    request.extend(post_params.clone());
    let operation = request
        .get("operation")
        .map(|value| value.to_lowercase())
        .unwrap_or_default();

    let (fault, latency) = state.observe(LoggedRequest {
        method: method.to_string(),
        operation: operation.clone(),
        params: redacted(&request),
    });
    // PHP opens the session named in the request before the operation runs and keeps its
    // file locked until the answer is sent.
    let _busy = match request.get("sessionName").filter(|name| !name.is_empty()) {
        Some(name) => Some(state.serve_on_session(name).await),
        None => None,
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let cut = matches!(fault, Some(Fault::CutAfterWrite));
    match fault {
        Some(Fault::Delay(delay)) => tokio::time::sleep(delay).await,
        Some(Fault::CutAfterWrite) => {}
        Some(Fault::UserEditsFirst(changes)) => {
            let named = request.get("id").cloned().or_else(|| {
                request
                    .get("element")
                    .and_then(|element| serde_json::from_str::<Value>(element).ok())
                    .and_then(|element| element["id"].as_str().map(str::to_owned))
            });
            if let Some(id) = named {
                let changes: Vec<(&str, &str)> = changes
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str()))
                    .collect();
                state.ui_edit(&id, &changes);
            }
        }
        Some(Fault::Raw {
            status,
            content_type,
            body,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
        }
        Some(Fault::Error { code, message }) => {
            return json_response(
                json!({"success": false, "error": {"code": code, "message": message}}),
            );
        }
        Some(Fault::Fatal) => return fatal(),
        None => {}
    }

    // The registry lookup runs outside vtiger's try block: an unknown operation is a fatal.
    let Some((kind, prelogin)) = operation_info(&operation) else {
        return fatal();
    };
    let params = match kind {
        Kind::Get => &get_params,
        Kind::Post => &post_params,
    };
    let session = request.get("sessionName").map(String::as_str);
    let answer = envelope(dispatch(
        &state, &method, &operation, prelogin, session, params, &request,
    ));
    if cut {
        return cut_short(answer).await;
    }
    answer
}

/// The first half of `answer`, then a dropped connection.
async fn cut_short(answer: Response) -> Response {
    let body = axum::body::to_bytes(answer.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let half = body.slice(..body.len() / 2);
    crate::support::cut_answer(half, "application/json; charset=UTF-8")
}

fn dispatch(
    state: &VtigerState,
    method: &Method,
    operation: &str,
    prelogin: bool,
    session: Option<&str>,
    params: &Params,
    request: &Params,
) -> Outcome {
    let mut shared = state.lock();
    if shared.php8_stock && matches!(operation, "sync" | "logout") {
        // Named-argument mismatch in the handler: a PHP fatal error, session untouched.
        return Outcome::Fatal;
    }
    let param = |name: &str| params.get(name).map(String::as_str).unwrap_or_default();
    let store = &mut shared.store;
    if prelogin {
        return match operation {
            "getchallenge" => store.getchallenge(param("username")).into(),
            "login" => store.login(param("username"), param("accessKey")).into(),
            _ => Outcome::Error(WsError::new(
                "AUTHENTICATION_FAILURE",
                "Authencation Failed",
            )),
        };
    }
    let user = match store.check_session(session) {
        Ok(user) => user,
        Err(err) => return Outcome::Error(err),
    };
    // The save code reads invitees from the raw request, not from the element.
    let invitees = request.get("inviteesid").map(String::as_str);
    match operation {
        "logout" if *method != Method::POST => Outcome::Error(WsError::new(
            "OPERATION_NOT_SUPPORTED",
            "Operation not supported over GET",
        )),
        "logout" => Outcome::Ok(store.logout(session.unwrap_or_default())),
        "listtypes" => Outcome::Ok(super::describe::list_types()),
        "describe" => store.describe(param("elementType"), user).into(),
        "retrieve" => store.retrieve(param("id"), user).into(),
        "query" => store.query(param("query"), user).into(),
        "sync" => match store.sync(
            param("modifiedTime"),
            params.get("elementType").map(String::as_str),
            params.get("syncType").map(String::as_str),
            user,
        ) {
            Some(result) => result.into(),
            None => Outcome::Fatal,
        },
        "create" => store
            .create(param("elementType"), param("element"), invitees, user)
            .into(),
        "update" => store
            .edit(param("element"), invitees, user, Mandatory::All)
            .into(),
        "revise" => store
            .edit(param("element"), invitees, user, Mandatory::Present)
            .into(),
        "delete" => store.delete(param("id"), user).into(),
        _ => Outcome::Fatal,
    }
}
