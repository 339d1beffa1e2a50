//! calendarView delta rounds. A round pages from its first link to a `@odata.deltaLink`,
//! following every link verbatim (the window is baked into the tokens). What it returns is
//! sorted for the sync engine:
//!
//! - `changes`: single events, exceptions, and occurrences completed from their series master
//!   (Graph sends occurrences as stubs with only their times);
//! - `tombstones`: ids that left the view. Graph also sends these for events outside the
//!   window, so a tombstone proves nothing: only one whose id the caller had in the window is
//!   a candidate deletion, and [`MailboxClient::check_removals`] tells the two cases apart;
//! - `series_masters`: kept apart, never treated as an instance.
//!
//! Items may repeat within a round; the last version of an id wins. A round that keeps
//! getting pages with nothing new is stopped ([`GraphError::NoProgress`]).

use std::collections::{HashMap, HashSet};

use super::client::{odata_query, MailboxClient};
use super::error::GraphError;
use super::types::{DeltaPage, GraphEvent, OCCURRENCE};
use calsync_core::time::TimeWindow;

/// Where a round starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaStart {
    /// A full round over a window (after a resync, or the first time).
    Full(TimeWindow),
    /// The next round from the previous round's deltaLink.
    Resume(String),
}

/// An id that left the view since the last round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub id: String,
    /// `deleted` or `changed`, as Graph labelled it (it does not mean much for events).
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaRound {
    pub changes: Vec<GraphEvent>,
    pub tombstones: Vec<Tombstone>,
    /// Series masters listed in the round or fetched to complete occurrences.
    pub series_masters: Vec<GraphEvent>,
    /// Occurrence stubs whose master could not be found (deleted meanwhile).
    pub incomplete: Vec<GraphEvent>,
    /// Store it whole; the next round starts from it.
    pub delta_link: String,
    pub pages: u32,
    /// Series masters fetched to complete occurrences (once each per round).
    pub masters_fetched: u32,
}

impl DeltaRound {
    /// The tombstones whose id the caller knows in the window: the only ones that may be
    /// deletions. Every other tombstone is about something outside the window.
    pub fn tombstones_among(&self, known: impl Fn(&str) -> bool) -> Vec<&Tombstone> {
        self.tombstones.iter().filter(|t| known(&t.id)).collect()
    }
}

/// What a GET says about a tombstoned id.
#[derive(Debug, Clone, PartialEq)]
pub enum RemovalCheck {
    /// The event no longer exists: a real deletion.
    Deleted(String),
    /// The event still exists (moved out of the window, or changed outside it).
    StillThere(Box<GraphEvent>),
}

/// The round's items in arrival order, the last version of each id kept.
#[derive(Default)]
struct Collector {
    items: Vec<Option<GraphEvent>>,
    at: HashMap<String, usize>,
}

impl Collector {
    /// Adds an item; returns whether its id is new to the round.
    fn add(&mut self, item: GraphEvent) -> bool {
        match self.at.get(&item.id) {
            Some(&slot) => {
                self.items[slot] = Some(item);
                false
            }
            None => {
                self.at.insert(item.id.clone(), self.items.len());
                self.items.push(Some(item));
                true
            }
        }
    }

    fn into_items(self) -> impl Iterator<Item = GraphEvent> {
        self.items.into_iter().flatten()
    }
}

/// The part of a round that needs no network: pages in, a sorted round out. Public so the
/// cost of parsing and completing a round can be measured on its own.
#[derive(Default)]
pub struct RoundAssembly {
    collector: Collector,
    pages: u32,
}

impl RoundAssembly {
    /// Adds one page's items; returns how many ids were new to the round.
    pub fn add_page(&mut self, items: Vec<GraphEvent>) -> usize {
        self.pages += 1;
        let mut fresh = 0;
        for item in items {
            if self.collector.add(item) {
                fresh += 1;
            }
        }
        fresh
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Sorts the round's items: changes, tombstones, masters, and stubs still to complete.
    pub fn finish(self, delta_link: String) -> PendingRound {
        let mut round = DeltaRound {
            delta_link,
            pages: self.pages,
            ..DeltaRound::default()
        };
        let mut stubs = Vec::new();
        let mut masters = HashMap::new();
        for item in self.collector.into_items() {
            if let Some(removed) = &item.removed {
                round.tombstones.push(Tombstone {
                    reason: removed.reason.clone(),
                    id: item.id,
                });
            } else if item.is_series_master() {
                masters.insert(item.id.clone(), item);
            } else if item.is_occurrence_stub() {
                stubs.push(item);
            } else {
                round.changes.push(item);
            }
        }
        PendingRound {
            round,
            stubs,
            masters,
        }
    }
}

/// A collected round whose occurrence stubs still need their masters.
pub struct PendingRound {
    round: DeltaRound,
    stubs: Vec<GraphEvent>,
    masters: HashMap<String, GraphEvent>,
}

impl PendingRound {
    /// Masters the stubs refer to that the round did not list: fetch each once.
    pub fn missing_masters(&self) -> Vec<String> {
        let mut missing: Vec<String> = self
            .stubs
            .iter()
            .filter_map(|s| s.series_master_id.clone())
            .filter(|id| !self.masters.contains_key(id))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        missing.sort();
        missing
    }

