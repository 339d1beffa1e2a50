//! Webservice sessions, shared by every adapter in the process.
//!
//! vtiger keeps one challenge per CRM user: a `getchallenge` replaces the user's token, so two
//! logins of one user at once make one of them fail. Logins of a user are therefore serialised
//! by a process-wide lock ([`Sessions::login_lock`]). vtiger 8.2.0 leaves a user's earlier
//! sessions working after a new login, and serves the requests of one session one at a time
//! (its PHP file session is locked while a request runs; docs/BENCHMARKS.md measures both), so
//! parallel writers need a session each: the user's sessions are numbered lanes, lane 0 the
//! one every adapter shares, further lanes for a run's parallel writers. Some installs end
//! the earlier sessions at each login; once that is seen ([`Sessions::one_session_only`]), the
//! process keeps to lane 0 for that user.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A webservice session id: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The one place the value is read: to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(***)")
    }
}

/// A logged-in session.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    /// The integration user's record id (`19x1`).
    pub user_id: String,
    pub vtiger_version: String,
    /// Server clock minus local clock, in seconds, measured at login (`getchallenge`).
    pub clock_offset_secs: i64,
    /// Whether the user is a CRM administrator, when the login answer says (vtiger 8 does;
    /// older versions answer only the session).
    pub is_admin: Option<bool>,
}

/// One session lane of a CRM user, if logged in; locking it serialises that lane's logins.
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

/// Everything the process keeps about one endpoint + CRM user's sessions.
#[derive(Default)]
pub struct Sessions {
    lanes: Mutex<Vec<SessionSlot>>,
    /// Held through `getchallenge` + `login`, so logins of the user never race each other.
    pub login_lock: tokio::sync::Mutex<()>,
    one_only: AtomicBool,
}

impl Sessions {
    /// The slot of lane `index` (created on first use).
    pub fn lane(&self, index: usize) -> SessionSlot {
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while lanes.len() <= index {
            lanes.push(SessionSlot::default());
        }
        lanes[index].clone()
    }

    /// Whether a login was seen to end the user's other sessions: use one lane only.
    pub fn one_session_only(&self) -> bool {
        self.one_only.load(Ordering::Relaxed)
    }

    pub fn keep_to_one_session(&self) {
        self.one_only.store(true, Ordering::Relaxed);
    }
}

type Registry = Mutex<HashMap<(String, String), Arc<Sessions>>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The sessions of one endpoint + user name (created on first use).
pub fn sessions(endpoint: &str, user_name: &str) -> Arc<Sessions> {
    // A poisoned lock only means another thread panicked while inserting; the map is intact.
    let mut table = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    table
        .entry((endpoint.to_owned(), user_name.to_owned()))
        .or_default()
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_sessions() {
        let a = sessions("http://x/webservice.php", "admin");
        let b = sessions("http://x/webservice.php", "admin");
        let c = sessions("http://x/webservice.php", "other");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert!(Arc::ptr_eq(&a.lane(0), &b.lane(0)));
        assert!(!Arc::ptr_eq(&a.lane(0), &a.lane(1)));
    }

    #[test]
    fn session_id_is_redacted() {
        let id = SessionId::new("67e18b9f6b08d215dba01");
        assert_eq!(format!("{id:?}"), "SessionId(***)");
    }
}
