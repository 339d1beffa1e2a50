//! A short lease on a key, for work that must not run twice at once across processes (refreshing
//! one user's token). It expires by itself, so a crashed holder blocks others only briefly.

use std::time::Duration;

use super::{now_epoch, Item, ItemStore, Precondition, StoreError};
use crate::crypto::random_token;

pub struct Lease<'a> {
    store: &'a dyn ItemStore,
    pk: String,
    sk: String,
    version: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("another process held the lease for too long")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<'a> Lease<'a> {
    /// Takes the lease, polling for up to `wait` while someone else holds it.
    pub async fn acquire(
        store: &'a dyn ItemStore,
        pk: &str,
        sk: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Lease<'a>, LeaseError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(25);
        loop {
            let mut item = Item::new(pk, sk);
            item.expires_at = Some(now_epoch() + ttl.as_secs().max(1) as i64);
            item.data.insert("holder".into(), random_token(9).into());
            match store.put(&item, Precondition::Absent).await {
                Ok(version) => {
                    return Ok(Lease {
                        store,
                        pk: pk.to_owned(),
                        sk: sk.to_owned(),
                        version,
                    })
                }
                Err(StoreError::ConditionFailed) => {
                    if tokio::time::Instant::now() + pause > deadline {
                        return Err(LeaseError::Busy);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(400));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Gives the lease back (only if it is still ours).
    pub async fn release(self) {
        let outcome = self
            .store
            .delete(&self.pk, &self.sk, Precondition::Version(self.version))
            .await;
        if let Err(e) = outcome {
            // Harmless: the lease expires on its own.
            tracing::debug!(error = %crate::errors::chain(&e), "lease release failed");
        }
    }
}
