//! Engine CPU of an initial sync of N Outlook events (docs/design.md §6: under 100 µs per event),
//! with the network taken out: Graph delta pages are parsed from their JSON text, assembled into a
//! round and mapped to the engine's items; the plan is made; and `sync::execute` carries it
//! out against a target that does the per-event encoding the live one does (vtiger fields for
//! each create, the link record as the store would write it) and answers at once. What is
//! left out is the HTTP clients, the AWS SDK and the kernel's networking, which
//! `bench-initial-sync` measures end to end.
//!
//! ```text
//! cargo run --release -p calsync --example engine_bench [events] [runs]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use calsync::adapters::crm::vtiger::mapping::{fields_for_write, Zones};
use calsync::adapters::crm::CrmEventId;
use calsync::adapters::graph::delta::RoundAssembly;
use calsync::adapters::graph::types::DeltaPage;
use calsync::adapters::store::record_to_item;
use calsync::services::sync_run::item_from;
use calsync_core::event::{CalendarEvent, EventField};
use calsync_core::sync::ConflictPolicy;
use calsync_core::sync::{
    execute, plan, Conflict, CrmChanges, FieldSet, Link, LinkKey, Occurrence, OutlookChanges,
    Policy, SyncTarget, WriteFailure,
};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

type AnyError = Box<dyn std::error::Error>;

/// Delta pages of 100 events as Graph sends them (UTC times, text bodies).
fn pages(events: usize) -> Result<Vec<String>, AnyError> {
    let origin: Timestamp = "2027-01-04T08:00:00Z".parse()?;
    let mut pages = Vec::new();
    for chunk in (0..events).collect::<Vec<_>>().chunks(100) {
        let value: Vec<_> = chunk
            .iter()
            .map(|&n| -> Result<serde_json::Value, AnyError> {
                let start = origin.checked_add(SignedDuration::from_mins(37 * n as i64))?;
                let end = start.checked_add(SignedDuration::from_mins(30))?;
                let at = |t: Timestamp| t.strftime("%Y-%m-%dT%H:%M:%S.0000000").to_string();
                Ok(json!({
                    "id": format!("AAMkAGI2TG93AAAAAAEOAAA-{n:08}"),
                    "@odata.etag": "W/\"DwAAABYAAAA\"",
                    "type": "singleInstance",
                    "changeKey": "DwAAABYAAAA",
                    "lastModifiedDateTime": "2026-11-20T10:00:00Z",
                    "iCalUId": format!("040000008200E00074C5B7101A82E008-{n}"),
                    "subject": format!("Customer meeting {n}"),
                    "body": {"contentType": "text", "content": format!("Agenda for meeting {n}: pricing, delivery dates, next steps.")},
                    "start": {"dateTime": at(start), "timeZone": "UTC"},
                    "end": {"dateTime": at(end), "timeZone": "UTC"},
                    "isAllDay": false,
                    "isCancelled": false,
                    "isOrganizer": true,
                    "isReminderOn": true,
                    "reminderMinutesBeforeStart": 15,
                    "showAs": "busy",
                    "sensitivity": "normal",
                    "categories": [],
                    "location": {"displayName": format!("Room {}", n % 40)},
                    "organizer": {"emailAddress": {"name": "Maria", "address": "maria@acme.example"}},
                }))
            })
            .collect::<Result<_, _>>()?;
        pages.push(serde_json::to_string(&json!({
            "@odata.nextLink": "https://graph.microsoft.com/v1.0/me/calendarView/delta?$skiptoken=x",
            "value": value,
        }))?);
    }
    Ok(pages)
}

/// Answers at once, after the encoding work the live target does per write.
struct Encoding {
    zones: Zones,
    next_id: AtomicUsize,
}

