//! `calsync-auth`: the hosted endpoint the CRM sends a user to (Lambda Function URL).
//! Parses the event, calls `calsync::auth`, shapes the reply; nothing else lives here.

use calsync::lambda_web::{body_too_large, to_lambda_response, to_web_request};
use calsync::web::WebResponse;
use calsync::{App, Config};
use lambda_http::{run, service_fn, Body, Error, Request, Response};

async fn handle(app: &App, request: Request) -> Result<Response<Body>, Error> {
    // The auth routes take small forms at most.
    let response = if body_too_large(&request, 16 * 1024) {
        WebResponse::text(413, "request body too large")
    } else {
        calsync::auth::handle(app, &to_web_request(&request)).await
    };
    Ok(to_lambda_response(response)?)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    calsync::telemetry::init(true);
    // Built once per container; every invocation borrows it.
    let app = App::from_config(Config::from_env()?).await?;
    let app = &app;
    run(service_fn(move |request: Request| handle(app, request))).await
}
