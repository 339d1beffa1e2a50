//! A stand-in for the AWS Lambda Runtime API (version 2018-06-01) that runs a real function
//! binary the way one Lambda execution environment does: the binary long-polls
//! `GET /runtime/invocation/next`, handles the event and posts its response or error back.
//!
//! Invocations are serial, like one Lambda container. A child that exits (crash, panic with
//! `panic = "abort"`, init failure) fails the pending invocation with its logs instead of hanging.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::events::{epoch_ms, new_uuid, xray_root, DEFAULT_REGION, TEST_ACCOUNT_ID};

/// How long [`FunctionProcess::invoke`] waits for a result; also the function's deadline.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Lambda's limit on a buffered (synchronous) response payload.
pub const MAX_RESPONSE_BYTES: usize = 6 * 1024 * 1024;
/// Set this variable (to anything) to copy the child's output to the test's stderr as it comes.
pub const SHOW_LOGS_ENV: &str = "CALSYNC_TEST_SHOW_LOGS";

/// Memory size reported to the function, Lambda's smallest useful setting.
const MEMORY_SIZE_MB: &str = "128";
/// Content type of a streamed HTTP response: JSON prelude, 8 NUL bytes, then the body.
const HTTP_INTEGRATION_RESPONSE: &str = "application/vnd.awslambda.http-integration-response";
/// Grace given to the log readers to drain the pipes after the child exits.
const LOG_DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How long `stop` waits for the killed child to be reaped.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The result of one invocation, as a synchronous `Invoke` caller would see it.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The function's response payload. A non-JSON payload is given as a JSON string; a
    /// streamed HTTP response is given in the buffered Function URL shape
    /// (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`).
    Ok(Value),
    /// The function reported an error (`/invocation/{id}/error`, or a mid-stream error).
    FunctionError { error_type: String, message: String },
}

impl Invocation {
    /// The response payload, or an error describing the function error.
    pub fn into_ok(self) -> anyhow::Result<Value> {
        match self {
            Invocation::Ok(value) => Ok(value),
            Invocation::FunctionError {
                error_type,
                message,
            } => Err(anyhow!("function error {error_type}: {message}")),
        }
    }

    /// The response read as a Function URL HTTP response.
    pub fn into_function_url_response(self) -> anyhow::Result<crate::FunctionUrlResponse> {
        crate::FunctionUrlResponse::parse(&self.into_ok()?)
    }
}

/// Locates a workspace binary (e.g. `calsync-auth`) next to the running test executable:
/// integration tests live in `target/<profile>/deps/`, binaries in `target/<profile>/`.
///
/// Cargo only builds binaries of the crate under test, so the function crates must be built
/// first: the test script runs `cargo build --workspace` before `cargo test`.
/// [`FunctionProcess::spawn`] explains this when the file is missing.
pub fn binary_path(name: &str) -> PathBuf {
    let file_name = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.file_name().is_some_and(|d| d == "deps") {
        dir.pop();
    }
    dir.join(file_name)
}

/// The variables among `names` that are set in the test's own environment, for passing on to
/// [`FunctionProcess::spawn`] (whose child otherwise sees only `PATH` and the Lambda variables),
/// e.g. `inherited_env(&["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])`.
pub fn inherited_env(names: &[&str]) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .map(|value| ((*name).to_owned(), value))
        })
        .collect()
}

/// One running function binary wired to its own Runtime API stand-in.
///
/// Dropping it kills the child and stops the server, so a failing test never leaks processes.
pub struct FunctionProcess {
    function_name: String,
    addr: SocketAddr,
    pid: Option<u32>,
    shared: Arc<Shared>,
    logs: Arc<Mutex<Vec<u8>>>,
    exit: watch::Receiver<Option<ExitOutcome>>,
    readers_done: watch::Receiver<usize>,
    /// Sending, or dropping, this kills the child.
    kill: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    /// One invocation at a time, like one Lambda execution environment.
    turn: tokio::sync::Mutex<()>,
}

type ExitOutcome = Result<ExitStatus, String>;

