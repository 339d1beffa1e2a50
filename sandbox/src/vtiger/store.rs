//! The emulated CRM's data and the behaviour of each operation, without HTTP.
//!
//! Faithful to vtiger 8 as observed (see docs/design.md §8): values are strings; date/time fields
//! are stored exactly as written (no zone conversion); modification times are server-zone wall
//! clock at one-second resolution; deleted records answer ACCESS_DENIED; `reminder_time` goes in
//! as seconds and comes out as minutes with the zero-minute bump; invitees come from the raw
//! `inviteesid` parameter and are wiped by any edit without it; durations are recomputed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use md5::{Digest, Md5};
use rand::Rng;
use serde_json::{json, Map, Value};

use super::describe::{
    self, CALENDAR_PREFIX, EVENTS_PREFIX, EVENT_FIELDS, GROUPS_PREFIX, MANDATORY, USERS_PREFIX,
    USER_FIELDS, WRITABLE,
};

pub const SESSION_IDLE_SECS: i64 = 1800;
pub const SESSION_MAX_SECS: i64 = 86_400;
pub const CHALLENGE_SECS: i64 = 300;

/// A handled webservice error: HTTP 200, `success:false`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsError {
    pub code: &'static str,
    pub message: String,
}

impl WsError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn denied() -> Self {
        Self::new(
            "ACCESS_DENIED",
            "Permission to perform the operation is denied",
        )
    }

    pub(super) fn bad_id() -> Self {
        Self::new("INVALID_ID_ATTRIBUTE", "Id specified is incorrect")
    }

    fn internal() -> Self {
        Self::new(
            "INTERNAL_SERVER_ERROR",
            "Unknown Error while processing request",
        )
    }
}

/// What an operation produced: a result, a handled error, or a PHP fatal (HTTP 500, no JSON).
#[derive(Debug)]
pub enum Outcome {
    Ok(Value),
    Error(WsError),
    Fatal,
}

impl From<Result<Value, WsError>> for Outcome {
    fn from(result: Result<Value, WsError>) -> Self {
        match result {
            Ok(value) => Outcome::Ok(value),
            Err(err) => Outcome::Error(err),
        }
    }
}

/// A CRM user as the control handle sets it up.
#[derive(Debug, Clone)]
pub struct UserSpec {
    pub user_name: String,
    /// `None`: the user has no access key (login answers ACCESSKEY_UNDEFINED).
    pub access_key: Option<String>,
    pub is_admin: bool,
    pub active: bool,
    pub time_zone: String,
    /// `yyyy-mm-dd`, `dd-mm-yyyy` or `mm-dd-yyyy`.
    pub date_format: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Record number; the next free one when `None`.
    pub id: Option<u64>,
}

impl UserSpec {
    pub fn new(user_name: impl Into<String>, access_key: impl Into<String>) -> Self {
        let user_name = user_name.into();
        Self {
            email: format!("{user_name}@example.invalid"),
            first_name: user_name.clone(),
            last_name: "User".to_owned(),
            user_name,
            access_key: Some(access_key.into()),
            is_admin: false,
            active: true,
            time_zone: "UTC".to_owned(),
            date_format: "yyyy-mm-dd".to_owned(),
            id: None,
        }
    }

    pub fn admin(mut self) -> Self {
        self.is_admin = true;
        self
    }

    pub fn zone(mut self, zone: impl Into<String>) -> Self {
        self.time_zone = zone.into();
        self
    }

    pub fn date_format(mut self, format: impl Into<String>) -> Self {
        self.date_format = format.into();
        self
    }

    pub fn with_id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }
}

#[derive(Debug, Clone)]
pub(super) struct User {
    pub(super) spec: UserSpec,
    pub(super) id: u64,
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub crmid: u64,
    pub owner: u64,
    /// Writable fields, as stored.
    pub fields: BTreeMap<String, String>,
    /// Minutes; `None` = no reminder row (reads as ""), `Some(0)` reads as "0".
    pub reminder: Option<u32>,
    /// Invited user numbers.
    pub invitees: BTreeSet<u64>,
    pub deleted: bool,
    pub created: DateTime,
    pub modified: DateTime,
    pub modified_by: u64,
    pub created_by: u64,
}

