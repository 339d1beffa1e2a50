//! Identifiers that cross a trust boundary, parsed once so the rest of the code can rely on them.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub reason: &'static str,
}

/// A calsync tenant: one CRM customer. Lowercase letters, digits and `-`, 1–40 characters, so it
/// is safe in storage keys, secret names, URLs and queue group ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            kind: "tenant id",
            reason,
        };
        if value.is_empty() || value.len() > 40 {
            return Err(invalid("must be 1 to 40 characters"));
        }
        if !value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "only lowercase letters, digits and '-' are allowed",
            ));
        }
        if value.starts_with('-') || value.ends_with('-') {
            return Err(invalid("must not start or end with '-'"));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A CRM user's login name (vtiger `user_name`). vtiger allows a fairly free set of characters;
/// we accept the printable ones that cannot break keys or the `T#U` queue group id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CrmUserName(String);

impl CrmUserName {
    pub fn parse(value: &str) -> Result<Self, InvalidId> {
        let invalid = |reason| InvalidId {
            kind: "CRM user name",
            reason,
        };
        if value.is_empty() || value.len() > 100 {
            return Err(invalid("must be 1 to 100 characters"));
        }
        if value
            .chars()
            .any(|c| c.is_control() || c == '#' || c.is_whitespace())
        {
            return Err(invalid(
                "must not contain spaces, control characters or '#'",
            ));
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_conversions {
    ($ty:ident) => {
        impl TryFrom<String> for $ty {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_conversions!(TenantId);
string_conversions!(CrmUserName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids() {
        assert!(TenantId::parse("acme-01").is_ok());
        for bad in ["", "Acme", "a b", "-a", "a-", "a#b", &"x".repeat(41)] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn user_names() {
        assert!(CrmUserName::parse("maria.garcia@acme.es").is_ok());
        for bad in ["", "a b", "a#b", "a\nb"] {
            assert!(CrmUserName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
