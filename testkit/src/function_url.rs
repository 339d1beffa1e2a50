//! A local Function URL: an HTTP server on loopback that turns each request into a Function URL
//! event, hands it to a real function binary through the Runtime API stand-in, and answers with
//! the function's response. Lets HTTP clients (the Graph sandbox delivering notifications, a
//! browser) reach a Lambda binary as they would in AWS.

use anyhow::Result;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{oneshot, Mutex};

use crate::events::FunctionUrlRequest;
use crate::runtime::FunctionProcess;

type Slot = Arc<Mutex<Option<FunctionProcess>>>;

pub struct FunctionUrlServer {
    base_url: String,
    function: Slot,
    stop: Option<oneshot::Sender<()>>,
}

/// Function URLs accept request bodies up to 6 MB.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

impl FunctionUrlServer {
    /// Serves `function` on a free loopback port. One invocation at a time, like one container.
    pub async fn start(function: FunctionProcess) -> Result<Self> {
        let server = Self::start_unattached().await?;
        server.attach(function).await;
        Ok(server)
    }

    /// Listens before the function exists (its environment may need this URL); requests get
    /// 503 until `attach`.
    pub async fn start_unattached() -> Result<Self> {
        let function: Slot = Arc::new(Mutex::new(None));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(function.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            base_url,
            function,
            stop: Some(stop),
        })
    }

    pub async fn attach(&self, function: FunctionProcess) {
        *self.function.lock().await = Some(function);
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl Drop for FunctionUrlServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn forward(State(function): State<Slot>, request: Request) -> Response {
    match invoke(function, request).await {
        Ok(response) => response,
        Err(error) => Response::builder()
            .status(502)
            .body(Body::from(format!("function failed: {error:#}")))
            .unwrap_or_default(),
    }
}

async fn invoke(function: Slot, request: Request) -> Result<Response> {
    let (parts, body) = request.into_parts();
    let mut event = FunctionUrlRequest::new(parts.method.as_str(), parts.uri.path());
    if let Some(query) = parts.uri.query() {
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            event = event.query(&name, &value);
        }
    }
    for (name, value) in &parts.headers {
        if let Ok(value) = value.to_str() {
            event = event.header(name.as_str(), value);
        }
    }
    let bytes = to_bytes(body, MAX_REQUEST_BYTES).await?;
    if !bytes.is_empty() {
        event = match std::str::from_utf8(&bytes) {
            Ok(text) => event.body(text),
            Err(_) => event.binary_body(&bytes),
        };
    }
    let slot = function.lock().await;
    let Some(process) = slot.as_ref() else {
        return Ok(Response::builder()
            .status(503)
            .body(Body::from("no function attached yet"))?);
    };
    let response = process
        .invoke(event.to_event())
        .await?
        .into_function_url_response()?;
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    Ok(builder.body(Body::from(response.body))?)
}