impl FunctionProcess {
    /// Starts the stand-in on 127.0.0.1:0 and spawns `binary` with the Lambda environment
    /// (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`, ...) plus `env`, which wins.
    ///
    /// The child's environment is otherwise empty except for `PATH`, so nothing from the
    /// test's environment (credentials included) leaks in unless passed explicitly.
    pub async fn spawn(
        binary: &Path,
        function_name: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        if !binary.is_file() {
            bail!(
                "Lambda binary {} not found: integration tests run the built binaries, so run \
                 `cargo build --workspace` (or `cargo build -p <function crate>`) first",
                binary.display()
            );
        }

        let region = env
            .iter()
            .find(|(name, _)| name == "AWS_REGION")
            .map_or(DEFAULT_REGION, |(_, value)| value.as_str());
        let shared = Arc::new(Shared {
            state: Mutex::new(RuntimeState::default()),
            event_queued: Notify::new(),
            polls: watch::Sender::new(0),
            function_arn: format!(
                "arn:aws:lambda:{region}:{TEST_ACCOUNT_ID}:function:{function_name}"
            ),
        });

        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the Runtime API stand-in")?;
        let addr = listener.local_addr()?;
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            // Ends only when aborted (stop or drop); an accept error ends the stand-in.
            let _ = axum::serve(listener, app).await;
        });

        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(lambda_environment(addr, function_name, region))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                server.abort();
                return Err(err).with_context(|| format!("spawning {}", binary.display()));
            }
        };
        let pid = child.id();

        let logs = Arc::new(Mutex::new(Vec::new()));
        let echo = std::env::var_os(SHOW_LOGS_ENV).is_some();
        let (readers_tx, readers_done) = watch::channel(0usize);
        let readers_tx = Arc::new(readers_tx);
        if let Some(stdout) = child.stdout.take() {
            tokio::spawn(capture(stdout, logs.clone(), echo, readers_tx.clone()));
        } else {
            readers_tx.send_modify(|n| *n += 1);
        }
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(capture(stderr, logs.clone(), echo, readers_tx.clone()));
        } else {
            readers_tx.send_modify(|n| *n += 1);
        }

        let (kill, mut kill_rx) = oneshot::channel::<()>();
        let (exit_tx, exit) = watch::channel::<Option<ExitOutcome>>(None);
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                // Fires on an explicit stop and when the sender is dropped with the process.
                _ = &mut kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            exit_tx.send_replace(Some(status.map_err(|e| e.to_string())));
        });

        Ok(Self {
            function_name: function_name.to_owned(),
            addr,
            pid,
            shared,
            logs,
            exit,
            readers_done,
            kill: Some(kill),
            server,
            turn: tokio::sync::Mutex::new(()),
        })
    }

    /// Hands one event to the function and waits for its response or error, up to
    /// [`DEFAULT_INVOKE_TIMEOUT`].
    pub async fn invoke(&self, event: Value) -> anyhow::Result<Invocation> {
        self.invoke_with_timeout(event, DEFAULT_INVOKE_TIMEOUT)
            .await
    }

    /// Like [`invoke`](Self::invoke); `timeout` is also the deadline the function is told.
    pub async fn invoke_with_timeout(
        &self,
        event: Value,
        timeout: Duration,
    ) -> anyhow::Result<Invocation> {
        let payload = serde_json::to_vec(&event).context("serialising the event")?;
        self.invoke_bytes(payload, timeout).await
    }

    /// Hands raw bytes to the function as the event, e.g. to test a malformed payload.
    pub async fn invoke_bytes(
        &self,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> anyhow::Result<Invocation> {
        let _turn = self.turn.lock().await;
        if self.exit.borrow().is_some() {
            return Err(self.exited_error("before the invocation").await);
        }
        if let Some(init_error) = self.init_error() {
            bail!(
                "function {} failed to initialise: {init_error}\n{}",
                self.function_name,
                self.logs_section()
            );
        }

        let request_id = new_uuid();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        let now_ms = epoch_ms();
        let (reply, mut outcome) = oneshot::channel();
        self.shared.lock().queue.push_back(Pending {
            request_id: request_id.clone(),
            payload,
            deadline_ms: now_ms.saturating_add(timeout_ms),
            trace_id: format!(
                "Root={};Parent={:016x};Sampled=0",
                xray_root(now_ms),
                rand::random::<u64>()
            ),
            reply,
        });
        self.shared.event_queued.notify_one();

        let mut exit = self.exit.clone();
        let outcome = tokio::select! {
            biased;
            outcome = &mut outcome => outcome.map_err(|_| anyhow!("the Runtime API stand-in stopped")),
            // The watch guard is dropped inside, so this future stays `Send`.
            _ = async { exit.wait_for(Option::is_some).await.map(|_| ()) } => {
                // The child may have answered just before exiting: that answer counts.
                self.wait_for_logs().await;
                match outcome.try_recv() {
                    Ok(outcome) => Ok(outcome),
                    Err(_) => {
                        self.shared.forget(&request_id);
                        return Err(self.exited_error(&format!("during invocation {request_id}")).await);
                    }
                }
            }
            _ = tokio::time::sleep(timeout) => {
                self.shared.forget(&request_id);
                bail!(
                    "function {} did not answer invocation {request_id} within {timeout:?}\n{}",
                    self.function_name,
                    self.logs_section()
                );
            }
        }?;
        outcome.into_invocation().with_context(|| {
            format!(
                "reading the result of invocation {request_id} of {}",
                self.function_name
            )
        })
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        String::from_utf8_lossy(&lock(&self.logs)).into_owned()
    }

    /// The error the function posted to `/runtime/init/error`, if any.
    pub fn init_error(&self) -> Option<String> {
        self.shared.lock().init_error.clone()
    }

    /// Waits until the function has polled for its first event, i.e. finished its init.
    pub async fn wait_until_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let mut polls = self.shared.polls.subscribe();
        let mut exit = self.exit.clone();
        tokio::select! {
            biased;
            ready = polls.wait_for(|n| *n > 0) => {
                ready.map(|_| ()).map_err(|_| anyhow!("the Runtime API stand-in stopped"))
            }
            _ = exit.wait_for(Option::is_some) => {
                self.wait_for_logs().await;
                Err(self.exited_error("during init").await)
            }
            _ = tokio::time::sleep(timeout) => bail!(
                "function {} did not poll for an event within {timeout:?}\n{}",
                self.function_name,
                self.logs_section()
            ),
        }
    }

    /// The child's exit status if it has exited.
    pub fn try_exit_status(&self) -> Option<ExitStatus> {
        self.exit
            .borrow()
            .as_ref()
            .and_then(|r| r.as_ref().ok())
            .copied()
    }

    /// The child's process id (None once reaped by the OS before we asked).
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The stand-in's address, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn runtime_api_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Kills the child (if still running), waits for it and stops the stand-in.
    /// Returns how the child ended: a crash before `stop` keeps its own status.
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let mut exit = self.exit.clone();
        let status = tokio::time::timeout(STOP_TIMEOUT, exit.wait_for(Option::is_some))
            .await
            .context("the killed function did not exit")?
            .map_err(|_| anyhow!("lost track of the function process"))?
            .clone();
        self.server.abort();
        match status {
            Some(Ok(status)) => Ok(status),
            Some(Err(err)) => bail!("waiting for the function process: {err}"),
            None => bail!("the function process status is unknown"),
        }
    }

    async fn wait_for_logs(&self) {
        let mut done = self.readers_done.clone();
        let _ = tokio::time::timeout(LOG_DRAIN_GRACE, done.wait_for(|n| *n >= 2)).await;
    }

    async fn exited_error(&self, when: &str) -> anyhow::Error {
        self.wait_for_logs().await;
        let status = match self.exit.borrow().as_ref() {
            Some(Ok(status)) => status.to_string(),
            Some(Err(err)) => format!("unknown status ({err})"),
            None => "unknown status".to_owned(),
        };
        let init = self
            .init_error()
            .map(|e| format!("; it reported an init error: {e}"))
            .unwrap_or_default();
        anyhow!(
            "function {} exited {when} ({status}){init}\n{}",
            self.function_name,
            self.logs_section()
        )
    }

    fn logs_section(&self) -> String {
        format!("--- function logs ---\n{}--- end of logs ---", self.logs())
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        // Dropping the sender wakes the monitor task, which kills and reaps the child; if the
        // runtime is already gone, `kill_on_drop` kills it when the task is dropped.
        self.kill.take();
        self.server.abort();
    }
}

