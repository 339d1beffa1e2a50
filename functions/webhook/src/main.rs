//! `calsync-webhook`: receives Microsoft Graph change and lifecycle notifications (Lambda
//! Function URL) and turns them into sync jobs (`calsync::entry::webhook`).

use calsync::{App, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    calsync::telemetry::init();
    let app = App::from_config(Config::from_env()?).await?;
    lambda_http::run(calsync::entry::webhook::router(app)).await
}
