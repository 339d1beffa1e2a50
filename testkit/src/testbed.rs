//! A test bed for calsync: the sandbox (Microsoft identity), moto (DynamoDB, Secrets Manager,
//! SQS FIFO) and one tenant set up the way an operator would, with unique names so tests share
//! one emulator without interfering.

use anyhow::{anyhow, Context, Result};
use calsync::adapters::queue::SqsQueue;
use calsync::adapters::secret_store::SecretsManagerStore;
use calsync::adapters::store::DynamoStore;
use calsync::crypto::random_token;
use calsync::services::tenants::{TenantSecret, TenantSettings};
pub use calsync::signed_url::LinkRoute;
use calsync::signed_url::SignedUrl;
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use calsync_sandbox::Sandbox;
use std::sync::Arc;

pub use crate::moto::{aws_config, aws_endpoint, create_fifo_queue, unique};
use crate::web::{WebRequest, WebResponse};

pub const AZURE_TENANT: &str = "6e3c2f1a-8d4b-4c3e-9f2a-1b5d7c9e0a11";
pub const CLIENT_ID: &str = "2b8f4e6a-1c3d-4e5f-8a9b-0c1d2e3f4a5b";
pub const CLIENT_SECRET: &str = "sandbox-client-secret-value";
pub const USER_OID: &str = "9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
pub const USER_EMAIL: &str = "maria.garcia@acme.example";
pub const PUBLIC_URL: &str = "https://auth.calsync.test";
pub const CRM_URL: &str = "https://crm.acme.test";
pub const CRM_USER: &str = "maria";

pub struct TestBed {
    pub sandbox: Sandbox,
    pub app: App,
    pub sdk: aws_config::SdkConfig,
    pub table: String,
    pub secret_prefix: String,
    pub queue_url: String,
    pub tenant: TenantId,
    pub user: CrmUserName,
    pub link_key: Secret,
    /// `CALSYNC_WEBHOOK_URL`, when the bed was started with one.
    pub webhook_url: Option<String>,
}

/// How to build a bed's App, beyond the defaults: for tests that watch the AWS calls.
#[derive(Default, Clone)]
pub struct BedOptions {
    /// `CALSYNC_WEBHOOK_URL`, so connecting creates a Graph subscription.
    pub webhook_url: Option<String>,
    /// The DynamoDB client the App uses (default: a plain client on [`crate::moto::aws_config()`]).
    pub dynamodb: Option<aws_sdk_dynamodb::Client>,
    /// The Secrets Manager client the App uses (default: a plain client on [`crate::moto::aws_config()`]).
    pub secretsmanager: Option<aws_sdk_secretsmanager::Client>,
}

/// The calsync side of a bed: an App on moto (table, queue, secrets) with one tenant whose
/// Microsoft identity and Graph are the sandbox at `sandbox_url` (in this process or not).
pub struct CalsyncSide {
    pub app: App,
    pub sdk: aws_config::SdkConfig,
    pub table: String,
    pub secret_prefix: String,
    pub queue_url: String,
    pub tenant: TenantId,
    pub link_key: Secret,
}

impl CalsyncSide {
    pub async fn start(sandbox_url: &str, options: &BedOptions) -> Result<Self> {
        let sdk = aws_config().await?;
        let table = unique("calsync");
        let secret_prefix = format!("{}/", unique("calsync"));
        let queue_url = create_fifo_queue(&sdk, &unique("calsync-jobs")).await?;
        let webhook_url = options.webhook_url.clone();
        let config = Config::from_lookup(|name| match name {
            "CALSYNC_TABLE" => Some(table.clone()),
            "CALSYNC_SECRET_PREFIX" => Some(secret_prefix.clone()),
            "CALSYNC_QUEUE_URL" => Some(queue_url.clone()),
            "CALSYNC_PUBLIC_URL" => Some(PUBLIC_URL.to_owned()),
            "CALSYNC_LOGIN_URL" => Some(sandbox_url.to_owned()),
            "CALSYNC_GRAPH_URL" => Some(sandbox_url.to_owned()),
            "CALSYNC_HTTP_TIMEOUT_SECS" => Some("2".to_owned()),
            "CALSYNC_WEBHOOK_URL" => webhook_url.clone(),
            _ => None,
        })?;
        let dynamodb = options
            .dynamodb
            .clone()
            .unwrap_or_else(|| aws_sdk_dynamodb::Client::new(&sdk));
        let secretsmanager = options
            .secretsmanager
            .clone()
            .unwrap_or_else(|| aws_sdk_secretsmanager::Client::new(&sdk));
        let store = DynamoStore::new(dynamodb, table.clone());
        store.ensure_table().await?;
        let app = App::with_parts(
            config,
            Arc::new(store),
            Arc::new(SecretsManagerStore::new(secretsmanager)),
            Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(&sdk),
                queue_url.clone(),
            )),
        )?;
        let tenant = TenantId::parse(&unique("acme"))?;
        let link_key = Secret::new(random_token(32));
        let settings = TenantSettings::new(tenant.clone(), "Acme".into(), CRM_URL, now())?;
        let secret = sandbox_tenant_secret(CRM_URL, "admin", "crm-access-key", &link_key);
        app.tenants.add(&settings, &secret).await?;
        Ok(Self {
            app,
            sdk,
            table,
            secret_prefix,
            queue_url,
            tenant,
            link_key,
        })
    }

    /// Connects maria (see [`connect`]).
    pub async fn connect(&self) -> Result<WebResponse> {
        connect(&self.app, &self.tenant, &self.link_key).await
    }
}

