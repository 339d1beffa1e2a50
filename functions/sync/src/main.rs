//! `calsync-sync`: scheduled dispatch rounds and SQS batches of sync jobs. The work lives in
//! `calsync::jobs`.

use calsync::{App, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    // The context gives the invocation's end as epoch milliseconds.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let left = std::time::Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
    let deadline = std::time::Instant::now().checked_add(left);
    Ok(calsync::jobs::handle_event(app, &event.payload, deadline).await?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    calsync::telemetry::init(true);
    let app = App::from_config(Config::from_env()?).await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| {
        handle(app, event)
    }))
    .await
}