    /// Completes the stubs with the masters listed and `fetched`; stubs without a master
    /// (deleted meanwhile) end up in `incomplete`.
    pub fn complete(self, fetched: impl IntoIterator<Item = GraphEvent>) -> DeltaRound {
        let PendingRound {
            mut round,
            stubs,
            mut masters,
        } = self;
        for master in fetched {
            masters.insert(master.id.clone(), master);
        }
        round.changes.reserve(stubs.len());
        for stub in stubs {
            match stub
                .series_master_id
                .as_deref()
                .and_then(|id| masters.get(id))
            {
                Some(master) => round.changes.push(complete_occurrence(&stub, master)),
                None => round.incomplete.push(stub),
            }
        }
        round.series_masters = masters.into_values().collect();
        round
    }
}

/// The full occurrence: the master's content with the stub's identity and times.
pub fn complete_occurrence(stub: &GraphEvent, master: &GraphEvent) -> GraphEvent {
    let mut event = master.clone();
    event.id = stub.id.clone();
    event.etag = stub.etag.clone();
    event.removed = None;
    event.kind = Some(OCCURRENCE.to_owned());
    event.series_master_id = Some(
        stub.series_master_id
            .clone()
            .unwrap_or_else(|| master.id.clone()),
    );
    event.change_key = stub.version().map(str::to_owned);
    event.start = stub.start.clone();
    event.end = stub.end.clone();
    event.original_start = stub
        .original_start
        .clone()
        .or_else(|| stub.start.as_ref().map(|s| s.date_time.clone()));
    // Per-occurrence values the master cannot supply.
    event.ical_uid = stub.ical_uid.clone();
    event.recurrence = None;
    event.transaction_id = None;
    event.single_value_extended_properties = None;
    event
}

impl MailboxClient {
    /// Runs one delta round to its deltaLink. Resync signals come back as
    /// [`GraphError::ResyncRequired`]: drop the link and run a [`DeltaStart::Full`] round.
    pub async fn delta_round(&self, start: DeltaStart) -> Result<DeltaRound, GraphError> {
        let mut url = match &start {
            DeltaStart::Full(window) => {
                let mut url = self.mailbox_url(&["calendarView", "delta"])?;
                let [start, end] = super::events::window_query(window);
                url.set_query(Some(&odata_query(&[(start.0, &start.1), (end.0, &end.1)])));
                url
            }
            DeltaStart::Resume(link) => self.graph.graph_link(link)?,
        };
        let settings = self.graph.settings().clone();
        let mut prefer = self.event_prefer();
        prefer.push(format!("odata.maxpagesize={}", settings.page_size));

        let mut assembly = RoundAssembly::default();
        let mut links_followed: HashSet<String> = HashSet::new();
        let mut stalled = 0u32;
        let delta_link = loop {
            if assembly.pages >= settings.max_pages {
                return Err(GraphError::NoProgress {
                    pages: assembly.pages,
                });
            }
            let page: DeltaPage = self.get_json_with(url, &prefer).await?;
            let fresh = assembly.add_page(page.value);
            stalled = if fresh == 0 { stalled + 1 } else { 0 };
            match (page.next_link, page.delta_link) {
                (Some(next), _) => {
                    // A link seen before, or too many pages adding nothing: Graph is looping.
                    if stalled >= settings.max_stalled_pages || !links_followed.insert(next.clone())
                    {
                        tracing::warn!(
                            mailbox = self.mailbox.oid(),
                            pages = assembly.pages,
                            "delta round is not making progress"
                        );
                        return Err(GraphError::NoProgress {
                            pages: assembly.pages,
                        });
                    }
                    url = self.graph.graph_link(&next)?;
                }
                (None, Some(delta)) => break delta,
                (None, None) => return Err(GraphError::DeltaPageWithoutLink),
            }
        };
        let pending = assembly.finish(delta_link);
        let missing = pending.missing_masters();
        let mut fetched = Vec::with_capacity(missing.len());
        if !missing.is_empty() {
            fetched = self
                .get_events(&missing)
                .await?
                .into_iter()
                .filter_map(|(_, master)| master)
                .collect();
        }
        let mut round = pending.complete(fetched);
        round.masters_fetched = missing.len() as u32;
        Ok(round)
    }

