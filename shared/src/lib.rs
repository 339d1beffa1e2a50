//! calsync: two-way sync between a CRM's calendars (vtiger / MyCRMweb) and Office 365.
//!
//! The layers, bottom up (docs/architecture.md draws them):
//!
//! - `calsync_core` (its own crate): the event model, ids, time rules and the sync engine.
//!   Pure: no I/O.
//! - [`config`], [`crypto`], [`expiry`], [`signed_url`], [`nudge`], [`errors`], [`telemetry`]: small
//!   foundations.
//! - [`adapters`]: the outside world — storage, secrets, queue, Graph, Microsoft sign-in,
//!   the CRM — behind ports.
//! - [`services`]: calsync's records and the work on them — tenants, users, tokens,
//!   subscriptions, the sync run.
//! - [`app`]: builds the adapters and services once per container.
//! - [`entry`]: the entry points — the auth and webhook routes, the sync function's events.
//!
//! A layer uses only the layers below it (a test, `shared/tests/it/layers.rs`, checks it). The
//! function binaries are thin: build the [`App`], hand it to an entry point.

pub mod adapters;
pub mod app;
pub mod config;
pub mod crypto;
pub mod entry;
pub mod errors;
pub mod expiry;
pub mod nudge;
pub mod services;
pub mod signed_url;
pub mod telemetry;

pub use app::App;
pub use config::Config;
