//! `calsync-webhook`: receives Microsoft Graph change and lifecycle notifications (Lambda
//! Function URL) and turns them into sync jobs. The work lives in `calsync::webhook`.

use calsync::lambda_web::{body_too_large, to_lambda_response, to_web_request};
use calsync::web::WebResponse;
use calsync::{App, Config};
use lambda_http::{run, service_fn, Body, Error, Request, Response};

async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    let response = if body_too_large(&request, calsync::webhook::MAX_BODY_BYTES) {
        WebResponse::text(413, "")
    } else {
        calsync::webhook::handle(app, &to_web_request(&request)).await
    };
    Ok(to_lambda_response(response)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    calsync::telemetry::init(true);
    let app = App::from_config(Config::from_env()?).await?;
    let app = &app;
    run(service_fn(move |request: Request| handle(app, request))).await
}
