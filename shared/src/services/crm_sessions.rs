//! A cap on how many runs of one tenant talk to its CRM at once, across every function
//! instance: a customer's vtiger serves its own users too, and a burst of jobs (a dispatch
//! round, a mass nudge) must not become a burst of sessions on it.
//!
//! The tenant has `cap` session slots, items `TENANT#{t}` / `CRMSESSION#{i}`. A run takes one
//! ([`SessionGate`]) with a conditional write (free, or its holder's time is up) just before it
//! writes to the CRM — a run with nothing to write makes one feed request and takes none —,
//! renews it with the user's lease and gives it back at its end. A run that finds every slot
//! taken waits, trying the slots again, up to a bound, then gives up like a run whose user is
//! busy (its job is retried). Cost: two writes per writing run (take, give back) and one per
//! renewal; each try while waiting costs one write per slot.

use std::sync::Arc;
use std::time::Duration;

use crate::adapters::store::{
    now_epoch, record_to_item, Claim, ItemStore, Precondition, StoreError,
};
use crate::services::tenants::tenant_pk;
use calsync_core::ids::TenantId;

/// The most a tenant may set: a customer's vtiger has a handful of PHP workers, and more
/// sessions than that only queue at its door (each try of a waiting run also costs a write per
/// slot).
pub const MAX_CRM_SESSIONS: u32 = 32;

const SLOT: &str = "session";

fn slot_sk(index: u32) -> String {
    format!("CRMSESSION#{index:02}")
}

/// The tenant's CRM session slots.
#[derive(Clone)]
pub struct CrmSessions {
    store: Arc<dyn ItemStore>,
}

/// A slot a run holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSlot {
    pub index: u32,
    pub holder: String,
}

impl CrmSessions {
    pub fn new(store: Arc<dyn ItemStore>) -> Self {
        Self { store }
    }

