//! Microsoft Graph wire types, as Graph sends them: every field that may be missing is an
//! `Option`, unknown fields are ignored, and a few historical spellings are accepted, so a
//! payload from any Graph revision parses (see `fixtures/graph/`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use calsync_core::secret::Secret;

/// `dateTimeTimeZone`: a wall-clock time and the zone it is in (Windows or IANA name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DateTimeTimeZone {
    /// `YYYY-MM-DDThh:mm:ss[.fffffff]`, without an offset.
    #[serde(alias = "DateTime")]
    pub date_time: String,
    #[serde(default, alias = "TimeZone")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemBody {
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EmailAddress {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Recipient {
    #[serde(default)]
    pub email_address: Option<EmailAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResponseStatus {
    #[serde(default)]
    pub response: Option<String>,
    #[serde(default)]
    pub time: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Attendee {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub status: Option<ResponseStatus>,
    #[serde(default)]
    pub email_address: Option<EmailAddress>,
}

/// A location; address and coordinates are kept as Graph sent them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub location_type: Option<String>,
    #[serde(default)]
    pub address: Option<Value>,
    #[serde(default)]
    pub coordinates: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecurrencePattern {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub interval: Option<u32>,
    #[serde(default)]
    pub month: Option<u32>,
    #[serde(default)]
    pub day_of_month: Option<u32>,
    #[serde(default)]
    pub days_of_week: Option<Vec<String>>,
    #[serde(default)]
    pub first_day_of_week: Option<String>,
    #[serde(default)]
    pub index: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecurrenceRange {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub start_date: Option<String>,
    #[serde(default)]
    pub end_date: Option<String>,
    #[serde(default)]
    pub recurrence_time_zone: Option<String>,
    #[serde(default)]
    pub number_of_occurrences: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PatternedRecurrence {
    #[serde(default)]
    pub pattern: Option<RecurrencePattern>,
    #[serde(default)]
    pub range: Option<RecurrenceRange>,
}

/// `singleValueLegacyExtendedProperty`: how calsync stamps its CRM id on events it creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleValueExtendedProperty {
    pub id: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// `@removed` on a delta item: the item left the view (deleted, or moved or changed outside
/// the window — Graph does not say which).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    #[serde(default)]
    pub reason: Option<String>,
}

/// An event as Graph returns it: in full from `GET /events/{id}`, or as a delta item, which can
/// be a full event, an occurrence stub (id, type, seriesMasterId, start, end) or a tombstone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GraphEvent {
    pub id: String,
    #[serde(
        default,
        rename = "@odata.etag",
        skip_serializing_if = "Option::is_none"
    )]
    pub etag: Option<String>,
    #[serde(default, rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
    /// `singleInstance`, `occurrence`, `exception` or `seriesMaster`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub series_master_id: Option<String>,
    #[serde(default)]
    pub change_key: Option<String>,
    #[serde(default)]
    pub created_date_time: Option<String>,
    #[serde(default)]
    pub last_modified_date_time: Option<String>,
    #[serde(default, rename = "iCalUId")]
    pub ical_uid: Option<String>,
    #[serde(default)]
    pub transaction_id: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<ItemBody>,
    #[serde(default)]
    pub body_preview: Option<String>,
    #[serde(default)]
    pub start: Option<DateTimeTimeZone>,
    #[serde(default)]
    pub end: Option<DateTimeTimeZone>,
    #[serde(default)]
    pub original_start: Option<String>,
    #[serde(default)]
    pub original_start_time_zone: Option<String>,
    #[serde(default)]
    pub original_end_time_zone: Option<String>,
    #[serde(default)]
    pub is_all_day: Option<bool>,
    #[serde(default)]
    pub is_cancelled: Option<bool>,
    #[serde(default)]
    pub is_organizer: Option<bool>,
    #[serde(default)]
    pub is_reminder_on: Option<bool>,
    #[serde(default)]
    pub reminder_minutes_before_start: Option<i32>,
    #[serde(default)]
    pub show_as: Option<String>,
    #[serde(default)]
    pub sensitivity: Option<String>,
    #[serde(default)]
    pub importance: Option<String>,
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub organizer: Option<Recipient>,
    #[serde(default)]
    pub attendees: Option<Vec<Attendee>>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    #[serde(default)]
    pub recurrence: Option<PatternedRecurrence>,
    #[serde(default)]
    pub web_link: Option<String>,
    #[serde(default)]
    pub single_value_extended_properties: Option<Vec<SingleValueExtendedProperty>>,
}

/// Event kinds (`type`).
pub const SINGLE_INSTANCE: &str = "singleInstance";
pub const OCCURRENCE: &str = "occurrence";
pub const EXCEPTION: &str = "exception";
pub const SERIES_MASTER: &str = "seriesMaster";

impl GraphEvent {
    pub fn is_tombstone(&self) -> bool {
        self.removed.is_some()
    }

    pub fn is_series_master(&self) -> bool {
        self.kind.as_deref() == Some(SERIES_MASTER)
    }

    /// An occurrence that carries only its times: its content lives on the series master.
    pub fn is_occurrence_stub(&self) -> bool {
        self.kind.as_deref() == Some(OCCURRENCE) && self.subject.is_none()
    }

    /// The change key, from `changeKey` or else from the etag (`W/"<changeKey>"`).
    pub fn version(&self) -> Option<&str> {
        if let Some(key) = &self.change_key {
            return Some(key);
        }
        let etag = self.etag.as_deref()?;
        let etag = etag.strip_prefix("W/").unwrap_or(etag);
        Some(etag.trim_matches('"'))
    }

    /// The value of one single-value extended property, if it was expanded.
    pub fn extended_property(&self, property_id: &str) -> Option<&str> {
        self.single_value_extended_properties
            .as_ref()?
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(property_id))
            .and_then(|p| p.value.as_deref())
    }
}

