//! Nudges: the CRM module's "this user's calendar just changed in the CRM", so a CRM edit
//! reaches Outlook in seconds instead of at the next scheduled sweep. A nudge names the tenant
//! and the CRM user only — no event content — and is signed with the tenant's link key:
//! hex HMAC-SHA256 over `nudge\nT\nU\nTS\nN` (tenant, CRM user, the sender's clock in epoch
//! seconds, a random nonce). It is sent as a form: `tenant=T&user=U&ts=TS&nonce=N&sig=S`.
//! The shared vectors in `fixtures/nudge/vectors.json` hold the PHP sender and this verifier
//! to the same bytes.

use crate::crypto::{hmac_hex, hmac_verify};
use calsync_core::ids::{CrmUserName, InvalidId, TenantId};
use calsync_core::secret::Secret;

/// How far the sender's clock may be from ours, either way.
pub const NUDGE_FRESH_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub tenant: TenantId,
    pub user: CrmUserName,
    /// The sender's clock, epoch seconds.
    pub sent_at: i64,
    /// Random, 16 to 64 characters of `[A-Za-z0-9_-]`: the same nonce twice is a replay.
    pub nonce: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NudgeError {
    #[error("the nudge is missing {0}")]
    Missing(&'static str),
    #[error("the nudge repeats {0}")]
    Repeated(&'static str),
    #[error("the nudge names an invalid tenant or user")]
    BadId,
    #[error("the nudge's time is not a number")]
    BadTime,
    #[error("the nudge's nonce is not 16 to 64 URL-safe characters")]
    BadNonce,
    #[error("the nudge's signature is not valid")]
    BadSignature,
    #[error("the nudge is too old or from the future")]
    Stale,
}

impl From<InvalidId> for NudgeError {
    fn from(_: InvalidId) -> Self {
        NudgeError::BadId
    }
}

impl Nudge {
    fn message(&self) -> String {
        format!(
            "nudge\n{}\n{}\n{}\n{}",
            self.tenant, self.user, self.sent_at, self.nonce
        )
    }

    pub fn sign(&self, link_key: &Secret) -> String {
        hmac_hex(link_key, &self.message())
    }

    /// The form body a sender posts.
    pub fn form(&self, link_key: &Secret) -> String {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("tenant", self.tenant.as_str())
            .append_pair("user", self.user.as_str())
            .append_pair("ts", &self.sent_at.to_string())
            .append_pair("nonce", &self.nonce)
            .append_pair("sig", &self.sign(link_key))
            .finish()
    }

    /// Reads a form body; the signature is returned for [`Self::verify`].
    pub fn parse(body: &[u8]) -> Result<(Self, String), NudgeError> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let one = |name: &'static str| -> Result<&str, NudgeError> {
            let mut values = pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v);
            let value = values.next().ok_or(NudgeError::Missing(name))?;
            if values.next().is_some() {
                return Err(NudgeError::Repeated(name));
            }
            Ok(value.as_str())
        };
        let nonce = one("nonce")?;
        let well_formed = (16..=64).contains(&nonce.len())
            && nonce
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !well_formed {
            return Err(NudgeError::BadNonce);
        }
        let nudge = Nudge {
            tenant: TenantId::parse(one("tenant")?)?,
            user: CrmUserName::parse(one("user")?)?,
            sent_at: one("ts")?.parse().map_err(|_| NudgeError::BadTime)?,
            nonce: nonce.to_owned(),
        };
        Ok((nudge, one("sig")?.to_owned()))
    }

    /// Checks the signature (constant time), then that it was sent within
    /// [`NUDGE_FRESH_SECS`] of `now`.
    pub fn verify(&self, link_key: &Secret, signature: &str, now: i64) -> Result<(), NudgeError> {
        if !hmac_verify(link_key, &self.message(), signature) {
            return Err(NudgeError::BadSignature);
        }
        if (now - self.sent_at).abs() > NUDGE_FRESH_SECS {
            return Err(NudgeError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nudge() -> Nudge {
        Nudge {
            tenant: TenantId::parse("acme").unwrap(),
            user: CrmUserName::parse("maria").unwrap(),
            sent_at: 1_000_000,
            nonce: "n0nce-0123456789abcdef".into(),
        }
    }

    #[test]
    fn a_signed_nudge_round_trips_and_every_field_is_covered() {
        let key = Secret::new("k".repeat(32));
        let (parsed, sig) = Nudge::parse(nudge().form(&key).as_bytes()).unwrap();
        assert_eq!(parsed, nudge());
        assert_eq!(parsed.verify(&key, &sig, 1_000_100), Ok(()));
        let mut other = nudge();
        other.user = CrmUserName::parse("pedro").unwrap();
        assert_eq!(
            other.verify(&key, &sig, 1_000_100),
            Err(NudgeError::BadSignature)
        );
        let mut other = nudge();
        other.nonce = "another-nonce-0123456".into();
        assert_eq!(
            other.verify(&key, &sig, 1_000_100),
            Err(NudgeError::BadSignature)
        );
        assert_eq!(parsed.verify(&key, &sig, 1_000_301), Err(NudgeError::Stale));
        assert_eq!(parsed.verify(&key, &sig, 999_699), Err(NudgeError::Stale));
    }

    #[test]
    fn malformed_nudges_are_refused_before_any_lookup() {
        assert_eq!(
            Nudge::parse(b"tenant=acme&user=maria&ts=1&nonce=short&sig=00"),
            Err(NudgeError::BadNonce)
        );
        assert_eq!(
            Nudge::parse(b"tenant=acme&user=maria&ts=x&nonce=0123456789abcdef&sig=00"),
            Err(NudgeError::BadTime)
        );
        assert_eq!(
            Nudge::parse(b"tenant=acme&tenant=beta&user=maria&ts=1&nonce=0123456789abcdef&sig=00"),
            Err(NudgeError::Repeated("tenant"))
        );
        assert_eq!(
            Nudge::parse(b"tenant=ACME!&user=maria&ts=1&nonce=0123456789abcdef&sig=00"),
            Err(NudgeError::BadId)
        );
    }
}
