//! A stand-in for vtiger's `webservice.php`, faithful to vtiger as docs/design.md §8 describes it,
//! with an in-process control handle for tests: users, events, the server zone, the version,
//! fault injection and request counts.
//!
//! Mount [`router`] anywhere; [`serve_vtiger`] runs it alone on a loopback port.

mod describe;
mod http;
mod query;
mod store;
mod vtql;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use self::store::Store;
pub use self::store::{reminder_minutes_from_seconds, SeedEvent, StoredEvent, UserSpec};

/// Something the emulated server does instead of (or before) answering normally.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status, content type and body (an HTML error page, truncated JSON, ...).
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
    /// A handled error: HTTP 200, `success:false` with this code.
    Error { code: String, message: String },
    /// Wait, then answer normally.
    Delay(Duration),
    /// A PHP fatal error: HTTP 500, empty `text/html` body.
    Fatal,
    /// Carry the request out, then drop the connection halfway through the answer: the work
    /// is done and the client never learns its outcome.
    CutAfterWrite,
    /// A CRM user edits the record the request names (its `id`, or the element's) in the web
    /// UI just before the request is handled: an edit made while a sync run was under way.
    UserEditsFirst(Vec<(String, String)>),
}

impl Fault {
    pub fn html_page(status: u16) -> Self {
        Fault::Raw {
            status,
            content_type: "text/html; charset=UTF-8".to_owned(),
            body: "<!DOCTYPE html><html><head><title>Error</title></head><body><h1>Service unavailable</h1></body></html>".to_owned(),
        }
    }

    pub fn truncated_json() -> Self {
        Fault::Raw {
            status: 200,
            content_type: "application/json".to_owned(),
            body: r#"{"success":true,"result":{"updated":[{"subject":"Acc"#.to_owned(),
        }
    }

    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Fault::Error {
            code: code.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone)]
struct FaultRule {
    /// Lowercase operation name, or `*` for every operation.
    operation: String,
    fault: Fault,
    /// How many more requests it applies to; `None` = until cleared.
    remaining: Option<usize>,
}

/// One request as the server saw it, with the session id and access key blanked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    pub operation: String,
    pub params: BTreeMap<String, String>,
}

pub(crate) struct Shared {
    pub(crate) store: Store,
    faults: Vec<FaultRule>,
    counts: BTreeMap<String, u64>,
    log: Vec<LoggedRequest>,
    /// Stock vtiger 8 on PHP 8: every `sync` and `logout` dies with HTTP 500.
    pub(crate) php8_stock: bool,
    latency: Duration,
    /// Extra time some operations take (a `create` writes several tables).
    operation_latency: BTreeMap<String, Duration>,
    /// The lock of each session's PHP file session: a request holds it while it is served, so
    /// requests on one `sessionName` are answered one at a time (measured on vtiger 8.2.0).
    session_locks: BTreeMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Sessions serving a request right now, and the most there ever were at once.
    sessions_busy: usize,
    peak_sessions_busy: usize,
}

/// The emulated CRM and its control handle. Clones share the same CRM.
#[derive(Clone)]
pub struct VtigerState {
    shared: Arc<Mutex<Shared>>,
}

impl Default for VtigerState {
    fn default() -> Self {
        Self::new()
    }
}