impl std::fmt::Debug for FunctionProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionProcess")
            .field("function_name", &self.function_name)
            .field("addr", &self.addr)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// The variables Lambda sets for a `provided.al2023` function, minus credentials.
fn lambda_environment(
    addr: SocketAddr,
    function_name: &str,
    region: &str,
) -> Vec<(&'static str, String)> {
    let stream_id: String = (0..32)
        .map(|_| format!("{:x}", rand::random::<u8>() % 16))
        .collect();
    vec![
        ("AWS_LAMBDA_RUNTIME_API", addr.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", function_name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE_MB.to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("2025/01/01/[$LATEST]{stream_id}"),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function_name}"),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", region.to_owned()),
        ("AWS_DEFAULT_REGION", region.to_owned()),
        ("TZ", ":UTC".to_owned()),
    ]
}

async fn capture(
    mut pipe: impl AsyncRead + Unpin,
    logs: Arc<Mutex<Vec<u8>>>,
    echo: bool,
    done: Arc<watch::Sender<usize>>,
) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match pipe.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let chunk = &buffer[..n];
                lock(&logs).extend_from_slice(chunk);
                if echo {
                    eprint!("{}", String::from_utf8_lossy(chunk));
                }
            }
        }
    }
    done.send_modify(|n| *n += 1);
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The Runtime API server

