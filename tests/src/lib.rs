//! Test support for calsync's end-to-end tests: a Lambda Runtime API stand-in that runs the
//! real function binaries ([`FunctionProcess`]), builders for the event payloads AWS delivers
//! ([`function_url_event`], [`sqs_fifo_event`], [`eventbridge_scheduled_event`]) and a reader
//! for Function URL responses ([`FunctionUrlResponse`]).
//!
//! The integration tests run the workspace's built binaries, located with [`binary_path`]:
//! run `cargo build --workspace` before `cargo test` (the test script does).

pub mod events;
pub mod function_url;
pub mod response;
pub mod runtime;
pub mod syncbed;
pub mod testbed;
pub mod webdriver;

pub use events::{
    eventbridge_scheduled_event, function_url_event, sqs_fifo_event, sqs_fifo_event_with,
    FunctionUrlRequest, SqsFifoMessage,
};
pub use response::FunctionUrlResponse;
pub use runtime::{
    binary_path, inherited_env, FunctionProcess, Invocation, DEFAULT_INVOKE_TIMEOUT,
};