#[derive(Debug, Clone)]
struct SessionEntry {
    user: u64,
    created: i64,
    last_used: i64,
}

#[derive(Debug, Clone)]
struct Challenge {
    token: String,
    expires: i64,
}

/// An event to put in the CRM directly, as if made in the web UI.
#[derive(Debug, Clone, Default)]
pub struct SeedEvent {
    pub owner: u64,
    /// Any writable fields; the mandatory ones get defaults when missing.
    pub fields: BTreeMap<String, String>,
    /// Stored minutes; `None` = no reminder row (reads as "").
    pub reminder_minutes: Option<u32>,
    pub invitees: Vec<u64>,
    /// Record number; the next free one when `None`.
    pub crmid: Option<u64>,
    /// Server-zone modification time; now when `None`.
    pub modified: Option<DateTime>,
}

pub struct Store {
    pub(super) users: BTreeMap<u64, User>,
    pub(super) events: BTreeMap<u64, StoredEvent>,
    sessions: HashMap<String, SessionEntry>,
    challenges: HashMap<u64, Challenge>,
    pub(super) next_id: u64,
    pub zone: TimeZone,
    pub zone_name: String,
    pub vtiger_version: String,
    pub clock_offset_secs: i64,
    /// vtiger's token table has one row per user: a new challenge replaces the user's token.
    /// vtiger 8.2.0 leaves the user's earlier sessions working (measured); with this set, a new
    /// challenge ends them too (a stricter install calsync must survive).
    pub challenge_ends_sessions: bool,
    /// Whether `sync` reads the `syncType` parameter (needs a registry row on real installs).
    pub honour_sync_type: bool,
    /// The calsync CRM module is installed: a webservice save without an `inviteesid`
    /// parameter keeps the invitee list instead of clearing it (stock vtiger clears it).
    pub invitee_module: bool,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            users: BTreeMap::new(),
            events: BTreeMap::new(),
            sessions: HashMap::new(),
            challenges: HashMap::new(),
            next_id: 1,
            zone: TimeZone::UTC,
            zone_name: "UTC".to_owned(),
            vtiger_version: "8.2.0".to_owned(),
            clock_offset_secs: 0,
            challenge_ends_sessions: false,
            honour_sync_type: true,
            invitee_module: false,
        }
    }
}

pub(super) fn ws_id(prefix: u64, number: u64) -> String {
    format!("{prefix}x{number}")
}

/// `18x5` → (18, 5).
pub(super) fn split_id(id: &str) -> Option<(u64, u64)> {
    let (prefix, number) = id.trim().split_once('x')?;
    Some((prefix.parse().ok()?, number.parse().ok()?))
}

fn civil_text(at: DateTime) -> String {
    at.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn random_hex(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Seconds → stored minutes: split into days/hours/minutes, a zero minute part becomes 1.
pub fn reminder_minutes_from_seconds(seconds: u64) -> u32 {
    let days = seconds / 86_400;
    let hours = (seconds % 86_400) / 3_600;
    let mut minutes = (seconds % 3_600) / 60;
    if minutes == 0 {
        minutes = 1;
    }
    u32::try_from(days * 1_440 + hours * 60 + minutes).unwrap_or(u32::MAX)
}

/// What a column keeps of a value, as vtiger 8.2.0 on MariaDB does without strict mode: the
/// tables are utf8mb3, so a character outside the BMP (an emoji) becomes four `?`, and a value
/// longer than its column is cut, both without an error. `source` (which a webservice create
/// may set) is stored in capitals.
pub(super) fn stored_text(column: &str, value: &str) -> String {
    if column == "source" {
        return stored_text("", &value.to_uppercase())
            .chars()
            .take(100)
            .collect();
    }
    let mut kept = String::with_capacity(value.len());
    for c in value.chars() {
        if c.len_utf8() == 4 {
            kept.push_str("????");
        } else {
            kept.push(c);
        }
    }
    let limit = match column {
        "subject" => 255,
        "location" => 150,
        "visibility" => 50,
        "eventstatus" | "activitytype" => 200,
        _ => return kept,
    };
    kept.chars().take(limit).collect()
}

pub(super) fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(true) => "1".to_owned(),
        Value::Bool(false) => "0".to_owned(),
        _ => String::new(),
    }
}