    /// Looks tombstoned ids up (in batches): which are really deleted and which still exist.
    pub async fn check_removals(&self, ids: &[String]) -> Result<Vec<RemovalCheck>, GraphError> {
        Ok(self
            .get_events(ids)
            .await?
            .into_iter()
            .map(|(id, event)| match event {
                Some(event) => RemovalCheck::StillThere(Box::new(event)),
                None => RemovalCheck::Deleted(id),
            })
            .collect())
    }

    async fn get_json_with<T: serde::de::DeserializeOwned>(
        &self,
        url: url::Url,
        prefer: &[String],
    ) -> Result<T, GraphError> {
        self.send(super::client::RequestSpec {
            method: reqwest::Method::GET,
            url,
            prefer,
            if_match: None,
            body: None,
            idempotent: true,
        })
        .await?
        .json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> GraphEvent {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn occurrences_take_content_from_the_master_and_times_from_the_stub() {
        let master = event(json!({
            "id": "M", "type": "seriesMaster", "subject": "Standup", "iCalUId": "uid-master",
            "start": {"dateTime": "2026-01-05T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-05T09:15:00.0000000", "timeZone": "UTC"},
            "recurrence": {"pattern": {"type": "daily", "interval": 1}},
            "transactionId": "calsync-x",
        }));
        let stub = event(json!({
            "id": "O1", "@odata.etag": "W/\"ck1\"", "type": "occurrence", "seriesMasterId": "M",
            "start": {"dateTime": "2026-01-07T09:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2026-01-07T09:15:00.0000000", "timeZone": "UTC"},
        }));
        let full = complete_occurrence(&stub, &master);
        assert_eq!(full.id, "O1");
        assert_eq!(full.subject.as_deref(), Some("Standup"));
        assert_eq!(
            full.start.as_ref().unwrap().date_time,
            "2026-01-07T09:00:00.0000000"
        );
        assert_eq!(full.kind.as_deref(), Some("occurrence"));
        assert_eq!(full.change_key.as_deref(), Some("ck1"));
        assert!(full.recurrence.is_none());
        assert!(full.ical_uid.is_none());
        assert!(full.transaction_id.is_none());
        assert!(!full.is_occurrence_stub());
    }

    #[test]
    fn the_last_version_of_an_id_wins() {
        let mut c = Collector::default();
        assert!(c.add(event(json!({"id": "a", "subject": "one"}))));
        assert!(c.add(event(json!({"id": "b", "subject": "b"}))));
        assert!(!c.add(event(json!({"id": "a", "@removed": {"reason": "deleted"}}))));
        let items: Vec<_> = c.into_items().collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_tombstone());
    }

    #[test]
    fn an_assembled_round_sorts_and_completes() {
        let mut assembly = RoundAssembly::default();
        let page = vec![
            event(json!({"id": "s", "type": "singleInstance", "subject": "single"})),
            event(
                json!({"id": "o1", "type": "occurrence", "seriesMasterId": "M",
                          "start": {"dateTime": "2026-01-01T09:00:00", "timeZone": "UTC"}}),
            ),
            event(json!({"id": "gone", "@removed": {"reason": "deleted"}})),
            event(
                json!({"id": "o2", "type": "occurrence", "seriesMasterId": "N",
                          "start": {"dateTime": "2026-01-02T09:00:00", "timeZone": "UTC"}}),
            ),
        ];
        assert_eq!(assembly.add_page(page), 4);
        let pending = assembly.finish("link".into());
        assert_eq!(pending.missing_masters(), ["M", "N"]);
        let round = pending.complete([event(
            json!({"id": "M", "type": "seriesMaster", "subject": "from master"}),
        )]);
        assert_eq!(round.pages, 1);
        assert_eq!(round.changes.len(), 2);
        assert_eq!(round.changes[1].subject.as_deref(), Some("from master"));
        assert_eq!(round.tombstones.len(), 1);
        assert_eq!(round.incomplete.len(), 1, "N's master is gone");
        assert_eq!(round.series_masters.len(), 1);
    }

    #[test]
    fn only_known_tombstones_are_candidate_deletions() {
        let round = DeltaRound {
            tombstones: vec![
                Tombstone {
                    id: "mine".into(),
                    reason: None,
                },
                Tombstone {
                    id: "outside".into(),
                    reason: None,
                },
            ],
            ..DeltaRound::default()
        };
        let candidates = round.tombstones_among(|id| id == "mine");
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].id, "mine");
    }
}
