//! The one HTML layout every page shares (the auth function's pages and `calsync serve`'s
//! status page), the headers every answer carries, and small presentation helpers. Pages are
//! `maud` templates: text is escaped by construction, only this module's own style sheet goes
//! in unescaped.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, PreEscaped, DOCTYPE};

/// What a page says about itself besides its body.
pub struct Layout<'a> {
    /// The `lang` of the document (`es`, `en`).
    pub lang: &'a str,
    /// Shown as the page's heading and in the window title.
    pub title: &'a str,
    /// Tables of data (the status page) want the whole width; a message does not.
    pub wide: bool,
    /// Reload the page every so many seconds.
    pub refresh_secs: Option<u32>,
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}\
main{max-width:36rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 3px #0002}\
body.wide main{max-width:75rem;margin:1.5rem auto}\
h1{font-size:1.4rem;margin-top:0}code{background:#eef;padding:0 .3em;border-radius:3px}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.4rem 1rem}dt{font-weight:600}dd{margin:0}\
table{border-collapse:collapse;margin:.5rem 0}\
th,td{border:1px solid #999;padding:.3rem .5rem;text-align:left;vertical-align:top}\
caption{text-align:left;font-weight:bold}.warnings{color:#8a1c00}\
.button,button{display:inline-block;background:#0b5cad;color:#fff;border:0;border-radius:4px;padding:.5rem 1rem;text-decoration:none;font-size:1rem;cursor:pointer}\
button.secondary{background:#6b7280}footer{text-align:center;color:#6b7280;font-size:.8rem}";

/// A whole document: head, the shared style, the heading and `body`.
pub fn document(layout: &Layout<'_>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(layout.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                @if let Some(seconds) = layout.refresh_secs {
                    meta http-equiv="refresh" content=(seconds);
                }
                title { (layout.title) " · calsync" }
                style { (PreEscaped(STYLE)) }
            }
            body class=[layout.wide.then_some("wide")] {
                main {
                    h1 { (layout.title) }
                    (body)
                }
                footer { "calsync · CRM ↔ Office 365" }
            }
        }
    }
}

/// Headers every answer carries: nothing cached, nothing framed, no scripts, no referrer leaks.
fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// An HTML page with its status.
pub fn page(status: StatusCode, markup: Markup) -> Response {
    secure((status, markup).into_response())
}

/// A plain-text answer (`text/plain; charset=utf-8`).
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    secure((status, body.into()).into_response())
}

/// A JSON answer (for the CRM module's server, not for browsers).
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    secure((status, axum::Json(value)).into_response())
}

/// A `302 Found` to `location`.
pub fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = text(StatusCode::FOUND, "");
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        // Only URLs calsync built get here; one that is not a header value is a bug.
        Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, ""),
    }
}

/// `2026-11-27 09:30 UTC` from epoch seconds, as pages and the CLI show times.
pub fn format_utc(epoch: i64) -> String {
    match jiff::Timestamp::from_second(epoch) {
        Ok(at) => at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => format!("@{epoch}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(format_utc(1_795_782_600), "2026-11-27 12:30 UTC");
        assert_eq!(format_utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn text_is_escaped_by_construction() {
        let layout = Layout {
            lang: "en",
            title: "<b>Title</b>",
            wide: false,
            refresh_secs: Some(10),
        };
        let doc = document(&layout, html! { p { "<script>alert(1)</script>" } }).into_string();
        assert!(doc.contains("&lt;b&gt;Title&lt;/b&gt;"));
        assert!(doc.contains("&lt;script&gt;"));
        assert!(!doc.contains("<script>"));
        assert!(doc.contains("http-equiv=\"refresh\" content=\"10\""));
        assert!(doc.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn answers_carry_the_security_headers() {
        let response = page(StatusCode::OK, html! { p { "x" } });
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert!(response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let moved = redirect("https://login.example/authorize?x=1");
        assert_eq!(moved.status(), StatusCode::FOUND);
        assert_eq!(
            moved.headers()[header::LOCATION],
            "https://login.example/authorize?x=1"
        );
    }
}
