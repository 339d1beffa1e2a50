//! The vtiger (MyCRMweb) adapter over the classic `webservice.php` API.
//!
//! docs/design.md §8 lists the quirks absorbed here; the module docs of `mapping`,
//! `session` and `feed` say which lives where.

pub mod client;
mod feed;
pub mod mapping;
pub mod session;
pub mod vtql;
pub mod wire;

use std::time::Duration;

use async_trait::async_trait;
use jiff::tz::TimeZone;
use serde_json::Value;

use self::client::VtigerClient;
use self::mapping::Zones;
use self::wire::Record;
use crate::adapters::crm::{
    ChangeSet, ChangesRequest, ConfigProblem, CrmError, CrmErrorCode, CrmEventId, CrmPort,
    CrmTimeModel, CrmUser, CrmUserId, DeleteOutcome, EventPatch, EventSchema, NewEvent,
};
use calsync_core::event::{CalendarEvent, EventField};

pub use self::client::AccessKey;
pub use self::feed::cursor_sees_deletions;

/// Where changes are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeedPreference {
    /// `sync` (syncType=application), falling back to `query` when it fails.
    #[default]
    Auto,
    /// Only `query` (for installs whose `sync` is known broken or ignores `syncType`).
    QueryOnly,
}

/// How to reach one tenant's CRM.
#[derive(Debug, Clone)]
pub struct VtigerConfig {
    /// The CRM root URL or its `webservice.php` URL.
    pub url: String,
    /// The integration (admin) user's login name.
    pub user_name: String,
    pub access_key: AccessKey,
    /// The CRM server's zone (IANA name): every date/time field is wall-clock time in it.
    pub server_zone: String,
    /// Limit for each HTTP call.
    pub timeout: Duration,
    /// How far back each incremental read starts before the cursor: vtiger's cursor has
    /// one-second resolution, so a change late in the cursor's own second would be lost.
    pub overlap: Duration,
    pub feed: FeedPreference,
    /// Pages (of about 100 changes) read per `changes` call before answering `more`.
    pub max_pages: usize,
    /// After `sync` failed, how long to use `query` before trying `sync` again.
    pub sync_retry_after: Duration,
}

impl VtigerConfig {
    pub fn new(
        url: impl Into<String>,
        user_name: impl Into<String>,
        access_key: AccessKey,
    ) -> Self {
        Self {
            url: url.into(),
            user_name: user_name.into(),
            access_key,
            server_zone: "UTC".to_owned(),
            timeout: Duration::from_secs(20),
            overlap: Duration::from_secs(2),
            feed: FeedPreference::Auto,
            max_pages: 20,
            sync_retry_after: Duration::from_secs(6 * 3600),
        }
    }
}

/// The vtiger adapter. Cheap to keep for a container's life; sessions are shared process-wide.
#[derive(Debug)]
pub struct VtigerCrm {
    client: VtigerClient,
    server_zone: TimeZone,
    server_zone_name: String,
    overlap_secs: i64,
    feed: FeedPreference,
    max_pages: usize,
    sync_retry_secs: i64,
}

impl VtigerCrm {
    pub fn new(config: VtigerConfig) -> Result<Self, CrmError> {
        let server_zone = TimeZone::get(&config.server_zone).map_err(|source| {
            CrmError::Config(ConfigProblem::BadZone {
                zone: config.server_zone.clone(),
                source,
            })
        })?;
        if config.user_name.trim().is_empty() {
            return Err(CrmError::Config(ConfigProblem::EmptyUser));
        }
        let client = VtigerClient::new(
            &config.url,
            &config.user_name,
            config.access_key,
            config.timeout,
        )?;
        Ok(Self {
            client,
            server_zone,
            server_zone_name: config.server_zone,
            overlap_secs: config.overlap.as_secs().max(1) as i64,
            feed: config.feed,
            max_pages: config.max_pages.max(1),
            sync_retry_secs: config.sync_retry_after.as_secs() as i64,
        })
    }

    /// The zones for mapping one owner's events.
    fn zones(&self, owner: &CrmUser) -> Zones {
        let all_day = owner
            .time_zone
            .as_deref()
            .filter(|name| !name.trim().is_empty())
            .and_then(calsync_core::time::resolve_zone)
            .unwrap_or_else(|| self.server_zone.clone());
        Zones::new(self.server_zone.clone(), all_day)
    }

