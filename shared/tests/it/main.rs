//! The `calsync` crate's adapters against real peers: the AWS ones through the SDK against
//! moto, Graph and vtiger against the sandbox over HTTP, and every captured payload in
//! `fixtures/`. One test binary, so the suite links once.

mod crm_sessions;
mod crm_vtiger;
mod graph_client;
mod graph_fixtures;
mod layers;
mod queue_contract;
mod secrets_contract;
mod store_contract;
mod vectors;
