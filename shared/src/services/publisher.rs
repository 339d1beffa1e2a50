//! The publisher app: one multi-tenant Microsoft Entra application for the whole deployment,
//! which each customer's administrator consents to instead of registering an app of their
//! own. Its client id and credential are one secret document, `{prefix}_publisher` (a name no
//! tenant can have: tenant ids have no `_`), set once by the operator (`calsync publisher
//! set`) and read by the functions, cached five minutes like the tenants' secrets.
//!
//! The credential is a certificate (a client assertion signed with its key) by default, or a
//! client secret. Either has an expiry, warned about 30 days ahead.

use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::adapters::client_assertion::{CertificateCredential, CertificateError};
use crate::adapters::identity::ClientCredential;
use crate::adapters::secret_store::{SecretStore, SecretStoreError};
use crate::expiry::{expiry_warning, is_iso_date};
use calsync_core::secret::Secret;

const CACHE_TTL: Duration = Duration::from_secs(300);

/// The name of the publisher's secret under a secret prefix.
pub fn secret_name(prefix: &str) -> String {
    format!("{prefix}_publisher")
}

/// The publisher's credential as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StoredCredential {
    Certificate {
        /// PEM X.509 certificate (public).
        certificate: String,
        /// PEM PKCS#8 private key.
        private_key: Secret,
    },
    Secret {
        client_secret: Secret,
        /// `YYYY-MM-DD`, when the secret stops working.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires: Option<String>,
    },
}

/// The publisher's secret document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredPublisher {
    pub client_id: String,
    pub credential: StoredCredential,
    /// When the operator set it (Unix seconds).
    pub set_at: i64,
}

/// The credential, ready to use.
#[derive(Debug)]
pub enum Credential {
    Certificate(Box<CertificateCredential>),
    Secret(Secret),
}

/// The publisher app, ready to ask for tokens.
#[derive(Debug)]
pub struct PublisherApp {
    pub client_id: String,
    pub credential: Credential,
    /// When the credential stops working (Unix seconds), if known.
    pub expires_at: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PublisherError {
    #[error("the publisher app's client id must be a GUID (the Application (client) ID)")]
    BadClientId,
    #[error("the publisher app's certificate is unusable: {0}")]
    Certificate(#[source] CertificateError),
    #[error("the publisher app's client secret is empty")]
    EmptySecret,
    #[error("the client secret expiry must be a date like 2027-03-31")]
    BadExpiry,
    #[error("the publisher app's secret is unreadable")]
    Unreadable,
    #[error("the publisher app's secret could not be encoded")]
    Encode(#[source] serde_json::Error),
    #[error(transparent)]
    Secrets(#[from] SecretStoreError),
}

/// Microsoft's ids are GUIDs: 8-4-4-4-12 hex digits.
pub fn is_guid(value: &str) -> bool {
    value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl StoredPublisher {
    /// Checks the document and makes the credential usable.
    pub fn load(&self) -> Result<PublisherApp, PublisherError> {
        if !is_guid(&self.client_id) {
            return Err(PublisherError::BadClientId);
        }
        let (credential, expires_at) = match &self.credential {
            StoredCredential::Certificate {
                certificate,
                private_key,
            } => {
                let credential = CertificateCredential::from_pem(certificate, private_key)
                    .map_err(PublisherError::Certificate)?;
                let expires = credential.not_after();
                (Credential::Certificate(Box::new(credential)), Some(expires))
            }
            StoredCredential::Secret {
                client_secret,
                expires,
            } => {
                if client_secret.is_empty() {
                    return Err(PublisherError::EmptySecret);
                }
                let expires_at = match expires {
                    None => None,
                    Some(date) if is_iso_date(date) => date
                        .parse::<jiff::civil::Date>()
                        .ok()
                        .and_then(|d| {
                            jiff::tz::TimeZone::UTC
                                .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
                                .ok()
                        })
                        .map(|t| t.as_second()),
                    Some(_) => return Err(PublisherError::BadExpiry),
                };
                (Credential::Secret(client_secret.clone()), expires_at)
            }
        };
        Ok(PublisherApp {
            client_id: self.client_id.to_ascii_lowercase(),
            credential,
            expires_at,
        })
    }
}

impl PublisherApp {
    pub fn credential(&self) -> ClientCredential<'_> {
        match &self.credential {
            Credential::Certificate(certificate) => ClientCredential::Certificate(certificate),
            Credential::Secret(secret) => ClientCredential::Secret(secret),
        }
    }

    /// `certificate` or `client secret`.
    pub fn kind(&self) -> &'static str {
        match self.credential {
            Credential::Certificate(_) => "certificate",
            Credential::Secret(_) => "client secret",
        }
    }

    /// What the operator must act on: a credential that expires within 30 days, or has.
    pub fn warnings(&self, now: i64) -> Vec<String> {
        let what = format!("the publisher app's {}", self.kind());
        let expires = self.expires_at.and_then(|at| {
            jiff::Timestamp::from_second(at)
                .ok()
                .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
        });
        expires
            .and_then(|date| {
                expiry_warning(
                    &what,
                    date,
                    now,
                    "add a new one to the app registration and store it (calsync publisher set)",
                )
            })
            .into_iter()
            .collect()
    }
}

/// The publisher app's secret, read through a short cache.
#[derive(Clone)]
pub struct Publisher {
    secrets: Arc<dyn SecretStore>,
    name: String,
    cache: Arc<Mutex<Option<CachedPublisher>>>,
}

/// When the secret was read, and what it held.
type CachedPublisher = (Instant, Option<Arc<PublisherApp>>);

impl Publisher {
    pub fn new(secrets: Arc<dyn SecretStore>, secret_prefix: &str) -> Self {
        Self {
            secrets,
            name: secret_name(secret_prefix),
            cache: Arc::default(),
        }
    }

    /// The publisher app, if one is set.
    pub async fn get(&self) -> Result<Option<Arc<PublisherApp>>, PublisherError> {
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, app)) = cache.as_ref() {
                if at.elapsed() < CACHE_TTL {
                    return Ok(app.clone());
                }
            }
        }
        let app = match self.stored().await? {
            Some(stored) => Some(Arc::new(stored.load()?)),
            None => None,
        };
        if let Ok(mut cache) = self.cache.lock() {
            *cache = Some((Instant::now(), app.clone()));
        }
        Ok(app)
    }

    /// The stored document as it is.
    pub async fn stored(&self) -> Result<Option<StoredPublisher>, PublisherError> {
        match self.secrets.get(&self.name).await? {
            Some(raw) => serde_json::from_str(raw.expose())
                .map(Some)
                .map_err(|_| PublisherError::Unreadable),
            None => Ok(None),
        }
    }

    /// Checks and stores the publisher app (replacing the one before).
    pub async fn set(&self, stored: &StoredPublisher) -> Result<PublisherApp, PublisherError> {
        let app = stored.load()?;
        let json = serde_json::to_string(stored).map_err(PublisherError::Encode)?;
        self.secrets.put(&self.name, &Secret::new(json)).await?;
        if let Ok(mut cache) = self.cache.lock() {
            *cache = None;
        }
        Ok(app)
    }
}
