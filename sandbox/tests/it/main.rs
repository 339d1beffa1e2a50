//! The sandbox against what it stands in for: Microsoft identity's documented behaviour and
//! published error payloads, Graph's routes and faults, and every answer captured from a real
//! vtiger 8.2.0 in `fixtures/vtiger/`. One test binary, so the suite links once.

mod graph;
mod identity;
mod vtiger_fixtures;
