//! Reading an owner's changes.
//!
//! - First load (no cursor): list the window with `query` and start the cursor at the server's
//!   clock, because `sync` from `modifiedTime=0` crashes vtiger (HTTP 500).
//! - Then `sync` (syncType=application: the integration user is an admin who does not own the
//!   events), filtered by owner, from the cursor minus a small overlap; changes already
//!   delivered (same id and modification second) are dropped.
//! - When `sync` fails (stock vtiger 8 on PHP 8 answers every `sync` with HTTP 500), `query` on
//!   `modifiedtime`, ordered and paged by 100 with ties at a page edge read in full. `query`
//!   sees no deletions: those are found by reconciling (a window listing compared with the
//!   caller's known ids, each missing one confirmed with `retrieve`).

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::mapping::{self, Zones};
use super::vtql::{self, PAGE};
use super::wire::{self, Record, SyncResult};
use super::{FeedPreference, VtigerCrm};
use crate::adapters::crm::{
    ChangeCursor, ChangeSet, ChangesRequest, CrmError, CrmEventId, Gone, GoneReason,
};
use calsync_core::event::CalendarEvent;
use calsync_core::time::TimeWindow;

const CURSOR_VERSION: u8 = 1;

/// Upper bound on window pages, so a misbehaving server cannot keep us looping.
const MAX_WINDOW_PAGES: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FeedKind {
    Sync,
    Query,
}

/// A change already delivered near the cursor, to drop its repeat in the next overlap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Delivered {
    id: String,
    at: i64,
    /// Digest of the record's content: a second change within the same second differs here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    digest: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
}

/// A short digest of a record's values (without `label`, which only some operations add).
fn digest(record: &Record) -> String {
    let values: std::collections::BTreeMap<&str, String> = record
        .0
        .iter()
        .filter(|(key, _)| key.as_str() != "label")
        .map(|(key, value)| (key.as_str(), wire::scalar_text(value)))
        .collect();
    let text = serde_json::to_string(&values).unwrap_or_default();
    let hash = Sha256::digest(text.as_bytes());
    hex::encode(&hash[..8])
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CursorState {
    v: u8,
    /// Server epoch seconds: every change up to here was delivered.
    since: i64,
    #[serde(default)]
    edge: Vec<Delivered>,
    feed: FeedKind,
    /// With `feed = query` after a `sync` failure: when to try `sync` again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_sync_at: Option<i64>,
}

impl CursorState {
    fn into_cursor(self) -> ChangeCursor {
        ChangeCursor::from_value(serde_json::to_value(self).unwrap_or_default())
    }

    fn from_cursor(cursor: &ChangeCursor) -> Option<Self> {
        serde_json::from_value::<CursorState>(cursor.value().clone())
            .ok()
            .filter(|state| state.v == CURSOR_VERSION && state.since > 0)
    }

    /// Whether this change was delivered already: same id, second and content (deletions:
    /// same id).
    fn delivered(&self, id: &str, at: i64, digest: &str, deleted: bool) -> bool {
        self.edge.iter().any(|entry| {
            entry.id == id
                && entry.deleted == deleted
                && (deleted || (entry.at == at && entry.digest == digest))
        })
    }

    fn remember(&mut self, id: &str, at: i64, digest: String, deleted: bool) {
        if !self.delivered(id, at, &digest, deleted) {
            self.edge.push(Delivered {
                id: id.to_owned(),
                at,
                digest,
                deleted,
            });
        }
    }

    fn advance(&mut self, since: i64, overlap: i64) {
        self.since = self.since.max(since);
        let floor = self.since - overlap;
        self.edge.retain(|entry| entry.at > floor);
    }
}

/// Everything one `changes` call found, each id at most once, last word wins.
#[derive(Default)]
struct Collected {
    order: Vec<String>,
    upserts: HashMap<String, CalendarEvent>,
    gone: HashMap<String, GoneReason>,
    unreadable: Vec<(CrmEventId, String)>,
}

impl Collected {
    fn touch(&mut self, id: &str) {
        if !self.upserts.contains_key(id) && !self.gone.contains_key(id) {
            self.order.push(id.to_owned());
        }
    }

    fn upsert(&mut self, id: &str, event: CalendarEvent) {
        self.touch(id);
        self.gone.remove(id);
        self.upserts.insert(id.to_owned(), event);
    }

    fn gone(&mut self, id: &str, reason: GoneReason) {
        self.touch(id);
        self.upserts.remove(id);
        self.gone.insert(id.to_owned(), reason);
    }

    fn seen(&self, id: &str) -> bool {
        self.upserts.contains_key(id) || self.gone.contains_key(id)
    }

    fn into_parts(mut self) -> (Vec<CalendarEvent>, Vec<Gone>, Vec<(CrmEventId, String)>) {
        let mut upserts = Vec::new();
        let mut gone = Vec::new();
        for id in self.order {
            if let Some(event) = self.upserts.remove(&id) {
                upserts.push(event);
            } else if let Some(reason) = self.gone.remove(&id) {
                gone.push(Gone {
                    id: CrmEventId::new(id),
                    reason,
                });
            }
        }
        (upserts, gone, self.unreadable)
    }
}

/// One `changes` call's context.
struct Reader<'a> {
    crm: &'a VtigerCrm,
    owner_id: &'a str,
    known: HashSet<&'a str>,
    any_gone: bool,
    zones: Zones,
    found: Collected,
}

