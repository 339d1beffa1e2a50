//! Test support for calsync, shared by every test crate:
//!
//! - [`moto`]: the AWS emulator the test command starts (endpoint, SDK config, unique names,
//!   queues, table snapshots);
//! - [`testbed`] and [`syncbed`]: the sandbox (Microsoft identity, Graph, vtiger) with moto
//!   and a tenant set up the way an operator would; [`graph`]: a Graph client on the sandbox;
//! - [`web`]: requests to the auth and webhook routers in process;
//! - [`runtime`], [`events`], [`response`], [`function_url`]: a Lambda Runtime API stand-in
//!   that runs the real function binaries, the payloads AWS delivers, a Function URL bridge;
//! - [`webdriver`]: a small WebDriver client for the browser test;
//! - [`realcrm`]: the real-CRM tier — a real vtiger with the CRM module installed, calsync
//!   serving it on a loopback port, a browser with cookies.
//!
//! The end-to-end tests run the workspace's built binaries, located with [`binary_path`]:
//! run `cargo build --workspace` before `cargo test` (the test script does).

pub mod bench_sandbox;
pub mod events;
pub mod function_url;
pub mod graph;
pub mod moto;
pub mod publisher;
pub mod realcrm;
pub mod response;
pub mod runtime;
pub mod serve;
pub mod syncbed;
pub mod testbed;
pub mod web;
pub mod webdriver;

pub use events::{
    eventbridge_scheduled_event, function_url_event, sqs_fifo_event, sqs_fifo_event_with,
    FunctionUrlRequest, SqsFifoMessage,
};
pub use response::FunctionUrlResponse;
pub use runtime::{
    binary_path, inherited_env, FunctionProcess, Invocation, DEFAULT_INVOKE_TIMEOUT,
};