impl Store {
    pub fn now(&self) -> i64 {
        let local = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        local + self.clock_offset_secs
    }

    /// The server's wall clock now (second resolution).
    pub fn now_civil(&self) -> DateTime {
        let at = Timestamp::from_second(self.now()).unwrap_or(Timestamp::UNIX_EPOCH);
        self.zone.to_datetime(at)
    }

    pub(super) fn epoch_of(&self, at: DateTime) -> i64 {
        self.zone
            .to_timestamp(at)
            .map(Timestamp::as_second)
            .unwrap_or(0)
    }

    pub(super) fn civil_of(&self, epoch: i64) -> DateTime {
        let at = Timestamp::from_second(epoch).unwrap_or(Timestamp::UNIX_EPOCH);
        self.zone.to_datetime(at)
    }

    // ---- control -------------------------------------------------------------------------

    pub fn add_user(&mut self, spec: UserSpec) -> u64 {
        let id = spec.id.unwrap_or_else(|| {
            self.users
                .keys()
                .next_back()
                .map(|last| last + 1)
                .unwrap_or(1)
        });
        self.users.insert(id, User { spec, id });
        id
    }

    pub fn user_id(&self, user_name: &str) -> Option<u64> {
        self.users
            .values()
            .find(|user| user.spec.user_name == user_name)
            .map(|user| user.id)
    }

    pub fn seed(&mut self, seed: SeedEvent) -> String {
        let now = self.now_civil();
        let crmid = seed.crmid.unwrap_or(self.next_id);
        self.next_id = self.next_id.max(crmid + 1);
        let mut fields = default_fields();
        for (key, value) in &seed.fields {
            if WRITABLE.contains(&key.as_str()) {
                fields.insert(key.clone(), stored_text(key, value));
            }
        }
        recompute_duration(&mut fields, &self.zone);
        let modified = seed.modified.unwrap_or(now);
        self.events.insert(
            crmid,
            StoredEvent {
                crmid,
                owner: seed.owner,
                fields,
                reminder: seed.reminder_minutes,
                invitees: seed.invitees.into_iter().collect(),
                deleted: false,
                created: modified,
                modified,
                modified_by: seed.owner,
                created_by: seed.owner,
            },
        );
        ws_id(EVENTS_PREFIX, crmid)
    }

    pub fn event(&self, crmid: u64) -> Option<&StoredEvent> {
        self.events.get(&crmid)
    }

    /// A web-UI style edit: fields change, invitees and reminder stay, modifiedtime moves.
    pub fn ui_edit(&mut self, crmid: u64, changes: &BTreeMap<String, String>) -> bool {
        let now = self.now_civil();
        let zone = self.zone.clone();
        let Some(event) = self.events.get_mut(&crmid) else {
            return false;
        };
        for (key, value) in changes {
            if key == "assigned_user_id" {
                if let Some((_, owner)) = split_id(value) {
                    event.owner = owner;
                }
            } else if WRITABLE.contains(&key.as_str()) {
                event.fields.insert(key.clone(), stored_text(key, value));
            }
        }
        recompute_duration(&mut event.fields, &zone);
        event.modified = now;
        true
    }

    /// The web UI's invitee picker: its form always sends the whole list.
    pub fn ui_invite(&mut self, crmid: u64, invitees: &[u64]) -> bool {
        let now = self.now_civil();
        match self.events.get_mut(&crmid) {
            Some(event) if !event.deleted => {
                event.invitees = invitees.iter().copied().collect();
                event.modified = now;
                true
            }
            _ => false,
        }
    }