/// A tenant's secret for the sandbox's Microsoft directory and app, a fresh token key, and the
/// CRM at `crm_url` reached as `crm_user` with `crm_key`.
pub fn sandbox_tenant_secret(
    crm_url: &str,
    crm_user: &str,
    crm_key: &str,
    link_key: &Secret,
) -> TenantSecret {
    let mut secret = TenantSecret::fresh(crm_url, crm_user, Secret::new(crm_key)).with_own_app(
        AZURE_TENANT,
        CLIENT_ID,
        Secret::new(CLIENT_SECRET),
        None,
    );
    secret.link_key = link_key.clone();
    secret
}

/// A signed link's query for `route` (connect, status, disconnect…).
pub fn link_query(
    tenant: &TenantId,
    link_key: &Secret,
    route: LinkRoute,
    user: Option<&str>,
    expires_in: i64,
    return_to: Option<&str>,
) -> String {
    let claims = SignedUrl {
        route,
        tenant: tenant.clone(),
        user: user.map(|u| CrmUserName::parse(u).expect("valid user name")),
        expires_at: now() + expires_in,
        return_to: return_to.map(str::to_owned),
    };
    let url = claims.url(&url::Url::parse(PUBLIC_URL).expect("valid URL"), link_key);
    url.split_once('?')
        .map(|(_, q)| q.to_owned())
        .unwrap_or_default()
}

/// One request to calsync's auth routes, as the auth function would take it.
pub async fn request(app: &App, method: &str, path: &str, query: &str) -> WebResponse {
    request_with_cookie(app, method, path, query, None).await
}

/// [`request`] from a browser that sends `cookie` (a `name=value` pair).
pub async fn request_with_cookie(
    app: &App,
    method: &str,
    path: &str,
    query: &str,
    cookie: Option<&str>,
) -> WebResponse {
    let mut headers = vec![("accept-language".to_owned(), "en".to_owned())];
    if let Some(cookie) = cookie {
        headers.push(("cookie".to_owned(), cookie.to_owned()));
    }
    crate::web::auth(
        app,
        &WebRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: Vec::new(),
        },
    )
    .await
}

/// The `name=value` of the cookie an answer sets, as a browser would send it back.
pub fn cookie_set_by(response: &WebResponse) -> Option<String> {
    response
        .header("set-cookie")
        .and_then(|value| value.split(';').next())
        .map(str::to_owned)
}

/// Connect maria, sign in at the sandbox and complete the callback; returns the callback's
/// response.
pub async fn connect(app: &App, tenant: &TenantId, link_key: &Secret) -> Result<WebResponse> {
    connect_user(app, tenant, link_key, CRM_USER).await
}

/// Connects CRM user `user` with whichever Microsoft account the sandbox auto-approves.
pub async fn connect_user(
    app: &App,
    tenant: &TenantId,
    link_key: &Secret,
    user: &str,
) -> Result<WebResponse> {
    let start = request(
        app,
        "GET",
        "/connect",
        &link_query(tenant, link_key, LinkRoute::Connect, Some(user), 600, None),
    )
    .await;
    let location = start
        .header("location")
        .with_context(|| format!("connect did not redirect: {} {}", start.status, start.body))?
        .to_owned();
    let cookie = cookie_set_by(&start).context("connect set no sign-in cookie")?;
    let query = sign_in(&location).await?;
    Ok(request_with_cookie(app, "GET", "/callback", &query, Some(&cookie)).await)
}

