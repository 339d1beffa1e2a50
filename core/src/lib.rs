//! calsync's pure core: what a calendar event is, the ids that cross trust boundaries, the time
//! rules both sides share, and the sync engine — three-way merge, policy, planning, the
//! conflict journal and the order in which a plan is executed.
//!
//! Nothing here does I/O: no network, no storage, no clock (callers pass `now`). The adapters
//! and services of the `calsync` crate read the world, call in here, and write the results.

pub mod cause;
pub mod crm;
pub mod event;
pub mod ids;
pub mod secret;
pub mod sync;
pub mod time;
