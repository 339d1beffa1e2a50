//! Tests of the Lambda Runtime API stand-in itself, driven by the `echo-lambda` test binary
//! (built by Cargo for this crate's integration tests) through the real `lambda_runtime` client.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calsync_testkit::{
    binary_path, function_url_event, FunctionProcess, FunctionUrlRequest, Invocation,
};
use lambda_http::{Body, RequestExt as _};
use serde_json::{json, Value};

fn echo_lambda() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_echo-lambda"))
}

async fn spawn_echo() -> FunctionProcess {
    FunctionProcess::spawn(
        &echo_lambda(),
        "echo",
        &[("ECHO_EXTRA".to_owned(), "extra-value".to_owned())],
    )
    .await
    .unwrap()
}

fn ok(invocation: Invocation) -> Value {
    match invocation {
        Invocation::Ok(value) => value,
        other => panic!("expected a response, got {other:?}"),
    }
}

#[test]
fn inherited_env_passes_on_only_variables_that_are_set() {
    let env = calsync_testkit::inherited_env(&["PATH", "CALSYNC_TESTS_SURELY_UNSET"]);
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].0, "PATH");
}

#[test]
fn binary_path_finds_binaries_next_to_the_test_executable() {
    assert_eq!(binary_path("echo-lambda"), echo_lambda());
}

#[tokio::test]
async fn serves_several_invocations_in_a_row_with_lambda_headers() {
    let function = spawn_echo().await;
    function
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();

    let mut request_ids = Vec::new();
    for n in 0..3 {
        let before_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let result = ok(function
            .invoke_with_timeout(json!({ "n": n }), Duration::from_secs(20))
            .await
            .unwrap());
        assert_eq!(result["event"], json!({ "n": n }));
        let context = &result["context"];
        assert_eq!(context["function_name"], "echo");
        assert_eq!(context["memory_size"], "128");
        assert_eq!(context["extra"], "extra-value");
        // The child's environment is cleared: nothing of the test's leaks in.
        assert_eq!(context["home_is_set"], false);
        assert_eq!(
            context["invoked_function_arn"],
            "arn:aws:lambda:eu-west-1:123456789012:function:echo"
        );
        assert!(context["xray_trace_id"]
            .as_str()
            .unwrap()
            .starts_with("Root=1-"));
        let deadline = context["deadline_ms"].as_u64().unwrap();
        assert!(deadline >= before_ms + 19_000 && deadline <= before_ms + 21_000);
        request_ids.push(context["request_id"].as_str().unwrap().to_owned());
    }
    request_ids.dedup();
    assert_eq!(request_ids.len(), 3, "request ids must differ");
    assert!(function.try_exit_status().is_none());
    function.stop().await.unwrap();
}

#[tokio::test]
async fn a_function_error_is_reported_and_the_function_keeps_serving() {
    let function = spawn_echo().await;
    let result = function.invoke(json!({ "fail": true })).await.unwrap();
    let Invocation::FunctionError {
        error_type,
        message,
    } = result
    else {
        panic!("expected a function error, got {result:?}");
    };
    assert_eq!(message, "asked to fail");
    assert!(!error_type.is_empty());
    assert!(Invocation::FunctionError {
        error_type,
        message
    }
    .into_ok()
    .is_err());

    let after = ok(function.invoke(json!({ "again": 1 })).await.unwrap());
    assert_eq!(after["event"], json!({ "again": 1 }));
}

