//! One Graph HTTP call, with everything every call needs: the bearer token, a
//! `client-request-id`, the `Prefer` header, a timeout, the per-mailbox and global slots, and
//! retries — `Retry-After` on 429/503 (exponential backoff with jitter when it is absent), a
//! fresh connection pool after a 503 or a dropped connection.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::client::GraphSettings;
use super::error::{error_from_response, GraphError, Outage};
use super::throttle::Throttle;
use calsync_core::secret::Secret;

/// Larger answers are refused rather than buffered: no legitimate Graph page comes close.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One request to send (and maybe resend).
pub(crate) struct Call<'a> {
    pub method: Method,
    pub url: Url,
    pub token: &'a Secret,
    /// The throttling key: the mailbox owner's object id.
    pub mailbox: &'a str,
    /// How many requests this one carries against the mailbox's limit (a `$batch`'s items).
    pub requests: usize,
    pub prefer: &'a [String],
    pub if_match: Option<&'a str>,
    pub body: Option<Vec<u8>>,
    /// Whether a request that may have reached Graph can be sent again without harm (reads,
    /// PATCH, DELETE, and creates protected by a `transactionId`).
    pub idempotent: bool,
}

/// A final answer: a success, or an error status that retrying does not fix.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn request_id(&self) -> Option<String> {
        header_text(&self.headers, "request-id")
    }

    /// The body as JSON of type `T`, for 2xx answers; a Graph error otherwise.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, GraphError> {
        self.ensure_success()?;
        serde_json::from_slice(&self.body).map_err(|source| GraphError::Decode {
            source,
            request_id: self.request_id(),
        })
    }

    pub fn ensure_success(&self) -> Result<(), GraphError> {
        if self.status.is_success() {
            return Ok(());
        }
        let error = error_from_response(self.status.as_u16(), &self.body, self.request_id());
        tracing::warn!(
            status = self.status.as_u16(),
            request_id = self.request_id().as_deref().unwrap_or("-"),
            error = %crate::errors::chain(&error),
            "Graph call failed"
        );
        Err(error)
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Retry-After` in seconds (the form Graph uses) or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let raw = header_text(headers, "retry-after")?;
    let raw = raw.trim();
    if let Ok(seconds) = raw.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = jiff::fmt::rfc2822::parse(raw).ok()?.timestamp();
    let wait = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// Exponential backoff with jitter: between half and all of `base * 2^(attempt-1)`, capped.
pub(crate) fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let ceiling = exp.min(cap);
    let floor = ceiling / 2;
    let spread = ceiling.saturating_sub(floor).as_millis() as u64;
    floor + Duration::from_millis(rand::thread_rng().gen_range(0..=spread))
}

/// A random GUID for `client-request-id`, so a call can be found in Microsoft's logs.
pub(crate) fn new_request_id() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-4{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[16..20],
        &hex[20..32]
    )
}

pub(crate) struct Transport {
    pub settings: GraphSettings,
    http: Mutex<reqwest::Client>,
    pub throttle: Throttle,
}

/// What went wrong with one attempt, before deciding about a retry.
enum Failure {
    Retryable {
        status: Option<StatusCode>,
        wait: Option<Duration>,
        request_id: Option<String>,
        fresh_connection: bool,
        reason: Outage,
    },
    Final(GraphError),
}

impl Transport {
    pub(crate) fn new(settings: GraphSettings) -> Result<Self, GraphError> {
        let http = build_http(&settings)?;
        Ok(Self {
            throttle: Throttle::new(
                settings.per_mailbox_concurrency,
                settings.global_concurrency,
            ),
            settings,
            http: Mutex::new(http),
        })
    }

    fn http(&self) -> reqwest::Client {
        self.http
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A new connection pool: after a 503 Graph asks for a new connection, and reqwest cannot
    /// drop one pooled connection on its own. Old clients close once their last call ends.
    fn renew_connections(&self) {
        match build_http(&self.settings) {
            Ok(fresh) => {
                *self.http.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %crate::errors::chain(&e), "could not open a fresh Graph connection pool")
            }
        }
    }

    /// Sends the call, retrying throttling, outages and dropped connections. Returns the first
    /// answer that retrying would not change (which may be an error status).
    pub(crate) async fn execute(&self, call: &Call<'_>) -> Result<Reply, GraphError> {
        let client_request_id = new_request_id();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (status, wait, request_id, fresh_connection, reason) =
                match self.attempt(call, &client_request_id).await {
                    Ok(reply) => {
                        tracing::debug!(
                            method = %call.method,
                            path = call.url.path(),
                            status = reply.status.as_u16(),
                            attempt,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            client_request_id = %client_request_id,
                            "Graph call"
                        );
                        return Ok(reply);
                    }
                    Err(Failure::Final(error)) => return Err(error),
                    Err(Failure::Retryable {
                        status,
                        wait,
                        request_id,
                        fresh_connection,
                        reason,
                    }) => (status, wait, request_id, fresh_connection, reason),
                };
            let delay = wait.unwrap_or_else(|| {
                backoff(
                    self.settings.backoff_base,
                    self.settings.max_backoff,
                    attempt,
                )
            });
            if status == Some(StatusCode::TOO_MANY_REQUESTS) {
                // Graph keeps counting while we are throttled: hold every call of the mailbox.
                self.throttle.pause(call.mailbox, Instant::now() + delay);
            }
            if fresh_connection {
                self.renew_connections();
            }
            let give_up = attempt >= self.settings.max_attempts
                || delay > self.settings.max_retry_after
                || started.elapsed() + delay > self.settings.max_total_wait;
            tracing::warn!(
                method = %call.method,
                path = call.url.path(),
                status = status.map(|s| s.as_u16()),
                attempt,
                delay_ms = delay.as_millis() as u64,
                client_request_id = %client_request_id,
                request_id = request_id.as_deref().unwrap_or("-"),
                reason = %reason,
                give_up,
                "Graph call will be retried"
            );
            if give_up {
                return Err(match status {
                    Some(StatusCode::TOO_MANY_REQUESTS) => {
                        GraphError::Throttled { retry_after: wait }
                    }
                    _ => GraphError::Unavailable {
                        outage: reason,
                        retried: true,
                    },
                });
            }
            tokio::time::sleep(delay).await;
        }
    }

    async fn attempt(&self, call: &Call<'_>, client_request_id: &str) -> Result<Reply, Failure> {
        let request = self.build(call, client_request_id)?;
        let _permits = self.throttle.acquire(call.mailbox, call.requests).await;
        let response = match self.http().execute(request).await {
            Ok(response) => response,
            Err(e) => {
                let retry = call.idempotent || e.is_connect();
                return Err(transport_failure(e, retry));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response)
            .await
            .map_err(|e| transport_failure(e, call.idempotent))?;
        let request_id = header_text(&headers, "request-id");
        match status.as_u16() {
            429 | 502 | 503 | 504 => Err(Failure::Retryable {
                status: Some(status),
                wait: retry_after(&headers),
                request_id,
                fresh_connection: status != StatusCode::TOO_MANY_REQUESTS,
                reason: Outage::Status(status.as_u16()),
            }),
            _ => Ok(Reply {
                status,
                headers,
                body,
            }),
        }
    }

    fn build(&self, call: &Call<'_>, client_request_id: &str) -> Result<reqwest::Request, Failure> {
        let mut headers = HeaderMap::new();
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", call.token.expose()))
            .map_err(|_| Failure::Final(GraphError::UnusableToken))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(id) = HeaderValue::from_str(client_request_id) {
            headers.insert("client-request-id", id);
        }
        headers.insert("return-client-request-id", HeaderValue::from_static("true"));
        if !call.prefer.is_empty() {
            if let Ok(prefer) = HeaderValue::from_str(&call.prefer.join(", ")) {
                headers.insert("prefer", prefer);
            }
        }
        if let Some(tag) = call.if_match {
            if let Ok(tag) = HeaderValue::from_str(tag) {
                headers.insert(IF_MATCH, tag);
            }
        }
        let mut request = reqwest::Request::new(call.method.clone(), call.url.clone());
        if let Some(body) = &call.body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            *request.body_mut() = Some(body.clone().into());
        }
        *request.headers_mut() = headers;
        *request.timeout_mut() = Some(self.settings.timeout);
        Ok(request)
    }
}

fn transport_failure(e: reqwest::Error, retry: bool) -> Failure {
    let outage = Outage::Transport(e.without_url());
    if retry {
        Failure::Retryable {
            status: None,
            wait: None,
            request_id: None,
            fresh_connection: true,
            reason: outage,
        }
    } else {
        // A create without a transactionId may have happened: never send it twice.
        Failure::Final(GraphError::Unavailable {
            outage,
            retried: false,
        })
    }
}

async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::with_capacity(response.content_length().unwrap_or(0).min(1 << 20) as usize);
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            // Treated like a dropped connection: stop reading and let the caller decide.
            tracing::warn!("Graph answer larger than {MAX_BODY_BYTES} bytes refused");
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn build_http(settings: &GraphSettings) -> Result<reqwest::Client, GraphError> {
    reqwest::Client::builder()
        // A redirect would carry the bearer token to wherever it points.
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .map_err(GraphError::Client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("10"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(10)));
        headers.insert(
            "retry-after",
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 1..10 {
            let d = backoff(base, cap, attempt);
            let ceiling = (base * 2u32.pow(attempt - 1)).min(cap);
            assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn request_ids_look_like_guids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
