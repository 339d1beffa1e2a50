//! vtiger webservice replies as they come off the wire, parsed leniently (vtiger writes almost
//! everything as strings, and `null` or `""` for empty values) but never with a panic.

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::adapters::crm::error::{CrmError, CrmErrorCode};
use crate::adapters::crm::{EventSchema, SchemaField};

/// How much of a bad body an error message quotes.
const BODY_START_CHARS: usize = 160;

/// The start of a body, for error messages: short, one line.
pub fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(BODY_START_CHARS)
        .collect();
    if text.chars().count() > BODY_START_CHARS {
        out.push('…');
    }
    out
}

/// Unwrap the `{success, result | error}` envelope of one reply.
pub fn parse_reply(operation: &str, status: u16, body: &[u8]) -> Result<Value, CrmError> {
    if !(200..300).contains(&status) {
        return Err(CrmError::Http {
            operation: operation.to_owned(),
            status,
            body_start: body_start(body),
        });
    }
    let malformed = |reason: &'static str| CrmError::Malformed {
        operation: operation.to_owned(),
        reason,
        body_start: body_start(body),
    };
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        if body.iter().all(u8::is_ascii_whitespace) {
            malformed("empty body")
        } else if err.is_eof() {
            malformed("truncated JSON")
        } else {
            malformed("not JSON")
        }
    })?;
    let Value::Object(mut envelope) = value else {
        return Err(malformed("JSON but not an object"));
    };
    match envelope.get("success") {
        Some(Value::Bool(true)) => Ok(envelope.remove("result").unwrap_or(Value::Null)),
        Some(Value::Bool(false)) => {
            let error = envelope.get("error").and_then(Value::as_object);
            let Some(error) = error else {
                return Err(malformed("success:false without an error object"));
            };
            let text = |key: &str| error.get(key).map(scalar_text).unwrap_or_default();
            Err(CrmError::Api {
                operation: operation.to_owned(),
                code: CrmErrorCode::parse(&text("code")),
                message: text("message"),
            })
        }
        _ => Err(malformed("no boolean success flag")),
    }
}

/// Decode a typed result, turning a shape mismatch into a typed error.
pub fn decode<T: for<'de> Deserialize<'de>>(operation: &str, value: Value) -> Result<T, CrmError> {
    serde_json::from_value(value).map_err(|err| CrmError::InvalidData {
        operation: operation.to_owned(),
        record: None,
        source: Box::new(err),
    })
}

/// A scalar as vtiger means it: strings as they are, numbers and booleans as text, null as "".
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(true) => "1".to_owned(),
        Value::Bool(false) => "0".to_owned(),
        Value::Null | Value::Array(_) | Value::Object(_) => String::new(),
    }
}

fn lenient_i64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Number(number) => number
            .as_i64()
            .ok_or_else(|| de::Error::custom("number out of range")),
        Value::String(text) => text
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("not an integer: {text:?}"))),
        other => Err(de::Error::custom(format!("not an integer: {other}"))),
    }
}

fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Bool(flag) => flag,
        Value::Number(number) => number.as_i64().unwrap_or(0) != 0,
        Value::String(text) => matches!(text.as_str(), "1" | "true" | "on" | "yes"),
        _ => false,
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(scalar_text(&Value::deserialize(deserializer)?))
}

/// The empty PHP array is written as `[]` even where a map is meant.
fn list_or_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: for<'a> Deserialize<'a>,
{
    match Value::deserialize(deserializer)? {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        other => serde_json::from_value(other).map_err(de::Error::custom),
    }
}

/// `getchallenge` result.
#[derive(Debug, Clone, Deserialize)]
pub struct Challenge {
    pub token: String,
    #[serde(rename = "serverTime", deserialize_with = "lenient_i64")]
    pub server_time: i64,
    #[serde(rename = "expireTime", deserialize_with = "lenient_i64")]
    pub expire_time: i64,
}

/// `login` result; vtiger 8 adds the user's profile, older versions only the first four keys.
#[derive(Clone, Deserialize)]
pub struct LoginResult {
    #[serde(rename = "sessionName")]
    pub session_name: String,
    #[serde(rename = "userId")]
    pub user_id: String,
    #[serde(default, deserialize_with = "lenient_string")]
    pub version: String,
    #[serde(rename = "vtigerVersion", default, deserialize_with = "lenient_string")]
    pub vtiger_version: String,
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub is_admin: Option<String>,
}

impl std::fmt::Debug for LoginResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResult")
            .field("session_name", &"***")
            .field("user_id", &self.user_id)
            .field("vtiger_version", &self.vtiger_version)
            .finish()
    }
}

/// A record as `retrieve`, `query`, `sync`, `create`, `update` and `revise` return it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct Record(pub Map<String, Value>);

impl Record {
    /// A field's text; missing, `null` and `""` all read as "".
    pub fn text(&self, field: &str) -> String {
        self.0.get(field).map(scalar_text).unwrap_or_default()
    }

    pub fn id(&self) -> String {
        self.text("id")
    }

    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
}

/// `sync` result.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncResult {
    #[serde(default, deserialize_with = "list_or_empty")]
    pub updated: Vec<Record>,
    #[serde(default, deserialize_with = "list_or_empty")]
    pub deleted: Vec<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    pub more: bool,
    #[serde(rename = "lastModifiedTime", deserialize_with = "lenient_i64")]
    pub last_modified_time: i64,
}

