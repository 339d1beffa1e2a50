//! `calsync-auth`: the hosted endpoint the CRM sends a user to (Lambda Function URL). Builds
//! the app once per container and serves the auth routes (`calsync::entry::auth`).

use calsync::{App, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    calsync::telemetry::init();
    let app = App::from_config(Config::from_env()?).await?;
    lambda_http::run(calsync::entry::auth::router(app)).await
}
