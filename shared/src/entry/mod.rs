//! Entry points: what the outside world calls. Each parses its input, calls the services and
//! shapes the answer.
//!
//! - [`auth`]: the auth function's routes (an axum `Router`): connect, callback, admin
//!   consent, disconnect, status.
//! - [`webhook`]: the webhook function's routes (an axum `Router`): Graph's notifications
//!   and the CRM module's nudges.
//! - [`jobs`]: the sync function's events: the scheduler's dispatch and SQS batches of jobs.
//! - [`dispatch`]: the scheduler's round.
//! - [`metrics`]: each job's metrics, in CloudWatch's embedded metric format.
//! - [`html`]: the one page layout the auth pages and `calsync serve`'s status page share.

pub mod auth;
pub mod dispatch;
pub mod html;
pub mod jobs;
pub mod metrics;
pub mod webhook;