#[async_trait]
impl SyncTarget for Encoding {
    async fn stored_version(&self, _key: &LinkKey) -> Result<Option<u64>, WriteFailure> {
        Ok(None)
    }
    async fn put_link(&self, link: &Link) -> Result<bool, WriteFailure> {
        let item = record_to_item("SYNC#t#u", format!("LINK#{}", link.key), link)
            .map_err(|e| WriteFailure::Rejected(calsync_core::cause::Cause::new(e)))?;
        std::hint::black_box(item);
        Ok(true)
    }
    async fn delete_link(&self, _key: &LinkKey, _expect: Option<u64>) -> Result<(), WriteFailure> {
        Ok(())
    }
    async fn record_conflict(&self, _conflict: &Conflict) -> Result<(), WriteFailure> {
        Ok(())
    }
    async fn create_in_crm(
        &self,
        event: &CalendarEvent,
        _marker: &str,
    ) -> Result<CalendarEvent, WriteFailure> {
        let fields = fields_for_write(event, &EventField::ALL, &self.zones)
            .map_err(|e| WriteFailure::Rejected(calsync_core::cause::Cause::new(e)))?;
        std::hint::black_box(serde_json::to_string(&fields).ok());
        let mut stored = event.clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        stored.ids.crm = Some(format!("18x{id}"));
        Ok(stored)
    }
    async fn find_crm_created(&self, _marker: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(None)
    }
    async fn find_outlook_created(
        &self,
        _crm_id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(None)
    }
    async fn create_in_outlook(
        &self,
        _crm_id: &CrmEventId,
        _transaction_id: &str,
        event: &CalendarEvent,
    ) -> Result<CalendarEvent, WriteFailure> {
        Ok(event.clone())
    }
    async fn update_crm(
        &self,
        _crm_id: &CrmEventId,
        _fields: &[EventField],
        event: &CalendarEvent,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(Some(event.clone()))
    }
    async fn update_outlook(
        &self,
        _outlook_id: &str,
        _fields: &[EventField],
        event: &CalendarEvent,
        _occurrence: Option<&Occurrence>,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(Some(event.clone()))
    }
    async fn read_crm(&self, _crm_id: &CrmEventId) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(None)
    }
    async fn read_outlook(&self, _outlook_id: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        Ok(None)
    }
    async fn delete_in_crm(&self, _crm_id: &CrmEventId) -> Result<(), WriteFailure> {
        Ok(())
    }
    async fn delete_in_outlook(
        &self,
        _outlook_id: &str,
        _if_match: Option<&str>,
    ) -> Result<(), WriteFailure> {
        Ok(())
    }
}

fn cpu_micros() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<u64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    (fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0)) * 10_000
}

fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() -> Result<(), AnyError> {
    let mut args = std::env::args().skip(1);
    let events: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let text = pages(events)?;
    let madrid = TimeZone::get("Europe/Madrid")?;
    let mut per_event = Vec::new();
    for run in 0..runs {
        let target = Encoding {
            zones: Zones::new(madrid.clone(), madrid.clone()),
            next_id: AtomicUsize::new(1),
        };
        let (cpu_before, wall) = (cpu_micros(), Instant::now());
        let mut assembly = RoundAssembly::default();
        for page in &text {
            let page: DeltaPage = serde_json::from_str(page)?;
            assembly.add_page(page.value);
        }
        let round = assembly.finish("delta".into()).complete(Vec::new());
        let mut changes = OutlookChanges::default();
        for event in &round.changes {
            changes.upserts.push(item_from(event)?);
        }
        let crm_fields = FieldSet::of(calsync::adapters::crm::vtiger::mapping::CARRIED_FIELDS);
        let mut policy = Policy::new(ConflictPolicy::Latest, "oid", crm_fields);
        policy.first_sync = true;
        let plan = plan(&[], &changes, &CrmChanges::default(), &policy);
        let done = runtime
            .block_on(execute(&plan, &target, &policy))
            .map_err(|e| e.to_string())?;
        let cpu = cpu_micros().saturating_sub(cpu_before);
        assert_eq!(done.crm.created, events, "every event created in the CRM");
        let micros = cpu as f64 / events as f64;
        println!(
            "run {run}: {events} events, wall {:.0} ms, CPU {:.1} µs/event (10 ms clock ticks), peak RSS {:.1} MiB",
            wall.elapsed().as_secs_f64() * 1000.0,
            micros,
            peak_rss_kb() as f64 / 1024.0
        );
        per_event.push(micros);
    }
    per_event.sort_by(f64::total_cmp);
    println!(
        "median CPU per event: {:.1} µs over {runs} runs",
        per_event[per_event.len() / 2]
    );
    Ok(())
}
