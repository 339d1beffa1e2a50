//! Event calls: get, create, update, delete, a series' instances, and the CRM id calsync stamps
//! on what it creates.
//!
//! Creates carry a `transactionId` derived from the mailbox and the CRM record, so a create
//! retried after a timeout or a crash returns the event made the first time instead of a
//! duplicate. The CRM id rides along as a single-value extended property, which calendarView
//! delta cannot show but a GET with `$expand` (and a `$filter` search) can.

use calsync_core::time::TimeWindow;
use jiff::Timestamp;
use reqwest::Method;
use serde::Serialize;

use super::batch::BatchRequest;
use super::client::{odata_query, to_json_body, MailboxClient, RequestSpec};
use super::error::GraphError;
use super::types::{
    DateTimeTimeZone, EventPage, GraphEvent, ItemBody, SingleValueExtendedProperty,
};

/// The named property that holds the CRM record id on events calsync created. The GUID is
/// calsync's own property set; never change it, or stamped events stop being recognised.
pub const CRM_ID_PROPERTY: &str = "String {8c2f4a61-5d3e-4b9a-a7c1-2e6f0d9b3a54} Name calsyncCrmId";

/// The window's bounds as calendarView parameters.
pub(crate) fn window_query(window: &TimeWindow) -> [(&'static str, String); 2] {
    [
        ("startDateTime", window.start.to_string()),
        ("endDateTime", window.end.to_string()),
    ]
}

/// The writable fields calsync sets on Outlook events. Unset fields are left alone on update.
/// There is deliberately no attendees field: adding attendees sends invitations (docs/design.md
/// §3).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDraft {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<ItemBody>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTimeTimeZone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTimeTimeZone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_all_day: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<LocationDraft>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_reminder_on: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_minutes_before_start: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocationDraft {
    pub display_name: String,
}

impl EventDraft {
    /// A plain-text body.
    pub fn text_body(text: impl Into<String>) -> ItemBody {
        ItemBody {
            content_type: Some("text".into()),
            content: Some(text.into()),
        }
    }

