//! Fuzzes what the webhook parses from the internet: the notification collection and the
//! resource paths inside it. Any input must give a value or an error, never a panic.
#![no_main]

use calsync::adapters::graph::notifications::{parse_collection, resource_ids};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(notifications) = parse_collection(data) {
        for notification in notifications {
            if let Some(resource) = notification.resource.as_deref() {
                let _ = resource_ids(resource);
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = resource_ids(text);
    }
});