/// Sets up the sandbox's Microsoft identity: one Azure tenant, calsync's app, maria
/// (auto-approved).
pub fn seed_identity(sandbox: &Sandbox) -> Result<()> {
    let identity = sandbox.identity();
    identity.add_tenant(AZURE_TENANT);
    identity.add_app(
        AZURE_TENANT,
        CLIENT_ID,
        CLIENT_SECRET,
        &[
            &format!("{PUBLIC_URL}/callback"),
            &format!("{PUBLIC_URL}/admin-consent/callback"),
        ],
    )?;
    identity.add_user(AZURE_TENANT, USER_OID, USER_EMAIL, "María García")?;
    identity.set_auto_approve(AZURE_TENANT, Some(USER_EMAIL))?;
    Ok(())
}

/// Follows the authorize redirect at the sandbox and returns the query calsync's callback
/// receives (code and state, or an error).
pub async fn sign_in(authorize_url: &str) -> Result<String> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let response = client.get(authorize_url).send().await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .with_context(|| {
            format!(
                "the sandbox did not redirect (status {})",
                response.status()
            )
        })?;
    let callback = url::Url::parse(location)?;
    if !location.starts_with(&format!("{PUBLIC_URL}/")) {
        return Err(anyhow!("redirected somewhere unexpected: {callback}"));
    }
    Ok(callback.query().unwrap_or("").to_owned())
}

impl TestBed {
    /// maria's stored item, with its version.
    pub async fn stored_user(&self) -> Result<calsync::services::users::VersionedUser> {
        self.app
            .users
            .get(&self.tenant, &self.user)
            .await?
            .context("maria is not stored")
    }

    /// Everything up: sandbox with one Azure tenant, app and auto-approved user; a table, a
    /// queue and a calsync tenant in moto.
    pub async fn start() -> Result<Self> {
        Self::start_with(BedOptions::default()).await
    }

    /// The same, with `CALSYNC_WEBHOOK_URL` set, so connecting creates a Graph subscription.
    pub async fn start_with_webhook(webhook_url: Option<&str>) -> Result<Self> {
        Self::start_with(BedOptions {
            webhook_url: webhook_url.map(str::to_owned),
            ..BedOptions::default()
        })
        .await
    }

    /// Everything up, with the App built as `options` say.
    pub async fn start_with(options: BedOptions) -> Result<Self> {
        let sandbox = Sandbox::start().await?;
        seed_identity(&sandbox)?;
        let side = CalsyncSide::start(&sandbox.base_url(), &options).await?;
        Ok(Self {
            sandbox,
            app: side.app,
            sdk: side.sdk,
            table: side.table,
            secret_prefix: side.secret_prefix,
            queue_url: side.queue_url,
            tenant: side.tenant,
            user: CrmUserName::parse(CRM_USER)?,
            link_key: side.link_key,
            webhook_url: options.webhook_url,
        })
    }

