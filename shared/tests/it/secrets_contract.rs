//! One contract for the secret-store port: Secrets Manager (against moto) and the local store.

use calsync::adapters::secret_store::{LocalSecretStore, SecretStore, SecretsManagerStore};
use calsync_core::secret::Secret;

async fn contract(store: &dyn SecretStore, prefix: &str) {
    let a = format!("{prefix}alpha");
    let b = format!("{prefix}beta");
    assert!(store.get(&a).await.unwrap().is_none());
    store.put(&a, &Secret::new("one")).await.unwrap();
    assert_eq!(store.get(&a).await.unwrap().unwrap().expose(), "one");
    store.put(&a, &Secret::new("two")).await.unwrap();
    assert_eq!(
        store.get(&a).await.unwrap().unwrap().expose(),
        "two",
        "a new version is current"
    );
    store
        .put(&b, &Secret::new("{\"json\":true}"))
        .await
        .unwrap();
    store
        .put("unrelated/secret", &Secret::new("x"))
        .await
        .unwrap();
    assert_eq!(
        store.list(prefix).await.unwrap(),
        vec![a.clone(), b.clone()]
    );
    assert!(store.delete(&a).await.unwrap());
    assert!(!store.delete(&a).await.unwrap());
    assert!(store.get(&a).await.unwrap().is_none());
    assert_eq!(store.list(prefix).await.unwrap(), vec![b]);
    store.delete("unrelated/secret").await.unwrap();
}

#[tokio::test]
async fn local_secret_store_meets_the_contract() {
    contract(&LocalSecretStore::in_memory().unwrap(), "calsync/").await;
}

#[tokio::test]
async fn secrets_manager_store_meets_the_contract() {
    let sdk = calsync_testkit::moto::aws_config().await.expect("moto");
    let store = SecretsManagerStore::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let prefix = format!("{}/", calsync_testkit::moto::unique("calsync"));
    contract(&store, &prefix).await;
}
