//! The HTTP side of `webservice.php`: one endpoint, GET or POST by operation, form-encoded
//! bodies, the challenge/login dance and session reuse.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use rand::Rng;
use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::session::{self, Session, SessionId, SessionSlot, Sessions};
use super::wire::{self, Challenge, LoginResult};
use crate::adapters::crm::error::{ConfigProblem, CrmError, CrmErrorCode};

/// A CRM user's access key (My Preferences → Access Key): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(String);

impl AccessKey {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessKey(***)")
    }
}

/// `login`'s accessKey: lowercase hex md5 of the challenge token followed by the user's key.
pub fn login_digest(token: &str, access_key: &AccessKey) -> String {
    let mut hasher = Md5::new();
    hasher.update(token.as_bytes());
    hasher.update(access_key.expose().as_bytes());
    hex::encode(hasher.finalize())
}

/// The largest answer read from the CRM: a page of 100 events with long descriptions fits many
/// times over.
const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// How many times one call may log in again after a session error before giving up. Another
/// process logging in as the same user can end our session; a bounded retry absorbs that.
const SESSION_ATTEMPTS: usize = 3;

/// The webservice endpoint for a CRM URL: accepts the CRM root or `.../webservice.php`.
pub fn endpoint(url: &str) -> Result<Url, CrmError> {
    let bad_url = |source| {
        CrmError::Config(ConfigProblem::BadUrl {
            url: url.to_owned(),
            source,
        })
    };
    let mut parsed = Url::parse(url.trim()).map_err(bad_url)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(CrmError::Config(ConfigProblem::NotHttp {
            url: url.to_owned(),
        }));
    }
    parsed.set_query(None);
    parsed.set_fragment(None);
    if parsed.path().ends_with("/webservice.php") {
        return Ok(parsed);
    }
    if !parsed.path().ends_with('/') {
        let path = format!("{}/", parsed.path());
        parsed.set_path(&path);
    }
    parsed.join("webservice.php").map_err(bad_url)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

pub struct VtigerClient {
    http: reqwest::Client,
    endpoint: Url,
    user_name: String,
    access_key: AccessKey,
    timeout: Duration,
    sessions: Arc<Sessions>,
    /// With parallel writers: a permit per request on the wire and the lanes not in use.
    writers: Option<Writers>,
}

/// The sessions one client may use at once: each request takes a permit and a free lane, so
/// no more than `permits` requests are on the wire and none waits on another's session.
struct Writers {
    permits: Arc<tokio::sync::Semaphore>,
    free: Arc<std::sync::Mutex<Vec<usize>>>,
}

/// The lane a request runs on; dropping it gives the lane back.
struct LaneUse {
    index: usize,
    free: Option<Arc<std::sync::Mutex<Vec<usize>>>>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for LaneUse {
    fn drop(&mut self) {
        if let Some(free) = &self.free {
            free.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(self.index);
        }
    }
}

impl fmt::Debug for VtigerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VtigerClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("user_name", &self.user_name)
            .finish_non_exhaustive()
    }
}

