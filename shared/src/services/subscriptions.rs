//! Each connected user's Graph change-notification subscription: created when they connect,
//! renewed before it expires, reauthorized or replaced when Graph asks, deleted when they
//! leave. Without a webhook URL there is nowhere for Graph to push to: users are then synced on
//! schedule only, and status says so rather than pretending.
//!
//! [`Subscriptions`] is the one owner of the subscription records (`SUB#{id}`), which map a
//! notification's subscription id to its tenant and user and let the webhook check its
//! `clientState` without keeping the state itself.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::adapters::graph::subscriptions::{graph_instant, parse_graph_instant, CHANGE_TYPES};
use crate::adapters::graph::types::NewSubscription;
use crate::adapters::graph::{GraphClient, GraphError, MailboxClient};
use crate::adapters::queue::JobReason;
use crate::adapters::store::{
    item_to_record, now_epoch, record_to_item, ItemStore, Precondition, StoreError,
};
use crate::config::join_url;
use crate::crypto::{random_token, sha256_hex};
use crate::services::tenants::TenantContext;
use crate::services::tokens::{TokenError, Tokens};
use crate::services::users::{ProblemCode, UserRecord, UserStatus, UserWriteError, Users};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;

/// Subscriptions expiring within this margin are renewed. Several dispatch rounds fall inside
/// it, so one failed renewal is retried long before Graph drops the subscription.
pub const RENEW_MARGIN_SECS: i64 = 12 * 3600;

/// What calsync remembers of a Graph subscription, keyed by its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    pub id: String,
    pub tenant: TenantId,
    pub user: CrmUserName,
    /// Hex SHA-256 of the `clientState` sent at creation.
    pub client_state_hash: String,
    /// Epoch seconds, as Graph returned it. (Stored under another name: `expires_at` is the
    /// table's TTL attribute, and this record must outlive its subscription's expiry.)
    #[serde(rename = "subscription_expires_at")]
    pub expires_at: i64,
    pub created_at: i64,
}

impl SubscriptionRecord {
    /// Constant-time check of a notification's `clientState` against the stored hash.
    pub fn client_state_matches(&self, client_state: &str) -> bool {
        use subtle::ConstantTimeEq;
        sha256_hex(client_state)
            .as_bytes()
            .ct_eq(self.client_state_hash.as_bytes())
            .into()
    }
}

