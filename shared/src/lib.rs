//! calsync: two-way sync between a CRM's calendars (vtiger / MyCRMweb) and Office 365.
//!
//! This crate holds everything the three Lambda functions and the CLI share. The functions stay
//! thin: parse the event, call in here, shape the reply. See `DESIGN.md` for the contracts.

pub mod app;
pub mod auth;
pub mod config;
pub mod crm;
pub mod crypto;
pub mod dispatch;
pub mod event;
pub mod graph;
pub mod ids;
pub mod jobs;
#[cfg(feature = "lambda")]
pub mod lambda_web;
pub mod links;
pub mod maintenance;
pub mod queue;
pub mod runner;
pub mod secret;
pub mod secrets;
pub mod store;
pub mod subscription;
pub mod sync;
pub mod telemetry;
pub mod tenant;
pub mod token;
pub mod users;
pub mod web;
pub mod webhook;

pub use app::App;
pub use config::Config;
