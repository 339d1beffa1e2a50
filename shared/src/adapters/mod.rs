//! Adapters: calsync's ports to the world and the implementations behind them. Each speaks
//! one outside system's language and turns it into calsync's terms; none knows about tenants,
//! users or the sync's rules.
//!
//! - [`aws`]: the AWS SDK configuration the AWS adapters share.
//! - [`store`]: items with versions, expiry and transactions (DynamoDB; SQLite when embedded).
//! - [`secret_store`]: named secret documents (Secrets Manager; SQLite when embedded).
//! - [`queue`]: sync jobs (SQS FIFO; in-process).
//! - [`graph`]: Microsoft Graph (calendar delta, events, `$batch`, subscriptions).
//! - [`identity`]: the Microsoft identity platform (sign-in, tokens).
//! - [`client_assertion`]: certificate credentials for it (signed client assertions).
//! - [`crm`]: the CRM port and its vtiger adapter.

pub mod aws;
pub mod client_assertion;
pub mod crm;
pub mod graph;
pub mod identity;
pub mod queue;
pub mod secret_store;
pub mod store;
