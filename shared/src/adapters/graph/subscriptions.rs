//! Graph's change-notification subscription calls: create, renew, reauthorize, delete. Which
//! user gets which subscription, and what calsync remembers of it, is `services::subscriptions`.

use jiff::Timestamp;
use reqwest::Method;

use super::client::{to_json_body, MailboxClient, RequestSpec, PREFER_IMMUTABLE_IDS};
use super::error::GraphError;
use super::types::{NewSubscription, Subscription};

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
pub fn graph_instant(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Epoch seconds of an instant Graph returned.
pub fn parse_graph_instant(text: &str) -> Option<i64> {
    text.parse::<Timestamp>().ok().map(|t| t.as_second())
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
