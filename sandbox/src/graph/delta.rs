//! calendarView delta as Exchange behaves: the window is baked into opaque tokens; a round is
//! cut into pages of about `maxpagesize` items without splitting a series; the next round sends
//! what changed against the sync state the server kept — tombstones for what left the view,
//! and also for events changed outside the window; occurrences come as stubs; sync states are
//! evicted when the cache is full, and lost tokens answer 410 `SyncStateNotFound`.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use serde_json::{json, Value};

use super::errors::GraphErr;
use super::mailbox::{DeltaExpiry, MailboxState};
use super::model::{
    occurrence_id, parse_occurrence_id, tombstone, InstanceKind, RenderPrefs, View,
};
use crate::support::random_token;

/// Rounds kept per mailbox for clients that retry a page.
const MAX_ROUNDS: usize = 8;

/// What the server remembers of a finished round: the window and each item's version.
#[derive(Debug, Clone)]
pub(crate) struct SyncState {
    pub token: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub seq: u64,
    pub seen: HashMap<String, u64>,
}

/// A round being paged through. Items are rendered once, when the round starts.
#[derive(Debug, Clone)]
pub(crate) struct PagedRound {
    pub created_seq: u64,
    pub path: String,
    items: Vec<String>,
    pages: Vec<(usize, usize)>,
    /// Token of each page after the first.
    page_tokens: Vec<String>,
    delta_token: String,
    final_state: Option<SyncState>,
}

/// A page to send.
pub(crate) struct DeltaPage {
    pub body: String,
}

/// How a delta request ends.
pub(crate) enum DeltaAnswer {
    Page(DeltaPage),
    /// The token is unknown or evicted.
    Lost(DeltaExpiry),
}

/// The request's delta parameters.
pub(crate) enum DeltaRequest {
    Start { from: Timestamp, to: Timestamp },
    Skip(String),
    Delta(String),
}

fn display_id(mb: &MailboxState, canonical: &str, prefs: &RenderPrefs) -> String {
    if prefs.immutable_ids {
        return canonical.to_owned();
    }
    if let Some(event) = mb.events.get(canonical) {
        return event.rest_id.clone();
    }
    if let Some(rest) = mb.graveyard.get(canonical) {
        return rest.clone();
    }
    if let Some((master, date)) = parse_occurrence_id(canonical) {
        let master = display_id(mb, &master, prefs);
        return occurrence_id(&master, date);
    }
    canonical.to_owned()
}

fn is_cancelled_occurrence(mb: &MailboxState, canonical: &str) -> bool {
    let Some((master, date)) = parse_occurrence_id(canonical) else {
        return false;
    };
    mb.events
        .get(&master)
        .and_then(|e| e.series.as_ref())
        .is_some_and(|s| s.cancelled.contains_key(&date))
}

