//! One contract for the storage port, run against both adapters: the embedded SQLite store
//! and DynamoDB (through the real SDK, against moto).

use calsync::adapters::store::{
    Claim, DynamoStore, Item, ItemStore, Precondition, SqliteStore, StoreError, WriteOp,
};
use serde_json::json;

fn item(pk: &str, sk: &str, data: serde_json::Value) -> Item {
    let mut item = Item::new(pk, sk);
    item.data = data.as_object().cloned().unwrap_or_default();
    item
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn contract(store: &dyn ItemStore) {
    // Absent reads and first writes.
    assert!(store.get("P#1", "A").await.unwrap().is_none());
    let a = item("P#1", "A", json!({"name": "first", "n": 1}));
    assert_eq!(store.put(&a, Precondition::Absent).await.unwrap(), 1);
    assert!(matches!(
        store.put(&a, Precondition::Absent).await,
        Err(StoreError::ConditionFailed)
    ));
    let stored = store.get("P#1", "A").await.unwrap().unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.data["name"], "first");

    // Optimistic concurrency: the current version wins once, a stale one never.
    let mut next = stored.clone();
    next.data.insert("name".into(), json!("second"));
    assert_eq!(store.put(&next, Precondition::Version(1)).await.unwrap(), 2);
    assert!(matches!(
        store.put(&next, Precondition::Version(1)).await,
        Err(StoreError::ConditionFailed)
    ));
    assert!(matches!(
        store
            .put(&item("P#1", "missing", json!({})), Precondition::Version(3))
            .await,
        Err(StoreError::ConditionFailed)
    ));
    assert_eq!(
        store.get("P#1", "A").await.unwrap().unwrap().data["name"],
        "second"
    );

    // Values of every JSON kind come back as they went in.
    let rich = json!({
        "text": "Reunión ✓", "empty": "", "int": -42, "big": 1_700_000_000_123i64, "float": 1.5,
        "yes": true, "nothing": null, "list": [1, "two", {"three": 3}], "map": {"nested": {"deep": [true]}}
    });
    store
        .put(&item("P#1", "RICH", rich.clone()), Precondition::None)
        .await
        .unwrap();
    let back = store.get("P#1", "RICH").await.unwrap().unwrap();
    assert_eq!(serde_json::Value::Object(back.data), rich);

    // Expired items read as absent and can be claimed again (TTL is never trusted).
    let mut expired = item("P#1", "OLD", json!({"x": 1}));
    expired.expires_at = Some(now() - 5);
    store.put(&expired, Precondition::None).await.unwrap();
    assert!(store.get("P#1", "OLD").await.unwrap().is_none());
    assert!(matches!(
        store.delete("P#1", "OLD", Precondition::Exists).await,
        Err(StoreError::ConditionFailed)
    ));
    let mut fresh = item("P#1", "OLD", json!({"x": 2}));
    fresh.expires_at = Some(now() + 600);
    store.put(&fresh, Precondition::Absent).await.unwrap();
    let got = store.get("P#1", "OLD").await.unwrap().unwrap();
    assert_eq!(got.data["x"], 2);
    let expires_at = got.expires_at.unwrap();
    assert!(
        expires_at > now() + 500 && expires_at <= now() + 600,
        "expiry kept: {expires_at}"
    );

    // Take-once: a conditional delete returns the item the first time only.
    let taken = store
        .delete("P#1", "OLD", Precondition::Exists)
        .await
        .unwrap();
    assert_eq!(taken.unwrap().data["x"], 2);
    assert!(matches!(
        store.delete("P#1", "OLD", Precondition::Exists).await,
        Err(StoreError::ConditionFailed)
    ));
    assert!(store
        .delete("P#1", "nothing", Precondition::None)
        .await
        .unwrap()
        .is_none());

    // Prefix queries: in sort-key order, only the partition and prefix asked for, no expired.
    for sk in ["USER#b", "USER#a", "USER#c", "OTHER#a"] {
        store
            .put(&item("P#2", sk, json!({"key": sk})), Precondition::None)
            .await
            .unwrap();
    }
    store
        .put(&item("P#3", "USER#z", json!({})), Precondition::None)
        .await
        .unwrap();
    let mut gone = item("P#2", "USER#d", json!({}));
    gone.expires_at = Some(now() - 1);
    store.put(&gone, Precondition::None).await.unwrap();
    let users: Vec<String> = store
        .query("P#2", "USER#")
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.sk)
        .collect();
    assert_eq!(users, ["USER#a", "USER#b", "USER#c"]);
    assert_eq!(store.query("P#2", "").await.unwrap().len(), 4);

    // Queries follow pages: more than one page of data (DynamoDB pages at 1 MB).
    let blob = "x".repeat(60_000);
    for i in 0..25 {
        store
            .put(
                &item("P#big", &format!("ITEM#{i:03}"), json!({"blob": blob})),
                Precondition::None,
            )
            .await
            .unwrap();
    }
    assert_eq!(store.query("P#big", "ITEM#").await.unwrap().len(), 25);

    // Transactions: all or nothing.
    let ok = store
        .transact(vec![
            WriteOp::Put(item("P#4", "X", json!({"v": 1})), Precondition::Absent),
            WriteOp::Put(item("P#4", "Y", json!({"v": 1})), Precondition::Absent),
        ])
        .await;
    assert!(ok.is_ok(), "{ok:?}");
    let failed = store
        .transact(vec![
            WriteOp::Put(item("P#4", "Z", json!({"v": 1})), Precondition::Absent),
            WriteOp::Delete {
                pk: "P#4".into(),
                sk: "X".into(),
                precondition: Precondition::None,
            },
            WriteOp::Put(item("P#4", "Y", json!({"v": 2})), Precondition::Absent),
        ])
        .await;
    assert!(
        matches!(failed, Err(StoreError::ConditionFailed)),
        "{failed:?}"
    );
    assert!(
        store.get("P#4", "Z").await.unwrap().is_none(),
        "rolled back"
    );
    assert!(
        store.get("P#4", "X").await.unwrap().is_some(),
        "rolled back"
    );
    assert_eq!(store.get("P#4", "Y").await.unwrap().unwrap().data["v"], 1);

    // Invalid writes are refused the same way by both adapters.
    let twice = store
        .transact(vec![
            WriteOp::Put(item("P#4", "X", json!({})), Precondition::None),
            WriteOp::Delete {
                pk: "P#4".into(),
                sk: "X".into(),
                precondition: Precondition::None,
            },
        ])
        .await;
    assert!(matches!(twice, Err(StoreError::Invalid(_))));
    let too_many: Vec<WriteOp> = (0..101)
        .map(|i| {
            WriteOp::Put(
                item("P#5", &format!("I#{i}"), json!({})),
                Precondition::None,
            )
        })
        .collect();
    assert!(matches!(
        store.transact(too_many).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store
            .put(&item("P#6", "A", json!({"version": 9})), Precondition::None)
            .await,
        Err(StoreError::ReservedAttribute { .. })
    ));
    assert!(matches!(
        store
            .put(&item("", "A", json!({})), Precondition::None)
            .await,
        Err(StoreError::Invalid(_))
    ));

    unconditional_writes(store).await;
    claims(store).await;
}

