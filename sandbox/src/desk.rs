//! The calendar desk: one plain HTML page, `/_sandbox/calendars`, where a person trying calsync
//! out sees every sandbox Outlook mailbox and every CRM user's events, and edits, adds or
//! deletes them as that user would in Outlook or in the CRM's web UI. Each change goes through
//! the same control methods the tests use, so Graph subscribers are notified and the CRM's
//! modification times move.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde_json::{json, Value};

use crate::graph::Graph;
use crate::support::html_escape;
use crate::vtiger::{SeedEvent, VtigerState};

pub const DESK_PATH: &str = "/_sandbox/calendars";

#[derive(Clone)]
struct Desk {
    graph: Graph,
    crm: VtigerState,
}

pub(crate) fn router(graph: Graph, crm: VtigerState) -> Router {
    Router::new()
        .route(DESK_PATH, get(page))
        .route("/_sandbox/calendars/outlook", post(edit_outlook))
        .route("/_sandbox/calendars/crm", post(edit_crm))
        .with_state(Desk { graph, crm })
}

type Fields = HashMap<String, String>;

fn field<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.get(name).map(|v| v.trim()).unwrap_or("")
}

/// `2025-03-04T10:30` (what a `datetime-local` input sends) → (`2025-03-04`, `10:30:00`).
fn split_local(text: &str) -> Option<(String, String)> {
    let (date, time) = text.split_once('T')?;
    let date = date.parse::<jiff::civil::Date>().ok()?;
    let time = time.parse::<jiff::civil::Time>().ok()?;
    Some((date.to_string(), time.strftime("%H:%M:%S").to_string()))
}

fn refused(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(document(
            "Not changed",
            &format!(
                "<main><h1>Not changed</h1><p role=\"alert\">{}</p><p><a href=\"{DESK_PATH}\">Back to the calendars</a></p></main>",
                html_escape(why)
            ),
        )),
    )
        .into_response()
}

async fn edit_outlook(State(desk): State<Desk>, Form(fields): Form<Fields>) -> Response {
    let mailbox = field(&fields, "mailbox");
    let id = field(&fields, "id");
    let outcome = if field(&fields, "action") == "delete" {
        desk.graph.delete_event(mailbox, id)
    } else {
        let (Some(start), Some(end)) = (
            split_local(field(&fields, "start")),
            split_local(field(&fields, "end")),
        ) else {
            return refused("Start and end must be dates with times.");
        };
        let body = json!({
            "subject": field(&fields, "subject"),
            "start": {"dateTime": format!("{}T{}", start.0, start.1), "timeZone": "UTC"},
            "end": {"dateTime": format!("{}T{}", end.0, end.1), "timeZone": "UTC"},
        });
        if id.is_empty() {
            desk.graph.insert_event(mailbox, body).map(|_| ())
        } else {
            desk.graph.update_event(mailbox, id, body)
        }
    };
    match outcome {
        Ok(()) => Redirect::to(DESK_PATH).into_response(),
        Err(error) => refused(&error.to_string()),
    }
}

async fn edit_crm(State(desk): State<Desk>, Form(fields): Form<Fields>) -> Response {
    let id = field(&fields, "id");
    if field(&fields, "action") == "delete" {
        return if desk.crm.ui_delete(id) {
            Redirect::to(DESK_PATH).into_response()
        } else {
            refused("No such CRM event.")
        };
    }
    let (Some(start), Some(end)) = (
        split_local(field(&fields, "start")),
        split_local(field(&fields, "end")),
    ) else {
        return refused("Start and end must be dates with times.");
    };
    let changes = [
        ("subject", field(&fields, "subject").to_owned()),
        ("date_start", start.0),
        ("time_start", start.1),
        ("due_date", end.0),
        ("time_end", end.1),
    ];
    let done = if id.is_empty() {
        let Ok(owner) = field(&fields, "owner").parse::<u64>() else {
            return refused("No such CRM user.");
        };
        desk.crm.seed_event(SeedEvent {
            owner,
            fields: changes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
            ..SeedEvent::default()
        });
        true
    } else {
        let changes: Vec<(&str, &str)> = changes.iter().map(|(k, v)| (*k, v.as_str())).collect();
        desk.crm.ui_edit(id, &changes)
    };
    if done {
        Redirect::to(DESK_PATH).into_response()
    } else {
        refused("No such CRM event.")
    }
}

/// A Graph `dateTimeTimeZone` as a `datetime-local` value (minutes precision).
fn graph_local(value: &Value) -> String {
    value
        .get("dateTime")
        .and_then(Value::as_str)
        .map(|t| t.chars().take(16).collect())
        .unwrap_or_default()
}