struct Shared {
    state: Mutex<RuntimeState>,
    event_queued: Notify,
    /// How many times the function called `/next`: the first call ends its init.
    polls: watch::Sender<u64>,
    function_arn: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, RuntimeState> {
        lock(&self.state)
    }

    /// Drops an invocation that timed out or whose function died, so a late answer is refused.
    fn forget(&self, request_id: &str) {
        let mut state = self.lock();
        state.queue.retain(|p| p.request_id != request_id);
        state.in_flight.remove(request_id);
    }
}

#[derive(Default)]
struct RuntimeState {
    /// Events waiting for the function's next poll.
    queue: VecDeque<Pending>,
    /// Events handed out, waiting for `/response` or `/error`.
    in_flight: HashMap<String, oneshot::Sender<Outcome>>,
    init_error: Option<String>,
}

struct Pending {
    request_id: String,
    payload: Vec<u8>,
    deadline_ms: u64,
    trace_id: String,
    reply: oneshot::Sender<Outcome>,
}

enum Outcome {
    Response {
        streaming: bool,
        content_type: Option<String>,
        body: Bytes,
    },
    Error {
        error_type_header: Option<String>,
        body: Bytes,
    },
    TooLarge {
        size: usize,
    },
}

impl Outcome {
    fn into_invocation(self) -> anyhow::Result<Invocation> {
        match self {
            Outcome::Response {
                streaming: false,
                body,
                ..
            } => Ok(Invocation::Ok(payload_value(&body))),
            Outcome::Response {
                streaming: true,
                content_type,
                body,
            } => streamed_invocation(content_type.as_deref(), &body),
            Outcome::Error {
                error_type_header,
                body,
            } => {
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let error_type = parsed
                    .get("errorType")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or(error_type_header)
                    .unwrap_or_else(|| "Unhandled".to_owned());
                let message = parsed
                    .get("errorMessage")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                Ok(Invocation::FunctionError {
                    error_type,
                    message,
                })
            }
            // What Lambda tells a synchronous caller when the payload is over the limit.
            Outcome::TooLarge { size } => Ok(Invocation::FunctionError {
                error_type: "Function.ResponseSizeTooLarge".to_owned(),
                message: format!(
                    "Response payload size ({size} bytes) exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
                ),
            }),
        }
    }
}

/// JSON if it parses, else the bytes as a (lossy) JSON string.
fn payload_value(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Rebuilds a buffered-style result from a streamed response (`lambda_runtime`'s
/// `StreamResponse`, used by `lambda_http::run_with_streaming_response`).
fn streamed_invocation(content_type: Option<&str>, body: &[u8]) -> anyhow::Result<Invocation> {
    // lambda_runtime reports a mid-stream failure as this text at the end of the body.
    const ERROR_MARK: &[u8] = b"Lambda-Runtime-Function-Error-Type: ";
    let (body, stream_error) = match find(body, ERROR_MARK) {
        Some(at) => (&body[..at], Some(&body[at..])),
        None => (body, None),
    };
    if let Some(trailer) = stream_error {
        let text = String::from_utf8_lossy(trailer);
        let mut error_type = "Runtime.StreamError".to_owned();
        let mut message = String::new();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("Lambda-Runtime-Function-Error-Type: ") {
                error_type = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("Lambda-Runtime-Function-Error-Body: ") {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(value.trim())
                    .unwrap_or_else(|_| value.as_bytes().to_vec());
                message = String::from_utf8_lossy(&decoded).into_owned();
            }
        }
        return Ok(Invocation::FunctionError {
            error_type,
            message,
        });
    }

    if content_type != Some(HTTP_INTEGRATION_RESPONSE) {
        return Ok(Invocation::Ok(payload_value(body)));
    }
    let at = find(body, &[0u8; 8])
        .ok_or_else(|| anyhow!("streamed HTTP response without the 8-NUL prelude delimiter"))?;
    let prelude: Value =
        serde_json::from_slice(&body[..at]).context("streamed HTTP response prelude")?;
    let content = &body[at + 8..];

    let mut headers = Map::new();
    if let Some(map) = prelude.get("headers").and_then(Value::as_object) {
        for (name, value) in map {
            // http_serde writes repeated headers as arrays; Function URLs join them.
            let joined = match value {
                Value::Array(values) => values
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.insert(name.to_ascii_lowercase(), Value::String(joined));
        }
    }
    let (body, is_base64) = match std::str::from_utf8(content) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(content),
            true,
        ),
    };
    Ok(Invocation::Ok(json!({
        "statusCode": prelude.get("statusCode").cloned().unwrap_or(json!(200)),
        "headers": headers,
        "cookies": prelude.get("cookies").cloned().unwrap_or(json!([])),
        "body": body,
        "isBase64Encoded": is_base64,
    })))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/response",
            post(invocation_response),
        )
        .route(
            "/2018-06-01/runtime/invocation/{request_id}/error",
            post(invocation_error),
        )
        .route("/2018-06-01/runtime/init/error", post(init_error))
        // Streamed responses may exceed the buffered limit; the handlers check sizes themselves.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
}