/// Works out a round's items against the prior state (None: a full round).
fn plan(
    mb: &MailboxState,
    from: Timestamp,
    to: Timestamp,
    prior: Option<&SyncState>,
    prefs: &RenderPrefs,
) -> (Vec<Vec<String>>, SyncState) {
    let current = mb.visible(from, to);
    let mut groups: Vec<Vec<String>> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    let mut seen = HashMap::with_capacity(current.len());
    let mut with_instances: HashSet<&str> = HashSet::new();
    let mut changed_series: HashMap<&str, Timestamp> = HashMap::new();
    let mut push = |groups: &mut Vec<Vec<String>>, key: &str, item: String| match group_of.get(key)
    {
        Some(&at) => groups[at].push(item),
        None => {
            group_of.insert(key.to_owned(), groups.len());
            groups.push(vec![item]);
        }
    };
    for instance in &current {
        seen.insert(instance.id.clone(), instance.version);
        with_instances.insert(&instance.event_id);
        if prior.is_some_and(|p| p.seen.get(&instance.id) == Some(&instance.version)) {
            continue;
        }
        let Some(event) = mb.events.get(&instance.event_id) else {
            continue;
        };
        let view = View {
            event,
            date: instance.date,
        };
        let item = match instance.kind {
            InstanceKind::Occurrence => view.stub(prefs),
            InstanceKind::Single | InstanceKind::Exception => view.full(prefs),
        };
        if instance.date.is_some() {
            changed_series
                .entry(&instance.event_id)
                .and_modify(|first| *first = (*first).min(instance.start))
                .or_insert(instance.start);
        }
        push(&mut groups, &instance.event_id, item.to_string());
    }
    if mb.quirks.list_masters {
        for event_id in changed_series.keys() {
            if let Some(event) = mb.events.get(*event_id) {
                let view = View { event, date: None };
                // Listed with its first occurrence's times, as some implementers report.
                let mut master = view.full(prefs);
                if let Some(first) = current
                    .iter()
                    .filter(|i| i.event_id == *event_id)
                    .min_by_key(|i| i.start)
                {
                    let probe = View {
                        event,
                        date: first.date,
                    }
                    .full(prefs);
                    master["start"] = probe["start"].clone();
                    master["end"] = probe["end"].clone();
                }
                push(&mut groups, event_id, master.to_string());
            }
        }
    }
    if let Some(prior) = prior {
        let mut removed: HashSet<String> = HashSet::new();
        for (id, version) in &prior.seen {
            if seen.contains_key(id) {
                continue;
            }
            if !mb.quirks.tombstone_cancelled_occurrences && is_cancelled_occurrence(mb, id) {
                // Reportedly silent: the client keeps believing in it.
                seen.insert(id.clone(), *version);
                continue;
            }
            removed.insert(id.clone());
            push(
                &mut groups,
                id,
                tombstone(&display_id(mb, id, prefs)).to_string(),
            );
        }
        // Exchange also reports events added, changed or deleted outside the window.
        for (seq, event_id) in &mb.change_log {
            if *seq <= prior.seq
                || with_instances.contains(event_id.as_str())
                || removed.contains(event_id)
                || prior.seen.contains_key(event_id)
            {
                continue;
            }
            removed.insert(event_id.clone());
            push(
                &mut groups,
                event_id,
                tombstone(&display_id(mb, event_id, prefs)).to_string(),
            );
        }
    }
    let state = SyncState {
        token: random_token(24),
        from,
        to,
        seq: mb.seq,
        seen,
    };
    (groups, state)
}

fn paginate(groups: Vec<Vec<String>>, page_size: usize) -> (Vec<String>, Vec<(usize, usize)>) {
    let page_size = page_size.max(1);
    let mut items = Vec::new();
    let mut pages = Vec::new();
    let mut page_start = 0;
    for group in groups {
        // A series is never split across pages, so a page may exceed the size asked for.
        items.extend(group);
        if items.len() - page_start >= page_size {
            pages.push((page_start, items.len()));
            page_start = items.len();
        }
    }
    if page_start < items.len() || pages.is_empty() {
        pages.push((page_start, items.len()));
    }
    (items, pages)
}

