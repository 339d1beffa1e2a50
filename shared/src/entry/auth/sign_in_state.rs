//! One-time sign-in states: what the callback needs to finish a sign-in, kept server-side for
//! ten minutes under a random id that travels to Microsoft and back as the OAuth `state`.

use serde::{Deserialize, Serialize};

use crate::adapters::store::{
    item_to_record, now_epoch, record_to_item, ItemStore, Precondition, StoreError,
};
use crate::crypto::random_token;
use calsync_core::ids::{CrmUserName, TenantId};

pub const STATE_SK: &str = "STATE";
/// Authorization codes live about ten minutes; a state need not outlive them.
pub const STATE_TTL_SECS: i64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateKind {
    Connect,
    AdminConsent,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignInState {
    pub kind: StateKind,
    pub tenant: TenantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<CrmUserName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_to: Option<String>,
    /// The PKCE verifier, sealed with the tenant key and bound to this state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier_sealed: Option<String>,
    /// SHA-256 of the sign-in cookie given to the browser that started the sign-in: only that
    /// browser can finish it (an authorize URL forwarded to a colleague cannot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_hash: Option<String>,
}

pub fn new_state_id() -> String {
    random_token(32)
}

pub fn seal_context(state_id: &str) -> String {
    format!("calsync-pkce\0{state_id}")
}

/// State ids are ours (base64url of 32 bytes); anything else is refused before a lookup.
fn well_formed(state_id: &str) -> bool {
    state_id.len() == 43
        && state_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl SignInState {
    pub fn pk(state_id: &str) -> String {
        format!("OAUTH#{state_id}")
    }

    pub async fn store(&self, store: &dyn ItemStore, state_id: &str) -> Result<(), StoreError> {
        let mut item = record_to_item(Self::pk(state_id), STATE_SK, self)?;
        item.expires_at = Some(now_epoch() + STATE_TTL_SECS);
        store.put(&item, Precondition::Absent).await.map(|_| ())
    }

    /// The live state, if the id is well formed, known and unexpired.
    pub async fn load(store: &dyn ItemStore, state_id: &str) -> Result<Option<Self>, StoreError> {
        if !well_formed(state_id) {
            return Ok(None);
        }
        match store.get(&Self::pk(state_id), STATE_SK).await? {
            Some(item) => Ok(Some(item_to_record(&item)?)),
            None => Ok(None),
        }
    }

    /// Spends the state: `true` for the one caller that deleted it, `false` for a replay that
    /// lost the race (or a state that expired meanwhile).
    pub async fn consume(store: &dyn ItemStore, state_id: &str) -> Result<bool, StoreError> {
        match store
            .delete(&Self::pk(state_id), STATE_SK, Precondition::Exists)
            .await
        {
            Ok(Some(_)) => Ok(true),
            Ok(None) | Err(StoreError::ConditionFailed) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