/// Many writes without conditions, more than one request of DynamoDB's batch write holds.
async fn unconditional_writes(store: &dyn ItemStore) {
    store
        .put(&item("P#7", "OLD", json!({"v": 1})), Precondition::None)
        .await
        .unwrap();
    let mut ops: Vec<WriteOp> = (0..60)
        .map(|i| {
            let mut put = item("P#7", &format!("I#{i:02}"), json!({"i": i}));
            // Stored at the version after the one it carries, whatever was there.
            put.version = 4;
            WriteOp::Put(put, Precondition::None)
        })
        .collect();
    ops.push(WriteOp::Delete {
        pk: "P#7".into(),
        sk: "OLD".into(),
        precondition: Precondition::None,
    });
    store.write_unconditionally(ops).await.unwrap();
    let stored = store.query("P#7", "I#").await.unwrap();
    assert_eq!(stored.len(), 60);
    assert!(stored.iter().all(|item| item.version == 5));
    assert_eq!(stored[59].data["i"], 59);
    assert!(store.get("P#7", "OLD").await.unwrap().is_none());
    // A condition, or an item named twice, is refused before anything is written.
    let conditional = store
        .write_unconditionally(vec![WriteOp::Put(
            item("P#7", "C", json!({})),
            Precondition::Absent,
        )])
        .await;
    assert!(matches!(conditional, Err(StoreError::Invalid(_))));
    let twice = store
        .write_unconditionally(vec![
            WriteOp::Put(item("P#7", "T", json!({})), Precondition::None),
            WriteOp::Put(item("P#7", "T", json!({})), Precondition::None),
        ])
        .await;
    assert!(matches!(twice, Err(StoreError::Invalid(_))));
    assert!(store.get("P#7", "C").await.unwrap().is_none());
    assert!(store.get("P#7", "T").await.unwrap().is_none());
}