/// Long-polls until an event is queued, then hands it out with the invocation headers.
async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    shared.polls.send_modify(|n| *n += 1);
    loop {
        // Registered before looking at the queue so a push in between is not missed.
        let queued = shared.event_queued.notified();
        let next = {
            let mut state = shared.lock();
            state.queue.pop_front().map(|pending| {
                state
                    .in_flight
                    .insert(pending.request_id.clone(), pending.reply);
                (
                    pending.request_id,
                    pending.payload,
                    pending.deadline_ms,
                    pending.trace_id,
                )
            })
        };
        if let Some((request_id, payload, deadline_ms, trace_id)) = next {
            let mut headers = HeaderMap::new();
            let pairs = [
                ("lambda-runtime-aws-request-id", request_id),
                ("lambda-runtime-deadline-ms", deadline_ms.to_string()),
                (
                    "lambda-runtime-invoked-function-arn",
                    shared.function_arn.clone(),
                ),
                ("lambda-runtime-trace-id", trace_id),
                ("content-type", "application/json".to_owned()),
            ];
            for (name, value) in pairs {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(HeaderName::from_static(name), value);
                }
            }
            return (StatusCode::OK, headers, payload).into_response();
        }
        queued.await;
    }
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(reply) = shared.lock().in_flight.remove(&request_id) else {
        return invalid_request_id();
    };
    let streaming = header(&headers, "lambda-runtime-function-response-mode")
        .is_some_and(|mode| mode.eq_ignore_ascii_case("streaming"));
    if !streaming && body.len() > MAX_RESPONSE_BYTES {
        let _ = reply.send(Outcome::TooLarge { size: body.len() });
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({
                "errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
                "errorType": "RequestEntityTooLarge",
            })),
        )
            .into_response();
    }
    let _ = reply.send(Outcome::Response {
        streaming,
        content_type: header(&headers, "content-type"),
        body,
    });
    accepted()
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(reply) = shared.lock().in_flight.remove(&request_id) else {
        return invalid_request_id();
    };
    let _ = reply.send(Outcome::Error {
        error_type_header: header(&headers, "lambda-runtime-function-error-type"),
        body,
    });
    accepted()
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let error_type = parsed
        .get("errorType")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| header(&headers, "lambda-runtime-function-error-type"))
        .unwrap_or_else(|| "Runtime.InitError".to_owned());
    let message = parsed
        .get("errorMessage")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
    shared.lock().init_error = Some(format!("{error_type}: {message}"));
    accepted()
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn accepted() -> Response {
    (StatusCode::ACCEPTED, Json(json!({ "status": "OK" }))).into_response()
}

fn invalid_request_id() -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "errorMessage": "Invalid request ID",
            "errorType": "InvalidRequestID",
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_http_response_becomes_function_url_shape() {
        let mut body = br#"{"statusCode":201,"headers":{"content-type":"text/plain","x-a":["1","2"]},"cookies":["c=1"]}"#.to_vec();
        body.extend_from_slice(&[0u8; 8]);
        body.extend_from_slice(b"hello");
        let result = streamed_invocation(Some(HTTP_INTEGRATION_RESPONSE), &body).unwrap();
        let Invocation::Ok(value) = result else {
            panic!("expected a response, got {result:?}");
        };
        assert_eq!(value["statusCode"], 201);
        assert_eq!(value["headers"]["x-a"], "1,2");
        assert_eq!(value["cookies"], json!(["c=1"]));
        assert_eq!(value["body"], "hello");
    }

    #[test]
    fn stream_error_trailer_becomes_function_error() {
        let mut body = b"partial".to_vec();
        body.extend_from_slice(
            b"Lambda-Runtime-Function-Error-Type: Runtime.StreamError\r\nLambda-Runtime-Function-Error-Body: Ym9vbQ==\r\n",
        );
        let result = streamed_invocation(None, &body).unwrap();
        assert_eq!(
            result,
            Invocation::FunctionError {
                error_type: "Runtime.StreamError".into(),
                message: "boom".into()
            }
        );
    }
}