impl VtigerClient {
    pub fn new(
        url: &str,
        user_name: &str,
        access_key: AccessKey,
        timeout: Duration,
    ) -> Result<Self, CrmError> {
        let endpoint = endpoint(url)?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("calsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| CrmError::Config(ConfigProblem::Client(err)))?;
        let sessions = session::sessions(endpoint.as_str(), user_name);
        Ok(Self {
            http,
            endpoint,
            user_name: user_name.to_owned(),
            access_key,
            timeout,
            sessions,
            writers: None,
        })
    }

    /// A client for the same CRM user that sends up to `writers` requests at once, each on a
    /// session of its own (lanes `0..writers`). With 1, requests share the user's one session.
    pub fn with_writers(&self, writers: usize) -> Self {
        Self {
            http: self.http.clone(),
            endpoint: self.endpoint.clone(),
            user_name: self.user_name.clone(),
            access_key: self.access_key.clone(),
            timeout: self.timeout,
            sessions: self.sessions.clone(),
            writers: (writers > 1).then(|| Writers {
                permits: Arc::new(tokio::sync::Semaphore::new(writers)),
                free: Arc::new(std::sync::Mutex::new((0..writers).rev().collect())),
            }),
        }
    }

    /// A lane for one request: lane 0 without parallel writers (or on an install where a
    /// login ends the user's other sessions), else a free one once a permit is had.
    async fn lane(&self) -> LaneUse {
        let Some(writers) = &self.writers else {
            return LaneUse {
                index: 0,
                free: None,
                _permit: None,
            };
        };
        let permit = writers.permits.clone().acquire_owned().await.ok();
        let taken = if self.sessions.one_session_only() {
            None
        } else {
            writers
                .free
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .pop()
        };
        match taken {
            Some(index) => LaneUse {
                index,
                free: Some(writers.free.clone()),
                _permit: permit,
            },
            None => LaneUse {
                index: 0,
                free: None,
                _permit: permit,
            },
        }
    }

    /// A GET-type operation (its parameters go in the query string).
    pub async fn get(&self, operation: &str, params: &[(&str, &str)]) -> Result<Value, CrmError> {
        self.call(Method::GET, operation, params).await
    }

    /// A POST-type operation (its parameters go in the form body).
    pub async fn post(&self, operation: &str, params: &[(&str, &str)]) -> Result<Value, CrmError> {
        self.call(Method::POST, operation, params).await
    }

    /// The current session (lane 0), logging in if there is none.
    pub async fn session(&self) -> Result<Arc<Session>, CrmError> {
        self.session_replacing(&self.sessions.lane(0), None).await
    }

    /// The server's clock now, as far as the last login measured it.
    pub async fn server_now(&self) -> Result<i64, CrmError> {
        let session = self.session().await?;
        Ok(unix_now() + session.clock_offset_secs)
    }

    async fn call(
        &self,
        method: Method,
        operation: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, CrmError> {
        let lane = self.lane().await;
        let mut slot = self.sessions.lane(lane.index);
        let mut stale: Option<Arc<Session>> = None;
        let mut last_error = None;
        for _ in 0..SESSION_ATTEMPTS {
            let session = self.session_replacing(&slot, stale.as_ref()).await?;
            let mut all = Vec::with_capacity(params.len() + 1);
            all.push(("sessionName", session.id.expose()));
            all.extend_from_slice(params);
            match self.send(method.clone(), operation, &all).await {
                Err(CrmError::Api { code, message, .. }) if code.is_session_error() => {
                    tracing::info!(operation, code = %code, "CRM session no longer valid, logging in again");
                    if self.writers.is_some() {
                        // Our own logins on the other lanes may be what ended it: from now on
                        // every request of the user goes through lane 0's one session.
                        if !self.sessions.one_session_only() {
                            tracing::warn!(user = %self.user_name, "the CRM ends a user's sessions at each login: one session from now on");
                            self.sessions.keep_to_one_session();
                        }
                        slot = self.sessions.lane(0);
                    }
                    last_error = Some(CrmError::Api {
                        operation: operation.to_owned(),
                        code,
                        message,
                    });
                    stale = Some(session);
                }
                other => return other,
            }
        }
        Err(last_error.unwrap_or_else(|| CrmError::Api {
            operation: operation.to_owned(),
            code: CrmErrorCode::InvalidSessionId,
            message: "session kept failing".to_owned(),
        }))
    }

    /// The lane's session, or a new one if there is none or the lane's is `stale`.
    async fn session_replacing(
        &self,
        slot: &SessionSlot,
        stale: Option<&Arc<Session>>,
    ) -> Result<Arc<Session>, CrmError> {
        let mut current = slot.lock().await;
        if let Some(session) = current.as_ref() {
            let is_stale = stale.is_some_and(|old| Arc::ptr_eq(old, session));
            if !is_stale {
                // Either fine, or another caller already replaced the stale one.
                return Ok(session.clone());
            }
        }
        *current = None;
        let session = Arc::new(self.login().await?);
        *current = Some(session.clone());
        Ok(session)
    }

    async fn login(&self) -> Result<Session, CrmError> {
        let _one_at_a_time = self.sessions.login_lock.lock().await;
        // A challenge from another process can replace ours between the two calls: retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = unix_now();
            let challenge: Challenge = wire::decode(
                "getchallenge",
                self.send(
                    Method::GET,
                    "getchallenge",
                    &[("username", self.user_name.as_str())],
                )
                .await?,
            )?;
            let after = unix_now();
            let digest = login_digest(&challenge.token, &self.access_key);
            let reply = self
                .send(
                    Method::POST,
                    "login",
                    &[
                        ("username", self.user_name.as_str()),
                        ("accessKey", digest.as_str()),
                    ],
                )
                .await;
            match reply {
                Ok(value) => {
                    let login: LoginResult = wire::decode("login", value)?;
                    tracing::debug!(
                        user = %self.user_name,
                        vtiger_version = %login.vtiger_version,
                        "logged in to the CRM"
                    );
                    return Ok(Session {
                        id: SessionId::new(login.session_name),
                        user_id: login.user_id,
                        vtiger_version: login.vtiger_version,
                        clock_offset_secs: challenge.server_time - (before + after) / 2,
                        is_admin: login.is_admin.as_deref().map(|v| v == "on"),
                    });
                }
                // Another process asked for a challenge between our two calls: ours expired
                // (INVALID_AUTH_TOKEN) or was replaced, and then the digest no longer matches
                // (INVALID_USER_CREDENTIALS). Try again after a short random pause.
                Err(CrmError::Api { code, message, .. })
                    if matches!(
                        code,
                        CrmErrorCode::InvalidAuthToken | CrmErrorCode::InvalidUserCredentials
                    ) && attempt < SESSION_ATTEMPTS =>
                {
                    tracing::info!(user = %self.user_name, %code, %message, "CRM login refused, retrying with a new challenge");
                    let pause = rand::thread_rng().gen_range(20..200);
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                Err(CrmError::Api { code, message, .. }) => {
                    return Err(CrmError::Login {
                        user_name: self.user_name.clone(),
                        code,
                        message,
                    })
                }
                Err(other) => return Err(other),
            }
        }
    }

    /// One request, no session handling.
    async fn send(
        &self,
        method: Method,
        operation: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, CrmError> {
        let mut fields = Vec::with_capacity(params.len() + 1);
        fields.push(("operation", operation));
        fields.extend_from_slice(params);
        let request = self.http.request(method.clone(), self.endpoint.clone());
        // vtiger reads a GET operation's parameters from the query string only and a POST
        // operation's from the form body only.
        let request = if method == Method::GET {
            request.query(&fields)
        } else {
            request.form(&fields)
        };
        let started = std::time::Instant::now();
        let response = request
            .send()
            .await
            .map_err(|err| self.transport(operation, err, err_is_unsent))?;
        let status = response.status().as_u16();
        // The answer has begun: whatever breaks now broke after the CRM had the request. It is
        // read up to a bound, so a misbehaving server cannot exhaust the function's memory.
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| self.transport(operation, err, |_| false))?
        {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(CrmError::Unexpected {
                    operation: operation.to_owned(),
                    what: "an answer larger than 64 MiB",
                });
            }
            body.extend_from_slice(&chunk);
        }
        tracing::debug!(
            operation,
            status,
            bytes = body.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CRM call"
        );
        wire::parse_reply(operation, status, &body)
    }

    fn transport(
        &self,
        operation: &str,
        err: reqwest::Error,
        unsent: impl Fn(&reqwest::Error) -> bool,
    ) -> CrmError {
        let operation = operation.to_owned();
        if err.is_timeout() {
            return CrmError::Timeout {
                operation,
                after: self.timeout,
            };
        }
        let was_unsent = unsent(&err);
        // `without_url`: the URL of a GET carries the session id.
        let source = err.without_url();
        if was_unsent {
            CrmError::Transport { operation, source }
        } else {
            CrmError::AnswerLost { operation, source }
        }
    }
}

/// Whether a failed send never reached the CRM: only a failed connection proves it. Any
/// other failure (a reset while the request was on its way, or while waiting for the answer)
/// may have left the request with the server.
fn err_is_unsent(err: &reqwest::Error) -> bool {
    err.is_connect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_lowercase_md5_of_token_then_key() {
        // md5("abc") is a well-known value.
        assert_eq!(
            login_digest("a", &AccessKey::new("bc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn endpoint_accepts_root_or_script() {
        assert_eq!(
            endpoint("https://crm.example.com").unwrap().as_str(),
            "https://crm.example.com/webservice.php"
        );
        assert_eq!(
            endpoint("https://crm.example.com/vtiger/")
                .unwrap()
                .as_str(),
            "https://crm.example.com/vtiger/webservice.php"
        );
        assert_eq!(
            endpoint("https://crm.example.com/vtiger").unwrap().as_str(),
            "https://crm.example.com/vtiger/webservice.php"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9/webservice.php?x=1")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/webservice.php"
        );
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("not a url").is_err());
    }

    #[test]
    fn access_key_is_redacted() {
        assert_eq!(format!("{:?}", AccessKey::new("s3cr3t")), "AccessKey(***)");
    }
}