impl Reader<'_> {
    /// Whether a deletion or departure of `id` is reported.
    fn is_known(&self, id: &str) -> bool {
        self.any_gone || self.known.contains(id)
    }

    fn at(&self, operation: &str, record: &Record) -> Result<i64, CrmError> {
        mapping::parse_server_datetime(
            "modifiedtime",
            &record.text("modifiedtime"),
            &self.zones.server,
        )
        .map(Timestamp::as_second)
        .map_err(|err| CrmError::InvalidData {
            operation: operation.to_owned(),
            record: Some(record.id()),
            source: Box::new(err),
        })
    }

    fn server_text(&self, epoch: i64) -> String {
        let at = Timestamp::from_second(epoch).unwrap_or(Timestamp::UNIX_EPOCH);
        mapping::format_server_datetime(at, &self.zones.server)
    }

    /// A record of the feed: the owner's → upsert; someone else's but known → it left.
    fn take(&mut self, operation: &str, record: &Record) {
        let id = record.id();
        if id.is_empty() {
            return;
        }
        if record.text("assigned_user_id") != self.owner_id {
            if self.is_known(&id) {
                self.found.gone(&id, GoneReason::LeftOwner);
            }
            return;
        }
        match self.crm.to_event(operation, record, &self.zones) {
            Ok(event) => self.found.upsert(&id, event),
            Err(err) => {
                tracing::warn!(id = %id, error = %crate::errors::chain(&err), "skipping an unreadable CRM event");
                self.found
                    .unreadable
                    .push((CrmEventId::new(id), crate::errors::chain(&err)));
            }
        }
    }

    /// `sync` pages from the cursor. Returns whether more changes wait.
    async fn read_sync(&mut self, state: &mut CursorState) -> Result<bool, CrmError> {
        let overlap = self.crm.overlap_secs;
        let mut with_overlap = true;
        for _ in 0..self.crm.max_pages {
            let from = if with_overlap {
                state.since - overlap
            } else {
                state.since
            }
            .max(1);
            let from_text = from.to_string();
            let value = self
                .crm
                .client
                .get(
                    "sync",
                    &[
                        ("modifiedTime", from_text.as_str()),
                        ("elementType", "Events"),
                        ("syncType", "application"),
                    ],
                )
                .await?;
            let result: SyncResult = wire::decode("sync", value)?;
            for record in &result.updated {
                let at = self.at("sync", record)?;
                let id = record.id();
                let digest = digest(record);
                if state.delivered(&id, at, &digest, false) {
                    continue;
                }
                state.remember(&id, at, digest, false);
                self.take("sync", record);
            }
            for id in &result.deleted {
                if state.delivered(id, 0, "", true) {
                    continue;
                }
                state.remember(id, result.last_modified_time, String::new(), true);
                if self.is_known(id) {
                    self.found.gone(id, GoneReason::Deleted);
                }
            }
            let before = state.since;
            state.advance(result.last_modified_time, overlap);
            if !result.more {
                return Ok(false);
            }
            // A full batch inside the overlap makes no progress: read past it next time.
            with_overlap = state.since > before;
        }
        Ok(true)
    }

    /// `query` pages on `modifiedtime` from the cursor. Returns whether more changes wait.
    async fn read_query(&mut self, state: &mut CursorState) -> Result<bool, CrmError> {
        let overlap = self.crm.overlap_secs;
        let mut lower = (state.since - overlap).max(1);
        let mut inclusive = false;
        // Ids read at exactly `lower`, when `lower` is inclusive.
        let mut at_lower: HashSet<String> = HashSet::new();
        let mut pages = 0;
        while pages < self.crm.max_pages {
            pages += 1;
            let query = vtql::changed_since(self.owner_id, &self.server_text(lower), inclusive);
            let rows = self.crm.query(&query).await?;
            let mut fresh = Vec::new();
            for record in &rows {
                let at = self.at("query", record)?;
                if !(inclusive && at == lower && at_lower.contains(&record.id())) {
                    fresh.push((record, at));
                }
            }
            if fresh.is_empty() {
                if rows.len() < PAGE {
                    state.advance(lower, overlap);
                    return Ok(false);
                }
                // More than a page shares the second `lower`: read those ties by offset.
                let mut offset = PAGE;
                loop {
                    pages += 1;
                    let query = vtql::changed_at(self.owner_id, &self.server_text(lower), offset);
                    let ties = self.crm.query(&query).await?;
                    if ties.is_empty() {
                        break;
                    }
                    for record in &ties {
                        self.deliver(state, record, lower);
                    }
                    offset += PAGE;
                }
                inclusive = false;
                at_lower.clear();
                continue;
            }
            let mut newest = lower;
            for (record, at) in fresh {
                self.deliver(state, record, at);
                newest = newest.max(at);
            }
            if newest != lower {
                at_lower.clear();
            }
            for record in &rows {
                if self.at("query", record)? == newest {
                    at_lower.insert(record.id());
                }
            }
            lower = newest;
            inclusive = true;
        }
        state.advance(lower, overlap);
        Ok(true)
    }

    fn deliver(&mut self, state: &mut CursorState, record: &Record, at: i64) {
        let id = record.id();
        let digest = digest(record);
        if state.delivered(&id, at, &digest, false) {
            return;
        }
        state.remember(&id, at, digest, false);
        self.take("query", record);
    }

    /// Every event of the owner overlapping the window (with a day of slack each side).
    async fn list_window(&self, window: &TimeWindow) -> Result<Vec<Record>, CrmError> {
        let server = &self.zones.server;
        let first = server
            .to_datetime(calsync_core::time::shift_days(window.start, -1, server))
            .date()
            .to_string();
        let last = server
            .to_datetime(calsync_core::time::shift_days(window.end, 1, server))
            .date()
            .to_string();
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_WINDOW_PAGES {
            let query = vtql::window_page(self.owner_id, &first, &last, after.as_deref());
            let rows = self.crm.query(&query).await?;
            let Some(last_row) = rows.last() else {
                return Ok(all);
            };
            let last_id = last_row.id();
            if after.as_deref() == Some(last_id.as_str()) {
                break;
            }
            after = Some(last_id);
            all.extend(rows);
        }
        Ok(all)
    }

    /// List the window; every known id missing from it is looked up on its own.
    async fn reconcile(&mut self, window: &TimeWindow) -> Result<Vec<Record>, CrmError> {
        let listing = self.list_window(window).await?;
        for record in &listing {
            self.take("query", record);
        }
        let listed: HashSet<String> = listing.iter().map(Record::id).collect();
        let mut missing: Vec<&str> = self
            .known
            .iter()
            .copied()
            .filter(|id| !listed.contains(*id) && !self.found.seen(id))
            .collect();
        missing.sort_unstable();
        for id in missing {
            match self.crm.retrieve(&CrmEventId::new(id)).await? {
                // ACCESS_DENIED: deleted (or never existed).
                None => self.found.gone(id, GoneReason::Deleted),
                // Still there: reassigned away, or moved out of the window.
                Some(record) => self.take("retrieve", &record),
            }
        }
        Ok(listing)
    }
}