    pub fn ui_delete(&mut self, crmid: u64) -> bool {
        let now = self.now_civil();
        match self.events.get_mut(&crmid) {
            Some(event) if !event.deleted => {
                event.deleted = true;
                event.modified = now;
                true
            }
            _ => false,
        }
    }

    /// End every session (as a PHP session garbage collection would).
    pub fn expire_sessions(&mut self) {
        self.sessions.clear();
    }

    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    // ---- sessions ------------------------------------------------------------------------

    /// The user behind a session, refreshing its idle timer.
    pub fn check_session(&mut self, session: Option<&str>) -> Result<u64, WsError> {
        let now = self.now();
        let Some(session) = session.filter(|value| !value.is_empty() && *value != "null") else {
            return Err(WsError::new(
                "AUTHENTICATION_REQUIRED",
                "Authencation required",
            ));
        };
        let Some(entry) = self.sessions.get_mut(session) else {
            return Err(WsError::new(
                "INVALID_SESSIONID",
                "Session Identifier provided is Invalid",
            ));
        };
        if now - entry.created > SESSION_MAX_SECS {
            self.sessions.remove(session);
            return Err(WsError::new("SESSION_EXPIRED", "Session Expired"));
        }
        if now - entry.last_used > SESSION_IDLE_SECS {
            self.sessions.remove(session);
            return Err(WsError::new("SESSION_LEFT_IDLE", "Session left idle"));
        }
        entry.last_used = now;
        Ok(entry.user)
    }

    pub fn getchallenge(&mut self, user_name: &str) -> Result<Value, WsError> {
        if user_name.is_empty() {
            return Err(WsError::new("ACCESS_DENIED", "No username given"));
        }
        let Some(user) = self.user_id(user_name) else {
            return Err(WsError::new("ACCESS_DENIED", "username does not exists"));
        };
        let now = self.now();
        let token = random_hex(13);
        self.challenges.insert(
            user,
            Challenge {
                token: token.clone(),
                expires: now + CHALLENGE_SECS,
            },
        );
        if self.challenge_ends_sessions {
            self.sessions.retain(|_, entry| entry.user != user);
        }
        Ok(json!({"token": token, "serverTime": now, "expireTime": now + CHALLENGE_SECS}))
    }

    pub fn login(&mut self, user_name: &str, access_key: &str) -> Result<Value, WsError> {
        let now = self.now();
        let user = self
            .users
            .values()
            .find(|user| user.spec.user_name == user_name)
            .cloned();
        let invalid_token = || {
            WsError::new(
                "INVALID_AUTH_TOKEN",
                "Specified token is invalid or expired",
            )
        };
        let Some(user) = user else {
            return Err(invalid_token());
        };
        let Some(challenge) = self
            .challenges
            .get(&user.id)
            .filter(|challenge| challenge.expires >= now)
        else {
            return Err(invalid_token());
        };
        let Some(key) = user.spec.access_key.as_deref() else {
            return Err(WsError::new(
                "ACCESSKEY_UNDEFINED",
                "Access key for the user is undefined",
            ));
        };
        let mut hasher = Md5::new();
        hasher.update(challenge.token.as_bytes());
        hasher.update(key.as_bytes());
        let expected = hex::encode(hasher.finalize());
        if !user.spec.active || expected != access_key {
            return Err(WsError::new(
                "INVALID_USER_CREDENTIALS",
                "Invalid username or password",
            ));
        }
        let session = random_hex(21);
        self.sessions.insert(
            session.clone(),
            SessionEntry {
                user: user.id,
                created: now,
                last_used: now,
            },
        );
        let mut result = Map::new();
        let major: u32 = self
            .vtiger_version
            .split('.')
            .next()
            .and_then(|major| major.parse().ok())
            .unwrap_or(0);
        if major >= 8 {
            let spec = &user.spec;
            for (key, value) in [
                ("username", spec.user_name.as_str()),
                ("first_name", spec.first_name.as_str()),
                ("last_name", spec.last_name.as_str()),
                ("email", spec.email.as_str()),
                ("time_zone", spec.time_zone.as_str()),
                ("hour_format", "12"),
                ("date_format", spec.date_format.as_str()),
                ("is_admin", if spec.is_admin { "on" } else { "off" }),
                ("call_duration", "5"),
                ("other_event_duration", "5"),
            ] {
                result.insert(key.to_owned(), json!(value));
            }
        }
        result.insert("sessionName".to_owned(), json!(session));
        result.insert("userId".to_owned(), json!(ws_id(USERS_PREFIX, user.id)));
        result.insert("version".to_owned(), json!("0.22"));
        result.insert("vtigerVersion".to_owned(), json!(self.vtiger_version));
        Ok(Value::Object(result))
    }

