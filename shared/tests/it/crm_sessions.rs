//! The tenant's CRM session slots on both stores: taken, refused while taken, given back,
//! taken over once their time is up, and one holder never counted twice.

use std::sync::Arc;

use calsync::adapters::store::{DynamoStore, ItemStore, SqliteStore};
use calsync::services::crm_sessions::CrmSessions;
use calsync_core::ids::TenantId;

async fn slots(store: Arc<dyn ItemStore>) {
    let sessions = CrmSessions::new(store);
    let tenant = TenantId::parse("acme").unwrap();
    let now = 1_000;
    // Two slots: two runs get one each, a third waits.
    let a = sessions
        .try_take(&tenant, 2, 0, "run-a", now + 120, now)
        .await
        .unwrap();
    let b = sessions
        .try_take(&tenant, 2, 0, "run-b", now + 120, now)
        .await
        .unwrap();
    let (a, b) = (a.expect("a free slot"), b.expect("the other slot"));
    assert_ne!(a.index, b.index);
    assert_eq!(
        sessions
            .try_take(&tenant, 2, 1, "run-c", now + 120, now)
            .await
            .unwrap(),
        None,
        "both slots are in use"
    );
    // Given back, the slot is free at once.
    sessions.give_back(&tenant, &a, now + 5).await.unwrap();
    let c = sessions
        .try_take(&tenant, 2, a.index, "run-c", now + 900, now + 5)
        .await
        .unwrap()
        .expect("the slot a gave back");
    assert_eq!(c.index, a.index);
    // A holder keeps its own slot; a slot whose time ran out goes to whoever asks.
    assert!(sessions
        .keep(&tenant, &b, now + 200, now + 60)
        .await
        .unwrap());
    let d = sessions
        .try_take(&tenant, 2, c.index, "run-d", now + 400, now + 201)
        .await
        .unwrap()
        .expect("b's time is up");
    assert_eq!(d.index, b.index);
    assert!(
        !sessions
            .keep(&tenant, &b, now + 500, now + 202)
            .await
            .unwrap(),
        "b lost its slot to d"
    );
    // Another tenant's slots are its own.
    let other = TenantId::parse("globex").unwrap();
    assert!(sessions
        .try_take(&other, 1, 0, "run-e", now + 120, now + 202)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn sqlite_slots() {
    slots(Arc::new(SqliteStore::in_memory().unwrap())).await;
}

#[tokio::test]
async fn dynamo_slots() {
    let sdk = calsync_testkit::moto::aws_config().await.expect("moto");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        calsync_testkit::moto::unique("calsync-sessions"),
    );
    store.ensure_table().await.unwrap();
    slots(Arc::new(store)).await;
}
