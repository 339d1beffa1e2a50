//! Benchmark: the webhook handler's own work for one request of 100 notifications for one
//! user — parse, look up the subscription, check clientState, collapse, hand the job over —
//! with the queue call excluded (an in-process queue) and the store in memory. The handler is
//! the route's own function (`entry::webhook::receive`), without the router around it.
//! Run: `cargo run --release -p calsync-tests --bin bench-webhook`

use calsync::adapters::queue::{JobQueue, MemoryQueue};
use calsync::adapters::secret_store::LocalSecretStore;
use calsync::adapters::store::SqliteStore;
use calsync::crypto::sha256_hex;
use calsync::services::subscriptions::SubscriptionRecord;
use calsync::{App, Config};
use calsync_core::ids::{CrmUserName, TenantId};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNS: usize = 2000;

fn body() -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..100)
        .map(|n| {
            serde_json::json!({
                "subscriptionId": "0fd6d6a0-6b4f-4b2e-9d0c-1a2b3c4d5e6f",
                "subscriptionExpirationDateTime": "2026-12-01T10:00:00.000Z",
                "changeType": "updated",
                "clientState": "the-client-state",
                "resource": format!("Users/9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d/Events/AAMkADAwATM0MDAAMS1iNmFmLTA{n:04}AAA="),
                "tenantId": "6e3c2f1a-8d4b-4c3e-9f2a-1b5d7c9e0a11",
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": format!("Users/9a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d/Events/AAMkADAwATM0MDAAMS1iNmFmLTA{n:04}AAA="),
                    "@odata.etag": "W/\"DwAAABYAAAAVf1pHzW5LTqmvNjbnb3a8AAAC7vHG\"",
                    "id": format!("AAMkADAwATM0MDAAMS1iNmFmLTA{n:04}AAA=")
                }
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({ "value": items })).unwrap_or_default()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p) as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let store = Arc::new(SqliteStore::in_memory()?);
    let queue = Arc::new(MemoryQueue::default());
    let app = App::with_parts(
        Config::from_lookup(|_| None)?,
        store.clone(),
        Arc::new(LocalSecretStore::in_memory()?),
        queue.clone(),
    )?;
    let record = SubscriptionRecord {
        id: "0fd6d6a0-6b4f-4b2e-9d0c-1a2b3c4d5e6f".into(),
        tenant: TenantId::parse("acme")?,
        user: CrmUserName::parse("maria")?,
        client_state_hash: sha256_hex("the-client-state"),
        expires_at: i64::MAX / 2,
        created_at: 0,
    };
    calsync_testkit::testbed::put_subscription(&app, &record).await?;
    let body = body();

    let mut parse = Vec::with_capacity(RUNS);
    let mut whole = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        let parsed = calsync::adapters::graph::notifications::parse_collection(&body)?;
        parse.push(started.elapsed());
        assert_eq!(parsed.len(), 100);

        let started = Instant::now();
        let response = calsync::entry::webhook::receive(&app, "", &body).await;
        whole.push(started.elapsed());
        assert_eq!(response.status(), 202);
        // Keep the queue empty between runs (not timed).
        for job in queue.receive(10, Duration::ZERO).await? {
            queue.ack(&job.receipt).await?;
        }
    }
    println!(
        "webhook, 100 notifications for one user, {RUNS} runs, {} bytes",
        body.len()
    );
    println!(
        "  parse only:      median {:>8.1?}  p90 {:>8.1?}",
        median(parse.clone()),
        percentile(parse, 0.9)
    );
    println!(
        "  handler (whole): median {:>8.1?}  p90 {:>8.1?}",
        median(whole.clone()),
        percentile(whole, 0.9)
    );
    Ok(())
}