    pub fn logout(&mut self, session: &str) -> Value {
        self.sessions.remove(session);
        json!({"message": "successfull"})
    }

    pub(super) fn is_admin(&self, user: u64) -> bool {
        self.users.get(&user).is_some_and(|user| user.spec.is_admin)
    }

    pub(super) fn can_see(&self, user: u64, event: &StoredEvent) -> bool {
        self.is_admin(user) || event.owner == user
    }

    // ---- records -------------------------------------------------------------------------

    /// A record as the API writes it.
    pub(super) fn render(
        &self,
        event: &StoredEvent,
        viewer: u64,
        with_label: bool,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for name in EVENT_FIELDS {
            let value = match name {
                "assigned_user_id" => ws_id(USERS_PREFIX, event.owner),
                "createdtime" => civil_text(event.created),
                "modifiedtime" => civil_text(event.modified),
                "modifiedby" => ws_id(USERS_PREFIX, event.modified_by),
                "reminder_time" => event.reminder.map(|m| m.to_string()).unwrap_or_default(),
                // A per-user flag: only its creator has a row.
                "starred" if viewer != event.created_by => String::new(),
                "starred" => "0".to_owned(),
                "id" => ws_id(EVENTS_PREFIX, event.crmid),
                other => event.fields.get(other).cloned().unwrap_or_default(),
            };
            out.insert(name.to_owned(), Value::String(value));
        }
        if with_label {
            out.insert(
                "label".to_owned(),
                json!(event.fields.get("subject").cloned().unwrap_or_default()),
            );
        }
        out
    }

    pub(super) fn render_user(&self, user: &User) -> Map<String, Value> {
        let spec = &user.spec;
        let mut out = Map::new();
        for name in USER_FIELDS {
            let value = match name {
                "user_name" => spec.user_name.clone(),
                "first_name" => spec.first_name.clone(),
                "last_name" => spec.last_name.clone(),
                "email1" => spec.email.clone(),
                "status" => if spec.active { "Active" } else { "Inactive" }.to_owned(),
                "is_admin" => if spec.is_admin { "on" } else { "off" }.to_owned(),
                "time_zone" => spec.time_zone.clone(),
                "date_format" => spec.date_format.clone(),
                "hour_format" => "12".to_owned(),
                _ => ws_id(USERS_PREFIX, user.id),
            };
            out.insert(name.to_owned(), Value::String(value));
        }
        out
    }

    /// The live event behind an id, as vtiger looks it up (module check before existence).
    fn live_event(&self, id: &str, user: u64) -> Result<u64, WsError> {
        let Some((prefix, number)) = split_id(id) else {
            return Err(WsError::bad_id());
        };
        match prefix {
            EVENTS_PREFIX => match self.events.get(&number) {
                Some(event) if !event.deleted && self.can_see(user, event) => Ok(number),
                _ => Err(WsError::denied()),
            },
            // An event id under the tasks' (or another module's) prefix.
            CALENDAR_PREFIX | USERS_PREFIX | GROUPS_PREFIX if self.events.contains_key(&number) => {
                Err(WsError::bad_id())
            }
            _ => Err(WsError::new(
                "ACCESS_DENIED",
                "Permission to perform the operation is denied for id",
            )),
        }
    }