    fn to_event(
        &self,
        operation: &str,
        record: &Record,
        zones: &Zones,
    ) -> Result<CalendarEvent, CrmError> {
        mapping::event_from_record(record, zones).map_err(|err| CrmError::InvalidData {
            operation: operation.to_owned(),
            record: Some(record.id()),
            source: Box::new(err),
        })
    }

    /// `retrieve`, with ACCESS_DENIED (deleted or never existed) as `None`.
    async fn retrieve(&self, id: &CrmEventId) -> Result<Option<Record>, CrmError> {
        match self.client.get("retrieve", &[("id", id.as_str())]).await {
            Ok(value) => Ok(Some(wire::decode("retrieve", value)?)),
            Err(err) if is_gone(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn query(&self, vtql: &str) -> Result<Vec<Record>, CrmError> {
        let value = self.client.get("query", &[("query", vtql)]).await?;
        wire::records("query", value)
    }

    /// Form fields shared by create and revise. Never `inviteesid`: calsync does not carry
    /// invitees, and only a request without it lets the CRM module keep them.
    async fn write(
        &self,
        operation: &str,
        element: serde_json::Map<String, Value>,
        extra: &[(&str, &str)],
    ) -> Result<Record, CrmError> {
        let element = Value::Object(element).to_string();
        let mut params: Vec<(&str, &str)> = extra.to_vec();
        params.push(("element", element.as_str()));
        let value = self.client.post(operation, &params).await?;
        wire::decode(operation, value)
    }

    fn element(
        &self,
        event: &CalendarEvent,
        fields: &[EventField],
        zones: &Zones,
    ) -> Result<serde_json::Map<String, Value>, CrmError> {
        let pairs =
            mapping::fields_for_write(event, fields, zones).map_err(CrmError::Unwritable)?;
        let mut element: serde_json::Map<String, Value> = pairs
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::String(value)))
            .collect();
        // A write without it deletes the reminder; see mapping::reminder_seconds_for_crm.
        element.insert(
            "reminder_time".to_owned(),
            Value::String(mapping::reminder_seconds_for_crm(event.reminder_minutes)),
        );
        Ok(element)
    }
}

/// vtiger says ACCESS_DENIED for a deleted or never-existing record.
fn is_gone(err: &CrmError) -> bool {
    matches!(
        err,
        CrmError::Api {
            code: CrmErrorCode::AccessDenied,
            ..
        }
    )
}

#[async_trait]
impl CrmPort for VtigerCrm {
    fn carried_fields(&self) -> &'static [EventField] {
        mapping::CARRIED_FIELDS
    }

    fn storage(&self) -> calsync_core::sync::CrmStorage {
        calsync_core::sync::CrmStorage(mapping::stored_form)
    }

    fn with_writers(&self, writers: usize) -> Option<Box<dyn CrmPort>> {
        Some(Box::new(VtigerCrm {
            client: self.client.with_writers(writers),
            server_zone: self.server_zone.clone(),
            server_zone_name: self.server_zone_name.clone(),
            overlap_secs: self.overlap_secs,
            feed: self.feed,
            max_pages: self.max_pages,
            sync_retry_secs: self.sync_retry_secs,
        }))
    }

    fn time_model(&self) -> CrmTimeModel {
        CrmTimeModel {
            server_zone: self.server_zone_name.clone(),
            native_all_day: false,
        }
    }

    async fn resolve_user(&self, user_name: &str) -> Result<CrmUser, CrmError> {
        let rows = self.query(&vtql::user_by_name(user_name)).await?;
        // MySQL compares case-insensitively: prefer the exact spelling.
        let row = rows
            .iter()
            .find(|row| row.text("user_name") == user_name)
            .or_else(|| rows.first())
            .ok_or_else(|| CrmError::UnknownUser {
                user_name: user_name.to_owned(),
            })?;
        let id = row.id();
        if id.is_empty() {
            return Err(CrmError::Unexpected {
                operation: "query".to_owned(),
                what: "a user row without an id",
            });
        }
        let zone = row.text("time_zone");
        Ok(CrmUser {
            id: CrmUserId::new(id),
            user_name: row.text("user_name"),
            time_zone: Some(zone).filter(|zone| !zone.trim().is_empty()),
            active: !row.text("status").eq_ignore_ascii_case("inactive"),
            email: Some(row.text("email1")).filter(|email| !email.trim().is_empty()),
        })
    }

