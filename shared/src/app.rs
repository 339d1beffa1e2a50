//! Everything a function needs, built once per container from the configuration: the storage,
//! secret and queue adapters for the chosen backend, the tenants, the token service, the Graph
//! client and the subscription seam.

use std::sync::Arc;

use crate::config::{Backend, Config};
use crate::graph::{GraphClient, GraphSettings, GraphSubscriptions};
use crate::queue::{JobQueue, MemoryQueue, QueueError, SqsQueue, SyncJob};
use crate::secrets::{LocalSecretStore, SecretStore, SecretsManagerStore};
use crate::store::{DynamoStore, ItemStore, SqliteStore};
use crate::subscription::{NoSubscriptions, SubscriptionSeam};
use crate::tenant::Tenants;
use crate::token::TokenService;

#[derive(Clone)]
pub struct App {
    pub config: Config,
    pub store: Arc<dyn ItemStore>,
    pub secrets: Arc<dyn SecretStore>,
    pub queue: Arc<dyn JobQueue>,
    pub tenants: Tenants,
    pub tokens: TokenService,
    pub graph: GraphClient,
    pub subscriptions: Arc<dyn SubscriptionSeam>,
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
    ) -> Result<Vec<crate::queue::ReceivedJob>, QueueError> {
        Err(QueueError::NotConfigured("set CALSYNC_QUEUE_URL"))
    }
    async fn ack(&self, _receipt: &str) -> Result<(), QueueError> {
        Err(QueueError::NotConfigured("set CALSYNC_QUEUE_URL"))
    }
}

impl App {
    pub async fn from_config(config: Config) -> anyhow::Result<Self> {
        let (store, secrets, queue): (Arc<dyn ItemStore>, Arc<dyn SecretStore>, Arc<dyn JobQueue>) =
            match &config.backend {
                Backend::Aws => {
                    let sdk =
                        aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                    let store =
                        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.table.clone());
                    let secrets =
                        SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk));
                    let queue: Arc<dyn JobQueue> = match &config.queue_url {
                        Some(url) => {
                            Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), url.clone()))
                        }
                        None => Arc::new(UnconfiguredQueue),
                    };
                    (Arc::new(store), Arc::new(secrets), queue)
                }
                Backend::Embedded { data_dir } => {
                    let db = data_dir.join("calsync.sqlite");
                    (
                        Arc::new(SqliteStore::open(&db)?),
                        Arc::new(LocalSecretStore::open(&db)?),
                        Arc::new(MemoryQueue::default()),
                    )
                }
            };
        Self::with_parts(config, store, secrets, queue)
    }

    /// Assembles an app from given adapters (tests, `calsync serve`).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn ItemStore>,
        secrets: Arc<dyn SecretStore>,
        queue: Arc<dyn JobQueue>,
    ) -> anyhow::Result<Self> {
        let tokens = TokenService::new(config.login_url.clone(), config.http_timeout)?;
        let tenants = Tenants::new(store.clone(), secrets.clone(), config.secret_prefix.clone());
        let graph = GraphClient::new(GraphSettings::from_config(&config))?;
        // Push needs somewhere for Graph to push to; without it users sync on schedule only.
        let subscriptions: Arc<dyn SubscriptionSeam> = match &config.webhook_url {
            Some(url) => Arc::new(GraphSubscriptions::new(
                graph.clone(),
                store.clone(),
                url.clone(),
                config.subscription_lifetime,
            )),
            None => Arc::new(NoSubscriptions),
        };
        Ok(Self {
            config,
            store,
            secrets,
            queue,
            tenants,
            tokens,
            graph,
            subscriptions,
        })
    }
}