    pub fn retrieve(&self, id: &str, user: u64) -> Result<Value, WsError> {
        if let Some((USERS_PREFIX, number)) = split_id(id) {
            return match self.users.get(&number) {
                Some(found) if self.is_admin(user) || number == user => {
                    Ok(Value::Object(self.render_user(found)))
                }
                _ => Err(WsError::denied()),
            };
        }
        let crmid = self.live_event(id, user)?;
        let event = self.events.get(&crmid).ok_or_else(WsError::denied)?;
        Ok(Value::Object(self.render(event, user, true)))
    }

    pub fn describe(&self, element_type: &str, user: u64) -> Result<Value, WsError> {
        if element_type != "Events" {
            return Err(WsError::new(
                "ACCESS_DENIED",
                format!("Permission to perform the operation is denied for {element_type}"),
            ));
        }
        let format = self
            .users
            .get(&user)
            .map(|user| user.spec.date_format.clone())
            .unwrap_or_else(|| "yyyy-mm-dd".to_owned());
        Ok(describe::events(&format))
    }

    fn date_format_of(&self, user: u64) -> String {
        self.users
            .get(&user)
            .map(|user| user.spec.date_format.clone())
            .unwrap_or_default()
    }

    /// Element values → stored values, checked like vtiger does.
    fn prepare(
        &self,
        element: &Map<String, Value>,
        user: u64,
        mandatory: Mandatory,
    ) -> Result<Map<String, Value>, WsError> {
        let mut element = element.clone();
        // Empty references are dropped before anything else looks at them.
        for name in ["parent_id", "contact_id"] {
            if element
                .get(name)
                .is_some_and(|value| value_text(value).is_empty())
            {
                element.remove(name);
            }
        }
        for name in MANDATORY {
            let present = element.get(name).map(value_text);
            let missing = match mandatory {
                Mandatory::All => present.is_none_or(|text| text.is_empty()),
                Mandatory::Present => present.is_some_and(|text| text.is_empty()),
            };
            if missing {
                return Err(WsError::new(
                    "MANDATORY_FIELDS_MISSING",
                    format!("{name} does not have a value"),
                ));
            }
        }
        if let Some(owner) = element.get("assigned_user_id").map(value_text) {
            match split_id(&owner) {
                Some((USERS_PREFIX, number)) if self.users.contains_key(&number) => {}
                Some((GROUPS_PREFIX, _)) => {}
                Some(_) => return Err(WsError::denied()),
                None => return Err(WsError::bad_id()),
            }
        }
        let format = self.date_format_of(user);
        for name in ["date_start", "due_date"] {
            if let Some(value) = element.get(name).map(value_text) {
                let date = parse_input_date(&value, &format).ok_or_else(|| {
                    WsError::new(
                        "DATABASE_QUERY_ERROR",
                        "Database error while performing requested operation",
                    )
                })?;
                element.insert(name.to_owned(), json!(date.to_string()));
            }
        }
        for name in ["time_start", "time_end"] {
            if let Some(value) = element.get(name).map(value_text) {
                let time = parse_input_time(&value).ok_or_else(|| {
                    WsError::new(
                        "DATABASE_QUERY_ERROR",
                        "Database error while performing requested operation",
                    )
                })?;
                element.insert(name.to_owned(), json!(time));
            }
        }
        Ok(element)
    }

    /// The invitee list a save builds from the raw `inviteesid` parameter: user numbers split
    /// on `;`, not checked against the users (vtiger 8.2.0 stores an unknown number too).
    fn invitee_set(raw: Option<&str>) -> BTreeSet<u64> {
        raw.unwrap_or_default()
            .split(';')
            .filter_map(|part| part.trim().parse().ok())
            .collect()
    }

