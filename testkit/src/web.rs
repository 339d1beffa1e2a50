//! Requests to calsync's routers in process, the way Lambda hands them over: the auth and
//! webhook `Router`s driven with `tower::ServiceExt::oneshot`, answers read whole.

use axum::body::Body;
use axum::http::Request;
use calsync::App;
use tower::ServiceExt;

/// One request to a router.
#[derive(Debug, Clone, Default)]
pub struct WebRequest {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A router's answer, read whole.
#[derive(Debug, Clone)]
pub struct WebResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl WebResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The query as a browser sends it: characters a URI cannot hold raw (`<`, a space…) are
/// percent-encoded, the rest is left as the test wrote it.
fn uri_safe(query: &str) -> String {
    let mut out = String::with_capacity(query.len());
    for byte in query.bytes() {
        if byte.is_ascii_graphic() && !b"<>\"{}|\\^`".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

async fn send(router: axum::Router, request: &WebRequest) -> WebResponse {
    let uri = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, uri_safe(&request.query))
    };
    let mut builder = Request::builder().method(request.method.as_str()).uri(uri);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    let built = builder
        .body(Body::from(request.body.clone()))
        .expect("a valid test request");
    let response = router.oneshot(built).await.expect("routers do not fail");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a readable body");
    WebResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// One request to the auth function's router.
pub async fn auth(app: &App, request: &WebRequest) -> WebResponse {
    send(calsync::entry::auth::router(app.clone()), request).await
}

/// One request to the webhook function's router.
pub async fn webhook(app: &App, request: &WebRequest) -> WebResponse {
    send(calsync::entry::webhook::router(app.clone()), request).await
}