    /// A UTC time in Graph's form.
    pub fn utc(at: Timestamp) -> DateTimeTimeZone {
        DateTimeTimeZone {
            date_time: at.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
            time_zone: Some("UTC".into()),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    #[serde(flatten)]
    draft: &'a EventDraft,
    transaction_id: String,
    single_value_extended_properties: [SingleValueExtendedProperty; 1],
}

fn crm_expand() -> String {
    odata_query(&[(
        "$expand",
        &format!("singleValueExtendedProperties($filter=id eq '{CRM_ID_PROPERTY}')"),
    )])
}

impl MailboxClient {
    /// One event with its CRM stamp expanded; `None` when it does not exist (any more).
    pub async fn get_event(&self, id: &str) -> Result<Option<GraphEvent>, GraphError> {
        let mut url = self.mailbox_url(&["events", id])?;
        url.set_query(Some(&crm_expand()));
        match self.get_json(url).await {
            Ok(event) => Ok(Some(event)),
            Err(GraphError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Several events at once, through `$batch`: each id with its event, or `None` if gone.
    pub async fn get_events(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, Option<GraphEvent>)>, GraphError> {
        let query = crm_expand();
        let requests = ids
            .iter()
            .enumerate()
            .map(|(n, id)| {
                Ok(BatchRequest::get(
                    n.to_string(),
                    self.batch_url(&["events", id], Some(&query))?,
                ))
            })
            .collect::<Result<Vec<_>, GraphError>>()?;
        let results = self.batch(requests).await?;
        ids.iter()
            .zip(results)
            .map(|(id, result)| match result.status {
                404 => Ok((id.clone(), None)),
                _ => Ok((id.clone(), Some(result.json()?))),
            })
            .collect()
    }

    /// Creates an event for a CRM record, stamped with its id. Safe to retry with the same
    /// `transaction_id` (`calsync_core::sync::outlook_transaction_id`): Graph answers a repeated
    /// one with the event it already made.
    pub async fn create_event(
        &self,
        draft: &EventDraft,
        crm_event_id: &str,
        transaction_id: &str,
    ) -> Result<GraphEvent, GraphError> {
        let body = to_json_body(&CreateBody {
            draft,
            transaction_id: transaction_id.to_owned(),
            single_value_extended_properties: [SingleValueExtendedProperty {
                id: CRM_ID_PROPERTY.to_owned(),
                value: Some(crm_event_id.to_owned()),
            }],
        })?;
        let prefer = self.event_prefer();
        self.send(RequestSpec {
            method: Method::POST,
            url: self.mailbox_url(&["events"])?,
            prefer: &prefer,
            if_match: None,
            body: Some(body),
            idempotent: true,
        })
        .await?
        .json()
    }

    /// Changes the fields set in `draft`. With `if_match` (a change key), fails with
    /// [`GraphError::Conflict`] when the event changed since it was read.
    pub async fn update_event(
        &self,
        id: &str,
        draft: &EventDraft,
        if_match: Option<&str>,
    ) -> Result<GraphEvent, GraphError> {
        let prefer = self.event_prefer();
        let tag = if_match.map(|key| format!("W/\"{key}\""));
        self.send(RequestSpec {
            method: Method::PATCH,
            url: self.mailbox_url(&["events", id])?,
            prefer: &prefer,
            if_match: tag.as_deref(),
            body: Some(to_json_body(draft)?),
            idempotent: true,
        })
        .await?
        .json()
    }

    /// Deletes an event: `true` when deleted now, `false` when it was already gone.
    pub async fn delete_event(&self, id: &str, if_match: Option<&str>) -> Result<bool, GraphError> {
        let prefer = self.event_prefer();
        let tag = if_match.map(|key| format!("W/\"{key}\""));
        let reply = self
            .send(RequestSpec {
                method: Method::DELETE,
                url: self.mailbox_url(&["events", id])?,
                prefer: &prefer,
                if_match: tag.as_deref(),
                body: None,
                idempotent: true,
            })
            .await?;
        if reply.status.as_u16() == 404 {
            return Ok(false);
        }
        reply.ensure_success()?;
        Ok(true)
    }

    /// The occurrences and exceptions of a series in a window (cancelled ones are absent).
    pub async fn series_instances(
        &self,
        master_id: &str,
        window: TimeWindow,
    ) -> Result<Vec<GraphEvent>, GraphError> {
        let mut url = self.mailbox_url(&["events", master_id, "instances"])?;
        let [start, end] = window_query(&window);
        url.set_query(Some(&odata_query(&[(start.0, &start.1), (end.0, &end.1)])));
        self.collect_pages(url).await
    }

    /// Events stamped with a CRM id (normally zero or one): how a create whose answer was lost
    /// is found again.
    pub async fn find_by_crm_id(&self, crm_event_id: &str) -> Result<Vec<GraphEvent>, GraphError> {
        let mut url = self.mailbox_url(&["events"])?;
        let escaped = crm_event_id.replace('\'', "''");
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{CRM_ID_PROPERTY}' and ep/value eq '{escaped}')"
        );
        let expand = format!("singleValueExtendedProperties($filter=id eq '{CRM_ID_PROPERTY}')");
        url.set_query(Some(&odata_query(&[
            ("$filter", &filter),
            ("$expand", &expand),
        ])));
        self.collect_pages(url).await
    }

    async fn collect_pages(&self, first: url::Url) -> Result<Vec<GraphEvent>, GraphError> {
        let mut events = Vec::new();
        let mut next = Some(first);
        let mut pages = 0u32;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > self.graph.settings().max_pages {
                return Err(GraphError::NoProgress { pages });
            }
            let page: EventPage = self.get_json(url).await?;
            events.extend(page.value);
            next = match page.next_link {
                Some(link) => Some(self.graph.graph_link(&link)?),
                None => None,
            };
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_body_stamps_the_crm_id() {
        let draft = EventDraft {
            subject: Some("Call".into()),
            ..Default::default()
        };
        let body = serde_json::to_value(CreateBody {
            draft: &draft,
            transaction_id: "t".into(),
            single_value_extended_properties: [SingleValueExtendedProperty {
                id: CRM_ID_PROPERTY.into(),
                value: Some("18x5".into()),
            }],
        })
        .unwrap();
        assert_eq!(body["subject"], "Call");
        assert_eq!(body["transactionId"], "t");
        assert_eq!(body["singleValueExtendedProperties"][0]["value"], "18x5");
        assert!(body.get("attendees").is_none());
        assert!(body.get("end").is_none());
    }

    #[test]
    fn utc_times_have_graph_form() {
        let at: Timestamp = "2026-03-01T09:30:00Z".parse().unwrap();
        assert_eq!(EventDraft::utc(at).date_time, "2026-03-01T09:30:00");
    }
}