    pub fn create(
        &mut self,
        element_type: &str,
        element: &str,
        invitees: Option<&str>,
        user: u64,
    ) -> Result<Value, WsError> {
        if element_type != "Events" {
            return Err(WsError::new(
                "ACCESS_DENIED",
                format!("Permission to perform the operation is denied for {element_type}"),
            ));
        }
        let element = parse_element(element)?;
        let element = self.prepare(&element, user, Mandatory::All)?;
        let now = self.now_civil();
        let crmid = self.next_id;
        self.next_id += 1;
        let mut fields = default_fields();
        let mut owner = user;
        for (key, value) in &element {
            if key == "assigned_user_id" {
                owner = split_id(&value_text(value)).map(|(_, n)| n).unwrap_or(user);
            } else if WRITABLE.contains(&key.as_str()) {
                fields.insert(key.clone(), stored_text(key, &value_text(value)));
            }
        }
        recompute_duration(&mut fields, &self.zone);
        let event = StoredEvent {
            crmid,
            owner,
            fields,
            reminder: Some(reminder_from(&element).unwrap_or(0)),
            invitees: Self::invitee_set(invitees),
            deleted: false,
            created: now,
            modified: now,
            modified_by: user,
            created_by: user,
        };
        let rendered = self.render(&event, user, true);
        self.events.insert(crmid, event);
        Ok(Value::Object(rendered))
    }

    /// `update` (all mandatory fields required) and `revise` (only those present).
    pub fn edit(
        &mut self,
        element: &str,
        invitees: Option<&str>,
        user: u64,
        mandatory: Mandatory,
    ) -> Result<Value, WsError> {
        let element = parse_element(element)?;
        let id = element.get("id").map(value_text).unwrap_or_default();
        let crmid = self.live_event(&id, user)?;
        let element = self.prepare(&element, user, mandatory)?;
        let now = self.now_civil();
        let zone = self.zone.clone();
        let keep_invitees = invitees.is_none() && self.invitee_module;
        let invitees = Self::invitee_set(invitees);
        let event = self.events.get_mut(&crmid).ok_or_else(WsError::denied)?;
        for (key, value) in &element {
            if key == "assigned_user_id" {
                if let Some((_, number)) = split_id(&value_text(value)) {
                    event.owner = number;
                }
            } else if WRITABLE.contains(&key.as_str()) && key != "source" {
                event
                    .fields
                    .insert(key.clone(), stored_text(key, &value_text(value)));
            }
        }
        recompute_duration(&mut event.fields, &zone);
        // Any edit without a reminder deletes the reminder row.
        event.reminder = reminder_from(&element);
        // The invitee list is rebuilt from the raw request parameter, empty when absent —
        // unless the CRM module keeps it for a request that does not name it.
        if !keep_invitees {
            event.invitees = invitees;
        }
        event.modified = now;
        event.modified_by = user;
        let event = event.clone();
        Ok(Value::Object(self.render(&event, user, true)))
    }

    pub fn delete(&mut self, id: &str, user: u64) -> Result<Value, WsError> {
        let crmid = self.live_event(id, user)?;
        let now = self.now_civil();
        if let Some(event) = self.events.get_mut(&crmid) {
            event.deleted = true;
            event.modified = now;
            event.modified_by = user;
        }
        Ok(json!({"status": "successful"}))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mandatory {
    All,
    Present,
}

fn default_fields() -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    for (name, value) in [
        ("subject", ""),
        ("recurringtype", ""),
        ("duration_hours", "0"),
        ("duration_minutes", "0"),
        ("parent_id", ""),
        ("eventstatus", "Planned"),
        ("sendnotification", "0"),
        ("activitytype", "Meeting"),
        ("location", ""),
        ("taskpriority", ""),
        ("notime", "0"),
        ("visibility", ""),
        ("description", ""),
        ("contact_id", ""),
        ("source", "WEBSERVICE"),
        ("tags", ""),
    ] {
        fields.insert(name.to_owned(), value.to_owned());
    }
    fields
}

fn parse_element(element: &str) -> Result<Map<String, Value>, WsError> {
    match serde_json::from_str::<Value>(element) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(WsError::internal()),
    }
}

