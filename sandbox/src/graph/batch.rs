//! `POST /v1.0/$batch`: up to 20 sub-requests, each authenticated, throttled and faulted on its
//! own, answered together with 200 whatever their statuses, in an order of Graph's choosing.

use std::collections::{HashMap, HashSet};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use rand::seq::SliceRandom;
use serde_json::{json, Map, Value};

use super::errors::GraphErr;
use super::http::{handle, json_answer, GraphRequest};
use super::Graph;

const MAX_ITEMS: usize = 20;
/// Sub-responses larger than this are cut (nothing legitimate comes close).
const MAX_ITEM_BYTES: usize = 16 * 1024 * 1024;

pub(crate) async fn run(graph: &Graph, request: &GraphRequest) -> Response {
    match answer(graph, request).await {
        Ok(body) => json_answer(StatusCode::OK, body.to_string(), &[]),
        Err(e) => e.response(&request.headers),
    }
}

async fn answer(graph: &Graph, request: &GraphRequest) -> Result<Value, GraphErr> {
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|_| GraphErr::bad_request("BadRequest", "Invalid batch payload format."))?;
    let items = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| GraphErr::bad_request("BadRequest", "Invalid batch payload format."))?;
    if items.len() > MAX_ITEMS {
        return Err(GraphErr::bad_request(
            "BadRequest",
            &format!("A batch may hold at most {MAX_ITEMS} requests."),
        ));
    }
    let mut ids = HashSet::new();
    for item in items {
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() || !ids.insert(id.to_owned()) {
            return Err(GraphErr::bad_request(
                "BadRequest",
                "Batch request ids must be present and unique.",
            ));
        }
    }
    let mut statuses: HashMap<String, u16> = HashMap::new();
    let mut responses = Vec::with_capacity(items.len());
    for item in items {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        let response = match dependency_failed(item, &statuses) {
            Some(failed) => failed,
            None => run_item(graph, request, item).await,
        };
        let status = response
            .get("status")
            .and_then(Value::as_u64)
            .unwrap_or(500) as u16;
        statuses.insert(id.clone(), status);
        let mut response = response;
        response["id"] = json!(id);
        responses.push(response);
    }
    // Graph answers in any order: clients must match by id.
    responses.shuffle(&mut rand::thread_rng());
    Ok(json!({ "responses": responses }))
}

/// 424 when a request this one depends on failed (or has not run).
fn dependency_failed(item: &Value, statuses: &HashMap<String, u16>) -> Option<Value> {
    let deps = item.get("dependsOn")?.as_array()?;
    let failed = deps.iter().any(|d| {
        d.as_str()
            .and_then(|d| statuses.get(d))
            .is_none_or(|status| !(200..300).contains(status))
    });
    failed.then(|| {
        json!({
            "status": 424,
            "headers": {"Content-Type": "application/json"},
            "body": {"error": {"code": "FailedDependency", "message": "A request this one depends on failed."}}
        })
    })
}

async fn run_item(graph: &Graph, outer: &GraphRequest, item: &Value) -> Value {
    let method = item
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok());
    let url = item.get("url").and_then(Value::as_str);
    let (Some(method), Some(url)) = (method, url) else {
        return item_error(
            400,
            "BadRequest",
            "A batch request needs a method and a url.",
        );
    };
    let mut headers = HeaderMap::new();
    if let Some(auth) = outer.headers.get("authorization") {
        headers.insert("authorization", auth.clone());
    }
    if let Some(given) = item.get("headers").and_then(Value::as_object) {
        for (name, value) in given {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.insert(name, value);
            }
        }
    }
    let body = match item.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(body) => {
            if !headers.contains_key("content-type") {
                return item_error(
                    400,
                    "BadRequest",
                    "A batch request with a body needs a Content-Type header.",
                );
            }
            Bytes::from(body.to_string())
        }
    };
    // Relative to /v1.0, with or without a leading slash; absolute Graph URLs are accepted.
    let relative = url
        .find("/v1.0/")
        .map(|at| &url[at + "/v1.0".len()..])
        .unwrap_or(url);
    let relative = if relative.starts_with('/') {
        relative.to_owned()
    } else {
        format!("/{relative}")
    };
    let (path, query) = match relative.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (relative.clone(), String::new()),
    };
    let response = handle(
        graph,
        GraphRequest {
            method,
            path,
            query,
            headers,
            body,
            remote: outer.remote,
            in_batch: true,
        },
    )
    .await;
    to_item(response).await
}

async fn to_item(response: Response) -> Value {
    let status = response.status().as_u16();
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            // Graph's sub-response headers use their usual spelling.
            let name = match name.as_str() {
                "retry-after" => "Retry-After".to_owned(),
                "content-type" => "Content-Type".to_owned(),
                other => other.to_owned(),
            };
            headers.insert(name, json!(value));
        }
    }
    let bytes = axum::body::to_bytes(response.into_body(), MAX_ITEM_BYTES)
        .await
        .unwrap_or_default();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    let mut item = json!({ "status": status, "headers": headers });
    if !body.is_null() {
        item["body"] = body;
    }
    item
}

fn item_error(status: u16, code: &str, message: &str) -> Value {
    json!({
        "status": status,
        "headers": {"Content-Type": "application/json"},
        "body": {"error": {"code": code, "message": message}}
    })
}