    /// Takes a free slot of the tenant's `cap` for `holder` until `until`, trying first the
    /// one `start` names (spreading runs over the slots). `None`: every slot is taken.
    pub async fn try_take(
        &self,
        tenant: &TenantId,
        cap: u32,
        start: u32,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<Option<SessionSlot>, StoreError> {
        let cap = cap.clamp(1, MAX_CRM_SESSIONS);
        for offset in 0..cap {
            let index = (start + offset) % cap;
            if self.claim(tenant, index, holder, until, now).await? {
                return Ok(Some(SessionSlot {
                    index,
                    holder: holder.to_owned(),
                }));
            }
        }
        Ok(None)
    }

    /// Keeps the slot until `until`; `false` when it was lost (its time ran out and another
    /// run took it).
    pub async fn keep(
        &self,
        tenant: &TenantId,
        slot: &SessionSlot,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        self.claim(tenant, slot.index, &slot.holder, until, now)
            .await
    }

    /// Gives the slot back: its time ends now, so the next run may take it at once.
    pub async fn give_back(
        &self,
        tenant: &TenantId,
        slot: &SessionSlot,
        now: i64,
    ) -> Result<(), StoreError> {
        self.claim(tenant, slot.index, &slot.holder, now, now)
            .await
            .map(|_| ())
    }

    /// One conditional write on a slot; the slot's item is made on first use.
    async fn claim(
        &self,
        tenant: &TenantId,
        index: u32,
        holder: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let pk = tenant_pk(tenant);
        let sk = slot_sk(index);
        let claim = Claim {
            pk: &pk,
            sk: &sk,
            slot: SLOT,
            holder,
            until,
            now,
        };
        for _ in 0..2 {
            match self.store.claim(&claim).await {
                Ok(Some(_)) => return Ok(true),
                Err(StoreError::ConditionFailed) => return Ok(false),
                Err(e) => return Err(e),
                Ok(None) => {
                    let item = record_to_item(&pk, sk.clone(), &serde_json::json!({}))?;
                    match self.store.put(&item, Precondition::Version(0)).await {
                        Ok(_) | Err(StoreError::ConditionFailed) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(false)
    }
}

/// How long a run waits for a slot, and how often it tries again.
pub const SLOT_WAIT: Duration = Duration::from_secs(60);
pub const SLOT_RETRY: Duration = Duration::from_secs(2);

/// One run's way to the tenant's CRM sessions: taken when the run is about to write to the
/// CRM — one slot, waited for, and as many more as are free when the run has enough writes to
/// share among them ([`Self::widen`]) —, renewed with the run's lease, given back at its end.
pub struct SessionGate {
    sessions: CrmSessions,
    tenant: TenantId,
    cap: u32,
    /// The slot the run tries first: each user has their own, so runs spread over the slots.
    start: u32,
    holder: String,
    lease: Duration,
    slots: std::sync::Mutex<Vec<SessionSlot>>,
}

impl SessionGate {
    pub fn new(
        sessions: CrmSessions,
        tenant: TenantId,
        cap: u32,
        user: &str,
        holder: String,
        lease: Duration,
    ) -> Self {
        let start = user.bytes().fold(0u32, |sum, b| {
            sum.wrapping_mul(31).wrapping_add(u32::from(b))
        });
        Self {
            sessions,
            tenant,
            cap,
            start,
            holder,
            lease,
            slots: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn cap(&self) -> u32 {
        self.cap
    }

    fn held(&self) -> Vec<SessionSlot> {
        self.slots
            .lock()
            .map(|slots| slots.clone())
            .unwrap_or_default()
    }

    fn hold(&self, slot: SessionSlot) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.push(slot);
        }
    }

    /// Takes a slot, waiting while all are in use — at most [`SLOT_WAIT`], never past
    /// `deadline`. `false`: none came free. Taking again once held is free.
    pub async fn take(&self, deadline: Option<std::time::Instant>) -> Result<bool, StoreError> {
        if !self.held().is_empty() {
            return Ok(true);
        }
        let give_up = std::time::Instant::now() + SLOT_WAIT;
        let give_up = deadline.map_or(give_up, |d| d.min(give_up));
        loop {
            let now = now_epoch();
            let until = now + self.lease.as_secs() as i64;
            let taken = self
                .sessions
                .try_take(&self.tenant, self.cap, self.start, &self.holder, until, now)
                .await?;
            if let Some(slot) = taken {
                self.hold(slot);
                return Ok(true);
            }
            if std::time::Instant::now() + SLOT_RETRY > give_up {
                return Ok(false);
            }
            tokio::time::sleep(SLOT_RETRY).await;
        }
    }

    /// Once a slot is held, takes further free slots (without waiting) until `wanted` are
    /// held or none is free; returns how many are held. Each slot is a session of the run's
    /// own, so the run may send that many CRM requests at once.
    pub async fn widen(&self, wanted: u32) -> Result<u32, StoreError> {
        let wanted = wanted.min(self.cap.clamp(1, MAX_CRM_SESSIONS));
        let mut held = self.held().len() as u32;
        while held > 0 && held < wanted {
            let now = now_epoch();
            let until = now + self.lease.as_secs() as i64;
            // A holder name per slot: a slot already this run's is not taken twice.
            let holder = format!("{}/{held}", self.holder);
            let start = self.start.wrapping_add(held);
            match self
                .sessions
                .try_take(&self.tenant, self.cap, start, &holder, until, now)
                .await?
            {
                Some(slot) => {
                    self.hold(slot);
                    held += 1;
                }
                None => break,
            }
        }
        Ok(held)
    }

    /// Renews the slots held. Losing one only lets one more run in; the run goes on.
    pub async fn renew(&self) {
        let now = now_epoch();
        let until = now + self.lease.as_secs() as i64;
        for slot in self.held() {
            match self.sessions.keep(&self.tenant, &slot, until, now).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(tenant = %self.tenant, "a CRM session lapsed; another run has it")
                }
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, error = %crate::errors::chain(&e), "a CRM session was not renewed")
                }
            }
        }
    }

    /// Gives the slots held back.
    pub async fn give_back(&self) {
        let slots = self
            .slots
            .lock()
            .map(|mut held| std::mem::take(&mut *held))
            .unwrap_or_default();
        for slot in slots {
            if let Err(e) = self
                .sessions
                .give_back(&self.tenant, &slot, now_epoch())
                .await
            {
                tracing::warn!(tenant = %self.tenant, error = %crate::errors::chain(&e), "a CRM session was not given back; it lapses on its own");
            }
        }
    }
}