/// The reminder a write sets: non-zero seconds → minutes; zero, empty or absent → none.
fn reminder_from(element: &Map<String, Value>) -> Option<u32> {
    let seconds: u64 = value_text(element.get("reminder_time")?)
        .trim()
        .parse()
        .ok()?;
    (seconds > 0).then(|| reminder_minutes_from_seconds(seconds))
}

/// ISO, or the user's own display format, as vtiger accepts on input.
fn parse_input_date(value: &str, user_format: &str) -> Option<Date> {
    let value = value.trim();
    if let Ok(date) = Date::strptime("%Y-%m-%d", value) {
        return Some(date);
    }
    let pattern = match user_format {
        "dd-mm-yyyy" => "%d-%m-%Y",
        "mm-dd-yyyy" => "%m-%d-%Y",
        _ => return None,
    };
    Date::strptime(pattern, value).ok()
}

fn parse_input_time(value: &str) -> Option<String> {
    let value = value.trim();
    let time = Time::strptime("%H:%M:%S", value)
        .or_else(|_| Time::strptime("%H:%M", value))
        .ok()?;
    Some(time.strftime("%H:%M:%S").to_string())
}

/// duration_hours/minutes from start and end, as the save code recomputes them.
fn recompute_duration(fields: &mut BTreeMap<String, String>, zone: &TimeZone) {
    let instant = |date: &str, time: &str| -> Option<i64> {
        let date = Date::strptime("%Y-%m-%d", date).ok()?;
        let time = Time::strptime("%H:%M:%S", time).ok()?;
        zone.to_timestamp(date.to_datetime(time))
            .ok()
            .map(Timestamp::as_second)
    };
    let get = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (Some(start), Some(end)) = (
        instant(&get("date_start"), &get("time_start")),
        instant(&get("due_date"), &get("time_end")),
    ) else {
        return;
    };
    let seconds = (end - start).max(0);
    fields.insert("duration_hours".to_owned(), (seconds / 3600).to_string());
    fields.insert(
        "duration_minutes".to_owned(),
        ((seconds % 3600) / 60).to_string(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_keep_what_the_real_install_keeps() {
        let long = "é".repeat(300);
        assert_eq!(stored_text("subject", &long).chars().count(), 255);
        assert_eq!(stored_text("location", &long).chars().count(), 150);
        assert_eq!(stored_text("description", &long), long);
        assert_eq!(stored_text("subject", "Party 😀 time"), "Party ???? time");
        assert_eq!(stored_text("subject", "会議 café"), "会議 café");
        assert_eq!(stored_text("source", "calsync-7f3a"), "CALSYNC-7F3A");
    }

    #[test]
    fn reminder_bump_matches_the_real_install() {
        for (seconds, minutes) in [
            (60, 1),
            (300, 5),
            (900, 15),
            (3600, 61),
            (5400, 90),
            (86_400, 1441),
            (15, 1),
        ] {
            assert_eq!(reminder_minutes_from_seconds(seconds), minutes, "{seconds}");
        }
    }

    #[test]
    fn dates_in_the_users_format_are_accepted() {
        assert_eq!(
            parse_input_date("01-12-2026", "dd-mm-yyyy").map(|d| d.to_string()),
            Some("2026-12-01".to_owned())
        );
        assert_eq!(
            parse_input_date("2026-12-01", "dd-mm-yyyy").map(|d| d.to_string()),
            Some("2026-12-01".to_owned())
        );
        assert_eq!(parse_input_date("01-12-2026", "yyyy-mm-dd"), None);
        assert_eq!(parse_input_time("9:05").as_deref(), Some("09:05:00"));
    }

    #[test]
    fn durations_follow_start_and_end() {
        let mut fields = default_fields();
        for (key, value) in [
            ("date_start", "2026-12-01"),
            ("time_start", "09:00:00"),
            ("due_date", "2026-12-01"),
            ("time_end", "10:30:00"),
        ] {
            fields.insert(key.into(), value.into());
        }
        recompute_duration(&mut fields, &TimeZone::UTC);
        assert_eq!(fields["duration_hours"], "1");
        assert_eq!(fields["duration_minutes"], "30");
    }
}
