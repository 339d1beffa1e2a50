//! Signed URLs: how the CRM sends a user to calsync without calsync trusting the browser.
//! The signature is hex HMAC-SHA256 with the tenant's link key over `R\nT\nU\nE[\nURL]`
//! (the route it is for, tenant, CRM user, expiry in epoch seconds, optional return URL), so a
//! link opens one route only: a status link cannot connect or disconnect. Tenant-wide links
//! (admin consent) leave `U` empty, which no CRM user name can be. Each route has its own
//! longest lifetime: a connect link lives minutes (the CRM signs it at the moment of the
//! click), a status link up to a month.

use url::Url;

use crate::config::join_url;
use crate::crypto::{hmac_hex, hmac_verify};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// The longest lifetime of any link: a leaked one should not live for ever.
pub const MAX_URL_LIFETIME_SECS: i64 = 31 * 24 * 3600;

/// The route a link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkRoute {
    /// Start connecting the user's Microsoft account.
    Connect,
    /// The user's status page (which offers fresh Connect and Disconnect links).
    Status,
    /// Disconnect the user (the status page's form).
    Disconnect,
    /// A directory administrator's consent (tenant-wide).
    AdminConsent,
}

impl LinkRoute {
    /// Its path on the auth function, and the name its signature covers.
    pub fn path(self) -> &'static str {
        match self {
            LinkRoute::Connect => "connect",
            LinkRoute::Status => "status",
            LinkRoute::Disconnect => "disconnect",
            LinkRoute::AdminConsent => "admin-consent",
        }
    }

    /// How long a link for this route may live.
    pub fn max_lifetime_secs(self) -> i64 {
        match self {
            LinkRoute::Connect => CONNECT_LINK_SECS,
            LinkRoute::Disconnect => 3600,
            LinkRoute::Status | LinkRoute::AdminConsent => MAX_URL_LIFETIME_SECS,
        }
    }
}

/// How long a connect link lives: long enough to finish a sign-in started from the CRM, short
/// enough that a forwarded or leaked one is soon useless.
pub const CONNECT_LINK_SECS: i64 = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub route: LinkRoute,
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
        let mut message = format!(
            "{}\n{}\n{}\n{}",
            self.route.path(),
            self.tenant,
            user,
            self.expires_at
        );
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
        if self.expires_at > now + self.route.max_lifetime_secs() {
            return Err(SignedUrlError::TooLong);
        }
        Ok(())
    }

    /// The signed URL on the auth function.
    pub fn url(&self, public_url: &Url, link_key: &Secret) -> String {
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
        format!(
            "{}?{}",
            join_url(public_url, self.route.path()),
            query.finish()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> SignedUrl {
        SignedUrl {
            route: LinkRoute::Status,
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
        other.route = LinkRoute::Connect;
        assert_eq!(
            other.verify(&key, &sig, 1_000),
            Err(SignedUrlError::BadSignature),
            "a status link does not open another route"
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
        let mut connect = claims();
        connect.route = LinkRoute::Connect;
        let sig = connect.sign(&key);
        assert_eq!(
            connect.verify(&key, &sig, 2_000 - CONNECT_LINK_SECS - 1),
            Err(SignedUrlError::TooLong),
            "a connect link lives minutes"
        );
        assert_eq!(
            connect.verify(&key, &sig, 2_000 - CONNECT_LINK_SECS),
            Ok(())
        );
    }

    #[test]
    fn the_message_format_is_the_documented_one() {
        let key = Secret::new("k".repeat(32));
        let mut c = claims();
        c.return_to = Some("https://crm.acme.es/x".into());
        assert_eq!(
            c.sign(&key),
            hmac_hex(&key, "status\nacme\nmaria\n2000\nhttps://crm.acme.es/x")
        );
    }
}
