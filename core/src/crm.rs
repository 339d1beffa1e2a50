//! The CRM's vocabulary as the engine sees it: record ids, the calendar owner, the position in
//! the owner's change feed and why an event stopped being the owner's. The CRM port and its
//! vtiger adapter (`calsync::adapters::crm`) speak in these terms.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A CRM event record id (vtiger webservice id, e.g. `18x1234`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CrmEventId(String);

/// A CRM user record id (vtiger webservice id, e.g. `19x5`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CrmUserId(String);

macro_rules! string_id {
    ($ty:ident) => {
        impl $ty {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_id!(CrmEventId);
string_id!(CrmUserId);

/// A CRM user, resolved from its login name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmUser {
    pub id: CrmUserId,
    /// Login name (vtiger `user_name`).
    pub user_name: String,
    /// The user's own zone (IANA name), used to place all-day events; `None` if unknown.
    pub time_zone: Option<String>,
    pub active: bool,
    /// The user's e-mail address in the CRM, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// An opaque position in a user's change feed. Stored as JSON and given back unchanged; only
/// the adapter that made it reads inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChangeCursor(serde_json::Value);

impl ChangeCursor {
    pub fn from_value(value: serde_json::Value) -> Self {
        Self(value)
    }

    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }
}

/// Why an event stopped being the owner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// Deleted in the CRM.
    Deleted,
    /// Reassigned to another CRM user: gone for this owner, but it still exists in the CRM,
    /// so it must never be deleted there because of this.
    LeftOwner,
}

/// A known event that is no longer the owner's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gone {
    pub id: CrmEventId,
    pub reason: GoneReason,
}
