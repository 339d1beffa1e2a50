//! The secret-store port: named secret documents (one per tenant, `{prefix}{tenant}`), with a
//! Secrets Manager adapter and a local one, both under the same contract tests.

mod aws;
#[cfg(feature = "embedded")]
mod local;

pub use aws::SecretsManagerStore;
#[cfg(feature = "embedded")]
pub use local::LocalSecretStore;

use async_trait::async_trait;

use calsync_core::secret::Secret;

#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    #[error("the secret store failed")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SecretStoreError {
    pub fn backend(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        SecretStoreError::Backend(Box::new(error))
    }
}

#[async_trait]
pub trait SecretStore: Send + Sync {
    async fn get(&self, name: &str) -> Result<Option<Secret>, SecretStoreError>;
    /// Creates the secret or stores a new current version of it.
    async fn put(&self, name: &str, value: &Secret) -> Result<(), SecretStoreError>;
    /// Deletes at once (no recovery window); returns whether it existed.
    async fn delete(&self, name: &str) -> Result<bool, SecretStoreError>;
    /// Names starting with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, SecretStoreError>;
}