#[tokio::test]
async fn a_malformed_event_is_a_function_error() {
    let function = spawn_echo().await;
    let result = function
        .invoke_bytes(b"not json".to_vec(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        matches!(result, Invocation::FunctionError { .. }),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_crash_fails_the_invocation_with_logs_instead_of_hanging() {
    let function = spawn_echo().await;
    let started = Instant::now();
    // A long timeout: only crash detection can end this quickly.
    let error = function
        .invoke_with_timeout(json!({ "crash": true }), Duration::from_secs(120))
        .await
        .unwrap_err()
        .to_string();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(error.contains("exited during invocation"), "{error}");
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(error.contains("crashing on purpose"), "{error}");

    // Later invocations fail at once too.
    let again = function.invoke(json!({})).await.unwrap_err().to_string();
    assert!(again.contains("exited before the invocation"), "{again}");
    assert_eq!(function.try_exit_status().and_then(|s| s.code()), Some(3));
    assert_eq!(function.stop().await.unwrap().code(), Some(3));
}

#[tokio::test]
async fn stdout_and_stderr_are_captured() {
    let function = spawn_echo().await;
    function
        .invoke(json!({ "log": "marker-7f3a" }))
        .await
        .unwrap();
    let logs = function.logs();
    assert!(logs.contains("echo-lambda starting"), "{logs}");
    assert!(logs.contains("stdout: marker-7f3a"), "{logs}");
    assert!(logs.contains("stderr: marker-7f3a"), "{logs}");
    assert!(!logs.contains("never-logged"));
}

#[tokio::test]
async fn stop_kills_a_running_function() {
    let function = spawn_echo().await;
    function
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let status = function.stop().await.unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
}

#[tokio::test]
async fn dropping_the_process_kills_the_child() {
    let function = spawn_echo().await;
    function
        .wait_until_ready(Duration::from_secs(10))
        .await
        .unwrap();
    let pid = function.pid().unwrap();
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    assert!(proc_dir.exists());
    drop(function);

    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(&proc_dir) {
        assert!(
            Instant::now() < deadline,
            "process {pid} still alive after drop"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Alive means present and not a zombie waiting to be reaped.
fn process_alive(proc_dir: &Path) -> bool {
    match std::fs::read_to_string(proc_dir.join("stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

#[tokio::test]
async fn a_slow_function_times_out_and_the_next_invocation_still_works() {
    let function = spawn_echo().await;
    let error = function
        .invoke_with_timeout(json!({ "sleep_ms": 1500 }), Duration::from_millis(300))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("did not answer"), "{error}");
    // The late answer to the abandoned invocation is refused; the function carries on.
    let next = ok(function
        .invoke_with_timeout(json!({ "after": "timeout" }), Duration::from_secs(20))
        .await
        .unwrap());
    assert_eq!(next["event"], json!({ "after": "timeout" }));
}

#[tokio::test]
async fn a_streamed_response_reads_like_a_buffered_one() {
    let function = spawn_echo().await;
    let response = function
        .invoke(json!({ "stream": {
            "statusCode": 201,
            "cookies": ["session=abc; HttpOnly"],
            "chunks": ["hel", "lo ", "world"],
        }}))
        .await
        .unwrap()
        .into_function_url_response()
        .unwrap();
    assert_eq!(response.status, 201);
    assert_eq!(response.body_text().unwrap(), "hello world");
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.cookie("session"), Some("session=abc; HttpOnly"));
}

#[tokio::test]
async fn unknown_request_ids_are_refused() {
    let function = spawn_echo().await;
    let client = reqwest::Client::new();
    let base = format!(
        "http://{}/2018-06-01/runtime/invocation",
        function.runtime_api_addr()
    );
    for kind in ["response", "error"] {
        let status = client
            .post(format!("{base}/no-such-id/{kind}"))
            .body("{}")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status.as_u16(), 400, "{kind}");
    }
}

#[tokio::test]
async fn a_missing_binary_gets_a_clear_error() {
    let error = FunctionProcess::spawn(&binary_path("calsync-no-such-function"), "x", &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("cargo build --workspace"), "{error}");
}

#[test]
fn function_url_events_parse_like_lambda_http_parses_them() {
    let event = function_url_event(
        "POST",
        "/webhook/graph",
        &[("validationToken", "a b&c=d"), ("x", "1"), ("x", "2")],
        &[
            ("Content-Type", "application/json"),
            ("Cookie", "state=s1; other=o"),
            ("X-Custom", "v1"),
            ("X-Custom", "v2"),
        ],
        Some(r#"{"value":[]}"#),
    );
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri().path(), "/webhook/graph");
    assert_eq!(
        request.uri().query(),
        Some("validationToken=a%20b%26c%3Dd&x=1&x=2")
    );
    assert_eq!(
        request.uri().host(),
        Some("c4lsync0test0url0id0000000000000.lambda-url.eu-west-1.on.aws")
    );
    let query = request.query_string_parameters();
    assert_eq!(query.first("validationToken"), Some("a b&c=d"));
    assert_eq!(query.all("x"), Some(vec!["1", "2"]));
    assert_eq!(request.headers()["content-type"], "application/json");
    assert_eq!(request.headers()["x-custom"], "v1,v2");
    assert_eq!(request.headers()["cookie"], "state=s1; other=o");
    match request.body() {
        Body::Text(text) => assert_eq!(text, r#"{"value":[]}"#),
        other => panic!("unexpected body {other:?}"),
    }

    let binary = FunctionUrlRequest::new("post", "/upload")
        .header("content-type", "application/octet-stream")
        .binary_body(&[0, 159, 146, 150])
        .to_event();
    let request = lambda_http::request::from_str(&binary.to_string()).unwrap();
    match request.body() {
        Body::Binary(bytes) => assert_eq!(bytes, &[0, 159, 146, 150]),
        other => panic!("unexpected body {other:?}"),
    }
}
