//! `calsync-sync`: scheduled dispatch rounds and SQS batches of sync jobs
//! (`calsync::entry::jobs`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use calsync::{App, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    // The context gives the invocation's end as epoch milliseconds.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    let deadline = Instant::now().checked_add(left);
    Ok(calsync::entry::jobs::handle_event(app, event.payload, deadline).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    calsync::telemetry::init();
    let app = App::from_config(Config::from_env()?).await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| {
        handle(app, event)
    }))
    .await
}