/// One page of a delta round: `@odata.nextLink` while there is more, `@odata.deltaLink` at the
/// end of the round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DeltaPage {
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(default, rename = "@odata.deltaLink")]
    pub delta_link: Option<String>,
    #[serde(default)]
    pub value: Vec<GraphEvent>,
}

/// A collection page of a plain list (`instances`, filtered `events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EventPage {
    #[serde(default, rename = "@odata.nextLink")]
    pub next_link: Option<String>,
    #[serde(default)]
    pub value: Vec<GraphEvent>,
}

/// Graph's error envelope: `{"error": {"code", "message", "innerError": {...}}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphErrorBody {
    pub error: GraphErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GraphErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, alias = "innererror")]
    pub inner_error: Option<InnerError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct InnerError {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default, rename = "request-id")]
    pub request_id: Option<String>,
    #[serde(default, rename = "client-request-id")]
    pub client_request_id: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
}

/// A subscription as Graph returns it. `clientState` is echoed back and is a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub application_id: Option<String>,
    #[serde(default)]
    pub change_type: Option<String>,
    #[serde(default)]
    pub client_state: Option<Secret>,
    #[serde(default)]
    pub notification_url: Option<String>,
    #[serde(default)]
    pub lifecycle_notification_url: Option<String>,
    /// ISO 8601 in UTC, as Graph set it (it may differ from what was asked).
    pub expiration_date_time: String,
    #[serde(default)]
    pub creator_id: Option<String>,
    #[serde(default)]
    pub latest_supported_tls_version: Option<String>,
}

/// What `POST /subscriptions` takes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewSubscription {
    pub change_type: String,
    pub notification_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle_notification_url: Option<String>,
    pub resource: String,
    pub expiration_date_time: String,
    pub client_state: Secret,
}

/// The identity platform's error body (`/oauth2/v2.0/token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorBody {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
    #[serde(default)]
    pub error_codes: Vec<u32>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(default)]
    pub trace_id: Option<String>,
    #[serde(default)]
    pub correlation_id: Option<String>,
    #[serde(default)]
    pub error_uri: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_falls_back_to_the_etag() {
        let stub: GraphEvent = serde_json::from_value(serde_json::json!({
            "id": "x", "@odata.etag": "W/\"abc==\"", "type": "occurrence",
            "seriesMasterId": "m", "start": {"dateTime": "2026-01-01T10:00:00.0000000", "timeZone": "UTC"}
        }))
        .unwrap();
        assert_eq!(stub.version(), Some("abc=="));
        assert!(stub.is_occurrence_stub());
        assert!(!stub.is_tombstone());
    }

    #[test]
    fn pascal_case_times_parse() {
        let t: DateTimeTimeZone =
            serde_json::from_str(r#"{"DateTime":"2026-01-01T00:00:00","TimeZone":"UTC"}"#).unwrap();
        assert_eq!(t.time_zone.as_deref(), Some("UTC"));
    }
}
