//! Services: calsync's own records and the work on them, built on the adapters and the core.
//!
//! - [`tenants`]: each CRM customer's settings (table) and credentials (secret store).
//! - [`publisher`]: the deployment's one multi-tenant Microsoft app and its credential.
//! - [`consent`]: a customer's administrator consenting to the publisher app, checked.
//! - [`users`]: each CRM user's connection, tokens, subscription, status and sync progress.
//! - [`tokens`]: Graph access tokens for a user, held per container, refreshed as needed.
//! - [`subscriptions`]: each user's Graph subscription and the records the webhook checks.
//! - [`sync_run`]: one sync run for one user: read both sides, plan, execute, record.
//! - [`nudges`]: the CRM module's nudges, checked, spent and collapsed into queued syncs.
//! - [`tenant_check`]: whether a tenant's credentials work, asked of Microsoft, the CRM and
//!   calsync's own webhook.
//! - [`crm_sessions`]: the cap on how many runs of one tenant talk to its CRM at once.
//! - [`sweeps`]: when the scheduler last swept each tenant's users.

pub mod consent;
pub mod crm_sessions;
pub mod nudges;
pub mod publisher;
pub mod subscriptions;
pub mod sweeps;
pub mod sync_run;
pub mod tenant_check;
pub mod tenants;
pub mod tokens;
pub mod users;
