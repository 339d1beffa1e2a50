//! `calsync-sync`: not built yet. It starts, and fails every invocation with a clear message,
//! so a deployment that routes events here learns at once that this function is missing.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

async fn handle(_event: LambdaEvent<Value>) -> Result<Value, Error> {
    Err("calsync-sync is not implemented yet".into())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    calsync::telemetry::init(true);
    run(service_fn(handle)).await
}