    /// Environment for a function binary or the CLI pointed at this bed.
    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CALSYNC_TABLE", self.table.clone()),
            ("CALSYNC_SECRET_PREFIX", self.secret_prefix.clone()),
            ("CALSYNC_QUEUE_URL", self.queue_url.clone()),
            ("CALSYNC_PUBLIC_URL", PUBLIC_URL.to_owned()),
            ("CALSYNC_LOGIN_URL", self.sandbox.base_url()),
            ("CALSYNC_GRAPH_URL", self.sandbox.base_url()),
            ("CALSYNC_HTTP_TIMEOUT_SECS", "2".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "eu-west-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ];
        if let Ok(endpoint) = aws_endpoint() {
            env.push(("AWS_ENDPOINT_URL", endpoint));
        }
        if let Some(webhook) = &self.webhook_url {
            env.push(("CALSYNC_WEBHOOK_URL", webhook.clone()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    /// A signed link's query for `route` (connect, status, disconnect…).
    pub fn link_query(
        &self,
        route: LinkRoute,
        user: Option<&str>,
        expires_in: i64,
        return_to: Option<&str>,
    ) -> String {
        link_query(
            &self.tenant,
            &self.link_key,
            route,
            user,
            expires_in,
            return_to,
        )
    }

    pub async fn request(&self, method: &str, path: &str, query: &str) -> WebResponse {
        request(&self.app, method, path, query).await
    }

    /// The callback with `query`, from the browser that got `start` (the `/connect` answer
    /// that set the sign-in cookie).
    pub async fn callback(&self, start: &WebResponse, query: &str) -> WebResponse {
        let cookie = cookie_set_by(start);
        request_with_cookie(&self.app, "GET", "/callback", query, cookie.as_deref()).await
    }

    /// Follows the authorize redirect at the sandbox and returns the query calsync's callback
    /// receives (code and state, or an error).
    pub async fn sign_in(&self, authorize_url: &str) -> Result<String> {
        sign_in(authorize_url).await
    }

    /// Connect, sign in and complete the callback; returns the callback's response.
    pub async fn connect(&self) -> Result<WebResponse> {
        connect(&self.app, &self.tenant, &self.link_key).await
    }

    /// Every item of the table, as text, sorted: to compare storage before and after.
    pub async fn snapshot(&self) -> Result<Vec<String>> {
        crate::moto::table_snapshot(&self.sdk, &self.table).await
    }

    /// Jobs waiting on the queue, received and deleted (the test's view of what was enqueued).
    pub async fn take_jobs(&self) -> Result<Vec<(String, serde_json::Value)>> {
        let client = aws_sdk_sqs::Client::new(&self.sdk);
        let mut jobs = Vec::new();
        for _ in 0..3 {
            let out = client
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .wait_time_seconds(if jobs.is_empty() { 1 } else { 0 })
                .message_system_attribute_names(
                    aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId,
                )
                .send()
                .await?;
            if out.messages().is_empty() {
                break;
            }
            for message in out.messages() {
                let group = message
                    .attributes()
                    .and_then(|a| {
                        a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId)
                    })
                    .cloned()
                    .unwrap_or_default();
                jobs.push((
                    group,
                    serde_json::from_str(message.body().unwrap_or("null"))?,
                ));
                if let Some(receipt) = message.receipt_handle() {
                    client
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(receipt)
                        .send()
                        .await?;
                }
            }
        }
        Ok(jobs)
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the `calsync` CLI with only `env` (and PATH) in its environment, feeding `stdin`.
pub fn run_cli(
    args: &[&str],
    env: &[(String, String)],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::binary_path("calsync"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().cloned())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the calsync binary is built (cargo build --workspace)");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .expect("the CLI reads its stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("the CLI ran")
}

/// A query string's value for `name`.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Rewrites a stored user the way a test needs it (an expired subscription, an old run): the
/// test's hand on the table, bypassing the product's own operations on purpose.
pub async fn edit_user(
    app: &App,
    tenant: &TenantId,
    user: &CrmUserName,
    change: impl FnOnce(&mut calsync::services::users::UserRecord),
) -> Result<()> {
    use calsync::adapters::store::{record_to_item, Precondition};
    let current = app
        .users
        .get(tenant, user)
        .await?
        .context("the user is not stored")?;
    let mut record = current.record;
    change(&mut record);
    let (pk, sk) = calsync::services::users::item_key(tenant, user);
    let mut item = record_to_item(pk, sk, &record)?;
    item.version = current.version;
    app.store
        .put(&item, Precondition::Version(current.version))
        .await?;
    Ok(())
}

/// Stores a user record as is (a user the product never connected): see [`edit_user`].
pub async fn put_user(app: &App, record: &calsync::services::users::UserRecord) -> Result<()> {
    use calsync::adapters::store::{record_to_item, Precondition};
    let (pk, sk) = calsync::services::users::item_key(&record.tenant, &record.user);
    app.store
        .put(&record_to_item(pk, sk, record)?, Precondition::None)
        .await?;
    Ok(())
}

/// Stores a subscription record as is (one the product did not create): see [`edit_user`].
pub async fn put_subscription(
    app: &App,
    record: &calsync::services::subscriptions::SubscriptionRecord,
) -> Result<()> {
    use calsync::adapters::store::{record_to_item, Precondition};
    let (pk, sk) = calsync::services::subscriptions::item_key(&record.id);
    app.store
        .put(&record_to_item(pk, sk, record)?, Precondition::None)
        .await?;
    Ok(())
}
