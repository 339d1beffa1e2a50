//! Test support for the Graph client: a sandbox with one tenant, app and user, real tokens
//! obtained through calsync's own identity client, and a Graph client pointed at the sandbox.
use std::time::Duration;

use calsync::adapters::graph::{GraphClient, GraphSettings, Mailbox, MailboxClient};
use calsync::adapters::identity::{AppRegistration, ClientCredential, Identity};
use calsync_core::secret::Secret;
use calsync_sandbox::Sandbox;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use url::Url;

pub const TENANT: &str = "0c6f6c2e-7a1b-4f4e-9b1d-3c2a5e8f9d10";
pub const CLIENT_ID: &str = "7e1d2c3b-4a5f-4e6d-8c7b-9a0f1e2d3c4b";
pub const CLIENT_SECRET: &str = "graph-tests-secret";
pub const REDIRECT: &str = "https://auth.calsync.test/callback";
pub const USER_OID: &str = "4d3c2b1a-0f9e-4d8c-b7a6-5f4e3d2c1b0a";
pub const USER_EMAIL: &str = "lucia@contoso.test";

pub struct Harness {
    pub sandbox: Sandbox,
    pub graph: GraphClient,
    pub user_token: Secret,
    pub app_token: Secret,
}

/// Settings for tests: short timeouts and backoff so retries are quick.
pub fn test_settings(base: &str) -> GraphSettings {
    let mut settings = GraphSettings::new(Url::parse(base).expect("sandbox URL"));
    settings.timeout = Duration::from_secs(2);
    settings.backoff_base = Duration::from_millis(50);
    settings.max_backoff = Duration::from_millis(400);
    settings
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tune: impl FnOnce(&mut GraphSettings)) -> Self {
        let sandbox = Sandbox::start().await.expect("sandbox starts");
        let identity = sandbox.identity();
        identity.add_tenant(TENANT);
        identity
            .add_app(TENANT, CLIENT_ID, CLIENT_SECRET, &[REDIRECT])
            .expect("app");
        identity
            .add_user(TENANT, USER_OID, USER_EMAIL, "Lucía Pérez")
            .expect("user");
        identity
            .set_auto_approve(TENANT, Some(USER_EMAIL))
            .expect("auto approve");
        identity
            .grant_admin_consent(TENANT, CLIENT_ID)
            .expect("consent");

        let client_secret = Secret::new(CLIENT_SECRET);
        let app = AppRegistration {
            directory: TENANT,
            authority: TENANT,
            client_id: CLIENT_ID,
            credential: ClientCredential::Secret(&client_secret),
        };
        let tokens = Identity::new(
            Url::parse(&sandbox.base_url()).expect("URL"),
            Duration::from_secs(5),
        )
        .expect("token service");
        let start = tokens
            .authorize_url(app, REDIRECT, "state-1", None)
            .expect("authorize URL");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http");
        let answer = http
            .get(start.url.as_str())
            .send()
            .await
            .expect("authorize");
        let location = answer
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("redirect with a code")
            .to_owned();
        let code = Url::parse(&location)
            .expect("redirect URL")
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code");
        let user_token = tokens
            .redeem_code(app, REDIRECT, &code, &start.pkce_verifier)
            .await
            .expect("code redeemed")
            .access_token;
        let app_token = tokens.app_token(app).await.expect("app token");

        let mut settings = test_settings(&sandbox.base_url());
        tune(&mut settings);
        let graph = GraphClient::new(settings).expect("client");
        Self {
            sandbox,
            graph,
            user_token,
            app_token,
        }
    }

    /// The user's own mailbox with their delegated token (`/me`).
    pub fn me(&self) -> MailboxClient {
        self.graph
            .mailbox(Mailbox::me(USER_OID), self.user_token.clone())
    }

    /// The same mailbox with the app-only token (`/users/{oid}`).
    pub fn as_app(&self) -> MailboxClient {
        self.graph
            .mailbox(Mailbox::user(USER_OID), self.app_token.clone())
    }

    pub fn graph_sandbox(&self) -> &calsync_sandbox::Graph {
        self.sandbox.graph()
    }
}

/// Now, rounded to the hour, plus `hours`.
pub fn hours_from_now(hours: i64) -> Timestamp {
    let now = Timestamp::now().as_second();
    Timestamp::from_second(now - now % 3600 + hours * 3600).expect("valid time")
}

pub fn days(n: i64) -> SignedDuration {
    SignedDuration::from_hours(24 * n)
}

/// A Graph event body in UTC.
pub fn event_body(subject: &str, start: Timestamp, minutes: i64) -> Value {
    let end = start + SignedDuration::from_mins(minutes);
    json!({
        "subject": subject,
        "body": {"contentType": "html", "content": format!("<p>About {subject}</p>")},
        "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S").to_string(), "timeZone": "UTC"},
        "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S").to_string(), "timeZone": "UTC"},
    })
}
