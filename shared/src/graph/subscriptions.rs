//! Change-notification subscriptions: the Graph calls (create, renew, reauthorize, delete) and
//! [`GraphSubscriptions`], which fills the connect flow's [`SubscriptionSeam`] with them and
//! keeps the [`SubscriptionRecord`] the webhook checks notifications against.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use reqwest::Method;
use url::Url;

use super::client::{
    to_json_body, GraphClient, Mailbox, MailboxClient, RequestSpec, PREFER_IMMUTABLE_IDS,
};
use super::error::GraphError;
use super::types::{NewSubscription, Subscription};
use crate::config::join_url;
use crate::ids::CrmUserName;
use crate::secret::Secret;
use crate::store::{now_epoch, ItemStore};
use crate::subscription::{
    CreatedSubscription, SubscriptionError, SubscriptionRecord, SubscriptionSeam,
};
use crate::tenant::TenantContext;
use crate::users::{get_user, update_user};

/// The changes calsync wants to hear about.
pub const CHANGE_TYPES: &str = "created,updated,deleted";

impl MailboxClient {
    /// `POST /subscriptions`. Graph first checks the notification URL (and the lifecycle URL)
    /// with a validation request; if that fails the create fails with 400.
    pub async fn create_subscription(
        &self,
        request: &NewSubscription,
    ) -> Result<Subscription, GraphError> {
        // Immutable ids in notifications need the preference at creation.
        let prefer = [PREFER_IMMUTABLE_IDS.to_owned()];
        self.send(RequestSpec {
            method: Method::POST,
            url: self.graph.api_url(&["subscriptions"])?,
            prefer: &prefer,
            if_match: None,
            body: Some(to_json_body(request)?),
            // A retried create could leave a second subscription behind.
            idempotent: false,
        })
        .await?
        .json()
    }

    /// `PATCH /subscriptions/{id}` with a new expiry; also reauthorizes it.
    pub async fn renew_subscription(
        &self,
        id: &str,
        expires_at: Timestamp,
    ) -> Result<Subscription, GraphError> {
        let body = serde_json::json!({ "expirationDateTime": graph_instant(expires_at) });
        self.send(RequestSpec {
            method: Method::PATCH,
            url: self.graph.api_url(&["subscriptions", id])?,
            prefer: &[],
            if_match: None,
            body: Some(to_json_body(&body)?),
            idempotent: true,
        })
        .await?
        .json()
    }

    /// `POST /subscriptions/{id}/reauthorize`: answers a `reauthorizationRequired` challenge
    /// without changing the expiry.
    pub async fn reauthorize_subscription(&self, id: &str) -> Result<(), GraphError> {
        self.send(RequestSpec {
            method: Method::POST,
            url: self.graph.api_url(&["subscriptions", id, "reauthorize"])?,
            prefer: &[],
            if_match: None,
            body: None,
            idempotent: true,
        })
        .await?
        .ensure_success()
    }

    /// `DELETE /subscriptions/{id}`: `true` when deleted now, `false` when already gone.
    pub async fn delete_subscription(&self, id: &str) -> Result<bool, GraphError> {
        let reply = self
            .send(RequestSpec {
                method: Method::DELETE,
                url: self.graph.api_url(&["subscriptions", id])?,
                prefer: &[],
                if_match: None,
                body: None,
                idempotent: true,
            })
            .await?;
        if reply.status.as_u16() == 404 {
            return Ok(false);
        }
        reply.ensure_success()?;
        Ok(true)
    }
}

/// UTC with seconds, the form Graph documents for `expirationDateTime`.
fn graph_instant(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Epoch seconds of an instant Graph returned.
pub fn parse_graph_instant(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_second())
}

/// The subscription seam backed by Graph: one `me/events` (or `users/{oid}/events`) subscription
/// per connected user, notifications to `{webhook}/notifications`, lifecycle events to
/// `{webhook}/lifecycle`.
pub struct GraphSubscriptions {
    graph: GraphClient,
    store: Arc<dyn ItemStore>,
    webhook_url: Url,
    lifetime: Duration,
}

impl GraphSubscriptions {
    pub fn new(
        graph: GraphClient,
        store: Arc<dyn ItemStore>,
        webhook_url: Url,
        lifetime: Duration,
    ) -> Self {
        Self {
            graph,
            store,
            webhook_url,
            lifetime,
        }
    }

    pub fn notification_url(&self) -> String {
        join_url(&self.webhook_url, "notifications")
    }

    pub fn lifecycle_url(&self) -> String {
        join_url(&self.webhook_url, "lifecycle")
    }

    fn expiry(&self) -> Result<Timestamp, SubscriptionError> {
        let lifetime = jiff::SignedDuration::try_from(self.lifetime)
            .map_err(|e| SubscriptionError::Failed(format!("subscription lifetime: {e}")))?;
        Timestamp::now()
            .checked_add(lifetime)
            .map_err(|e| SubscriptionError::Failed(format!("subscription expiry: {e}")))
    }

    /// The user's mailbox, addressed the way the tenant's access mode allows.
    async fn mailbox(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        token: &Secret,
    ) -> Result<MailboxClient, SubscriptionError> {
        let record = get_user(self.store.as_ref(), &tenant.id, user)
            .await
            .map_err(|e| SubscriptionError::Failed(e.to_string()))?
            .ok_or_else(|| SubscriptionError::Failed("the user is not connected".into()))?
            .record;
        let mailbox = tenant.settings.mode.mailbox(record.ms_user_id);
        Ok(self.graph.mailbox(mailbox, token.clone()))
    }

