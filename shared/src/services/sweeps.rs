//! When the scheduler last swept each tenant's users. A scheduled run that finds nothing
//! records nothing on its user ([`crate::services::sync_run`] looks first), so the schedule
//! keeps its clock per tenant instead: one small item the dispatcher reads each round and
//! writes when it sweeps. A tenant's users are read only when one of its sweeps is due.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::adapters::store::{item_to_record, record_to_item, ItemStore, Precondition, StoreError};
use crate::services::tenants::{tenant_pk, TenantSettings};
use calsync_core::ids::TenantId;

const SWEEP_SK: &str = "SWEEP";

/// Slack on every interval, so a sweep done just after the previous round is not skipped for
/// a whole extra round.
pub const SWEEP_SLACK_SECS: i64 = 30;

/// A tenant's sweep clock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepClock {
    /// When every connected user was last swept (epoch seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_at: Option<i64>,
    /// When the users on the tenant's own, shorter interval (no push for them) were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_at: Option<i64>,
    /// Whether the last sweep found users on the shorter interval.
    #[serde(default)]
    pub short_users: bool,
}

/// Which of a tenant's users a round sweeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepDue {
    Nobody,
    /// Those on the tenant's interval.
    ShortOnly,
    Everyone,
}

impl SweepClock {
    /// What is due at `now`: everyone at the pace of users with push (the safety sweep when
    /// the CRM nudges too, [`TenantSettings::sweep_minutes`]), the users without push once
    /// the tenant's interval has passed.
    pub fn due(&self, settings: &TenantSettings, now: i64) -> SweepDue {
        let every = |minutes: u32| i64::from(minutes) * 60 - SWEEP_SLACK_SECS;
        let all_every = every(everyone_every_minutes(settings, now));
        if self.all_at.is_none_or(|at| now - at >= all_every) {
            SweepDue::Everyone
        } else if self.short_users
            && self
                .short_at
                .is_none_or(|at| now - at >= every(settings.sync_interval_minutes))
        {
            SweepDue::ShortOnly
        } else {
            SweepDue::Nobody
        }
    }

    /// The clock after a sweep at `now`.
    pub fn after(&self, swept: SweepDue, short_users: bool, now: i64) -> SweepClock {
        SweepClock {
            all_at: if swept == SweepDue::Everyone {
                Some(now)
            } else {
                self.all_at
            },
            short_at: Some(now),
            short_users,
        }
    }
}

/// How often everyone is swept: at the pace of a user with push.
pub fn everyone_every_minutes(settings: &TenantSettings, now: i64) -> u32 {
    settings.sweep_minutes(true, now)
}

/// The sweep clocks, in the item store.
#[derive(Clone)]
pub struct Sweeps {
    store: Arc<dyn ItemStore>,
}

impl Sweeps {
    pub fn new(store: Arc<dyn ItemStore>) -> Self {
        Self { store }
    }

    /// The tenant's clock; a tenant never swept has an empty one (everything due).
    pub async fn clock(&self, tenant: &TenantId) -> Result<SweepClock, StoreError> {
        match self.store.get(&tenant_pk(tenant), SWEEP_SK).await? {
            Some(item) => item_to_record(&item),
            None => Ok(SweepClock::default()),
        }
    }

    /// Stores the clock. Only the dispatcher writes it, one round at a time.
    pub async fn set(&self, tenant: &TenantId, clock: &SweepClock) -> Result<(), StoreError> {
        let item = record_to_item(tenant_pk(tenant), SWEEP_SK, clock)?;
        self.store.put(&item, Precondition::None).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(interval: u32) -> TenantSettings {
        let mut settings = TenantSettings::new(
            TenantId::parse("acme").unwrap(),
            "Acme".into(),
            "https://crm.example.com",
            0,
        )
        .unwrap();
        settings.sync_interval_minutes = interval;
        settings
    }

    #[test]
    fn a_tenant_never_swept_is_due_in_full() {
        assert_eq!(
            SweepClock::default().due(&settings(15), 1_000_000),
            SweepDue::Everyone
        );
    }

    #[test]
    fn everyone_is_swept_hourly_and_users_without_push_at_the_tenants_interval() {
        let now = 1_000_000;
        let clock = SweepClock::default().after(SweepDue::Everyone, true, now);
        let mut s = settings(15);
        // The CRM nudges: users with push need only the hourly safety sweep.
        s.nudges_seen_at = Some(now);
        assert_eq!(clock.due(&s, now + 5 * 60), SweepDue::Nobody);
        assert_eq!(clock.due(&s, now + 15 * 60), SweepDue::ShortOnly);
        let clock = clock.after(SweepDue::ShortOnly, true, now + 15 * 60);
        assert_eq!(clock.due(&s, now + 20 * 60), SweepDue::Nobody);
        assert_eq!(clock.due(&s, now + 60 * 60 - 20), SweepDue::Everyone);
        // Without users on the short interval, only the hourly sweep comes.
        let clock = SweepClock::default().after(SweepDue::Everyone, false, now);
        assert_eq!(clock.due(&s, now + 30 * 60), SweepDue::Nobody);
        // A tenant interval longer than the safety sweep sets the pace for everyone.
        let mut slow = settings(120);
        slow.nudges_seen_at = Some(now);
        let clock = SweepClock::default().after(SweepDue::Everyone, false, now);
        assert_eq!(clock.due(&slow, now + 90 * 60), SweepDue::Nobody);
        assert_eq!(clock.due(&slow, now + 120 * 60), SweepDue::Everyone);
        // Without nudges, everyone is swept at the tenant's interval.
        assert_eq!(clock.due(&settings(15), now + 15 * 60), SweepDue::Everyone);
    }
}
