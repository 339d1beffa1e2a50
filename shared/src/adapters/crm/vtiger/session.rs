//! Webservice sessions, shared by every adapter in the process.
//!
//! vtiger keeps one challenge per CRM user, and a new challenge ends that user's earlier
//! session. Two adapters logging in as the same user at once would therefore knock each other
//! out. So sessions live in one process-wide table keyed by endpoint + user name, and each
//! entry's async mutex serialises the logins for that user.

use std::collections::HashMap;
use std::fmt;
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

/// The current session of one CRM user, if any; locking it serialises that user's logins.
pub type SessionSlot = Arc<tokio::sync::Mutex<Option<Arc<Session>>>>;

type Registry = Mutex<HashMap<(String, String), SessionSlot>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The slot for one endpoint + user name (created on first use).
pub fn slot(endpoint: &str, user_name: &str) -> SessionSlot {
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
    fn same_key_same_slot() {
        let a = slot("http://x/webservice.php", "admin");
        let b = slot("http://x/webservice.php", "admin");
        let c = slot("http://x/webservice.php", "other");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn session_id_is_redacted() {
        let id = SessionId::new("67e18b9f6b08d215dba01");
        assert_eq!(format!("{id:?}"), "SessionId(***)");
    }
}