/// Whether a `sync` failure means "use `query` instead" (rather than "the CRM is down").
fn sync_unavailable(err: &CrmError) -> bool {
    match err {
        CrmError::Http { status, .. } => *status >= 500,
        CrmError::Malformed { .. } | CrmError::InvalidData { .. } => true,
        CrmError::Api { code, .. } => !code.is_session_error(),
        _ => false,
    }
}

/// Whether reads from this cursor see deletions (the `sync` operation works), so that finding
/// deletions by absence can wait.
pub fn cursor_sees_deletions(cursor: &ChangeCursor) -> bool {
    CursorState::from_cursor(cursor).is_some_and(|state| state.feed == FeedKind::Sync)
}

pub(super) async fn changes(
    crm: &VtigerCrm,
    request: ChangesRequest<'_>,
) -> Result<ChangeSet, CrmError> {
    let mut reader = Reader {
        crm,
        owner_id: request.owner.id.as_str(),
        known: request.known.iter().map(CrmEventId::as_str).collect(),
        any_gone: request.report_any_gone,
        zones: crm.zones(request.owner),
        found: Collected::default(),
    };
    let previous = match &request.cursor {
        Some(cursor) => {
            let state = CursorState::from_cursor(cursor);
            if state.is_none() {
                tracing::warn!("unusable CRM cursor, starting over with a full listing");
            }
            state
        }
        None => None,
    };

    let Some(mut state) = previous else {
        // First load. The cursor starts at the server's clock *before* the listing, so a
        // change made while listing is read again (and de-duplicated) next time.
        let now = crm.client.server_now().await?;
        let listing = reader.reconcile(&request.window).await?;
        let mut state = CursorState {
            v: CURSOR_VERSION,
            since: now,
            edge: Vec::new(),
            feed: match crm.feed {
                FeedPreference::Auto => FeedKind::Sync,
                FeedPreference::QueryOnly => FeedKind::Query,
            },
            retry_sync_at: None,
        };
        for record in &listing {
            if let Ok(at) = reader.at("query", record) {
                if at > now - crm.overlap_secs {
                    state.remember(&record.id(), at, digest(record), false);
                }
            }
        }
        let (upserts, gone, unreadable) = reader.found.into_parts();
        return Ok(ChangeSet {
            upserts,
            gone,
            cursor: state.into_cursor(),
            more: false,
            full_listing: true,
            sees_deletions: true,
            unreadable,
        });
    };

    let now = crm.client.server_now().await?;
    let try_sync = crm.feed == FeedPreference::Auto
        && (state.feed == FeedKind::Sync || state.retry_sync_at.is_some_and(|at| at <= now));
    let mut sees_deletions = false;
    let more = if try_sync {
        let mut attempt = state.clone();
        match reader.read_sync(&mut attempt).await {
            Ok(more) => {
                state = attempt;
                state.feed = FeedKind::Sync;
                state.retry_sync_at = None;
                sees_deletions = true;
                more
            }
            Err(err) if sync_unavailable(&err) => {
                tracing::warn!(error = %crate::errors::chain(&err), "CRM sync operation unavailable, falling back to query");
                state.feed = FeedKind::Query;
                state.retry_sync_at = Some(now + crm.sync_retry_secs);
                reader.found = Collected::default();
                reader.read_query(&mut state).await?
            }
            Err(err) => return Err(err),
        }
    } else {
        reader.read_query(&mut state).await?
    };

    let full_listing = request.reconcile;
    if request.reconcile {
        reader.reconcile(&request.window).await?;
        sees_deletions = true;
    }
    let (upserts, gone, unreadable) = reader.found.into_parts();
    Ok(ChangeSet {
        upserts,
        gone,
        cursor: state.into_cursor(),
        more,
        full_listing,
        sees_deletions,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> CursorState {
        CursorState {
            v: CURSOR_VERSION,
            since: 1_000,
            edge: Vec::new(),
            feed: FeedKind::Sync,
            retry_sync_at: None,
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let mut original = state();
        original.remember("18x1", 999, "d1".into(), false);
        let cursor = original.clone().into_cursor();
        let text = serde_json::to_string(&cursor).unwrap();
        let back: ChangeCursor = serde_json::from_str(&text).unwrap();
        assert_eq!(CursorState::from_cursor(&back), Some(original));
        let junk = ChangeCursor::from_value(serde_json::json!({"v": 99, "since": 5}));
        assert_eq!(CursorState::from_cursor(&junk), None);
        let zero =
            ChangeCursor::from_value(serde_json::json!({"v": 1, "since": 0, "feed": "sync"}));
        assert_eq!(CursorState::from_cursor(&zero), None, "never resume from 0");
    }

    #[test]
    fn edge_drops_repeats_and_ages_out() {
        let mut s = state();
        s.remember("18x1", 999, "d1".into(), false);
        s.remember("18x2", 1_000, String::new(), true);
        assert!(s.delivered("18x1", 999, "d1", false));
        assert!(
            !s.delivered("18x1", 1_000, "d1", false),
            "a newer change is new"
        );
        assert!(
            !s.delivered("18x1", 999, "d2", false),
            "so is another change in the same second"
        );
        assert!(s.delivered("18x2", 0, "", true));
        s.advance(1_010, 2);
        assert!(s.edge.is_empty());
        assert_eq!(s.since, 1_010);
        s.advance(900, 2);
        assert_eq!(s.since, 1_010, "the cursor never goes back");
    }

    #[test]
    fn collected_keeps_the_last_word() {
        let mut found = Collected::default();
        let event = CalendarEvent::timed("a", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH);
        found.upsert("18x1", event.clone());
        found.gone("18x1", GoneReason::Deleted);
        found.gone("18x2", GoneReason::Deleted);
        found.upsert("18x2", event);
        let (upserts, gone, _) = found.into_parts();
        assert_eq!(upserts.len(), 1);
        assert_eq!(
            gone,
            vec![Gone {
                id: CrmEventId::new("18x1"),
                reason: GoneReason::Deleted
            }]
        );
    }

    #[test]
    fn which_sync_failures_fall_back() {
        let http = |status| CrmError::Http {
            operation: "sync".into(),
            status,
            body_start: String::new(),
        };
        assert!(sync_unavailable(&http(500)));
        assert!(!sync_unavailable(&http(404)));
        assert!(!sync_unavailable(&CrmError::Timeout {
            operation: "sync".into(),
            after: std::time::Duration::from_secs(1)
        }));
    }
}
