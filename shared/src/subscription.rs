//! The seam where a connected user gets a Microsoft Graph change-notification subscription.
//! `calsync::graph::GraphSubscriptions` fills it when a webhook URL is configured; without one
//! the app uses `NoSubscriptions`, which records that push is not set up, so the user is
//! synced on schedule only — and status says so rather than pretending.

use async_trait::async_trait;

use crate::ids::CrmUserName;
use crate::secret::Secret;
use crate::tenant::TenantContext;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSubscription {
    pub id: String,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("change notifications are not available yet: {0}")]
    NotAvailable(&'static str),
    #[error("creating the subscription failed: {0}")]
    Failed(String),
}

#[async_trait]
pub trait SubscriptionSeam: Send + Sync {
    /// Creates the change-notification subscription for a user who just connected.
    async fn create_for_user(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError>;

    /// Deletes a user's subscription (on disconnect). Unknown ids are not an error.
    async fn delete(
        &self,
        tenant: &TenantContext,
        subscription_id: &str,
        access_token: &Secret,
    ) -> Result<(), SubscriptionError>;

    /// Extends a subscription before it expires (this also answers `reauthorizationRequired`).
    async fn renew(
        &self,
        _tenant: &TenantContext,
        _user: &CrmUserName,
        _subscription_id: &str,
        _access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        Err(SubscriptionError::NotAvailable(
            "subscriptions cannot be renewed here",
        ))
    }

    /// Answers `reauthorizationRequired` without extending the subscription.
    async fn reauthorize(
        &self,
        _tenant: &TenantContext,
        _user: &CrmUserName,
        _subscription_id: &str,
        _access_token: &Secret,
    ) -> Result<(), SubscriptionError> {
        Err(SubscriptionError::NotAvailable(
            "subscriptions cannot be reauthorized here",
        ))
    }

    /// Replaces a subscription Graph removed (or lost): deletes the old one if it is still
    /// there and creates a new one.
    async fn recreate(
        &self,
        _tenant: &TenantContext,
        _user: &CrmUserName,
        _old_subscription_id: Option<&str>,
        _access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        Err(SubscriptionError::NotAvailable(
            "subscriptions cannot be recreated here",
        ))
    }
}

/// Used when no webhook URL is configured: says so in its error.
pub struct NoSubscriptions;

#[async_trait]
impl SubscriptionSeam for NoSubscriptions {
    async fn create_for_user(
        &self,
        _tenant: &TenantContext,
        _user: &CrmUserName,
        _access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        Err(SubscriptionError::NotAvailable(
            "no webhook URL is configured (CALSYNC_WEBHOOK_URL); the user is synced on schedule",
        ))
    }

    async fn delete(
        &self,
        _tenant: &TenantContext,
        _subscription_id: &str,
        _access_token: &Secret,
    ) -> Result<(), SubscriptionError> {
        Ok(())
    }
}

/// What calsync remembers of a Graph subscription, keyed by its id, so the webhook can map a
/// notification to its user and check its `clientState` without keeping the state itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub tenant: crate::ids::TenantId,
    pub user: CrmUserName,
    /// Hex SHA-256 of the `clientState` sent at creation (see `crypto::sha256_hex`).
    pub client_state_hash: String,
    /// Epoch seconds, as Graph returned it. (Stored under another name: `expires_at` is the
    /// table's TTL attribute, and this record must outlive its subscription's expiry.)
    #[serde(rename = "subscription_expires_at")]
    pub expires_at: i64,
    pub created_at: i64,
}

impl SubscriptionRecord {
    pub fn pk(id: &str) -> String {
        format!("SUB#{id}")
    }

    pub const SK: &'static str = "SUB";

    /// Stores (or replaces) the record.
    pub async fn save(
        &self,
        store: &dyn crate::store::ItemStore,
    ) -> Result<(), crate::store::StoreError> {
        let item = crate::store::record_to_item(Self::pk(&self.id), Self::SK, self)?;
        store
            .put(&item, crate::store::Precondition::None)
            .await
            .map(|_| ())
    }

    pub async fn load(
        store: &dyn crate::store::ItemStore,
        id: &str,
    ) -> Result<Option<Self>, crate::store::StoreError> {
        // Ids come from the internet: refuse odd ones before they reach storage keys.
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Ok(None);
        }
        match store.get(&Self::pk(id), Self::SK).await? {
            Some(item) => Ok(Some(crate::store::item_to_record(&item)?)),
            None => Ok(None),
        }
    }

    pub async fn delete(
        store: &dyn crate::store::ItemStore,
        id: &str,
    ) -> Result<(), crate::store::StoreError> {
        store
            .delete(&Self::pk(id), Self::SK, crate::store::Precondition::None)
            .await
            .map(|_| ())
    }

    /// Constant-time check of a notification's `clientState` against the stored hash.
    pub fn client_state_matches(&self, client_state: &str) -> bool {
        use subtle::ConstantTimeEq;
        let candidate = crate::crypto::sha256_hex(client_state);
        candidate
            .as_bytes()
            .ct_eq(self.client_state_hash.as_bytes())
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::store::SqliteStore;

    #[tokio::test]
    async fn records_round_trip_through_a_store() {
        let store = SqliteStore::in_memory().unwrap();
        let record = SubscriptionRecord {
            id: "5522bd62-7c96-4530-85b0-00b916f6151a".into(),
            tenant: TenantId::parse("acme").unwrap(),
            user: CrmUserName::parse("maria").unwrap(),
            client_state_hash: crate::crypto::sha256_hex("state"),
            expires_at: crate::store::now_epoch() + 3600,
            created_at: crate::store::now_epoch(),
        };
        record.save(&store).await.unwrap();
        let back = SubscriptionRecord::load(&store, &record.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, record);
        assert!(back.client_state_matches("state"));
        SubscriptionRecord::delete(&store, &record.id)
            .await
            .unwrap();
        assert!(SubscriptionRecord::load(&store, &record.id)
            .await
            .unwrap()
            .is_none());
    }
}