/// A slot of an item claimed by one holder at a time, for a while.
async fn claims(store: &dyn ItemStore) {
    let now = now();
    let claim = |holder: &'static str, until: i64, at: i64| Claim {
        pk: "P#C",
        sk: "U",
        slot: "run_lease",
        holder,
        until,
        now: at,
    };
    assert!(store
        .claim(&claim("a", now + 60, now))
        .await
        .unwrap()
        .is_none());
    store
        .put(
            &item("P#C", "U", json!({"name": "kept"})),
            Precondition::Absent,
        )
        .await
        .unwrap();
    let held = store
        .claim(&claim("a", now + 60, now))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.version, 2);
    assert_eq!(held.data["name"], "kept");
    assert_eq!(
        held.data["run_lease"],
        json!({"holder": "a", "until": now + 60})
    );
    assert_eq!(store.get("P#C", "U").await.unwrap().unwrap(), held);
    // Taken: another holder is refused and changes nothing.
    assert!(matches!(
        store.claim(&claim("b", now + 60, now)).await,
        Err(StoreError::ConditionFailed)
    ));
    assert_eq!(store.get("P#C", "U").await.unwrap().unwrap().version, 2);
    // The holder renews its claim.
    let renewed = store
        .claim(&claim("a", now + 120, now + 30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renewed.version, 3);
    assert_eq!(renewed.data["run_lease"]["until"], now + 120);
    // Once it has lapsed, someone else may take it.
    let taken = store
        .claim(&claim("b", now + 300, now + 120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(taken.data["run_lease"]["holder"], "b");
    // A whole-item write with the slot cleared frees it.
    let mut cleared = taken.clone();
    cleared.data.remove("run_lease");
    store
        .put(&cleared, Precondition::Version(taken.version))
        .await
        .unwrap();
    assert!(store
        .claim(&claim("c", now + 60, now))
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn sqlite_store_meets_the_contract() {
    contract(&SqliteStore::in_memory().unwrap()).await;
}

#[tokio::test]
async fn sqlite_store_persists_across_reopen() {
    let dir = std::env::temp_dir().join(calsync_testkit::moto::unique("calsync-store"));
    let path = dir.join("calsync.sqlite");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .put(&item("P", "S", json!({"kept": true})), Precondition::Absent)
            .await
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.get("P", "S").await.unwrap().unwrap().data["kept"],
        true
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn dynamo_store_meets_the_contract() {
    let sdk = calsync_testkit::moto::aws_config().await.expect("moto");
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        calsync_testkit::moto::unique("calsync-contract"),
    );
    store.ensure_table().await.unwrap();
    store.ensure_table().await.unwrap(); // idempotent
    contract(&store).await;
}