    async fn create_with(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        client: &MailboxClient,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let client_state = Secret::new(crate::crypto::random_token(32));
        let request = NewSubscription {
            change_type: CHANGE_TYPES.to_owned(),
            notification_url: self.notification_url(),
            lifecycle_notification_url: Some(self.lifecycle_url()),
            resource: client.mailbox().resource("events"),
            expiration_date_time: graph_instant(self.expiry()?),
            client_state: client_state.clone(),
        };
        let created = client.create_subscription(&request).await.map_err(failed)?;
        let expires_at = parse_graph_instant(&created.expiration_date_time).ok_or_else(|| {
            SubscriptionError::Failed("Graph returned an unreadable expiry".into())
        })?;
        let record = SubscriptionRecord {
            id: created.id.clone(),
            tenant: tenant.id.clone(),
            user: user.clone(),
            client_state_hash: crate::crypto::sha256_hex(client_state.expose()),
            expires_at,
            created_at: now_epoch(),
        };
        if let Err(e) = record.save(self.store.as_ref()).await {
            // Without the record every notification would be dropped: undo the subscription.
            if let Err(undo) = client.delete_subscription(&created.id).await {
                tracing::warn!(error = %undo, "could not delete an unrecorded subscription; it lapses on its own");
            }
            return Err(SubscriptionError::Failed(format!(
                "recording the subscription: {e}"
            )));
        }
        tracing::info!(tenant = %tenant.id, user = %user, subscription = %created.id, expires_at, "subscription created");
        Ok(CreatedSubscription {
            id: created.id,
            expires_at,
        })
    }

    async fn note_on_user(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        created: &CreatedSubscription,
    ) {
        let result = update_user(self.store.as_ref(), &tenant.id, user, |r| {
            r.subscription_id = Some(created.id.clone());
            r.subscription_expires_at = Some(created.expires_at);
        })
        .await;
        if let Err(e) = result {
            tracing::error!(tenant = %tenant.id, user = %user, error = %e, "subscription not recorded on the user");
        }
    }
}

fn failed(e: GraphError) -> SubscriptionError {
    SubscriptionError::Failed(e.to_string())
}

#[async_trait]
impl SubscriptionSeam for GraphSubscriptions {
    async fn create_for_user(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let client = self.mailbox(tenant, user, access_token).await?;
        self.create_with(tenant, user, &client).await
    }

    async fn delete(
        &self,
        tenant: &TenantContext,
        subscription_id: &str,
        access_token: &Secret,
    ) -> Result<(), SubscriptionError> {
        let record = SubscriptionRecord::load(self.store.as_ref(), subscription_id)
            .await
            .map_err(|e| SubscriptionError::Failed(e.to_string()))?;
        let client = match &record {
            Some(r) => self.mailbox(tenant, &r.user, access_token).await?,
            // Unknown to us: still ask Graph, throttled under the subscription's own key.
            None => self
                .graph
                .mailbox(Mailbox::me(subscription_id), access_token.clone()),
        };
        client
            .delete_subscription(subscription_id)
            .await
            .map_err(failed)?;
        SubscriptionRecord::delete(self.store.as_ref(), subscription_id)
            .await
            .map_err(|e| SubscriptionError::Failed(e.to_string()))
    }

    async fn renew(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        subscription_id: &str,
        access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let client = self.mailbox(tenant, user, access_token).await?;
        let renewed = client
            .renew_subscription(subscription_id, self.expiry()?)
            .await
            .map_err(failed)?;
        let expires_at = parse_graph_instant(&renewed.expiration_date_time).ok_or_else(|| {
            SubscriptionError::Failed("Graph returned an unreadable expiry".into())
        })?;
        if let Some(mut record) = SubscriptionRecord::load(self.store.as_ref(), subscription_id)
            .await
            .map_err(|e| SubscriptionError::Failed(e.to_string()))?
        {
            record.expires_at = expires_at;
            record
                .save(self.store.as_ref())
                .await
                .map_err(|e| SubscriptionError::Failed(e.to_string()))?;
        }
        let created = CreatedSubscription {
            id: subscription_id.to_owned(),
            expires_at,
        };
        self.note_on_user(tenant, user, &created).await;
        Ok(created)
    }

    async fn reauthorize(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        subscription_id: &str,
        access_token: &Secret,
    ) -> Result<(), SubscriptionError> {
        let client = self.mailbox(tenant, user, access_token).await?;
        client
            .reauthorize_subscription(subscription_id)
            .await
            .map_err(failed)
    }

    async fn recreate(
        &self,
        tenant: &TenantContext,
        user: &CrmUserName,
        old_subscription_id: Option<&str>,
        access_token: &Secret,
    ) -> Result<CreatedSubscription, SubscriptionError> {
        let client = self.mailbox(tenant, user, access_token).await?;
        if let Some(old) = old_subscription_id {
            // Usually already gone (subscriptionRemoved); a leftover would double notifications.
            if let Err(e) = client.delete_subscription(old).await {
                tracing::warn!(subscription = %old, error = %e, "old subscription not deleted; it lapses on its own");
            }
            if let Err(e) = SubscriptionRecord::delete(self.store.as_ref(), old).await {
                tracing::warn!(subscription = %old, error = %e, "old subscription record not deleted");
            }
        }
        let created = self.create_with(tenant, user, &client).await?;
        self.note_on_user(tenant, user, &created).await;
        Ok(created)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip() {
        let at: Timestamp = "2026-05-01T10:20:30.123Z".parse().unwrap();
        assert_eq!(graph_instant(at), "2026-05-01T10:20:30Z");
        assert_eq!(
            parse_graph_instant("2022-01-01T21:42:18.2257768Z"),
            Some(1_641_073_338)
        );
        assert_eq!(
            parse_graph_instant("2019-09-18T00:52:45.9696658+00:00"),
            Some(1_568_767_965)
        );
        assert_eq!(parse_graph_instant("soon"), None);
    }
}
