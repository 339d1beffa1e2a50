//! Signed URLs: how the CRM sends a user to calsync without calsync trusting the browser.
//! The signature is hex HMAC-SHA256 with the tenant's link key over `T\nU\nE[\nURL]`
//! (tenant, CRM user, expiry in epoch seconds, optional return URL). Tenant-wide links (admin
//! consent) leave `U` empty, which no CRM user name can be.

use url::Url;

use crate::config::join_url;
use crate::crypto::{hmac_hex, hmac_verify};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// URLs that expire further in the future than this are refused: a leaked one should not live
/// for ever.
pub const MAX_URL_LIFETIME_SECS: i64 = 31 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub tenant: TenantId,
    pub user: Option<CrmUserName>,
    pub expires_at: i64,
    pub return_to: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignedUrlError {
    #[error("the signed URL has expired")]
    Expired,
    #[error("the signed URL's signature is not valid")]
    BadSignature,
    #[error("the signed URL's expiry is too far in the future")]
    TooLong,
}

impl SignedUrl {
    fn message(&self) -> String {
        let user = self.user.as_ref().map(CrmUserName::as_str).unwrap_or("");
        let mut message = format!("{}\n{}\n{}", self.tenant, user, self.expires_at);
        if let Some(url) = &self.return_to {
            message.push('\n');
            message.push_str(url);
        }
        message
    }

    pub fn sign(&self, link_key: &Secret) -> String {
        hmac_hex(link_key, &self.message())
    }

    /// Checks the signature (constant time) and the expiry window.
    pub fn verify(
        &self,
        link_key: &Secret,
        signature: &str,
        now: i64,
    ) -> Result<(), SignedUrlError> {
        if !hmac_verify(link_key, &self.message(), signature) {
            return Err(SignedUrlError::BadSignature);
        }
        if self.expires_at <= now {
            return Err(SignedUrlError::Expired);
        }
        if self.expires_at > now + MAX_URL_LIFETIME_SECS {
            return Err(SignedUrlError::TooLong);
        }
        Ok(())
    }

    /// The signed URL of `route` on the auth function.
    pub fn url(&self, public_url: &Url, route: &str, link_key: &Secret) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query.append_pair("tenant", self.tenant.as_str());
        if let Some(user) = &self.user {
            query.append_pair("user", user.as_str());
        }
        query.append_pair("exp", &self.expires_at.to_string());
        if let Some(url) = &self.return_to {
            query.append_pair("return_to", url);
        }
        query.append_pair("sig", &self.sign(link_key));
        format!("{}?{}", join_url(public_url, route), query.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> SignedUrl {
        SignedUrl {
            tenant: TenantId::parse("acme").unwrap(),
            user: Some(CrmUserName::parse("maria").unwrap()),
            expires_at: 2_000,
            return_to: None,
        }
    }

    #[test]
    fn signature_covers_every_field() {
        let key = Secret::new("k".repeat(32));
        let sig = claims().sign(&key);
        assert_eq!(claims().verify(&key, &sig, 1_000), Ok(()));
        let mut other = claims();
        other.user = Some(CrmUserName::parse("pedro").unwrap());
        assert_eq!(
            other.verify(&key, &sig, 1_000),
            Err(SignedUrlError::BadSignature)
        );
        let mut other = claims();
        other.return_to = Some("https://evil.example".into());
        assert_eq!(
            other.verify(&key, &sig, 1_000),
            Err(SignedUrlError::BadSignature)
        );
        let mut other = claims();
        other.expires_at = 2_001;
        assert_eq!(
            other.verify(&key, &sig, 1_000),
            Err(SignedUrlError::BadSignature)
        );
    }

    #[test]
    fn expiry_is_enforced_both_ways() {
        let key = Secret::new("k".repeat(32));
        let sig = claims().sign(&key);
        assert_eq!(
            claims().verify(&key, &sig, 2_000),
            Err(SignedUrlError::Expired)
        );
        assert_eq!(
            claims().verify(&key, &sig, 2_000 - MAX_URL_LIFETIME_SECS - 1),
            Err(SignedUrlError::TooLong)
        );
    }

    #[test]
    fn the_message_format_is_the_documented_one() {
        let key = Secret::new("k".repeat(32));
        let mut c = claims();
        c.return_to = Some("https://crm.acme.es/x".into());
        assert_eq!(
            c.sign(&key),
            hmac_hex(&key, "acme\nmaria\n2000\nhttps://crm.acme.es/x")
        );
    }
}
