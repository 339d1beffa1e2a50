//! `calsync-sync`: scheduled dispatch rounds and SQS batches of sync jobs. The work lives in
//! `calsync::jobs`.

use calsync::{App, Config};
use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handle(app: &App, event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(calsync::jobs::handle_event(app, &event.payload).await?)
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
