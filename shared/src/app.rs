//! The composition root: everything an entry point needs, built once per container from the
//! configuration — the storage, secret and queue adapters of the chosen backend, the Graph
//! client and Microsoft sign-in, and the services on top of them.

use std::sync::Arc;

use crate::adapters::graph::{GraphClient, GraphError, GraphSettings};
use crate::adapters::identity::{Identity, IdentityError};
use crate::adapters::queue::{JobQueue, QueueError, ReceivedJob, SqsQueue, SyncJob};
use crate::adapters::secret_store::{SecretStore, SecretsManagerStore};
use crate::adapters::store::{DynamoStore, ItemStore};
use crate::config::{Backend, Config};
use crate::services::subscriptions::Subscriptions;
use crate::services::sweeps::Sweeps;
use crate::services::sync_run::SyncRunner;
use crate::services::tenants::Tenants;
use crate::services::tokens::Tokens;
use crate::services::users::Users;

#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub store: Arc<dyn ItemStore>,
    pub secret_store: Arc<dyn SecretStore>,
    pub queue: Arc<dyn JobQueue>,
    pub graph: GraphClient,
    pub tenants: Tenants,
    pub users: Users,
    pub tokens: Tokens,
    pub subscriptions: Subscriptions,
    pub sweeps: Sweeps,
    pub runner: SyncRunner,
}

/// Why the app could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("the Graph client could not be built")]
    Graph(#[from] GraphError),
    #[error("the Microsoft sign-in client could not be built")]
    Identity(#[from] IdentityError),
    #[error("the embedded store could not be opened")]
    Embedded(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("CALSYNC_BACKEND=embedded needs a build with the `embedded` feature (the CLI has it)")]
    EmbeddedNotBuilt,
}

/// The queue when none is configured: every send fails with a clear reason.
struct UnconfiguredQueue;

#[async_trait::async_trait]
impl JobQueue for UnconfiguredQueue {
    async fn send(&self, _jobs: &[SyncJob]) -> Result<(), QueueError> {
        Err(QueueError::NotConfigured("set CALSYNC_QUEUE_URL"))
    }
    async fn receive(
        &self,
        _max: usize,
        _wait: std::time::Duration,
    ) -> Result<Vec<ReceivedJob>, QueueError> {
        Err(QueueError::NotConfigured("set CALSYNC_QUEUE_URL"))
    }
    async fn ack(&self, _receipt: &str) -> Result<(), QueueError> {
        Err(QueueError::NotConfigured("set CALSYNC_QUEUE_URL"))
    }
}

impl App {
    pub async fn from_config(config: Config) -> Result<Self, AppError> {
        match &config.backend {
            Backend::Aws => {
                let sdk = crate::adapters::aws::sdk_config().await;
                let store =
                    DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
                let secrets = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk));
                let queue: Arc<dyn JobQueue> = match &config.queue_url {
                    Some(url) => {
                        Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url.clone()))
                    }
                    None => Arc::new(UnconfiguredQueue),
                };
                Self::with_parts(config, Arc::new(store), Arc::new(secrets), queue)
            }
            #[cfg(feature = "embedded")]
            Backend::Embedded { data_dir } => {
                use crate::adapters::queue::MemoryQueue;
                use crate::adapters::secret_store::LocalSecretStore;
                use crate::adapters::store::SqliteStore;
                let db = data_dir.join("calsync.sqlite");
                let store = SqliteStore::open(&db).map_err(|e| AppError::Embedded(Box::new(e)))?;
                let secrets =
                    LocalSecretStore::open(&db).map_err(|e| AppError::Embedded(Box::new(e)))?;
                Self::with_parts(
                    config,
                    Arc::new(store),
                    Arc::new(secrets),
                    Arc::new(MemoryQueue::default()),
                )
            }
            #[cfg(not(feature = "embedded"))]
            Backend::Embedded { .. } => Err(AppError::EmbeddedNotBuilt),
        }
    }

    /// Assembles an app from given adapters (tests, `calsync serve`).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn ItemStore>,
        secret_store: Arc<dyn SecretStore>,
        queue: Arc<dyn JobQueue>,
    ) -> Result<Self, AppError> {
        let identity = Identity::new(config.login_url.clone(), config.http_timeout)?;
        let graph = GraphClient::new(GraphSettings::from_config(&config))?;
        let tenants = Tenants::new(
            store.clone(),
            secret_store.clone(),
            config.secret_prefix.clone(),
        );
        let users = Users::new(store.clone());
        let tokens = Tokens::new(identity, users.clone(), tenants.clone());
        // Push needs somewhere for Graph to push to; without it users sync on schedule only.
        let subscriptions = Subscriptions::new(
            graph.clone(),
            store.clone(),
            users.clone(),
            tokens.clone(),
            config.webhook_url.clone(),
            config.subscription_lifetime,
        );
        let runner = SyncRunner::new(
            store.clone(),
            users.clone(),
            tokens.clone(),
            graph.clone(),
            config.http_timeout,
        );
        Ok(Self {
            sweeps: Sweeps::new(store.clone()),
            config,
            store,
            secret_store,
            queue,
            graph,
            tenants,
            users,
            tokens,
            subscriptions,
            runner,
        })
    }
}

impl App {
    /// Removes a tenant and everything calsync keeps for it: each user's Graph subscription (at
    /// Graph while a token can be had — it lapses on its own otherwise — and always in the
    /// records), each user's links and journal, then the tenant's settings, users, account
    /// index and secret. `false` when there was no such tenant.
    pub async fn remove_tenant(
        &self,
        tenant: &calsync_core::ids::TenantId,
    ) -> Result<bool, crate::services::tenants::TenantError> {
        let users = self.users.list(tenant).await?;
        let context = self.tenants.context(tenant).await.ok();
        for user in &users {
            if let Some(context) = &context {
                self.subscriptions.drop_for(context, user).await;
            }
            let forgotten =
                crate::services::sync_run::LinkStore::new(self.store.as_ref(), tenant, &user.user)
                    .forget_all()
                    .await?;
            tracing::info!(%tenant, user = %user.user, forgotten, "user's sync records deleted");
        }
        self.tenants.remove(tenant).await
    }
}
