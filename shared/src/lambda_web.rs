//! Lambda Function URL events to `web` types and back, shared by the auth and webhook functions.

use lambda_http::{Body, Request, Response};

use crate::web::{WebRequest, WebResponse};

pub fn to_web_request(request: &Request) -> WebRequest {
    let body = match request.body() {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.as_bytes().to_vec(),
        Body::Binary(bytes) => bytes.clone(),
        _ => Vec::new(),
    };
    WebRequest {
        method: request.method().as_str().to_owned(),
        path: request.uri().path().to_owned(),
        query: request.uri().query().unwrap_or("").to_owned(),
        headers: crate::web::header_pairs(
            request
                .headers()
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_bytes())),
        ),
        body,
    }
}

/// True when the request's body is over `limit` bytes (checked before anything parses it;
/// Function URLs themselves accept up to 6 MB).
pub fn body_too_large(request: &Request, limit: usize) -> bool {
    match request.body() {
        Body::Text(text) => text.len() > limit,
        Body::Binary(bytes) => bytes.len() > limit,
        _ => false,
    }
}

pub fn to_lambda_response(
    response: WebResponse,
) -> Result<Response<Body>, lambda_http::http::Error> {
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(Body::Text(response.body))
}
