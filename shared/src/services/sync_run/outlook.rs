//! The Outlook half of a run: one delta round, and what it means for the engine. Tombstones
//! prove nothing on their own (Graph sends them for events that merely left the window), so a
//! deletion reaches the engine only after a GET says the event is gone.

use std::collections::HashSet;

use jiff::Timestamp;

use crate::adapters::graph::delta::{DeltaRound, DeltaStart, RemovalCheck};
use crate::adapters::graph::events::CRM_ID_PROPERTY;
use crate::adapters::graph::types::{GraphEvent, EXCEPTION, OCCURRENCE};
use crate::adapters::graph::{to_calendar_event, GraphError, MailboxClient, MappingError};
use calsync_core::sync::{
    absent_from_listing, Link, Occurrence, OutlookChanges, OutlookItem, Side,
};
use calsync_core::time::TimeWindow;

/// One round read from Graph.
pub struct OutlookRead {
    pub round: DeltaRound,
    /// A full listing of the window (first run, a lost delta token, a moved window, a full
    /// resync): absence from it is what may mean deletion.
    pub full: bool,
    /// The window the round's delta link covers.
    pub window: TimeWindow,
}

/// Reads the next round: from the stored delta link, or in full over `window` when there is
/// none or `full` is asked. A lost delta token (410 and friends) turns into a full round.
pub async fn read(
    mailbox: &MailboxClient,
    delta_link: Option<&str>,
    stored_window: TimeWindow,
    window: TimeWindow,
    full: bool,
) -> Result<OutlookRead, GraphError> {
    if let (Some(link), false) = (delta_link, full) {
        match mailbox
            .delta_round(DeltaStart::Resume(link.to_owned()))
            .await
        {
            Ok(round) => {
                return Ok(OutlookRead {
                    round,
                    full: false,
                    window: stored_window,
                })
            }
            Err(e) if e.is_resync() => {
                tracing::info!(mailbox = mailbox.mailbox().oid(), error = %crate::errors::chain(&e), "delta token lost, listing the window again");
            }
            Err(e) => return Err(e),
        }
    }
    let round = mailbox.delta_round(DeltaStart::Full(window)).await?;
    Ok(OutlookRead {
        round,
        full: true,
        window,
    })
}

impl OutlookRead {
    /// Nothing changed since the last round (an empty full listing still counts as news: it
    /// may mean everything is gone).
    pub fn is_quiet(&self) -> bool {
        !self.full && self.round.changes.is_empty() && self.round.tombstones.is_empty()
    }

    /// The round as the engine's input, with deletions confirmed against Graph. Items that
    /// cannot be mapped are skipped and returned with the reason.
    ///
    /// With `check_series`, every linked series is also listed (one request each) to find
    /// cancelled occurrences, which calendarView delta does not report (docs/design.md §7).
    pub async fn into_changes(
        self,
        mailbox: &MailboxClient,
        snapshot: &[Link],
        check_series: bool,
    ) -> Result<(OutlookChanges, Vec<(String, String)>), GraphError> {
        let mut changes = OutlookChanges::default();
        let mut skipped = Vec::new();
        for event in &self.round.changes {
            match item_from(event) {
                Ok(item) => changes.upserts.push(item),
                Err(e) => skipped.push((event.id.clone(), e.to_string())),
            }
        }
        let masters: HashSet<&str> = snapshot
            .iter()
            .filter_map(|link| link.occurrence.as_ref())
            .map(|occurrence| occurrence.series_master_id.as_str())
            .collect();
        let candidates: Vec<String> = if self.full {
            let listed = self.round.changes.iter().map(|e| e.id.as_str());
            absent_from_listing(snapshot, Side::Outlook, listed)
        } else {
            let linked: HashSet<&str> = snapshot
                .iter()
                .filter_map(|link| link.outlook_id.as_deref())
                .collect();
            self.round
                .tombstones_among(|id| linked.contains(id) || masters.contains(id))
                .into_iter()
                .map(|t| t.id.clone())
                .collect()
        };
        let mut candidates = candidates;
        if check_series && !self.full {
            candidates.extend(
                self.missing_occurrences(mailbox, snapshot, &masters)
                    .await?,
            );
        }
        candidates.sort_unstable();
        candidates.dedup();
        if candidates.is_empty() {
            return Ok((changes, skipped));
        }
        for check in mailbox.check_removals(&candidates).await? {
            match check {
                RemovalCheck::Deleted(id) if masters.contains(id.as_str()) => {
                    changes.deleted_series.push(id)
                }
                RemovalCheck::Deleted(id) => changes.deleted.push(id),
                // Moved out of the window or changed outside it: an update, not a deletion.
                RemovalCheck::StillThere(event) if !event.is_series_master() => {
                    match item_from(&event) {
                        Ok(item) => changes.upserts.push(item),
                        Err(e) => skipped.push((event.id.clone(), e.to_string())),
                    }
                }
                RemovalCheck::StillThere(_) => {}
            }
        }
        Ok((changes, skipped))
    }
}

impl OutlookRead {
    /// Linked occurrences that their series no longer lists in the window; a missing series
    /// is itself a candidate.
    async fn missing_occurrences(
        &self,
        mailbox: &MailboxClient,
        snapshot: &[Link],
        masters: &HashSet<&str>,
    ) -> Result<Vec<String>, GraphError> {
        let mut missing = Vec::new();
        let mut masters: Vec<&str> = masters.iter().copied().collect();
        masters.sort_unstable();
        for master in masters {
            let listed: HashSet<String> = match mailbox.series_instances(master, self.window).await
            {
                Ok(instances) => instances.into_iter().map(|e| e.id).collect(),
                Err(GraphError::NotFound { .. }) => {
                    missing.push(master.to_owned());
                    continue;
                }
                Err(e) => return Err(e),
            };
            missing.extend(
                snapshot
                    .iter()
                    .filter(|link| {
                        link.occurrence
                            .as_ref()
                            .is_some_and(|o| o.series_master_id == master)
                    })
                    .filter_map(|link| link.outlook_id.clone())
                    .filter(|id| !listed.contains(id)),
            );
        }
        Ok(missing)
    }
}

/// An occurrence's original start: an instant, or — as occurrence stubs carry it, taken from
/// their start — a UTC wall time without an offset (calsync asks Graph for UTC).
fn original_instant(text: &str) -> Option<Timestamp> {
    text.parse::<Timestamp>().ok().or_else(|| {
        let civil = text.parse::<jiff::civil::DateTime>().ok()?;
        jiff::tz::TimeZone::UTC.to_timestamp(civil).ok()
    })
}

/// One Graph event as the engine sees it.
pub fn item_from(event: &GraphEvent) -> Result<OutlookItem, MappingError> {
    let mapped = to_calendar_event(event)?;
    let occurrence = match (event.kind.as_deref(), &event.series_master_id) {
        (Some(OCCURRENCE | EXCEPTION), Some(master)) => {
            let original_start = event
                .original_start
                .as_deref()
                .and_then(original_instant)
                .or(match &mapped.time {
                    calsync_core::event::EventTime::Timed { start, .. } => Some(*start),
                    calsync_core::event::EventTime::AllDay { .. } => None,
                })
                .ok_or(MappingError::MissingTimes)?;
            Some(Occurrence {
                series_master_id: master.clone(),
                original_start,
            })
        }
        _ => None,
    };
    Ok(OutlookItem {
        crm_stamp: event
            .extended_property(CRM_ID_PROPERTY)
            .map(crate::adapters::crm::CrmEventId::new),
        transaction_id: event.transaction_id.clone(),
        occurrence,
        event: mapped,
    })
}