    async fn changes(&self, request: ChangesRequest<'_>) -> Result<ChangeSet, CrmError> {
        feed::changes(self, request).await
    }

    async fn get(
        &self,
        owner: &CrmUser,
        id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, CrmError> {
        let zones = self.zones(owner);
        match self.retrieve(id).await? {
            Some(record) => Ok(Some(self.to_event("retrieve", &record, &zones)?)),
            None => Ok(None),
        }
    }

    async fn create(&self, owner: &CrmUser, new: &NewEvent) -> Result<CalendarEvent, CrmError> {
        let zones = self.zones(owner);
        let mut element = self.element(&new.event, mapping::CARRIED_FIELDS, &zones)?;
        element.insert(
            "assigned_user_id".to_owned(),
            Value::String(owner.id.as_str().to_owned()),
        );
        // "1" can make the CRM e-mail people; a sync must never do that.
        element.insert("sendnotification".to_owned(), Value::String("0".to_owned()));
        // A webservice create may set `source` (vtiger 8.2.0 keeps it, in capitals, and no
        // later save changes it): the marker that finds this record if the answer is lost.
        if let Some(marker) = &new.marker {
            element.insert("source".to_owned(), Value::String(marker.clone()));
        }
        let record = self
            .write("create", element, &[("elementType", "Events")])
            .await?;
        self.to_event("create", &record, &zones)
    }

    async fn find_created(
        &self,
        owner: &CrmUser,
        marker: &str,
    ) -> Result<Option<CalendarEvent>, CrmError> {
        let zones = self.zones(owner);
        let records = self.query(&vtql::by_marker(marker)).await?;
        match records.first() {
            Some(record) => Ok(Some(self.to_event("query", record, &zones)?)),
            None => Ok(None),
        }
    }

    async fn update(
        &self,
        owner: &CrmUser,
        id: &CrmEventId,
        patch: &EventPatch,
    ) -> Result<Option<CalendarEvent>, CrmError> {
        let zones = self.zones(owner);
        if let Some(expected) = patch.event.modified.crm {
            // vtiger has no conditional write: look first. A save in the instant between the
            // look and the revise (or within the same second) can still be missed.
            let Some(record) = self.retrieve(id).await? else {
                return Ok(None);
            };
            let current = self.to_event("retrieve", &record, &zones)?;
            if let Some(modified) = current.modified.crm.filter(|at| *at > expected) {
                return Err(CrmError::ChangedMeanwhile {
                    id: id.to_string(),
                    modified: modified.to_string(),
                    expected: expected.to_string(),
                });
            }
        }
        let mut element = self.element(&patch.event, &patch.fields, &zones)?;
        element.insert("id".to_owned(), Value::String(id.as_str().to_owned()));
        // `revise` is the partial update; `update` would need every mandatory field.
        match self.write("revise", element, &[]).await {
            Ok(record) => Ok(Some(self.to_event("revise", &record, &zones)?)),
            Err(err) if is_gone(&err) => Ok(None),
            Err(err) => Err(err),
        }
    }

    async fn delete(&self, id: &CrmEventId) -> Result<DeleteOutcome, CrmError> {
        match self.client.post("delete", &[("id", id.as_str())]).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(err) if is_gone(&err) => Ok(DeleteOutcome::AlreadyGone),
            Err(err) => Err(err),
        }
    }

    async fn describe(&self) -> Result<EventSchema, CrmError> {
        let value = self
            .client
            .get("describe", &[("elementType", "Events")])
            .await?;
        wire::schema("describe", value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_hides_the_key() {
        let config = VtigerConfig::new("https://crm", "admin", AccessKey::new("topsecret"));
        assert!(!format!("{config:?}").contains("topsecret"));
    }

    #[test]
    fn bad_zone_is_a_config_error() {
        let mut config = VtigerConfig::new("https://crm", "admin", AccessKey::new("k"));
        config.server_zone = "Mars/Olympus".into();
        assert!(matches!(VtigerCrm::new(config), Err(CrmError::Config(_))));
    }
}