/// Serves one delta request for the mailbox.
pub(crate) fn serve(
    mb: &mut MailboxState,
    request: DeltaRequest,
    prefs: &RenderPrefs,
    page_size: usize,
    base_url: &str,
    path: &str,
) -> Result<DeltaAnswer, GraphErr> {
    let (round_key, page) = match request {
        DeltaRequest::Start { from, to } => {
            if to <= from {
                return Err(GraphErr::bad_request(
                    "ErrorInvalidParameter",
                    "endDateTime must be after startDateTime.",
                ));
            }
            (start_round(mb, from, to, None, prefs, page_size, path), 0)
        }
        DeltaRequest::Delta(token) => {
            let Some(prior) = mb.sync_states.iter().find(|s| s.token == token).cloned() else {
                return Ok(DeltaAnswer::Lost(mb.lost_token_answer));
            };
            let key = start_round(
                mb,
                prior.from,
                prior.to,
                Some(&prior),
                prefs,
                page_size,
                path,
            );
            (key, 0)
        }
        DeltaRequest::Skip(token) => {
            let found = mb.rounds.iter().find_map(|(key, round)| {
                round
                    .page_tokens
                    .iter()
                    .position(|t| *t == token)
                    .map(|i| (key.clone(), i + 1))
            });
            match found {
                Some(found) => found,
                None => return Ok(DeltaAnswer::Lost(mb.lost_token_answer)),
            }
        }
    };
    let stall = mb.quirks.stall;
    let repeat = mb.quirks.repeat_items;
    let Some(round) = mb.rounds.get_mut(&round_key) else {
        return Ok(DeltaAnswer::Lost(mb.lost_token_answer));
    };
    let (start, end) = round.pages[page];
    let mut value: Vec<&str> = Vec::with_capacity(end - start + 1);
    if repeat && page > 0 && start > 0 {
        value.push(&round.items[start - 1]);
    }
    value.extend(round.items[start..end].iter().map(String::as_str));
    let last = page + 1 == round.pages.len();
    let link = if last && !stall {
        let link = format!(
            "{base_url}/v1.0/{}/calendarView/delta?$deltatoken={}",
            round.path, round.delta_token
        );
        ("@odata.deltaLink", link)
    } else {
        // A stalled server hands out the link of the page just served, forever.
        let next = if stall && page > 0 { page } else { page + 1 };
        let token = round
            .page_tokens
            .get(next.saturating_sub(1))
            .cloned()
            .unwrap_or_default();
        (
            "@odata.nextLink",
            format!(
                "{base_url}/v1.0/{}/calendarView/delta?$skiptoken={token}",
                round.path
            ),
        )
    };
    let context = json!(format!("{base_url}/v1.0/$metadata#Collection(event)"));
    let body = format!(
        "{{\"@odata.context\":{context},{}:{},\"value\":[{}]}}",
        Value::String(link.0.to_owned()),
        Value::String(link.1),
        value.join(",")
    );
    let finished = if last && !stall {
        round.final_state.take()
    } else {
        None
    };
    if let Some(state) = finished {
        mb.remember_state(state);
    }
    Ok(DeltaAnswer::Page(DeltaPage { body }))
}

fn start_round(
    mb: &mut MailboxState,
    from: Timestamp,
    to: Timestamp,
    prior: Option<&SyncState>,
    prefs: &RenderPrefs,
    page_size: usize,
    path: &str,
) -> String {
    let (groups, state) = plan(mb, from, to, prior, prefs);
    let (items, pages) = paginate(groups, page_size);
    let key = random_token(12);
    let round = PagedRound {
        created_seq: mb.seq,
        path: path.to_owned(),
        page_tokens: (1..pages.len()).map(|_| random_token(24)).collect(),
        delta_token: state.token.clone(),
        items,
        pages,
        final_state: Some(state),
    };
    if mb.rounds.len() >= MAX_ROUNDS {
        if let Some(oldest) = mb
            .rounds
            .iter()
            .min_by_key(|(_, r)| r.created_seq)
            .map(|(k, _)| k.clone())
        {
            mb.rounds.remove(&oldest);
        }
    }
    mb.rounds.insert(key.clone(), round);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_never_split_a_group() {
        let groups = vec![
            vec!["a".to_owned()],
            vec!["s1".into(), "s2".into(), "s3".into()],
            vec!["b".into()],
        ];
        let (items, pages) = paginate(groups, 2);
        assert_eq!(items.len(), 5);
        assert_eq!(pages, vec![(0, 4), (4, 5)]);
        let (_, empty) = paginate(Vec::new(), 10);
        assert_eq!(empty, vec![(0, 0)]);
    }
}
