//! A stand-in for the webhook function, for tests: it answers Graph's validation requests the
//! way the webhook must (200, `text/plain`, the decoded token) — or wrongly, on demand — and
//! records every notification it receives.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the subscriber answers validation requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidationMode {
    /// 200, `text/plain`, the decoded token.
    #[default]
    Echo,
    /// Echoes the token still URL-encoded (a classic mistake Graph rejects).
    EchoEncoded,
    /// Answers 500.
    Fail,
    /// Answers only after this long (Graph waits 10 s).
    Slow(Duration),
}

/// One POST the subscriber received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `notifications` or `lifecycle` (the last path segment).
    pub endpoint: String,
    /// The decoded `validationToken`, for validation requests.
    pub validation_token: Option<String>,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    mode: ValidationMode,
    received: Vec<Received>,
}

/// A running subscriber on a loopback port; dropping it stops it.
pub struct TestSubscriber {
    base_url: String,
    inner: Arc<Mutex<Inner>>,
    stop: Option<oneshot::Sender<()>>,
}

impl TestSubscriber {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .await
            .context("binding the test subscriber")?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/{endpoint}", post(receive))
            .with_state(inner.clone());
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
            inner,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:PORT`: use it as `CALSYNC_WEBHOOK_URL`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn set_validation_mode(&self, mode: ValidationMode) {
        self.lock().mode = mode;
    }

    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    /// Notifications (not validations) received so far.
    pub fn notifications(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.validation_token.is_none())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for TestSubscriber {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(endpoint): Path<String>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let raw_token = query.as_deref().and_then(|q| {
        q.split('&')
            .find_map(|pair| pair.strip_prefix("validationToken="))
            .map(str::to_owned)
    });
    let token = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "validationToken")
            .map(|(_, v)| v.into_owned())
    });
    let mode = {
        let mut inner = inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.received.push(Received {
            endpoint,
            validation_token: token.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        inner.mode
    };
    let Some(token) = token else {
        return StatusCode::ACCEPTED.into_response();
    };
    let echo = match mode {
        ValidationMode::Echo => token,
        ValidationMode::EchoEncoded => raw_token.unwrap_or(token),
        ValidationMode::Fail => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        ValidationMode::Slow(delay) => {
            tokio::time::sleep(delay).await;
            token
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        echo,
    )
        .into_response()
}