/// A subscription as Graph confirmed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSubscription {
    pub id: String,
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("change notifications are not available: {0}")]
    NotAvailable(&'static str),
    #[error("the user is not connected")]
    NotConnected,
    #[error("Graph refused the subscription call")]
    Graph(#[from] GraphError),
    #[error("Graph returned an unreadable expiry")]
    BadExpiry,
    #[error("the configured subscription lifetime is out of range")]
    Lifetime,
    #[error("no token for the user's mailbox")]
    Token(#[from] TokenError),
    #[error("the subscription record could not be stored")]
    Store(#[from] StoreError),
    #[error("the user record could not be updated")]
    Write(#[from] UserWriteError),
    /// The subscription notifies an address that is no longer the webhook's (the service
    /// moved to a domain of its own, or its stack was rebuilt). Graph cannot change the
    /// lifecycle address of a subscription, so it is replaced.
    #[error("the subscription notifies {at}, not the webhook's address")]
    Readdressed { at: String },
}

/// What upkeep did for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    NothingToDo,
    Created,
    Renewed,
    Reauthorized,
    /// Renewal failed (Graph removed or lost it): a new one replaced it.
    Recreated,
    Deleted,
    /// Recorded on the user as a problem; the next round tries again.
    Failed,
}

#[derive(Clone)]
pub struct Subscriptions {
    graph: GraphClient,
    store: Arc<dyn ItemStore>,
    users: Users,
    tokens: Tokens,
    /// Where Graph pushes to; `None`: push is not set up.
    webhook_url: Option<Url>,
    lifetime: Duration,
}

fn record_pk(id: &str) -> String {
    format!("SUB#{id}")
}

const RECORD_SK: &str = "SUB";

/// The key of a subscription record, for tools that read or arrange the table directly
/// (tests).
pub fn item_key(id: &str) -> (String, String) {
    (record_pk(id), RECORD_SK.to_owned())
}

impl Subscriptions {
    pub fn new(
        graph: GraphClient,
        store: Arc<dyn ItemStore>,
        users: Users,
        tokens: Tokens,
        webhook_url: Option<Url>,
        lifetime: Duration,
    ) -> Self {
        Self {
            graph,
            store,
            users,
            tokens,
            webhook_url,
            lifetime,
        }
    }

    /// Whether Graph can push to calsync at all.
    pub fn push_available(&self) -> bool {
        self.webhook_url.is_some()
    }

    /// The stored record of a subscription. Ids come from the internet: odd ones are refused
    /// before they reach storage keys.
    pub async fn record(&self, id: &str) -> Result<Option<SubscriptionRecord>, StoreError> {
        if id.is_empty()
            || id.len() > 128
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Ok(None);
        }
        match self.store.get(&record_pk(id), RECORD_SK).await? {
            Some(item) => Ok(Some(item_to_record(&item)?)),
            None => Ok(None),
        }
    }

    async fn save_record(&self, record: &SubscriptionRecord) -> Result<(), StoreError> {
        let item = record_to_item(record_pk(&record.id), RECORD_SK, record)?;
        self.store.put(&item, Precondition::None).await.map(|_| ())
    }

    async fn forget_record(&self, id: &str) -> Result<(), StoreError> {
        self.store
            .delete(&record_pk(id), RECORD_SK, Precondition::None)
            .await
            .map(|_| ())
    }

    fn webhook(&self) -> Result<&Url, SubscriptionError> {
        self.webhook_url
            .as_ref()
            .ok_or(SubscriptionError::NotAvailable(
            "no webhook URL is configured (CALSYNC_WEBHOOK_URL); the user is synced on schedule",
        ))
    }

    fn expiry(&self) -> Result<Timestamp, SubscriptionError> {
        let lifetime = jiff::SignedDuration::try_from(self.lifetime)
            .map_err(|_| SubscriptionError::Lifetime)?;
        Timestamp::now()
            .checked_add(lifetime)
            .map_err(|_| SubscriptionError::Lifetime)
    }

    fn mailbox(&self, tenant: &TenantContext, user: &UserRecord, token: &Secret) -> MailboxClient {
        let mailbox = tenant.settings.mode.mailbox(user.ms_user_id.clone());
        self.graph.mailbox(mailbox, token.clone())
    }

    /// Creates the subscription for a user who just connected and records the outcome on the
    /// user: the subscription, or why push is not active.
    pub async fn after_connect(&self, tenant: &TenantContext, user: &UserRecord, token: &Secret) {
        let now = now_epoch();
        let noted = match self.create(tenant, user, token).await {
            Ok(created) => {
                // A reconnect leaves the previous subscription behind: delete it, so one
                // mailbox change is never announced twice.
                if let Some(old) = user
                    .subscription_id
                    .as_deref()
                    .filter(|old| *old != created.id)
                {
                    if let Err(e) = self.delete(tenant, user, old, token).await {
                        tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "the previous subscription was not deleted at Graph; it lapses on its own");
                        if let Err(e) = self.forget_record(old).await {
                            tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "the previous subscription's record was not deleted");
                        }
                    }
                }
                self.users
                    .set_subscription(
                        &tenant.id,
                        &user.user,
                        Some((&created.id, created.expires_at)),
                    )
                    .await
            }
            Err(SubscriptionError::NotAvailable(why)) => {
                self.users
                    .note_problem(
                        &tenant.id,
                        &user.user,
                        ProblemCode::NotificationsUnavailable,
                        why,
                        now,
                    )
                    .await
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription not created");
                self.users
                    .note_problem(
                        &tenant.id,
                        &user.user,
                        ProblemCode::SubscriptionFailed,
                        "Change notifications could not be set up yet; calsync retries on its next round.",
                        now,
                    )
                    .await
            }
        };
        if let Err(e) = noted {
            tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription outcome not recorded");
        }
    }

    /// `POST /subscriptions` for the user's events, and the record the webhook checks against.
    async fn create(
        &self,
        tenant: &TenantContext,
        user: &UserRecord,
        token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let webhook = self.webhook()?;
        let client = self.mailbox(tenant, user, token);
        let client_state = Secret::new(random_token(32));
        let request = NewSubscription {
            change_type: CHANGE_TYPES.to_owned(),
            notification_url: join_url(webhook, "notifications"),
            lifecycle_notification_url: Some(join_url(webhook, "lifecycle")),
            resource: client.mailbox().resource("events"),
            expiration_date_time: graph_instant(self.expiry()?),
            client_state: client_state.clone(),
        };
        let created = client.create_subscription(&request).await?;
        let expires_at = parse_graph_instant(&created.expiration_date_time)
            .ok_or(SubscriptionError::BadExpiry)?;
        let record = SubscriptionRecord {
            id: created.id.clone(),
            tenant: tenant.id.clone(),
            user: user.user.clone(),
            client_state_hash: sha256_hex(client_state.expose()),
            expires_at,
            created_at: now_epoch(),
        };
        if let Err(e) = self.save_record(&record).await {
            // Without the record every notification would be dropped: undo the subscription.
            if let Err(undo) = client.delete_subscription(&created.id).await {
                tracing::warn!(error = %crate::errors::chain(&undo), "could not delete an unrecorded subscription; it lapses on its own");
            }
            return Err(e.into());
        }
        tracing::info!(tenant = %tenant.id, user = %user.user, subscription = %created.id, expires_at, "subscription created");
        Ok(CreatedSubscription {
            id: created.id,
            expires_at,
        })
    }

    /// Deletes a subscription at Graph (unknown ids are not an error) and forgets its record.
    pub async fn delete(
        &self,
        tenant: &TenantContext,
        user: &UserRecord,
        subscription_id: &str,
        token: &Secret,
    ) -> Result<(), SubscriptionError> {
        self.mailbox(tenant, user, token)
            .delete_subscription(subscription_id)
            .await?;
        self.forget_record(subscription_id).await?;
        Ok(())
    }

    /// Deletes the user's subscription when they disconnect: at Graph while a token is still
    /// to be had (it lapses on its own otherwise), and always in our records.
    pub async fn drop_for(&self, tenant: &TenantContext, user: &UserRecord) {
        let Some(id) = &user.subscription_id else {
            return;
        };
        match self.tokens.for_mailbox(tenant, user).await {
            Ok(token) => {
                if let Err(e) = self.delete(tenant, user, id, &token).await {
                    tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription not deleted at Graph; it lapses on its own");
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "no token to delete the subscription; it lapses on its own")
            }
        }
        if let Err(e) = self.forget_record(id).await {
            tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription record not deleted");
        }
    }

    async fn renew(
        &self,
        client: &MailboxClient,
        subscription_id: &str,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let renewed = client
            .renew_subscription(subscription_id, self.expiry()?)
            .await?;
        let expected = join_url(self.webhook()?, "notifications");
        if let Some(at) = renewed.notification_url.filter(|at| *at != expected) {
            return Err(SubscriptionError::Readdressed { at });
        }
        let expires_at = parse_graph_instant(&renewed.expiration_date_time)
            .ok_or(SubscriptionError::BadExpiry)?;
        if let Some(mut record) = self.record(subscription_id).await? {
            record.expires_at = expires_at;
            self.save_record(&record).await?;
        }
        Ok(CreatedSubscription {
            id: subscription_id.to_owned(),
            expires_at,
        })
    }

    /// Replaces a subscription Graph removed (or lost): deletes the old one if it is still
    /// there and creates a new one.
    async fn recreate(
        &self,
        tenant: &TenantContext,
        user: &UserRecord,
        token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        if let Some(old) = &user.subscription_id {
            // Usually already gone (subscriptionRemoved); a leftover would double notifications.
            if let Err(e) = self
                .mailbox(tenant, user, token)
                .delete_subscription(old)
                .await
            {
                tracing::warn!(subscription = %old, error = %crate::errors::chain(&e), "old subscription not deleted; it lapses on its own");
            }
            if let Err(e) = self.forget_record(old).await {
                tracing::warn!(subscription = %old, error = %crate::errors::chain(&e), "old subscription record not deleted");
            }
        }
        self.create(tenant, user, token).await
    }

    /// Whether a user's subscription needs [`Self::maintain_user`] at all, judged from the
    /// user record alone, so that idle rounds read no secrets and call no one.
    pub fn needs_upkeep(&self, user: &UserRecord, now: i64) -> bool {
        match user.status {
            UserStatus::Connected => {
                self.push_available()
                    && user
                        .subscription_expires_at
                        .is_none_or(|at| at - now <= RENEW_MARGIN_SECS)
            }
            _ => user.subscription_id.is_some(),
        }
    }

    /// Brings one user's subscription to where it should be, for the scheduler's round: a
    /// user who is disconnected or must reconnect has theirs deleted, never renewed.
    pub async fn maintain_user(
        &self,
        tenant: &TenantContext,
        user: &UserRecord,
        now: i64,
    ) -> Upkeep {
        if user.status != UserStatus::Connected {
            return match &user.subscription_id {
                Some(_) => self.drop_for_inactive(tenant, user).await,
                None => Upkeep::NothingToDo,
            };
        }
        if !self.push_available() {
            return Upkeep::NothingToDo;
        }
        let due = match (&user.subscription_id, user.subscription_expires_at) {
            (None, _) | (Some(_), None) => true,
            (Some(_), Some(expires_at)) => expires_at - now <= RENEW_MARGIN_SECS,
        };
        if !due {
            return Upkeep::NothingToDo;
        }
        let reason = if user.subscription_id.is_some() {
            JobReason::Schedule
        } else {
            JobReason::RecreateSubscription
        };
        self.apply(tenant, user, reason).await
    }

    /// The subscription work a job asks for (reauthorize, recreate); none for other jobs.
    pub async fn for_job(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        reason: JobReason,
    ) -> Upkeep {
        if !matches!(
            reason,
            JobReason::Reauthorize | JobReason::RecreateSubscription
        ) {
            return Upkeep::NothingToDo;
        }
        let record = match self.users.get(&tenant.id, user).await {
            Ok(Some(u)) => u.record,
            Ok(None) => return Upkeep::NothingToDo,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, user = %user, error = %crate::errors::chain(&e), "user not read");
                return Upkeep::Failed;
            }
        };
        if record.status != UserStatus::Connected {
            return self.maintain_user(tenant, &record, now_epoch()).await;
        }
        self.apply(tenant, &record, reason).await
    }

    /// Renew (or reauthorize) the existing subscription, falling back to a new one.
    async fn apply(&self, tenant: &TenantContext, user: &UserRecord, reason: JobReason) -> Upkeep {
        let token = match self.tokens.for_mailbox(tenant, user).await {
            Ok(token) => token,
            Err(e) => {
                // reconnect_required is recorded by the token service itself.
                tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "no token for subscription upkeep");
                return Upkeep::Failed;
            }
        };
        let client = self.mailbox(tenant, user, &token);
        let existing = user.subscription_id.as_deref();
        let outcome = match (reason, existing) {
            (JobReason::Reauthorize, Some(id)) => client
                .reauthorize_subscription(id)
                .await
                .map_err(SubscriptionError::from)
                .map(|()| (Upkeep::Reauthorized, None)),
            (JobReason::RecreateSubscription, _) | (_, None) => {
                self.recreate(tenant, user, &token).await.map(|created| {
                    let done = if existing.is_some() {
                        Upkeep::Recreated
                    } else {
                        Upkeep::Created
                    };
                    (done, Some(created))
                })
            }
            (_, Some(id)) => self
                .renew(&client, id)
                .await
                .map(|renewed| (Upkeep::Renewed, Some(renewed))),
        };
        let outcome = match outcome {
            Ok(done) => Ok(done),
            // A subscription Graph no longer knows cannot be renewed or reauthorized: replace it.
            Err(e) if existing.is_some() && reason != JobReason::RecreateSubscription => {
                tracing::info!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "renewal failed; creating a new subscription");
                self.recreate(tenant, user, &token)
                    .await
                    .map(|created| (Upkeep::Recreated, Some(created)))
            }
            Err(e) => Err(e),
        };
        let noted = match &outcome {
            Ok((_, Some(created))) => {
                self.users
                    .set_subscription(
                        &tenant.id,
                        &user.user,
                        Some((&created.id, created.expires_at)),
                    )
                    .await
            }
            Ok((_, None)) => {
                self.users
                    .clear_problems(
                        &tenant.id,
                        &user.user,
                        &[
                            ProblemCode::SubscriptionFailed,
                            ProblemCode::NotificationsUnavailable,
                        ],
                    )
                    .await
            }
            Err(e) => {
                tracing::warn!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription upkeep failed");
                self.users
                    .note_problem(
                        &tenant.id,
                        &user.user,
                        ProblemCode::SubscriptionFailed,
                        "Change notifications could not be renewed; calsync retries on its next round and syncs on schedule meanwhile.",
                        now_epoch(),
                    )
                    .await
            }
        };
        if let Err(e) = noted {
            tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription upkeep not recorded on the user");
        }
        match outcome {
            Ok((done, _)) => done,
            Err(_) => Upkeep::Failed,
        }
    }

    /// Deletes the subscription of a user who is not connected, so its notifications are
    /// dropped from now on.
    async fn drop_for_inactive(&self, tenant: &TenantContext, user: &UserRecord) -> Upkeep {
        if user.status == UserStatus::ReconnectRequired {
            // A token may still be had for the Graph call (app-only tenants); a disconnected
            // user has none left and the subscription lapses at Graph on its own.
            self.drop_for(tenant, user).await;
        } else if let Some(id) = &user.subscription_id {
            if let Err(e) = self.forget_record(id).await {
                tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "subscription record not deleted");
                return Upkeep::Failed;
            }
        }
        match self
            .users
            .set_subscription(&tenant.id, &user.user, None)
            .await
        {
            Ok(()) => Upkeep::Deleted,
            Err(e) => {
                tracing::error!(tenant = %tenant.id, user = %user.user, error = %crate::errors::chain(&e), "user not updated");
                Upkeep::Failed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_states_are_checked_against_their_hash() {
        let record = SubscriptionRecord {
            id: "5522bd62-7c96-4530-85b0-00b916f6151a".into(),
            tenant: TenantId::parse("acme").unwrap(),
            user: CrmUserName::parse("maria").unwrap(),
            client_state_hash: sha256_hex("state"),
            expires_at: 0,
            created_at: 0,
        };
        assert!(record.client_state_matches("state"));
        assert!(!record.client_state_matches("other"));
        assert!(!record.client_state_matches(""));
    }
}
