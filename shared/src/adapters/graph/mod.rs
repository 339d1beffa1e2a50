//! The Microsoft Graph client: calendarView delta rounds, events, `$batch` and change
//! subscriptions, with Graph's throttling rules built in (docs/design.md §7).
//!
//! ```text
//! GraphClient (one per container)  ──mailbox(Mailbox, token)──▶  MailboxClient
//!     transport: token, client-request-id, Prefer, timeout, retries, fresh connections
//!     throttle:  ≤ 4 in flight per mailbox, a global budget, mailbox-wide Retry-After pauses
//! ```

pub mod batch;
pub mod client;
pub mod delta;
pub mod error;
pub mod events;
pub mod mapping;
pub mod notifications;
pub mod subscriptions;
mod throttle;
mod transport;
pub mod types;

pub use batch::{BatchItemResult, BatchRequest, MAX_BATCH};
pub use client::{GraphClient, GraphSettings, Mailbox, MailboxClient};
pub use delta::{
    complete_occurrence, DeltaRound, DeltaStart, PendingRound, RemovalCheck, RoundAssembly,
    Tombstone,
};
pub use error::GraphError;
pub use events::{EventDraft, LocationDraft, CRM_ID_PROPERTY};
pub use mapping::{to_calendar_event, MappingError};
pub use types::GraphEvent;
