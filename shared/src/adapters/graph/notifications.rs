//! The one parser of Graph's change and lifecycle notifications (`changeNotificationCollection`),
//! for the webhook and for tests. The body comes from the internet: every shape gives a value
//! or an error, never a panic (the fuzz target in `fuzz/` drives it).

use calsync_core::secret::Secret;
use serde_json::{Map, Value};

/// Items beyond this in one request are not from Graph.
pub const MAX_ITEMS: usize = 1000;

/// One notification, read tolerantly (camelCase or PascalCase keys).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Notification {
    pub subscription_id: String,
    /// Secret between Graph and calsync: redacted in `Debug`.
    pub client_state: Option<Secret>,
    pub change_type: Option<String>,
    pub resource: Option<String>,
    pub lifecycle_event: Option<String>,
    /// The directory the notification is about (Graph sends it; calsync does not rely on it).
    pub tenant_id: Option<String>,
    /// Rich notifications carry encrypted resource data, which calsync does not subscribe to.
    pub encrypted: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("the body is not JSON")]
    NotJson,
    #[error("the body is not a notification collection")]
    NotACollection,
    #[error("too many notifications in one request")]
    TooMany,
}

/// The value of `key` in `object`, matching the key without regard to letter case.
fn field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

fn text_field(object: &Map<String, Value>, key: &str) -> Option<String> {
    field(object, key)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Parses a `changeNotificationCollection`. Items without a subscription id are skipped (they
/// cannot be attributed); a body that is not a collection at all is an error.
pub fn parse_collection(body: &[u8]) -> Result<Vec<Notification>, ParseError> {
    let root: Value = serde_json::from_slice(body).map_err(|_| ParseError::NotJson)?;
    let root = root.as_object().ok_or(ParseError::NotACollection)?;
    let items = field(root, "value")
        .and_then(Value::as_array)
        .ok_or(ParseError::NotACollection)?;
    if items.len() > MAX_ITEMS {
        return Err(ParseError::TooMany);
    }
    let rich = field(root, "validationTokens").is_some();
    Ok(items
        .iter()
        .filter_map(Value::as_object)
        .filter_map(|item| {
            let subscription_id = text_field(item, "subscriptionId")?;
            Some(Notification {
                subscription_id,
                client_state: text_field(item, "clientState").map(Secret::new),
                change_type: text_field(item, "changeType"),
                resource: text_field(item, "resource"),
                lifecycle_event: text_field(item, "lifecycleEvent"),
                tenant_id: text_field(item, "tenantId"),
                encrypted: rich || field(item, "encryptedContent").is_some(),
            })
        })
        .collect())
}

/// The mailbox and event ids in a notification's resource path, in either of the styles Graph
/// uses: `Users/{user}/Events/{event}` or `Users('{user}')/Events('{event}')`.
pub fn resource_ids(resource: &str) -> Option<(String, String)> {
    // Flatten to name, id, name, id … whichever style was used.
    let mut flat: Vec<&str> = Vec::new();
    for segment in resource.trim_start_matches('/').split('/') {
        match segment.split_once("('") {
            Some((name, rest)) => {
                flat.push(name);
                flat.push(rest.strip_suffix("')")?);
            }
            None => flat.push(segment),
        }
    }
    match flat.as_slice() {
        [users, user, events, event]
            if users.eq_ignore_ascii_case("users") && events.eq_ignore_ascii_case("events") =>
        {
            Some(((*user).to_owned(), (*event).to_owned()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_parse_in_either_letter_case() {
        let camel = br#"{"value":[{"subscriptionId":"s1","clientState":"c","changeType":"updated","resource":"Users/u/Events/e"}]}"#;
        let pascal = br#"{"Value":[{"SubscriptionId":"s1","ClientState":"c","ChangeType":"updated","Resource":"Users/u/Events/e"}]}"#;
        assert_eq!(
            parse_collection(camel).unwrap(),
            parse_collection(pascal).unwrap()
        );
        let parsed = parse_collection(camel).unwrap();
        assert_eq!(parsed[0].subscription_id, "s1");
        assert_eq!(
            parsed[0].client_state.as_ref().map(Secret::expose),
            Some("c")
        );
        assert!(!parsed[0].encrypted);
    }

    #[test]
    fn bad_bodies_are_errors_not_panics() {
        assert_eq!(parse_collection(b"not json"), Err(ParseError::NotJson));
        assert_eq!(parse_collection(b"[1,2]"), Err(ParseError::NotACollection));
        assert_eq!(
            parse_collection(b"{\"value\":3}"),
            Err(ParseError::NotACollection)
        );
        assert_eq!(parse_collection(b"{\"value\":[]}"), Ok(vec![]));
        assert_eq!(parse_collection(b"{\"value\":[1, {\"x\":1}]}"), Ok(vec![]));
    }

    #[test]
    fn rich_notifications_are_marked() {
        let rich = br#"{"value":[{"subscriptionId":"s","encryptedContent":{"data":"x"}}],"validationTokens":["t"]}"#;
        assert!(parse_collection(rich).unwrap()[0].encrypted);
    }

    #[test]
    fn resource_paths_in_both_styles() {
        let want = Some(("u1".to_owned(), "AAMk=".to_owned()));
        assert_eq!(resource_ids("Users/u1/Events/AAMk="), want);
        assert_eq!(resource_ids("users('u1')/events('AAMk=')"), want);
        assert_eq!(resource_ids("/Users/u1/Events/AAMk="), want);
        assert_eq!(resource_ids("Users/u1/Messages/x"), None);
    }

    #[test]
    fn the_published_samples_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/graph");
        let basic = std::fs::read(dir.join("change-notification-basic.json")).unwrap();
        let parsed = parse_collection(&basic).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(
            parsed[0].client_state.as_ref().map(Secret::expose),
            Some("secretClientValue")
        );
        let lifecycle = std::fs::read(dir.join("lifecycle-reauthorization-required.json")).unwrap();
        let parsed = parse_collection(&lifecycle).unwrap();
        assert_eq!(
            parsed[0].lifecycle_event.as_deref(),
            Some("reauthorizationRequired")
        );
    }

    #[test]
    fn client_state_is_redacted_in_debug() {
        let parsed =
            parse_collection(br#"{"value":[{"subscriptionId":"s","clientState":"hush"}]}"#)
                .unwrap();
        assert!(!format!("{parsed:?}").contains("hush"));
    }
}
