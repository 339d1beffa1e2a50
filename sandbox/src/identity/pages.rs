//! The few HTML pages a browser sees: sign-in, errors, and the form_post relay.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::errors::Diagnostics;
use crate::support::html_escape;

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title></head><body>\n{body}\n</body></html>\n",
        html_escape(title)
    )
}

/// Entra answers a request it cannot trust to redirect (unknown app, unregistered
/// redirect URI, unknown tenant) with a page for the user, never with a redirect.
pub(crate) fn error_page(status: StatusCode, code: u32, message: &str) -> Response {
    let diagnostics = Diagnostics::new(None);
    let body = format!(
        "<main><h1>Sign in</h1><p>Sorry, but we couldn't sign you in.</p>\
         <p id=\"error\"><strong>AADSTS{code}</strong>: {}</p>\
         <dl><dt>Request Id</dt><dd>{}</dd><dt>Correlation Id</dt><dd>{}</dd>\
         <dt>Timestamp</dt><dd>{}</dd></dl></main>",
        html_escape(message),
        diagnostics.trace_id,
        diagnostics.correlation_id,
        diagnostics.timestamp
    );
    (status, Html(document("Sign in - error", &body))).into_response()
}

/// What the sign-in page is asking the user to approve.
pub(crate) enum SignInPurpose {
    UserConsent,
    AdminConsent,
}

pub(crate) struct SignInView<'a> {
    pub(crate) tenant_segment: &'a str,
    pub(crate) flow_id: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) purpose: SignInPurpose,
    pub(crate) username: Option<&'a str>,
    pub(crate) problem: Option<&'a str>,
}

pub(crate) fn sign_in_page(view: &SignInView<'_>) -> Response {
    let request = match view.purpose {
        SignInPurpose::UserConsent => "wants to sign you in and access your data",
        SignInPurpose::AdminConsent => {
            "asks an administrator to grant it access to the organization"
        }
    };
    let problem = view
        .problem
        .map(|text| format!("<p role=\"alert\" id=\"problem\">{}</p>", html_escape(text)))
        .unwrap_or_default();
    let body = format!(
        "<main><h1>Sign in</h1>\
         <p>The application <code>{client}</code> {request}.</p>{problem}\
         <form method=\"post\" action=\"/{tenant}/login\">\
         <input type=\"hidden\" name=\"flow\" value=\"{flow}\">\
         <label for=\"username\">Username</label> \
         <input id=\"username\" name=\"username\" type=\"email\" autocomplete=\"username\" value=\"{username}\">\
         <button type=\"submit\" name=\"action\" value=\"accept\">Accept</button> \
         <button type=\"submit\" name=\"action\" value=\"cancel\">Cancel</button>\
         </form></main>",
        client = html_escape(view.client_id),
        tenant = html_escape(view.tenant_segment),
        flow = html_escape(view.flow_id),
        username = html_escape(view.username.unwrap_or_default()),
    );
    Html(document("Sign in to your account", &body)).into_response()
}

/// `response_mode=form_post`: a page whose form posts the reply to the redirect URI.
pub(crate) fn form_post_page(redirect_uri: &str, fields: &[(&str, &str)]) -> Response {
    let inputs: String = fields
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                html_escape(name),
                html_escape(value)
            )
        })
        .collect();
    let body = format!(
        "<form method=\"post\" name=\"hiddenform\" action=\"{}\">{inputs}\
         <noscript><p>Script is disabled. Click Submit to continue.</p>\
         <button type=\"submit\">Submit</button></noscript></form>\
         <script>document.forms[0].submit();</script>",
        html_escape(redirect_uri)
    );
    Html(document("Working...", &body)).into_response()
}

/// Target of the `error_uri` links in error bodies, so they lead somewhere.
pub(crate) async fn error_lookup(RawQuery(query): RawQuery) -> Html<String> {
    let code = query
        .as_deref()
        .and_then(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(name, _)| name == "code")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_default();
    Html(document(
        "Error lookup",
        &format!(
            "<main><h1>AADSTS{}</h1><p>Error code lookup is not simulated by the sandbox.</p></main>",
            html_escape(&code)
        ),
    ))
}
