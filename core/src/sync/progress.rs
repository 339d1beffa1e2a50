//! Where the sync stands with one user between runs: the cursors of both sides and what the
//! runner learned. Stored on the user's item, so a run with nothing to do reads one item.

use serde::{Deserialize, Serialize};

use crate::crm::{ChangeCursor, CrmUser};

/// The cursors and markers a run starts from and, when it finishes everything, commits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// The Microsoft account (object id) the cursors and links belong to. If the user connects
    /// another account, everything below is dropped and the next run is a first sync.
    pub mailbox: String,
    /// Graph's deltaLink: where the next Outlook round starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlook_delta: Option<String>,
    /// The window the delta link was started over (epoch seconds); the link keeps it.
    #[serde(default)]
    pub window_start: i64,
    #[serde(default)]
    pub window_end: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_cursor: Option<ChangeCursor>,
    /// The CRM user record, resolved once, so a quiet run costs no lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_owner: Option<CrmUser>,
    /// A first run committed: unlinked look-alikes are no longer matched, they are copied.
    #[serde(default)]
    pub first_sync_done: bool,
    /// When the CRM was last listed in full to find deletions by absence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_at: Option<i64>,
    /// When the linked Outlook series were last listed for cancelled occurrences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series_checked_at: Option<i64>,
}

impl SyncProgress {
    /// A first run's progress for a mailbox: nothing read yet.
    pub fn starting(mailbox: impl Into<String>) -> Self {
        Self {
            mailbox: mailbox.into(),
            ..Self::default()
        }
    }
}
