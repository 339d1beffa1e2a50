//! Test-only Lambda function used to test the Runtime API stand-in with the real
//! `lambda_runtime` client. It echoes the event with its invocation context.
//!
//! Event switches: `{"fail": true}` returns an error, `{"crash": true}` exits with status 3
//! mid-invocation, `{"log": "text"}` writes the text to stdout and stderr, `{"stream": {...}}`
//! answers with a streamed HTTP response (`statusCode`, `cookies`, `chunks`), and
//! `{"sleep_ms": n}` waits before answering.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use lambda_runtime::streaming::Body;
use lambda_runtime::{
    service_fn, Error, FunctionResponse, LambdaEvent, MetadataPrelude, StreamResponse,
};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    eprintln!("echo-lambda starting");
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<FunctionResponse<Value, Body>, Error> {
    let (payload, context) = event.into_parts();
    println!("echo-lambda handling {}", context.request_id);

    if let Some(text) = payload.get("log").and_then(Value::as_str) {
        println!("stdout: {text}");
        eprintln!("stderr: {text}");
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if payload.get("crash").and_then(Value::as_bool) == Some(true) {
        eprintln!("echo-lambda crashing on purpose");
        std::process::exit(3);
    }
    if payload.get("fail").and_then(Value::as_bool) == Some(true) {
        return Err("asked to fail".into());
    }
    if let Some(stream) = payload.get("stream") {
        return Ok(FunctionResponse::StreamingResponse(streamed(stream)?));
    }

    Ok(FunctionResponse::BufferedResponse(json!({
        "event": payload,
        "context": {
            "request_id": context.request_id,
            "deadline_ms": context.deadline,
            "invoked_function_arn": context.invoked_function_arn,
            "xray_trace_id": context.xray_trace_id,
            "function_name": std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok(),
            "memory_size": std::env::var("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").ok(),
            "extra": std::env::var("ECHO_EXTRA").ok(),
            "home_is_set": std::env::var_os("HOME").is_some(),
        },
    })))
}

fn streamed(spec: &Value) -> Result<StreamResponse<Body>, Error> {
    let status = spec
        .get("statusCode")
        .and_then(Value::as_u64)
        .unwrap_or(200);
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("text/plain"));
    let cookies = spec
        .get("cookies")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let chunks: Vec<String> = spec
        .get("chunks")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();

    // Chunks are sent from a task so the body really streams (chunked transfer encoding).
    let (mut sender, body) = Body::channel();
    tokio::spawn(async move {
        for chunk in chunks {
            if sender.send_data(Bytes::from(chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    Ok(StreamResponse {
        metadata_prelude: MetadataPrelude {
            status_code: StatusCode::from_u16(u16::try_from(status)?)?,
            headers,
            cookies,
        },
        stream: body,
    })
}
