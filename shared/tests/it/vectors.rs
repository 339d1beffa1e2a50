//! The shared test vectors (`fixtures/nudge/vectors.json`), which the CRM module's PHP tests
//! read too: what the module sends is exactly what calsync signs and accepts.

use calsync::nudge::Nudge;
use calsync::signed_url::{LinkRoute, SignedUrl};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::secret::Secret;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/nudge/vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn nudges_sign_and_verify_as_the_vectors_say() {
    let vectors = vectors();
    let key = Secret::new(vectors["link_key"].as_str().unwrap());
    for v in vectors["nudges"].as_array().unwrap() {
        let nudge = Nudge {
            tenant: TenantId::parse(v["tenant"].as_str().unwrap()).unwrap(),
            user: CrmUserName::parse(v["user"].as_str().unwrap()).unwrap(),
            sent_at: v["ts"].as_i64().unwrap(),
            nonce: v["nonce"].as_str().unwrap().to_owned(),
        };
        assert_eq!(nudge.sign(&key), v["sig"].as_str().unwrap(), "{v}");
        assert_eq!(nudge.form(&key), v["form"].as_str().unwrap(), "{v}");
        let (parsed, sig) = Nudge::parse(v["form"].as_str().unwrap().as_bytes()).unwrap();
        assert_eq!(parsed, nudge);
        assert_eq!(parsed.verify(&key, &sig, nudge.sent_at + 10), Ok(()));
    }
}

#[test]
fn links_sign_as_the_vectors_say() {
    let vectors = vectors();
    let key = Secret::new(vectors["link_key"].as_str().unwrap());
    for v in vectors["links"].as_array().unwrap() {
        let route = match v["route"].as_str().unwrap() {
            "connect" => LinkRoute::Connect,
            "status" => LinkRoute::Status,
            "disconnect" => LinkRoute::Disconnect,
            _ => LinkRoute::AdminConsent,
        };
        let link = SignedUrl {
            route,
            tenant: TenantId::parse(v["tenant"].as_str().unwrap()).unwrap(),
            user: Some(CrmUserName::parse(v["user"].as_str().unwrap()).unwrap()),
            expires_at: v["exp"].as_i64().unwrap(),
            return_to: v["return_to"].as_str().map(str::to_owned),
        };
        assert_eq!(link.sign(&key), v["sig"].as_str().unwrap(), "{v}");
        let url = link.url(&url::Url::parse("https://auth.example/").unwrap(), &key);
        assert_eq!(
            url.split_once('?').unwrap().1,
            v["query"].as_str().unwrap(),
            "{v}"
        );
    }
}
