//! calsync-sandbox: faithful, in-memory stand-ins for the services calsync talks to, served by
//! one local HTTP server.
//!
//! Each stand-in contributes a router and a shared state handle: the Microsoft identity
//! platform ([`identity`]), Microsoft Graph ([`graph`]) and a vtiger CRM ([`vtiger`]).

pub mod desk;
pub mod graph;
pub mod identity;
pub mod subscriber;
mod support;
pub mod vtiger;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use graph::{
    Delivery, DeliveryKind, DeltaExpiry, DeltaQuirks, FaultRate, FaultRoute, FaultRule, Graph,
    GraphControlError, GraphFault, LifecycleEvent, MailboxCounters, RequestRecord,
    SubscriptionInfo,
};
pub use identity::{
    AccessTokenInfo, AppRegistration, AuthorizeRequest, ControlError, DemoTenant, Identity,
    IdentitySeed, TenantSeed, TokenErrorBody, TokenFault, TokenRequestCounts, UserAccount,
};

/// How long `shutdown` lets in-flight requests finish (a stalled token fault, say).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A seed file: one section per part. Unknown sections are ignored, so a file written for a
/// newer sandbox still loads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSeed {
    #[serde(default)]
    pub identity: IdentitySeed,
}

/// A running sandbox server on a loopback port. Dropping it stops the server.
pub struct Sandbox {
    base_url: String,
    local_addr: SocketAddr,
    identity: Identity,
    graph: Graph,
    crm: vtiger::VtigerState,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

impl Sandbox {
    /// Starts on a free port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await
    }

    /// Starts on the given address, which must be a loopback address: the sandbox hands out
    /// tokens to anyone who asks and must not be reachable from the network.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<Self> {
        if !addr.ip().is_loopback() {
            bail!("the sandbox only listens on loopback addresses, not {addr}");
        }
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the sandbox to {addr}"))?;
        let local_addr = listener
            .local_addr()
            .context("reading the sandbox's bound address")?;
        let base_url = format!("http://{local_addr}");
        let identity = Identity::new(base_url.clone());
        let graph = Graph::new(base_url.clone(), identity.clone());
        let crm = vtiger::VtigerState::new();
        // Connection info lets the Graph part tell connections apart (a 503 spoils one).
        let app =
            routes(&identity, &graph, &crm).into_make_service_with_connect_info::<SocketAddr>();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // Either a stop signal or the Sandbox being dropped ends the server.
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%base_url, "sandbox listening");
        Ok(Sandbox {
            base_url,
            local_addr,
            identity,
            graph,
            crm,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash. It serves as the Microsoft login
    /// authority and, later, as the Graph and CRM base URLs.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The Microsoft Graph stand-in, serving `{base_url}/v1.0/...`.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The vtiger CRM stand-in, serving `{base_url}/webservice.php`.
    pub fn crm(&self) -> &vtiger::VtigerState {
        &self.crm
    }

    /// The page where a person edits sandbox Outlook and CRM events by hand.
    pub fn calendars_url(&self) -> String {
        format!("{}{}", self.base_url, desk::DESK_PATH)
    }

    pub fn apply_seed(&self, seed: &SandboxSeed) -> Result<(), ControlError> {
        self.identity.apply_seed(&seed.identity)
    }

    /// Stops accepting connections and waits briefly for in-flight requests.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
            Ok(joined) => joined
                .context("the sandbox server task failed")?
                .context("the sandbox server stopped with an error"),
            Err(_) => {
                server.abort();
                Ok(())
            }
        }
    }
}

/// Every part's routes on one router. Parts must not claim the same path: axum panics on
/// overlapping routes when merging. Graph owns everything under `/v1.0`.
fn routes(identity: &Identity, graph: &Graph, crm: &vtiger::VtigerState) -> Router {
    Router::new()
        .merge(identity::router(identity.clone()))
        .merge(graph::router(graph.clone()))
        .merge(vtiger::router(crm.clone()))
        .merge(desk::router(graph.clone(), crm.clone()))
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