/// `query` result: a list of records (or of projections, or `[{"count": "N"}]`).
pub fn records(operation: &str, value: Value) -> Result<Vec<Record>, CrmError> {
    match value {
        Value::Array(_) | Value::Null => {
            Ok(decode::<Option<Vec<Record>>>(operation, value)?.unwrap_or_default())
        }
        Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        other => Err(CrmError::Unexpected {
            operation: operation.to_owned(),
            what: kind(&other),
        }),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null where a list of records belongs",
        Value::Bool(_) => "a boolean where a list of records belongs",
        Value::Number(_) => "a number where a list of records belongs",
        Value::String(_) => "a string where a list of records belongs",
        Value::Array(_) => "a list that is not of records",
        Value::Object(_) => "an object where a list of records belongs",
    }
}

#[derive(Debug, Clone, Deserialize)]
struct PicklistValue {
    #[serde(default, deserialize_with = "lenient_string")]
    value: String,
}

#[derive(Debug, Clone, Deserialize)]
struct FieldType {
    #[serde(default, deserialize_with = "lenient_string")]
    name: String,
    #[serde(rename = "picklistValues", default, deserialize_with = "list_or_empty")]
    picklist_values: Vec<PicklistValue>,
    #[serde(rename = "defaultValue", default)]
    default_value: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct DescribeField {
    name: String,
    #[serde(default, deserialize_with = "lenient_string")]
    label: String,
    #[serde(default, deserialize_with = "lenient_bool")]
    mandatory: bool,
    #[serde(rename = "type")]
    field_type: FieldType,
    #[serde(default)]
    default: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct DescribeResult {
    #[serde(rename = "idPrefix", deserialize_with = "lenient_string")]
    id_prefix: String,
    #[serde(default, deserialize_with = "list_or_empty")]
    fields: Vec<DescribeField>,
}

/// `describe` result, reduced to what calsync uses.
pub fn schema(operation: &str, value: Value) -> Result<EventSchema, CrmError> {
    let described: DescribeResult = decode(operation, value)?;
    let fields = described
        .fields
        .into_iter()
        .map(|field| {
            let default = field
                .field_type
                .default_value
                .as_ref()
                .or(field.default.as_ref())
                .map(scalar_text)
                .filter(|text| !text.is_empty());
            SchemaField {
                name: field.name,
                label: field.label,
                mandatory: field.mandatory,
                type_name: field.field_type.name,
                picklist: field
                    .field_type
                    .picklist_values
                    .into_iter()
                    .map(|value| value.value)
                    .collect(),
                default,
            }
        })
        .collect();
    Ok(EventSchema {
        id_prefix: described.id_prefix,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_success_and_failure() {
        let ok = parse_reply("x", 200, br#"{"success":true,"result":{"a":1}}"#).unwrap();
        assert_eq!(ok["a"], 1);
        let err = parse_reply(
            "retrieve",
            200,
            br#"{"success":false,"error":{"message":"m","code":"ACCESS_DENIED"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some(&CrmErrorCode::AccessDenied));
    }

    #[test]
    fn bad_bodies_are_typed() {
        let html = parse_reply("sync", 200, b"<html><body>Fatal error</body></html>").unwrap_err();
        assert!(
            matches!(html, CrmError::Malformed { reason, .. } if reason == "not JSON"),
            "{html}"
        );
        let cut = parse_reply("sync", 200, br#"{"success":true,"result":{"upd"#).unwrap_err();
        assert!(
            matches!(cut, CrmError::Malformed { reason, .. } if reason == "truncated JSON"),
            "{cut}"
        );
        let empty = parse_reply("sync", 200, b"").unwrap_err();
        assert!(matches!(empty, CrmError::Malformed { .. }));
        let fatal = parse_reply("sync", 500, b"").unwrap_err();
        assert!(matches!(fatal, CrmError::Http { status: 500, .. }));
        let odd = parse_reply(
            "x",
            200,
            br#"{"success":false,"error":{"code":"NEW_THING"}}"#,
        )
        .unwrap_err();
        assert_eq!(odd.code(), Some(&CrmErrorCode::Other("NEW_THING".into())));
        let no_flag = parse_reply("x", 200, br#"{"result":[]}"#).unwrap_err();
        assert!(matches!(no_flag, CrmError::Malformed { .. }));
    }

    #[test]
    fn lenient_numbers_and_empty_maps() {
        let sync: SyncResult = decode(
            "sync",
            serde_json::json!({"updated": {}, "deleted": [], "more": "0", "lastModifiedTime": "17"}),
        )
        .unwrap();
        assert!(sync.updated.is_empty());
        assert!(!sync.more);
        assert_eq!(sync.last_modified_time, 17);
    }

    #[test]
    fn record_text_reads_nulls_and_numbers() {
        let record: Record =
            serde_json::from_value(serde_json::json!({"a": null, "b": 5, "c": "x"})).unwrap();
        assert_eq!(record.text("a"), "");
        assert_eq!(record.text("b"), "5");
        assert_eq!(record.text("c"), "x");
        assert_eq!(record.text("missing"), "");
    }

    #[test]
    fn body_start_is_short_and_single_line() {
        let long = "x\n".repeat(500);
        let start = body_start(long.as_bytes());
        assert!(!start.contains('\n'));
        assert!(start.chars().count() <= BODY_START_CHARS + 1);
    }
}
