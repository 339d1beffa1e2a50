//! End-to-end tests: the real binaries under a Lambda Runtime API stand-in, the routers in
//! process, sync runs against the sandbox, the CLI, and `calsync serve` in a browser. One test
//! binary, so the suite links once.

mod auth_e2e;
mod auth_flow;
mod auth_lifecycle;
mod cli_embedded;
mod cli_operator;
mod graph_subscription;
mod pipelined;
mod publisher;
mod real_crm;
mod repository;
mod runtime_stand_in;
mod serve_browser;
mod subscription_upkeep;
mod sync_costs;
mod sync_function;
mod sync_scenarios;
mod tokens;
mod trust;
mod webhook;