impl VtigerState {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Mutex::new(Shared {
                store: Store::default(),
                faults: Vec::new(),
                counts: BTreeMap::new(),
                log: Vec::new(),
                php8_stock: false,
                latency: Duration::ZERO,
                operation_latency: BTreeMap::new(),
                session_locks: BTreeMap::new(),
                sessions_busy: 0,
                peak_sessions_busy: 0,
            })),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- users and records -------------------------------------------------------------

    /// Add a user; returns its record number (its webservice id is `19x<number>`).
    pub fn add_user(&self, spec: UserSpec) -> u64 {
        self.lock().store.add_user(spec)
    }

    pub fn user_id(&self, user_name: &str) -> Option<u64> {
        self.lock().store.user_id(user_name)
    }

    /// Change a user's e-mail (My Preferences); `false` for an unknown user.
    pub fn set_user_email(&self, user_name: &str, email: &str) -> bool {
        let mut shared = self.lock();
        let Some(id) = shared.store.user_id(user_name) else {
            return false;
        };
        match shared.store.users.get_mut(&id) {
            Some(user) => {
                user.spec.email = email.to_owned();
                true
            }
            None => false,
        }
    }

    /// Give a user a new access key, as My Preferences' regenerate does: the old key stops
    /// logging in at once. `false` for an unknown user.
    pub fn set_access_key(&self, user_name: &str, key: &str) -> bool {
        let mut shared = self.lock();
        let Some(id) = shared.store.user_id(user_name) else {
            return false;
        };
        match shared.store.users.get_mut(&id) {
            Some(user) => {
                user.spec.access_key = Some(key.to_owned());
                true
            }
            None => false,
        }
    }

    /// Put an event in the CRM as if made in the web UI; returns its webservice id.
    pub fn seed_event(&self, seed: SeedEvent) -> String {
        self.lock().store.seed(seed)
    }

    /// The stored event behind a webservice id (`18x5`) or record number.
    pub fn event(&self, id: &str) -> Option<StoredEvent> {
        let number = crmid(id)?;
        self.lock().store.event(number).cloned()
    }

    /// Every user: (record number, user name), by record number.
    pub fn users(&self) -> Vec<(u64, String)> {
        self.lock()
            .store
            .users
            .values()
            .map(|user| (user.id, user.spec.user_name.clone()))
            .collect()
    }

    /// The events `owner` owns that are not in the recycle bin, by record number.
    pub fn events_of(&self, owner: u64) -> Vec<StoredEvent> {
        self.lock()
            .store
            .events
            .values()
            .filter(|event| event.owner == owner && !event.deleted)
            .cloned()
            .collect()
    }

    /// Edit as a CRM user would in the web UI (invitees and reminder untouched).
    pub fn ui_edit(&self, id: &str, changes: &[(&str, &str)]) -> bool {
        let Some(number) = crmid(id) else {
            return false;
        };
        let changes = changes
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.lock().store.ui_edit(number, &changes)
    }

    /// Invite CRM users (by user number) as the web UI's picker does: the whole list.
    pub fn ui_invite(&self, id: &str, invitees: &[u64]) -> bool {
        crmid(id).is_some_and(|number| self.lock().store.ui_invite(number, invitees))
    }

    /// Delete as a CRM user would in the web UI (to the recycle bin).
    pub fn ui_delete(&self, id: &str) -> bool {
        crmid(id).is_some_and(|number| self.lock().store.ui_delete(number))
    }

    // ---- server settings ---------------------------------------------------------------

    /// The PHP default zone: what modification times are written in.
    pub fn set_server_zone(&self, name: &str) -> Result<(), String> {
        let zone = TimeZone::get(name).map_err(|err| err.to_string())?;
        let mut shared = self.lock();
        shared.store.zone = zone;
        shared.store.zone_name = name.to_owned();
        Ok(())
    }

    pub fn set_vtiger_version(&self, version: &str) {
        self.lock().store.vtiger_version = version.to_owned();
    }

    /// Stock vtiger 8 on PHP 8: every `sync` and `logout` answers HTTP 500, empty body.
    pub fn set_php8_stock(&self, on: bool) {
        self.lock().php8_stock = on;
    }

    /// Whether a new challenge ends the user's earlier sessions (default: yes).
    pub fn set_challenge_ends_sessions(&self, on: bool) {
        self.lock().store.challenge_ends_sessions = on;
    }

    /// Install the calsync CRM module: a webservice save that does not name `inviteesid`
    /// keeps the invitees (stock vtiger clears them).
    pub fn set_invitee_module(&self, on: bool) {
        self.lock().store.invitee_module = on;
    }

    /// Whether `sync` honours `syncType` (a real install needs an extra registry row).
    pub fn set_honour_sync_type(&self, on: bool) {
        self.lock().store.honour_sync_type = on;
    }

    /// Move the server's clock (sessions idle out, modification times move).
    pub fn advance_clock(&self, by: Duration) {
        self.lock().store.clock_offset_secs += by.as_secs() as i64;
    }

    /// Set the server's clock to this Unix time (it keeps running from there).
    pub fn set_clock(&self, epoch: i64) {
        let mut shared = self.lock();
        let offset = shared.store.clock_offset_secs;
        let local_now = shared.store.now() - offset;
        shared.store.clock_offset_secs = epoch - local_now;
    }

    /// The server's wall clock now, in its zone.
    pub fn now(&self) -> DateTime {
        self.lock().store.now_civil()
    }

    pub fn now_epoch(&self) -> i64 {
        self.lock().store.now()
    }

    // ---- faults and observation --------------------------------------------------------

    /// Apply `fault` to the next `times` requests of `operation` (`*` = any), or to all of them.
    pub fn inject(&self, operation: &str, fault: Fault, times: Option<usize>) {
        self.lock().faults.push(FaultRule {
            operation: operation.to_lowercase(),
            fault,
            remaining: times,
        });
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Every answer waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// `operation` (lowercase) takes this much longer than the others, on top of the latency
    /// every answer has.
    pub fn set_operation_latency(&self, operation: &str, latency: Duration) {
        self.lock()
            .operation_latency
            .insert(operation.to_lowercase(), latency);
    }

    /// The most sessions that were serving a request at the same moment.
    pub fn peak_sessions_busy(&self) -> usize {
        self.lock().peak_sessions_busy
    }

    pub fn reset_peak_sessions_busy(&self) {
        let mut shared = self.lock();
        shared.peak_sessions_busy = shared.sessions_busy;
    }

    /// Holds the session's lock for as long as the returned guard lives (what PHP's file
    /// session lock does to a request), counting the session busy meanwhile.
    pub(crate) async fn serve_on_session(&self, session: &str) -> SessionBusy {
        let lock = self
            .lock()
            .session_locks
            .entry(session.to_owned())
            .or_default()
            .clone();
        let held = lock.lock_owned().await;
        let mut shared = self.lock();
        shared.sessions_busy += 1;
        shared.peak_sessions_busy = shared.peak_sessions_busy.max(shared.sessions_busy);
        SessionBusy {
            state: self.clone(),
            _held: held,
        }
    }

    /// End every session, as PHP's session garbage collector would.
    pub fn expire_sessions(&self) {
        self.lock().store.expire_sessions();
    }

    pub fn session_count(&self) -> usize {
        self.lock().store.session_count()
    }

    /// Requests received per operation.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.lock().counts.clone()
    }

    pub fn request_count(&self, operation: &str) -> u64 {
        self.lock()
            .counts
            .get(&operation.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    pub fn reset_counts(&self) {
        let mut shared = self.lock();
        shared.counts.clear();
        shared.log.clear();
    }

    /// Count and log one request; pick the fault to apply, if any.
    pub(crate) fn observe(&self, request: LoggedRequest) -> (Option<Fault>, Duration) {
        let mut shared = self.lock();
        *shared.counts.entry(request.operation.clone()).or_default() += 1;
        let operation = request.operation.clone();
        shared.log.push(request);
        let latency = shared.latency
            + shared
                .operation_latency
                .get(&operation)
                .copied()
                .unwrap_or_default();
        let position = shared
            .faults
            .iter()
            .position(|rule| rule.operation == "*" || rule.operation == operation);
        let fault = position.map(|index| {
            let rule = &mut shared.faults[index];
            let fault = rule.fault.clone();
            if let Some(remaining) = rule.remaining.as_mut() {
                *remaining = remaining.saturating_sub(1);
                if *remaining == 0 {
                    shared.faults.remove(index);
                }
            }
            fault
        });
        (fault, latency)
    }
}

/// A request being served on a session; dropping it frees the session for the next request.
pub(crate) struct SessionBusy {
    state: VtigerState,
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for SessionBusy {
    fn drop(&mut self) {
        let mut shared = self.state.lock();
        shared.sessions_busy = shared.sessions_busy.saturating_sub(1);
    }
}

/// `18x5` or `5` → 5.
fn crmid(id: &str) -> Option<u64> {
    id.rsplit('x').next()?.parse().ok()
}

/// The `webservice.php` routes (GET and POST).
pub fn router(state: VtigerState) -> axum::Router {
    http::router(state)
}

/// Stops a server started by [`serve_vtiger`] (also on drop).
pub struct VtigerServer {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl VtigerServer {
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for VtigerServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serve the emulator alone on 127.0.0.1 (a free port); returns its base URL (no trailing
/// slash; the endpoint is `{base}/webservice.php`) and the handle that stops it.
pub async fn serve_vtiger(state: VtigerState) -> std::io::Result<(String, VtigerServer)> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = router(state);
    let task = tokio::spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stopped.await;
        });
        if let Err(err) = server.await {
            tracing::warn!(error = %err, "vtiger emulator stopped with an error");
        }
    });
    Ok((
        format!("http://{addr}"),
        VtigerServer {
            stop: Some(stop),
            task: Some(task),
            addr,
        },
    ))
}
