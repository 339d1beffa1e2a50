//! The seam where a connected user gets a Microsoft Graph change-notification subscription.
//! The Graph client fills it (creating, renewing and deleting subscriptions); until then the
//! connect flow calls `NoSubscriptions`, which records that push is not set up, so the user is
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
}

/// Used until the Graph client provides subscriptions: says so in its error.
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
            "the Graph client does not create subscriptions yet; the user is synced on schedule",
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