fn event_form(
    action: &str,
    hidden: &[(&str, &str)],
    subject: &str,
    start: &str,
    end: &str,
) -> String {
    let hidden: String = hidden
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                html_escape(value)
            )
        })
        .collect();
    let is_new = subject.is_empty() && start.is_empty();
    let buttons = if is_new {
        "<button type=\"submit\" name=\"action\" value=\"save\">Add</button>".to_owned()
    } else {
        "<button type=\"submit\" name=\"action\" value=\"save\">Save</button> \
         <button type=\"submit\" name=\"action\" value=\"delete\">Delete</button>"
            .to_owned()
    };
    format!(
        "<form method=\"post\" action=\"{action}\">{hidden}\
         <label>Subject <input name=\"subject\" value=\"{}\" required></label> \
         <label>Start <input type=\"datetime-local\" name=\"start\" value=\"{}\" required></label> \
         <label>End <input type=\"datetime-local\" name=\"end\" value=\"{}\" required></label> \
         {buttons}</form>",
        html_escape(subject),
        html_escape(start),
        html_escape(end),
    )
}

async fn page(State(desk): State<Desk>) -> Html<String> {
    let mut body = String::from(
        "<main><h1>Sandbox calendars</h1>\
         <p>Edit an event here as its owner would in Outlook or in the CRM; calsync picks the \
         change up on its next sync. Times are UTC.</p>",
    );
    body.push_str("<h2>Outlook</h2>");
    let mailboxes = desk.graph.mailboxes();
    if mailboxes.is_empty() {
        body.push_str("<p>No mailboxes yet.</p>");
    }
    for (oid, name, address) in mailboxes {
        body.push_str(&format!(
            "<section><h3>{} &lt;{}&gt;</h3>",
            html_escape(&name),
            html_escape(&address)
        ));
        let mut events: Vec<Value> = desk
            .graph
            .event_ids(&oid)
            .iter()
            .filter_map(|id| desk.graph.event(&oid, id))
            .collect();
        events.sort_by_key(|e| graph_local(&e["start"]));
        for event in &events {
            let id = event.get("id").and_then(Value::as_str).unwrap_or_default();
            let subject = event
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or_default();
            body.push_str(&event_form(
                "/_sandbox/calendars/outlook",
                &[("mailbox", &oid), ("id", id)],
                subject,
                &graph_local(&event["start"]),
                &graph_local(&event["end"]),
            ));
        }
        body.push_str("<h4>New Outlook event</h4>");
        body.push_str(&event_form(
            "/_sandbox/calendars/outlook",
            &[("mailbox", &oid), ("id", "")],
            "",
            "",
            "",
        ));
        body.push_str("</section>");
    }
    body.push_str("<h2>CRM</h2>");
    for (user_id, user_name) in desk.crm.users() {
        let events = desk.crm.events_of(user_id);
        body.push_str(&format!("<section><h3>{}</h3>", html_escape(&user_name)));
        for event in &events {
            let get = |name: &str| event.fields.get(name).cloned().unwrap_or_default();
            let local = |date: String, time: String| {
                format!("{date}T{}", time.chars().take(5).collect::<String>())
            };
            body.push_str(&event_form(
                "/_sandbox/calendars/crm",
                &[("id", &event.crmid.to_string())],
                &get("subject"),
                &local(get("date_start"), get("time_start")),
                &local(get("due_date"), get("time_end")),
            ));
        }
        body.push_str("<h4>New CRM event</h4>");
        body.push_str(&event_form(
            "/_sandbox/calendars/crm",
            &[("id", ""), ("owner", &user_id.to_string())],
            "",
            "",
            "",
        ));
        body.push_str("</section>");
    }
    body.push_str("</main>");
    Html(document("Sandbox calendars", &body))
}

fn document(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>form{{margin:.4em 0}}label{{margin-right:.5em}}</style>\
         </head><body>\n{body}\n</body></html>\n",
        html_escape(title)
    )
}

#[cfg(test)]
mod tests {
    use super::split_local;

    #[test]
    fn datetime_local_values_split_into_crm_fields() {
        assert_eq!(
            split_local("2025-03-04T10:30"),
            Some(("2025-03-04".to_owned(), "10:30:00".to_owned()))
        );
        assert_eq!(split_local("2025-03-04"), None);
        assert_eq!(split_local("2025-13-04T10:30"), None);
    }
}
