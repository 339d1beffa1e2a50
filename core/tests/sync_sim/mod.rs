//! A two-calendar world for exercising the sync engine: plain structs for a CRM and an Outlook
//! calendar (ids, modification times, change feeds, reassignment, series, invitations), a link
//! store with conditional puts and a conflict journal. A run plans with `calsync_core::sync::plan`
//! and carries the plan out with the library's own executor, `calsync_core::sync::execute`, against
//! this world as a [`SyncTarget`] whose every call can be given a fault.
//!
//! Every record carries a hidden `truth`: the identity of the real-world event it stands for.
//! The engine never sees it; the checks, made inside the world's writes, use it to find
//! duplicates and lost edits.
//!
//! The world behaves as the live adapters do where the engine relies on it: the CRM stores
//! some values differently ([`crm_store`], as vtiger cuts and maps them), keeps the marker of a
//! calsync create and finds a record by it, clears a record's invitees on every revise, and
//! refuses a revise of a record saved after the version the plan read (the vtiger adapter looks
//! first); Outlook refuses a write whose `If-Match` change key is not the event's current one,
//! and a meeting the user organises with attendees mails them on any change of its subject,
//! place, description or times, and a cancellation on its deletion.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;

use calsync_core::crm::{CrmEventId, Gone, GoneReason};
use calsync_core::event::{CalendarEvent, EventField, EventTime, Organizer, Sensitivity, ShowAs};
use calsync_core::sync::ConflictPolicy;
use calsync_core::sync::{
    execute, field_value, plan, Action, Conflict, ConflictKind, CrmChanges, Execution, FieldSet,
    Link, LinkKey, LinkState, Occurrence, OutlookChanges, OutlookItem, ParkedEvent, Parking, Plan,
    Policy, Record as Bookkeeping, Side, Stopped, SyncTarget, WriteFailure, NEVER_WRITTEN,
    ORGANIZER_OWNED,
};
use jiff::{SignedDuration, Timestamp};

/// The fields the simulated CRM carries: the same set as the vtiger adapter's.
pub fn crm_fields() -> FieldSet {
    FieldSet::of(&[
        EventField::Subject,
        EventField::Location,
        EventField::Description,
        EventField::Time,
        EventField::Status,
        EventField::Sensitivity,
        EventField::Reminder,
        EventField::ActivityType,
    ])
}

/// The longest subject the simulated CRM keeps (vtiger: 255 characters; short here so that it
/// happens).
pub const CRM_SUBJECT_MAX: usize = 24;
/// The longest location the simulated CRM keeps.
pub const CRM_LOCATION_MAX: usize = 16;

/// How the CRM stores an event it is given, as vtiger does: a subject and a location cut to
/// its column sizes, no 0-minute reminder (one minute is the closest it keeps), no "personal"
/// or "confidential" (both are "private"). These are the documented lossy mappings.
pub fn crm_store(event: &mut CalendarEvent) {
    if event.subject.chars().count() > CRM_SUBJECT_MAX {
        event.subject = event.subject.chars().take(CRM_SUBJECT_MAX).collect();
    }
    if event.location.chars().count() > CRM_LOCATION_MAX {
        event.location = event.location.chars().take(CRM_LOCATION_MAX).collect();
    }
    if event.reminder_minutes == Some(0) {
        event.reminder_minutes = Some(1);
    }
    if matches!(
        event.sensitivity,
        Sensitivity::Personal | Sensitivity::Confidential
    ) {
        event.sensitivity = Sensitivity::Private;
    }
}

/// Whether a CRM copy and an Outlook copy agree on `field`, modulo the CRM's lossy storage:
/// the CRM holds what it stores of the Outlook value.
pub fn agree(crm: &CalendarEvent, outlook: &CalendarEvent, field: EventField) -> bool {
    let mut stored = outlook.clone();
    crm_store(&mut stored);
    crm.same_field(&stored, field)
}

/// What happens to one call the executor makes to the world: a write to either calendar, a
/// link or journal write, or a stored-version read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Ok,
    /// The call fails before doing anything (429, 503): [`WriteFailure::Transient`].
    Transient,
    /// The call takes effect but its answer is lost (a timeout): [`WriteFailure::Ambiguous`].
    Ambiguous,
    /// The process dies just before this call: [`WriteFailure::Fatal`], nothing happens.
    Crash,
    /// A calendar write is refused for good (a CRM rule, data Graph will not take):
    /// [`WriteFailure::Rejected`], nothing happens. The run parks the step. On a call that is
    /// not a calendar write (a link or journal write, a read, a look-up) it does nothing.
    Refused,
}

/// One stored event on a side.
#[derive(Debug, Clone)]
pub struct Record {
    pub event: CalendarEvent,
    pub truth: u64,
    pub seq: u64,
    pub occurrence: Option<Occurrence>,
    pub exception: bool,
    pub transaction_id: Option<String>,
    /// Created through the integration user (vtiger `source` = WEBSERVICE).
    pub by_sync: bool,
    /// CRM only: a CRM user invited colleagues. Not carried by calsync; stock vtiger clears
    /// them on every revise.
    pub invitees: bool,
    /// The values this copy last agreed on with the other side (or its own at creation): a
    /// field that differs from it is a user's edit that has not been synced yet.
    pub synced: CalendarEvent,
}

impl Record {
    fn pending(&self, field: EventField) -> bool {
        !self.event.same_field(&self.synced, field)
    }

    fn pending_fields(&self, fields: FieldSet) -> Vec<EventField> {
        fields.iter().filter(|field| self.pending(*field)).collect()
    }

    /// The record changed at `seq`: a new modification time, and in Outlook a new change key.
    fn touch(&mut self, side: Side, seq: u64, now: Timestamp) {
        self.seq = seq;
        match side {
            Side::Crm => self.event.modified.crm = Some(now),
            Side::Outlook => {
                self.event.modified.outlook = Some(now);
                self.event.ids.outlook_change_key = Some(format!("ck{seq}"));
            }
        }
    }
}

/// One calendar with a change feed ordered by `seq`.
#[derive(Debug, Clone)]
pub struct Calendar {
    pub side: Side,
    pub fields: FieldSet,
    pub records: BTreeMap<String, Record>,
    /// CRM only: records reassigned to another user (they still exist in the CRM).
    pub elsewhere: BTreeMap<String, Record>,
    /// (seq, id, reason) of records that left the calendar.
    pub removed: Vec<(u64, String, GoneReason)>,
    pub removed_series: Vec<(u64, String)>,
    pub seq: u64,
    next_id: u64,
    by_transaction: HashMap<String, String>,
    /// Outlook: which event carries which CRM id stamp.
    by_crm_stamp: HashMap<String, String>,
}

impl Calendar {
    fn new(side: Side, fields: FieldSet) -> Self {
        Self {
            side,
            fields,
            records: BTreeMap::new(),
            elsewhere: BTreeMap::new(),
            removed: Vec::new(),
            removed_series: Vec::new(),
            seq: 0,
            next_id: 0,
            by_transaction: HashMap::new(),
            by_crm_stamp: HashMap::new(),
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        match self.side {
            Side::Crm => format!("18x{}", self.next_id),
            Side::Outlook => format!("AAMk{}", self.next_id),
        }
    }

    fn bump(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The side's view of an event: only what it stores, as it stores it, with its own
    /// defaults.
    fn project(&self, from: &CalendarEvent) -> CalendarEvent {
        let mut event = CalendarEvent::timed("", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH);
        for field in self.fields.iter() {
            event.copy_field(from, field);
        }
        if self.side == Side::Crm {
            crm_store(&mut event);
        }
        event
    }

    fn stamp(&self, record: &mut Record, id: &str, now: Timestamp) {
        match self.side {
            Side::Crm => record.event.ids.crm = Some(id.to_owned()),
            Side::Outlook => record.event.ids.outlook = Some(id.to_owned()),
        }
        record.touch(self.side, record.seq, now);
    }

    /// The ids in the order of the real-world events they stand for (then by id): a user's
    /// n-th event is the same one whatever order the sync happened to create copies in.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<(u64, &String)> = self
            .records
            .iter()
            .map(|(id, record)| (record.truth, id))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id.clone()).collect()
    }
}

/// The whole world: two calendars, the link store, the journal, the cursors.
pub struct World {
    pub crm: Calendar,
    pub outlook: Calendar,
    pub links: BTreeMap<LinkKey, Link>,
    pub journal: BTreeMap<String, Conflict>,
    pub crm_cursor: u64,
    pub outlook_cursor: u64,
    pub first_sync_done: bool,
    pub policy: Policy,
    pub violations: Vec<String>,
    pub last_plan: Option<Plan>,
    pub runs: usize,
    pub crashes: usize,
    /// Steps the executor skipped as stale, or ended early, over all runs.
    pub stale_steps: usize,
    pub failed_steps: usize,
    /// Actions planned over all runs, by kind (for checking what a test exercised).
    pub planned: BTreeMap<&'static str, usize>,
    /// What each run planned and how it ended, for a failing case's report.
    pub trace: Vec<String>,
    /// Events a user deleted, by side: bringing one back needs a journal entry.
    user_deleted: std::collections::HashSet<(Side, u64)>,
    /// The events whose sync a side refused, kept between runs as the runner keeps them on the
    /// user (`calsync_core::sync::Parking` decides what it becomes).
    pub parked: Vec<ParkedEvent>,
    /// Steps a side refused, over all runs.
    pub refused_steps: usize,
    /// Runs that executed a plan made before another run finished (a lapsed lease).
    pub late_runs: usize,
    /// CRM revises whose answer was lost (by their arguments): sending the same again is a
    /// retry, which may find the change already made.
    lost_answers: HashSet<String>,
    clock: Timestamp,
    next_truth: u64,
    next_series: u64,
    /// How the executor runs the steps: how many at once, and where calls let others go first.
    pub pipeline: Pipeline,
}

/// The executor's waves in the world: `steps` at once ([`SyncTarget::parallel_steps`]); each
/// call to the world first lets the other steps of the wave go on when the next bit of the
/// `interleave` pattern (a xorshift sequence from that seed, 0 for none) says so, so steps
/// interleave as their answers would arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipeline {
    pub steps: usize,
    pub interleave: u64,
}

impl Default for Pipeline {
    /// As the live runner runs them, answers in order.
    fn default() -> Self {
        Self {
            steps: 32,
            interleave: 0,
        }
    }
}

/// A run that has read both sides and planned, and not yet carried its plan out.
struct PlannedRun {
    plan: Plan,
    snapshot: Vec<Link>,
    outlook: OutlookChanges,
    crm: CrmChanges,
    outlook_next: u64,
    crm_next: u64,
    parking: Parking,
    now: i64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Committed,
    /// Finished, but some step failed or the guard tripped: cursors kept.
    Uncommitted,
    Crashed,
}

/// A user's edit, applied to whatever field it names if the side carries it.
#[derive(Debug, Clone, Copy)]
pub enum Edit {
    Subject(u8),
    Location(u8),
    Description(u8),
    Reminder(u8),
    Shift(u8),
    ToggleAllDay,
    Sensitivity(u8),
    /// The lossy values: what the CRM stores differently ([`crm_store`]).
    LongSubject(u8),
    LongLocation(u8),
    ReminderAtStart,
    Restricted(u8),
    Status(u8),
    ActivityType(u8),
    ShowAs(u8),
    Categories(u8),
}

impl Edit {
    fn field(self) -> EventField {
        match self {
            Edit::Subject(_) | Edit::LongSubject(_) => EventField::Subject,
            Edit::Location(_) | Edit::LongLocation(_) => EventField::Location,
            Edit::Description(_) => EventField::Description,
            Edit::Reminder(_) | Edit::ReminderAtStart => EventField::Reminder,
            Edit::Shift(_) | Edit::ToggleAllDay => EventField::Time,
            Edit::Sensitivity(_) | Edit::Restricted(_) => EventField::Sensitivity,
            Edit::Status(_) => EventField::Status,
            Edit::ActivityType(_) => EventField::ActivityType,
            Edit::ShowAs(_) => EventField::ShowAs,
            Edit::Categories(_) => EventField::Categories,
        }
    }

    /// Applies the edit; `None` when it changed nothing.
    fn apply(self, event: &mut CalendarEvent) -> Option<EventField> {
        let before = event.clone();
        match self {
            Edit::Subject(n) => event.subject = format!("Subject {n}"),
            // Longer than the CRM keeps: a cut that differs with `n`, and one that does not.
            Edit::LongSubject(n) => {
                event.subject = match n % 2 {
                    0 => format!("Subject {n} of the quarterly planning review"),
                    _ => format!("Quarterly planning review, part {n}"),
                }
            }
            Edit::Location(n) => event.location = format!("Room {n}"),
            Edit::LongLocation(n) => {
                event.location = format!("Building {n}, third floor, by the stairs")
            }
            Edit::Description(n) => event.description = format!("Notes {n}\nline two"),
            Edit::Reminder(n) => {
                event.reminder_minutes = [None, Some(5), Some(15), Some(60)][usize::from(n % 4)]
            }
            // "At the start": the CRM keeps one minute.
            Edit::ReminderAtStart => event.reminder_minutes = Some(0),
            Edit::Shift(n) => {
                let by = SignedDuration::from_mins(15 * i64::from(n % 8 + 1));
                event.time = match &event.time {
                    EventTime::Timed { start, end } => EventTime::Timed {
                        start: start.saturating_add(by).unwrap_or(*start),
                        end: end.saturating_add(by).unwrap_or(*end),
                    },
                    EventTime::AllDay { start, end } => {
                        let days = i64::from(n % 3 + 1);
                        EventTime::AllDay {
                            start: start.saturating_add(jiff::Span::new().days(days)),
                            end: end.saturating_add(jiff::Span::new().days(days)),
                        }
                    }
                };
            }
            Edit::ToggleAllDay => {
                event.time = match &event.time {
                    EventTime::Timed { start, .. } => {
                        let day = jiff::tz::TimeZone::UTC.to_datetime(*start).date();
                        EventTime::AllDay {
                            start: day,
                            end: day.tomorrow().unwrap_or(day),
                        }
                    }
                    EventTime::AllDay { start, .. } => {
                        let at = jiff::tz::TimeZone::UTC
                            .to_timestamp(start.at(9, 0, 0, 0))
                            .unwrap_or(Timestamp::UNIX_EPOCH);
                        EventTime::Timed {
                            start: at,
                            end: at
                                .saturating_add(SignedDuration::from_mins(30))
                                .unwrap_or(at),
                        }
                    }
                };
            }
            Edit::Sensitivity(n) => {
                use calsync_core::event::Sensitivity::*;
                event.sensitivity = [Normal, Private][usize::from(n % 2)];
            }
            // What the CRM stores as "private".
            Edit::Restricted(n) => {
                use calsync_core::event::Sensitivity::*;
                event.sensitivity = [Personal, Confidential][usize::from(n % 2)];
            }
            Edit::Status(n) => {
                use calsync_core::event::EventStatus::*;
                event.status = [Scheduled, Held, Cancelled][usize::from(n % 3)];
            }
            Edit::ActivityType(n) => {
                event.activity_type = Some(["Call", "Meeting"][usize::from(n % 2)].to_owned())
            }
            Edit::ShowAs(n) => {
                event.show_as =
                    Some([ShowAs::Busy, ShowAs::Free, ShowAs::Tentative][usize::from(n % 3)])
            }
            Edit::Categories(n) => event.categories = vec![format!("Cat {}", n % 3)],
        }
        let field = self.field();
        (!before.same_field(event, field)).then_some(field)
    }
}

/// `time`, `weeks` later.
fn shifted_weeks(time: &EventTime, weeks: i64) -> EventTime {
    let by = SignedDuration::from_hours(24 * 7 * weeks);
    match time {
        EventTime::Timed { start, end } => EventTime::Timed {
            start: start.saturating_add(by).unwrap_or(*start),
            end: end.saturating_add(by).unwrap_or(*end),
        },
        EventTime::AllDay { start, end } => EventTime::AllDay {
            start: start.saturating_add(jiff::Span::new().days(7 * weeks)),
            end: end.saturating_add(jiff::Span::new().days(7 * weeks)),
        },
    }
}

fn pick(ids: &[String], n: u16) -> Option<&String> {
    if ids.is_empty() {
        None
    } else {
        ids.get(usize::from(n) % ids.len())
    }
}

impl World {
    pub fn new(conflict: ConflictPolicy) -> Self {
        let mut policy = Policy::new(conflict, "oid-sim", crm_fields());
        policy.crm_storage = calsync_core::sync::CrmStorage(crm_store);
        Self {
            crm: Calendar::new(Side::Crm, policy.crm_fields),
            outlook: Calendar::new(Side::Outlook, policy.outlook_fields),
            links: BTreeMap::new(),
            journal: BTreeMap::new(),
            crm_cursor: 0,
            outlook_cursor: 0,
            first_sync_done: false,
            policy,
            violations: Vec::new(),
            last_plan: None,
            runs: 0,
            crashes: 0,
            stale_steps: 0,
            failed_steps: 0,
            planned: BTreeMap::new(),
            trace: Vec::new(),
            user_deleted: std::collections::HashSet::new(),
            parked: Vec::new(),
            refused_steps: 0,
            late_runs: 0,
            lost_answers: HashSet::new(),
            clock: "2026-09-01T08:00:00Z"
                .parse()
                .unwrap_or(Timestamp::UNIX_EPOCH),
            next_truth: 0,
            next_series: 0,
            pipeline: Pipeline::default(),
        }
    }

    fn tick(&mut self) -> Timestamp {
        self.clock = self
            .clock
            .saturating_add(SignedDuration::from_secs(1))
            .unwrap_or(self.clock);
        self.clock
    }

    fn truth(&mut self) -> u64 {
        self.next_truth += 1;
        self.next_truth
    }

    fn calendar(&mut self, side: Side) -> &mut Calendar {
        match side {
            Side::Crm => &mut self.crm,
            Side::Outlook => &mut self.outlook,
        }
    }

    fn calendar_ref(&self, side: Side) -> &Calendar {
        match side {
            Side::Crm => &self.crm,
            Side::Outlook => &self.outlook,
        }
    }

    // --- what users do -------------------------------------------------------------------

    fn insert(
        &mut self,
        side: Side,
        event: &CalendarEvent,
        occurrence: Option<Occurrence>,
    ) -> String {
        let now = self.tick();
        let truth = self.truth();
        let calendar = self.calendar(side);
        let id = calendar.new_id();
        let seq = calendar.bump();
        let mut record = Record {
            event: calendar.project(event),
            truth,
            seq,
            occurrence,
            exception: false,
            transaction_id: None,
            by_sync: false,
            invitees: false,
            synced: CalendarEvent::timed("", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
        };
        if side == Side::Outlook {
            record.event.is_organizer = event.is_organizer.or(Some(true));
            record.event.has_attendees = event.has_attendees;
            record.event.organizer = event.organizer.clone();
            if record.event.show_as.is_none() {
                record.event.show_as = Some(ShowAs::Busy);
            }
        }
        calendar.stamp(&mut record, &id, now);
        record.synced = record.event.clone();
        calendar.records.insert(id.clone(), record);
        id
    }

    pub fn crm_create(&mut self, event: &CalendarEvent) -> String {
        let mut event = event.clone();
        if event.activity_type.is_none() {
            event.activity_type = Some("Meeting".into());
        }
        self.insert(Side::Crm, &event, None)
    }

    pub fn outlook_create(&mut self, event: &CalendarEvent) -> String {
        self.insert(Side::Outlook, event, None)
    }

    /// A meeting the user organises and has invited people to: calsync must never make Outlook
    /// mail them.
    pub fn outlook_meeting(&mut self, event: &CalendarEvent) -> String {
        let mut event = event.clone();
        event.is_organizer = Some(true);
        event.has_attendees = true;
        self.insert(Side::Outlook, &event, None)
    }

    /// A meeting someone else organises lands in the user's calendar.
    pub fn outlook_invitation(&mut self, event: &CalendarEvent) -> String {
        let mut event = event.clone();
        event.is_organizer = Some(false);
        event.organizer = Some(Organizer {
            name: Some("Customer".into()),
            email: Some("boss@customer.example".into()),
        });
        self.insert(Side::Outlook, &event, None)
    }

    /// A weekly series: `count` occurrences of one master.
    pub fn outlook_series(&mut self, event: &CalendarEvent, count: u8) {
        self.next_series += 1;
        let master = format!("MASTER{}", self.next_series);
        for week in 0..i64::from(count.max(1)) {
            let mut occurrence = event.clone();
            occurrence.time = shifted_weeks(&event.time, week);
            let original_start = match &occurrence.time {
                EventTime::Timed { start, .. } => *start,
                EventTime::AllDay { start, .. } => jiff::tz::TimeZone::UTC
                    .to_timestamp(start.at(0, 0, 0, 0))
                    .unwrap_or(Timestamp::UNIX_EPOCH),
            };
            self.insert(
                Side::Outlook,
                &occurrence,
                Some(Occurrence {
                    series_master_id: master.clone(),
                    original_start,
                }),
            );
        }
    }

    pub fn edit(&mut self, side: Side, n: u16, edit: Edit) {
        let ids = self.calendar_ref(side).ids();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        self.trace
            .push(format!("user edits {side:?} {id}: {edit:?}"));
        let now = self.tick();
        let calendar = self.calendar(side);
        let fields = calendar.fields;
        let seq = calendar.bump();
        let Some(record) = calendar.records.get_mut(&id) else {
            return;
        };
        let field = edit.field();
        if !fields.contains(field) {
            return;
        }
        // An attendee cannot change what the organizer owns.
        if side == Side::Outlook
            && record.event.is_organizer == Some(false)
            && ORGANIZER_OWNED.contains(&field)
        {
            return;
        }
        // The CRM keeps what the user typed as it stores everything.
        let mut edited = record.event.clone();
        edit.apply(&mut edited);
        if side == Side::Crm {
            crm_store(&mut edited);
        }
        if !edited.same_field(&record.event, field) {
            record.event = edited;
            record.touch(side, seq, now);
            if record.occurrence.is_some() {
                record.exception = true;
            }
        }
    }

    /// Both copies of one linked event are edited before the next sync: a likely conflict.
    pub fn edit_both(&mut self, n: u16, crm_edit: Edit, outlook_edit: Edit) {
        let pairs: Vec<(String, String)> = self
            .links
            .values()
            .filter(|link| link.state == LinkState::Linked)
            .filter_map(|link| {
                Some((
                    link.crm_id.as_ref()?.as_str().to_owned(),
                    link.outlook_id.clone()?,
                ))
            })
            .collect();
        let Some((crm_id, outlook_id)) = pairs.get(usize::from(n) % pairs.len().max(1)).cloned()
        else {
            return;
        };
        let crm_ids = self.crm.ids();
        let outlook_ids = self.outlook.ids();
        if let Some(at) = crm_ids.iter().position(|id| *id == crm_id) {
            self.edit(Side::Crm, at as u16, crm_edit);
        }
        if let Some(at) = outlook_ids.iter().position(|id| *id == outlook_id) {
            self.edit(Side::Outlook, at as u16, outlook_edit);
        }
    }

    /// The user edits, in the CRM, the copy of a meeting they only attend.
    pub fn edit_invitation_copy(&mut self, n: u16, edit: Edit) {
        let copies: Vec<String> = self
            .links
            .values()
            .filter(|link| {
                link.outlook_id
                    .as_ref()
                    .and_then(|id| self.outlook.records.get(id))
                    .is_some_and(|record| record.event.is_organizer == Some(false))
            })
            .filter_map(|link| Some(link.crm_id.as_ref()?.as_str().to_owned()))
            .collect();
        let Some(crm_id) = pick(&copies, n).cloned() else {
            return;
        };
        let ids = self.crm.ids();
        if let Some(at) = ids.iter().position(|id| *id == crm_id) {
            self.edit(Side::Crm, at as u16, edit);
        }
    }

    /// The organizer of an invitation changes it.
    pub fn organizer_update(&mut self, n: u16, edit: Edit) {
        let ids: Vec<String> = self
            .outlook
            .records
            .iter()
            .filter(|(_, record)| record.event.is_organizer == Some(false))
            .map(|(id, _)| id.clone())
            .collect();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        let now = self.tick();
        let seq = self.outlook.bump();
        let fields = self.outlook.fields;
        let Some(record) = self.outlook.records.get_mut(&id) else {
            return;
        };
        if !fields.contains(edit.field()) {
            return;
        }
        if edit.apply(&mut record.event).is_some() {
            record.touch(Side::Outlook, seq, now);
        }
    }

    /// The series' subject changes for every occurrence that is not an exception.
    pub fn series_edit(&mut self, n: u16, subject: u8) {
        let mut masters: Vec<String> = self
            .outlook
            .records
            .values()
            .filter_map(|record| record.occurrence.as_ref())
            .map(|occurrence| occurrence.series_master_id.clone())
            .collect();
        masters.sort();
        masters.dedup();
        let Some(master) = pick(&masters, n).cloned() else {
            return;
        };
        let now = self.tick();
        let seq = self.outlook.bump();
        for record in self.outlook.records.values_mut() {
            let in_series = record
                .occurrence
                .as_ref()
                .is_some_and(|o| o.series_master_id == master);
            if in_series
                && !record.exception
                && Edit::Subject(subject).apply(&mut record.event).is_some()
            {
                record.touch(Side::Outlook, seq, now);
            }
        }
    }

    pub fn delete(&mut self, side: Side, n: u16) {
        let ids = self.calendar_ref(side).ids();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        // A simplification, kept out of the search (docs/testing.md, "The engine soak"): once
        // every occurrence of a series is gone one by one, a link or parked event still naming
        // the master (a single event made recurring whose link never moved) cannot learn it
        // from the feeds, which name only the occurrences. The world deletes such a series as
        // a whole instead.
        if let Some(master) = self.last_occurrence_of(side, &id) {
            return self.delete_series_named(&master, true);
        }
        self.tick();
        let calendar = self.calendar(side);
        let seq = calendar.bump();
        let truth = calendar.records.remove(&id).map(|record| record.truth);
        calendar
            .removed
            .push((seq, id.clone(), GoneReason::Deleted));
        // Only a linked copy's deletion can be seen by the engine: the result of a create whose
        // answer was lost, deleted before any run linked it, is (knowingly) made again.
        if let (Some(truth), true) = (truth, self.is_linked(side, &id)) {
            self.user_deleted.insert((side, truth));
        }
    }

    fn is_linked(&self, side: Side, id: &str) -> bool {
        self.links.values().any(|link| match side {
            Side::Crm => link.crm_id.as_ref().is_some_and(|c| c.as_str() == id),
            Side::Outlook => link.outlook_id.as_deref() == Some(id),
        })
    }

    /// The whole series goes; Graph reports it either per occurrence or by its master.
    /// Whether a link or a parked event still names a series master as its Outlook event.
    fn names_master(&self, master: &str) -> bool {
        self.links
            .values()
            .any(|link| link.outlook_id.as_deref() == Some(master))
            || self
                .parked
                .iter()
                .any(|parked| parked.outlook_id.as_deref() == Some(master))
    }

    /// The series whose only remaining occurrence `id` is, on Outlook, if a link still names
    /// its master.
    fn last_occurrence_of(&self, side: Side, id: &str) -> Option<String> {
        if side != Side::Outlook {
            return None;
        }
        let master = &self
            .outlook
            .records
            .get(id)?
            .occurrence
            .as_ref()?
            .series_master_id;
        if !self.names_master(master) {
            return None;
        }
        let left = self
            .outlook
            .records
            .values()
            .filter(|r| {
                r.occurrence
                    .as_ref()
                    .is_some_and(|o| &o.series_master_id == master)
            })
            .count();
        (left == 1).then(|| master.clone())
    }

    pub fn delete_series(&mut self, n: u16, by_master: bool) {
        let mut masters: Vec<String> = self
            .outlook
            .records
            .values()
            .filter_map(|record| record.occurrence.as_ref())
            .map(|occurrence| occurrence.series_master_id.clone())
            .collect();
        masters.sort();
        masters.dedup();
        let Some(master) = pick(&masters, n).cloned() else {
            return;
        };
        self.delete_series_named(&master, by_master);
    }

    fn delete_series_named(&mut self, master: &str, by_master: bool) {
        let master = master.to_owned();
        // The same simplification (see `delete`).
        let by_master = by_master || self.names_master(&master);
        self.tick();
        let seq = self.outlook.bump();
        let ids: Vec<String> = self
            .outlook
            .records
            .iter()
            .filter(|(_, r)| {
                r.occurrence
                    .as_ref()
                    .is_some_and(|o| o.series_master_id == master)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            let linked = self.is_linked(Side::Outlook, &id);
            if let Some(record) = self.outlook.records.remove(&id) {
                if linked {
                    self.user_deleted.insert((Side::Outlook, record.truth));
                }
            }
            if !by_master {
                self.outlook.removed.push((seq, id, GoneReason::Deleted));
            }
        }
        if by_master {
            self.outlook.removed_series.push((seq, master));
        }
    }

    /// A CRM record is given to another user: it leaves this owner's feed but still exists.
    pub fn reassign(&mut self, n: u16) {
        let ids = self.crm.ids();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        self.tick();
        let seq = self.crm.bump();
        if let Some(record) = self.crm.records.remove(&id) {
            self.crm.elsewhere.insert(id.clone(), record);
            self.crm.removed.push((seq, id, GoneReason::LeftOwner));
        }
    }

    /// The user invites people to an Outlook event they organise (an occurrence becomes an
    /// exception). Outlook mails them; from now on calsync must not.
    pub fn add_attendees(&mut self, n: u16) {
        let ids: Vec<String> = self
            .outlook
            .records
            .iter()
            .filter(|(_, r)| r.event.is_organizer != Some(false) && !r.event.has_attendees)
            .map(|(id, _)| id.clone())
            .collect();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        self.trace
            .push(format!("user invites attendees to Outlook {id}"));
        let now = self.tick();
        let seq = self.outlook.bump();
        if let Some(record) = self.outlook.records.get_mut(&id) {
            record.event.has_attendees = true;
            record.touch(Side::Outlook, seq, now);
            if record.occurrence.is_some() {
                record.exception = true;
            }
        }
    }

    /// A CRM user invites colleagues to a CRM event: the record is saved (a new modification
    /// time, in the feed), and its invitees are something calsync does not carry.
    pub fn invite_in_crm(&mut self, n: u16) {
        let ids = self.crm.ids();
        let Some(id) = pick(&ids, n).cloned() else {
            return;
        };
        self.trace
            .push(format!("user invites colleagues to CRM {id}"));
        let now = self.tick();
        let seq = self.crm.bump();
        if let Some(record) = self.crm.records.get_mut(&id) {
            record.invitees = true;
            record.touch(Side::Crm, seq, now);
        }
    }

    /// The user makes a single Outlook event they organise recurring: Graph keeps its id for
    /// the series master (never an item, and not reported deleted) and reports `count`
    /// weekly occurrences, the first at the event's own time. That first one is the same
    /// real-world event (same truth, same unsynced edits); the others are new.
    pub fn make_recurring(&mut self, n: u16, count: u8) {
        let ids: Vec<String> = self
            .outlook
            .records
            .iter()
            .filter(|(_, r)| r.occurrence.is_none() && r.event.is_organizer != Some(false))
            .map(|(id, _)| id.clone())
            .collect();
        let Some(master) = pick(&ids, n).cloned() else {
            return;
        };
        let Some(single) = self.outlook.records.remove(&master) else {
            return;
        };
        self.trace
            .push(format!("user makes Outlook {master} a series of {count}"));
        let start_of = |time: &EventTime| match time {
            EventTime::Timed { start, .. } => *start,
            EventTime::AllDay { start, .. } => jiff::tz::TimeZone::UTC
                .to_timestamp(start.at(0, 0, 0, 0))
                .unwrap_or(Timestamp::UNIX_EPOCH),
        };
        // The first occurrence: the event itself, under a new id.
        let now = self.tick();
        let id = self.outlook.new_id();
        let seq = self.outlook.bump();
        let mut first = single.clone();
        first.event.ids.outlook = Some(id.clone());
        first.occurrence = Some(Occurrence {
            series_master_id: master.clone(),
            original_start: start_of(&single.event.time),
        });
        first.exception = false;
        first.transaction_id = None;
        first.touch(Side::Outlook, seq, now);
        self.outlook.records.insert(id, first);
        for week in 1..i64::from(count.max(2)) {
            let mut occurrence = single.event.clone();
            occurrence.time = shifted_weeks(&single.event.time, week);
            occurrence.ids = Default::default();
            let original_start = start_of(&occurrence.time);
            self.insert(
                Side::Outlook,
                &occurrence,
                Some(Occurrence {
                    series_master_id: master.clone(),
                    original_start,
                }),
            );
        }
    }

    // --- the feeds -----------------------------------------------------------------------

    /// The CRM id stamped on an Outlook event calsync created; a series' occurrences carry
    /// their master's.
    fn crm_stamp_of(&self, record: &Record) -> Option<CrmEventId> {
        let id = record
            .occurrence
            .as_ref()
            .map(|o| o.series_master_id.as_str())
            .or(record.event.ids.outlook.as_deref())?;
        self.outlook
            .by_crm_stamp
            .iter()
            .find(|(_, stamped)| stamped.as_str() == id)
            .map(|(crm_id, _)| CrmEventId::new(crm_id))
    }

    fn outlook_feed(&self) -> (OutlookChanges, u64) {
        let cursor = self.outlook_cursor;
        let upserts = self
            .outlook
            .records
            .values()
            .filter(|record| record.seq > cursor)
            .map(|record| OutlookItem {
                event: record.event.clone(),
                occurrence: record.occurrence.clone(),
                transaction_id: record.transaction_id.clone(),
                crm_stamp: self.crm_stamp_of(record),
            })
            .collect();
        let deleted = self
            .outlook
            .removed
            .iter()
            .filter(|(seq, _, _)| *seq > cursor)
            .map(|(_, id, _)| id.clone())
            .collect();
        let deleted_series = self
            .outlook
            .removed_series
            .iter()
            .filter(|(seq, _)| *seq > cursor)
            .map(|(_, id)| id.clone())
            .collect();
        (
            OutlookChanges {
                upserts,
                deleted,
                deleted_series,
            },
            self.outlook.seq,
        )
    }

    fn crm_feed(&self) -> (CrmChanges, u64) {
        let cursor = self.crm_cursor;
        let upserts: Vec<CalendarEvent> = self
            .crm
            .records
            .values()
            .filter(|record| record.seq > cursor)
            .map(|record| record.event.clone())
            .collect();
        let created_by_sync = self
            .crm
            .records
            .iter()
            .filter(|(_, record)| record.seq > cursor && record.by_sync)
            .map(|(id, _)| CrmEventId::new(id.clone()))
            .collect();
        let gone = self
            .crm
            .removed
            .iter()
            .filter(|(seq, _, _)| *seq > cursor)
            .map(|(_, id, reason)| Gone {
                id: CrmEventId::new(id.clone()),
                reason: *reason,
            })
            .collect();
        (
            CrmChanges {
                upserts,
                gone,
                created_by_sync: Some(created_by_sync),
            },
            self.crm.seq,
        )
    }

    // --- a run: plan, then the library's executor ----------------------------------------

    /// One sync run: read, plan, execute with `faults` (one per call the executor makes, then
    /// all Ok), commit.
    pub fn sync(&mut self, faults: &[Fault], confirmed: &HashSet<LinkKey>) -> RunOutcome {
        self.sync_with(faults, confirmed, false)
    }

    /// A run; `retry_all` tries every parked event at once, as `calsync resync --full` does.
    pub fn sync_with(
        &mut self,
        faults: &[Fault],
        confirmed: &HashSet<LinkKey>,
        retry_all: bool,
    ) -> RunOutcome {
        let run = self.begin_run(confirmed, retry_all);
        self.finish_run(run, faults)
    }

    /// A run reads and plans; it stalls past its lease while another run (with `other_faults`)
    /// does the whole job; then it wakes and carries out its old plan (with `late_faults`) as
    /// the live runner would before it notices: its idea of the link versions is its own
    /// snapshot, so only the conditional link writes and the sides' own version checks stand
    /// between its writes and the newer state. It commits nothing (the lease is lost) and
    /// records no parking. Returns how the other run ended.
    pub fn late_run(&mut self, late_faults: &[Fault], other_faults: &[Fault]) -> RunOutcome {
        let stalled = self.begin_run(&HashSet::new(), false);
        self.trace
            .push(format!("run {} stalls; its lease lapses", self.runs));
        let outcome = self.sync(other_faults, &HashSet::new());
        self.trace
            .push("the stalled run wakes and carries out its plan".into());
        self.late_runs += 1;
        let versions = stalled
            .snapshot
            .iter()
            .map(|link| (link.key.clone(), link.version))
            .collect();
        let _ = self.execute(&stalled.plan, late_faults, Some(versions));
        outcome
    }

    /// Reads both feeds from the committed cursors, feeds the due parked events, plans.
    fn begin_run(&mut self, confirmed: &HashSet<LinkKey>, retry_all: bool) -> PlannedRun {
        self.runs += 1;
        // Runs are some minutes apart, so parked events come due after a few.
        self.clock = self
            .clock
            .saturating_add(SignedDuration::from_mins(20))
            .unwrap_or(self.clock);
        let now = self.clock.as_second();
        let snapshot: Vec<Link> = self.links.values().cloned().collect();
        let (mut outlook, outlook_next) = self.outlook_feed();
        let (mut crm, crm_next) = self.crm_feed();
        let mut policy = self.policy.clone();
        policy.first_sync = !self.first_sync_done;
        policy.guard.confirmed = confirmed.clone();
        let parking = Parking::new(&self.parked, now, retry_all);
        parking.prepare(&mut policy, &mut outlook, &mut crm);
        let plan = plan(&snapshot, &outlook, &crm, &policy);
        self.check_plan(&plan);
        self.tally(&plan);
        let parked: Vec<String> = self
            .parked
            .iter()
            .map(|p| format!("{} (next {})", p.key, p.next_at - now))
            .collect();
        self.trace
            .push(format!("run {} parked {parked:?} plan:", self.runs));
        for step in &plan.steps {
            let actions: Vec<String> = step
                .actions
                .iter()
                .map(|action| match action {
                    Action::RecordConflict(c) => {
                        format!("conflict({:?} {:?} won {:?})", c.kind, c.field, c.winner)
                    }
                    Action::Remember(link) if link.pending.is_some() => "intent".into(),
                    Action::Remember(_) => "remember".into(),
                    Action::CreateInCrm { .. } => "create_crm".into(),
                    Action::CreateInOutlook { .. } => "create_outlook".into(),
                    Action::UpdateCrm { fields, .. } => format!("update_crm{fields:?}"),
                    Action::UpdateOutlook { fields, .. } => format!("update_outlook{fields:?}"),
                    Action::DeleteInCrm { .. } => "delete_crm".into(),
                    Action::DeleteInOutlook { .. } => "delete_outlook".into(),
                    Action::Link(l) => format!("link(v{} {:?})", l.version, l.state),
                    Action::Unlink => "unlink".into(),
                })
                .collect();
            self.trace.push(format!(
                "  {} expect {:?}: {}",
                step.key,
                step.expect,
                actions.join(", ")
            ));
        }
        PlannedRun {
            plan,
            snapshot,
            outlook,
            crm,
            outlook_next,
            crm_next,
            parking,
            now,
        }
    }

    /// Executes a planned run and records what the runner records: the parked events and,
    /// when every step is done and the plan allows it, the cursors.
    fn finish_run(&mut self, run: PlannedRun, faults: &[Fault]) -> RunOutcome {
        let result = self.execute(&run.plan, faults, None);
        let outcome = match &result {
            Err(_) => {
                self.crashes += 1;
                RunOutcome::Crashed
            }
            Ok(done) => {
                self.parked = run.parking.after(
                    &run.plan,
                    done,
                    &run.snapshot,
                    &run.outlook,
                    &run.crm,
                    run.now,
                );
                if done.all_done() && run.plan.may_commit_cursors() {
                    self.outlook_cursor = run.outlook_next;
                    self.crm_cursor = run.crm_next;
                    self.first_sync_done = true;
                    RunOutcome::Committed
                } else {
                    RunOutcome::Uncommitted
                }
            }
        };
        self.last_plan = Some(run.plan);
        outcome
    }

    /// Executes the last plan again, as a duplicate delivery of the same work would.
    pub fn replay_last_plan(&mut self) {
        if let Some(plan) = self.last_plan.clone() {
            self.trace.push("replay of the last plan".into());
            // Without faults nothing can stop it, and whatever it did is checked as it wrote.
            let _ = self.execute(&plan, &[], None);
        }
    }

    /// `calsync_core::sync::execute` against this world, with one fault per call. `versions`:
    /// the run's own idea of the stored link versions (a late run's); `None`: the store's.
    fn execute(
        &mut self,
        plan: &Plan,
        faults: &[Fault],
        versions: Option<BTreeMap<LinkKey, u64>>,
    ) -> Result<Execution, Stopped> {
        let policy = self.policy.clone();
        let pipeline = self.pipeline;
        let target = Target {
            steps: pipeline.steps,
            interleave: Mutex::new(pipeline.interleave),
            world: Mutex::new(&mut *self),
            faults: Mutex::new(faults.iter().copied().collect()),
            versions: versions.map(Mutex::new),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
        let result = runtime.block_on(execute(plan, &target, &policy));
        let done = match &result {
            Ok(done) => done,
            Err(stopped) => &stopped.so_far,
        };
        self.stale_steps += done.stale;
        self.failed_steps += done.failed.len();
        self.refused_steps += done.refused.len();
        self.trace.push(match &result {
            Ok(done) => format!(
                "  -> completed {}, stale {}, failed {:?}, refused {:?}, gone {:?}",
                done.completed, done.stale, done.failed, done.refused, done.gone
            ),
            Err(stopped) => format!(
                "  -> stopped ({}) after completed {}, stale {}, failed {:?}, refused {:?}",
                stopped.reason,
                stopped.so_far.completed,
                stopped.so_far.stale,
                stopped.so_far.failed,
                stopped.so_far.refused
            ),
        });
        result
    }

    fn tally(&mut self, plan: &Plan) {
        let c = &plan.counts;
        for (name, n) in [
            ("create_crm", c.create_crm),
            ("create_outlook", c.create_outlook),
            ("update_crm", c.update_crm),
            ("update_outlook", c.update_outlook),
            ("delete_crm", c.delete_crm),
            ("delete_outlook", c.delete_outlook),
            ("links_stored", c.links_stored),
            ("unlinked", c.unlinked),
            ("conflicts", c.conflicts),
            ("held_by_guard", c.held),
        ] {
            *self.planned.entry(name).or_default() += n;
        }
        for link in plan.steps.iter().filter_map(|step| step.final_link()) {
            if link.state == LinkState::Detached {
                *self.planned.entry("detached").or_default() += 1;
            }
        }
        for step in &plan.steps {
            let resumed = step.expect.is_some()
                && step
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Remember(link) if link.pending.is_none()))
                && !step
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::RecordConflict(_)));
            if resumed {
                *self.planned.entry("resumed_create").or_default() += 1;
            }
            let adopted = self.links.get(&step.key).is_some_and(|l| {
                matches!(
                    l.state,
                    LinkState::CreatingInCrm | LinkState::CreatingInOutlook
                )
            }) && !step
                .actions
                .iter()
                .any(|a| matches!(a, Action::Remember(link) if link.pending.is_none()));
            if adopted {
                *self.planned.entry("adopted_create").or_default() += 1;
            }
        }
    }

    fn check_plan(&mut self, plan: &Plan) {
        let mut keys = std::collections::HashSet::new();
        for step in &plan.steps {
            if !keys.insert(step.key.clone()) {
                self.violations
                    .push(format!("two steps for one link {}", step.key));
            }
        }
    }

    /// The store's conditional put: only over version `link.version - 1` (absent for 0).
    fn put_link(&mut self, link: &Link) -> bool {
        // Stored versions start at 1, so 0 stands for "absent".
        let stored = self.links.get(&link.key).map(|l| l.version).unwrap_or(0);
        if stored + 1 != link.version {
            return false;
        }
        self.links.insert(link.key.clone(), link.clone());
        self.after_link(link);
        true
    }

    /// Stores the link whatever is stored, as a run holding its lease does.
    fn put_link_unconditionally(&mut self, link: &Link) {
        self.links.insert(link.key.clone(), link.clone());
        self.after_link(link);
    }

    /// Forgets the link if it is still at `expect`.
    fn delete_link(&mut self, key: &LinkKey, expect: Option<u64>) {
        if self.links.get(key).map(|l| l.version) == expect {
            self.links.remove(key);
        }
    }

    /// Whether the journal already holds an entry about `id` on `side` that `keep` accepts.
    fn journalled(&self, side: Side, id: &str, keep: impl Fn(&Conflict) -> bool) -> bool {
        // An entry about a single event still speaks of it once it became a series.
        let master = self
            .outlook
            .records
            .get(id)
            .and_then(|record| record.occurrence.as_ref())
            .map(|o| o.series_master_id.as_str());
        self.journal.values().any(|c| {
            let about = match side {
                Side::Crm => c.crm_id.as_ref().is_some_and(|c| c.as_str() == id),
                Side::Outlook => {
                    c.outlook_id.as_deref() == Some(id)
                        || (master.is_some() && c.outlook_id.as_deref() == master)
                }
            };
            about && keep(c)
        })
    }

    /// Bringing back an event deleted on `side` needs an edit-versus-delete entry, written
    /// before the create, saying that side deleted it (its value is `None`) and naming the
    /// surviving copy `other_id` on the other side.
    fn revival_journalled(&self, side: Side, other_id: Option<&str>) -> bool {
        other_id.is_some_and(|other_id| {
            self.journalled(side.other(), other_id, |c| {
                c.kind == ConflictKind::EditVsDelete
                    && match side {
                        Side::Crm => c.crm_value.is_none(),
                        Side::Outlook => c.outlook_value.is_none(),
                    }
            })
        })
    }

    fn create_crm(&mut self, event: &CalendarEvent, marker: &str) -> CalendarEvent {
        let now = self.tick();
        let truth = event
            .ids
            .outlook
            .as_ref()
            .and_then(|id| self.outlook.records.get(id))
            .map(|record| record.truth);
        let truth = match truth {
            Some(truth) => truth,
            None => self.truth(),
        };
        let journalled = self.revival_journalled(Side::Crm, event.ids.outlook.as_deref());
        self.check_revival(Side::Crm, truth, journalled);
        let id = self.crm.new_id();
        let seq = self.crm.bump();
        let mut stored = self.crm.project(event);
        if stored.activity_type.is_none() {
            stored.activity_type = Some("Meeting".into());
        }
        stored.ids.crm_marker = Some(marker.to_owned());
        let mut record = Record {
            event: stored,
            truth,
            seq,
            occurrence: None,
            exception: false,
            transaction_id: None,
            by_sync: true,
            invitees: false,
            synced: CalendarEvent::timed("", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
        };
        self.crm.stamp(&mut record, &id, now);
        record.synced = record.event.clone();
        let out = record.event.clone();
        self.crm.records.insert(id, record);
        self.settle_truth(truth);
        out
    }

    fn create_outlook(
        &mut self,
        crm_id: &CrmEventId,
        transaction_id: &str,
        event: &CalendarEvent,
    ) -> CalendarEvent {
        // Graph answers a repeated transactionId with the event it made.
        if let Some(id) = self.outlook.by_transaction.get(transaction_id) {
            if let Some(record) = self.outlook.records.get(id) {
                return record.event.clone();
            }
        }
        let now = self.tick();
        let truth = match self.crm.records.get(crm_id.as_str()) {
            Some(record) => record.truth,
            None => self.truth(),
        };
        let journalled = self.revival_journalled(Side::Outlook, Some(crm_id.as_str()));
        self.check_revival(Side::Outlook, truth, journalled);
        let id = self.outlook.new_id();
        let seq = self.outlook.bump();
        let mut stored = self.outlook.project(event);
        stored.is_organizer = Some(true);
        stored.organizer = None;
        if stored.show_as.is_none() {
            stored.show_as = Some(ShowAs::Busy);
        }
        let mut record = Record {
            event: stored,
            truth,
            seq,
            occurrence: None,
            exception: false,
            transaction_id: Some(transaction_id.to_owned()),
            by_sync: false,
            invitees: false,
            synced: CalendarEvent::timed("", Timestamp::UNIX_EPOCH, Timestamp::UNIX_EPOCH),
        };
        self.outlook.stamp(&mut record, &id, now);
        record.synced = record.event.clone();
        let out = record.event.clone();
        self.outlook.records.insert(id.clone(), record);
        self.outlook
            .by_crm_stamp
            .insert(crm_id.as_str().to_owned(), id.clone());
        self.outlook
            .by_transaction
            .insert(transaction_id.to_owned(), id);
        self.settle_truth(truth);
        out
    }

    /// Re-creating an event a user deleted on that side overrides the deletion: journalled.
    fn check_revival(&mut self, side: Side, truth: u64, journalled: bool) {
        if self.user_deleted.remove(&(side, truth)) && !journalled {
            self.violations.push(format!(
                "brought back an event the user deleted in {side:?} without a journal entry"
            ));
        }
    }

    /// A calsync write of `fields`, as the side's adapter makes it: refused as stale when the
    /// record moved on from the version the plan read (the CRM's modification time, which the
    /// vtiger adapter looks at first; Outlook's change key, sent as `If-Match`), and stored
    /// the side's way. Checks that no user edit that has not reached the other side is
    /// overwritten unless the journal already holds that very value (the entry must be
    /// written before the write that loses it), that a CRM revise changes something (stock
    /// vtiger clears the invitees on every revise; `retry`: the call's arguments, exempt when
    /// an answer to the same call was lost), and that no attendee is mailed.
    fn update(
        &mut self,
        side: Side,
        id: &str,
        fields: &[EventField],
        event: &CalendarEvent,
        retry: &str,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        let now = self.tick();
        let counterpart = self.counterpart_values(side, id);
        let is_retry = self.lost_answers.contains(retry);
        // The values of this copy the journal says were lost, by field.
        let lost: Vec<(EventField, serde_json::Value)> = self
            .journal
            .values()
            .filter(|c| match side {
                Side::Crm => c.crm_id.as_ref().is_some_and(|c| c.as_str() == id),
                Side::Outlook => c.outlook_id.as_deref() == Some(id),
            })
            .filter_map(|c| {
                let value = match side {
                    Side::Crm => c.crm_value.clone(),
                    Side::Outlook => c.outlook_value.clone(),
                };
                Some((c.field?, value?))
            })
            .collect();
        let calendar = self.calendar(side);
        let carried = calendar.fields.without(FieldSet::of(NEVER_WRITTEN));
        let Some(record) = calendar.records.get(id) else {
            let message = format!("{side:?} update of missing {id}");
            self.violations.push(message);
            return Ok(None);
        };
        let moved_on = match side {
            Side::Crm => event
                .modified
                .crm
                .is_some_and(|read| record.event.modified.crm.is_some_and(|at| at > read)),
            Side::Outlook => event
                .ids
                .outlook_change_key
                .as_ref()
                .is_some_and(|read| record.event.ids.outlook_change_key.as_ref() != Some(read)),
        };
        if moved_on {
            return Err(WriteFailure::Stale("changed since it was read".into()));
        }
        let seq = calendar.bump();
        let Some(record) = calendar.records.get_mut(id) else {
            return Ok(None);
        };
        let mut problems = Vec::new();
        if side == Side::Outlook
            && record.event.mails_attendees()
            && fields.iter().any(|f| ORGANIZER_OWNED.contains(f))
        {
            problems.push(format!(
                "calsync mailed attendees an update: wrote {fields:?} of Outlook {id}, a meeting \
                 the user organises with attendees"
            ));
        }
        let mut changed = false;
        for field in fields.iter().copied().filter(|f| carried.contains(*f)) {
            if side == Side::Outlook
                && record.event.is_organizer == Some(false)
                && ORGANIZER_OWNED.contains(&field)
            {
                problems.push(format!(
                    "wrote {field:?} of a meeting the user does not organise"
                ));
            }
            let mut stored = record.event.clone();
            stored.copy_field(event, field);
            if side == Side::Crm {
                crm_store(&mut stored);
            }
            if record.event.same_field(&stored, field) {
                continue;
            }
            let reached = counterpart.as_ref().is_some_and(|other| match side {
                Side::Crm => agree(&record.event, other, field),
                Side::Outlook => agree(other, &record.event, field),
            });
            let unsynced = record.pending(field) && !reached;
            let current = field_value(&record.event, field);
            let journalled = lost.iter().any(|(f, v)| *f == field && *v == current);
            if unsynced && !journalled {
                problems.push(format!(
                    "overwrote an unsynced {side:?} edit of {field:?} on {id} without a journal entry"
                ));
            }
            record.event.copy_field(&stored, field);
            // The user's edit, if any, was just overwritten (and checked above).
            record.synced.copy_field(&stored, field);
            changed = true;
        }
        if side == Side::Crm {
            if !changed && !is_retry {
                problems.push(format!(
                    "revised a CRM record with no carried change (its invitees are lost): \
                     {id} {fields:?}"
                ));
            }
            record.invitees = false;
        }
        if record.occurrence.is_some() {
            record.exception = true;
        }
        record.touch(side, seq, now);
        let truth = record.truth;
        let stored = record.event.clone();
        self.violations.extend(problems);
        self.settle_truth(truth);
        Ok(Some(stored))
    }

    /// A calsync deletion, refused as stale when `if_match` is not the event's change key.
    /// Checks that a copy with unsynced edits goes only after an edit-versus-delete entry
    /// about it is in the journal, and that no attendee is sent a cancellation.
    fn remove(&mut self, side: Side, id: &str, if_match: Option<&str>) -> Result<(), WriteFailure> {
        self.tick();
        if side == Side::Crm && self.crm.elsewhere.contains_key(id) {
            self.violations
                .push(format!("deleted {id}, which was reassigned, from the CRM"));
            return Ok(());
        }
        let counterpart = self.counterpart_values(side, id);
        let journalled = self.journalled(side, id, |c| c.kind == ConflictKind::EditVsDelete);
        let calendar = self.calendar(side);
        let Some(record) = calendar.records.get(id) else {
            return Ok(()); // Already gone: the goal is reached.
        };
        if if_match.is_some_and(|key| record.event.ids.outlook_change_key.as_deref() != Some(key)) {
            return Err(WriteFailure::Stale("412".into()));
        }
        let mut problems = Vec::new();
        if side == Side::Outlook && record.event.is_organizer == Some(false) {
            problems.push(format!(
                "deleted {id}, a meeting the user does not organise"
            ));
        }
        if side == Side::Outlook && record.event.mails_attendees() {
            problems.push(format!(
                "calsync mailed attendees a cancellation: deleted Outlook {id}, a meeting the \
                 user organises with attendees"
            ));
        }
        let unsynced = record
            .pending_fields(calendar.fields)
            .into_iter()
            .any(|field| {
                !counterpart.as_ref().is_some_and(|other| match side {
                    Side::Crm => agree(&record.event, other, field),
                    Side::Outlook => agree(other, &record.event, field),
                })
            });
        if unsynced && !journalled {
            problems.push(format!(
                "deleted {side:?} {id} with unsynced edits and no journal entry"
            ));
        }
        let seq = calendar.bump();
        calendar.records.remove(id);
        calendar
            .removed
            .push((seq, id.to_owned(), GoneReason::Deleted));
        self.violations.extend(problems);
        Ok(())
    }

    /// The other side's copy of a record, found through the stored links.
    fn counterpart_values(&self, side: Side, id: &str) -> Option<CalendarEvent> {
        let link = self.links.values().find(|link| match side {
            Side::Crm => link.crm_id.as_ref().is_some_and(|c| c.as_str() == id),
            Side::Outlook => link.outlook_id.as_deref() == Some(id),
        })?;
        match side {
            Side::Crm => link
                .outlook_id
                .as_ref()
                .and_then(|o| self.outlook.records.get(o))
                .map(|r| r.event.clone()),
            Side::Outlook => link
                .crm_id
                .as_ref()
                .and_then(|c| self.crm.records.get(c.as_str()))
                .map(|r| r.event.clone()),
        }
    }

    /// Edits that now have the same value on both copies of an event have arrived.
    fn settle_truth(&mut self, truth: u64) {
        let common = self.crm.fields.intersection(self.outlook.fields);
        let crm_ids: Vec<String> = self
            .crm
            .records
            .iter()
            .filter(|(_, r)| r.truth == truth)
            .map(|(id, _)| id.clone())
            .collect();
        let outlook_ids: Vec<String> = self
            .outlook
            .records
            .iter()
            .filter(|(_, r)| r.truth == truth)
            .map(|(id, _)| id.clone())
            .collect();
        for crm_id in &crm_ids {
            for outlook_id in &outlook_ids {
                let (Some(c), Some(o)) = (
                    self.crm.records.get(crm_id).map(|r| r.event.clone()),
                    self.outlook
                        .records
                        .get(outlook_id)
                        .map(|r| r.event.clone()),
                ) else {
                    continue;
                };
                for field in common.iter() {
                    if agree(&c, &o, field) {
                        if let Some(r) = self.crm.records.get_mut(crm_id) {
                            r.synced.copy_field(&c, field);
                        }
                        if let Some(r) = self.outlook.records.get_mut(outlook_id) {
                            r.synced.copy_field(&o, field);
                        }
                    }
                }
            }
        }
    }

    /// After a link is stored: one truth per linked pair (a first-sync match joins two), and
    /// side-only edits the base took in have arrived.
    fn after_link(&mut self, link: &Link) {
        let crm = link.crm_id.as_ref().map(|id| id.as_str().to_owned());
        let outlook = link.outlook_id.clone();
        let crm_truth = crm
            .as_ref()
            .and_then(|id| self.crm.records.get(id))
            .map(|r| r.truth);
        let outlook_truth = outlook
            .as_ref()
            .and_then(|id| self.outlook.records.get(id))
            .map(|r| r.truth);
        if let (Some(c), Some(o)) = (crm_truth, outlook_truth) {
            // A first-sync match joins two events into one; an adopted create may have been
            // made for a look-alike. Either way the CRM record now stands for this event.
            if c != o && link.state == LinkState::Linked {
                if let Some(record) = crm.as_ref().and_then(|id| self.crm.records.get_mut(id)) {
                    record.truth = o;
                }
            }
            self.settle_truth(o);
        }
        let only_crm = self.crm.fields.without(self.outlook.fields);
        let only_outlook = self.outlook.fields.without(self.crm.fields);
        if let Some(record) = crm.as_ref().and_then(|id| self.crm.records.get_mut(id)) {
            for field in only_crm.iter() {
                if record.event.same_field(&link.base, field) {
                    record.synced.copy_field(&link.base, field);
                }
            }
        }
        if let Some(record) = outlook
            .as_ref()
            .and_then(|id| self.outlook.records.get_mut(id))
        {
            for field in only_outlook.iter() {
                if record.event.same_field(&link.base, field) {
                    record.synced.copy_field(&link.base, field);
                }
            }
        }
    }

    // --- the end state -------------------------------------------------------------------

    /// Everything, for a failing case's report.
    pub fn dump(&self) -> String {
        let mut out = self.trace.join("\n");
        out.push('\n');
        for (name, calendar) in [("CRM", &self.crm), ("Outlook", &self.outlook)] {
            for (id, r) in &calendar.records {
                out.push_str(&format!(
                    "{name} {id} truth={} seq={} {:?} {:?} desc={:?} loc={:?} rem={:?} sens={:?} \
                     occ={:?} tx={:?} attendees={} invitees={} pending={:?}\n",
                    r.truth,
                    r.seq,
                    r.event.subject,
                    r.event.time,
                    r.event.description,
                    r.event.location,
                    r.event.reminder_minutes,
                    r.event.sensitivity,
                    r.occurrence.as_ref().map(|o| &o.series_master_id),
                    r.transaction_id.as_deref().map(|t| &t[..12]),
                    r.event.has_attendees,
                    r.invitees,
                    r.pending_fields(calendar.fields)
                ));
            }
        }
        for link in self.links.values() {
            out.push_str(&format!(
                "link {} v{} {:?} {:?} crm={:?} outlook={:?}\n",
                link.key, link.version, link.state, link.origin, link.crm_id, link.outlook_id
            ));
        }
        out
    }

    /// Clean syncs (no faults) until nothing is left to do. Deletions the guard holds are
    /// confirmed, as an operator would after looking at the list, and parked events are tried
    /// at once, as `calsync resync --full` does.
    pub fn settle(&mut self) -> Result<usize, String> {
        let mut confirmed = HashSet::new();
        for round in 1..=7 {
            let outcome = self.sync_with(&[], &confirmed, true);
            let empty = self.last_plan.as_ref().is_some_and(Plan::is_empty);
            if let Some(trip) = self.last_plan.as_ref().and_then(|plan| plan.guard.as_ref()) {
                if confirmed.is_empty() {
                    confirmed = trip.held.iter().map(|held| held.key.clone()).collect();
                    continue;
                }
            }
            if outcome != RunOutcome::Committed {
                return Err(format!(
                    "a clean run did not commit: {outcome:?}\n{}",
                    self.dump()
                ));
            }
            if empty {
                return Ok(round);
            }
        }
        Err(format!(
            "no fixed point after 6 clean runs; last plan: {:#?}\n{}",
            self.last_plan,
            self.dump()
        ))
    }

    /// Both sides hold the same events (modulo the CRM's lossy storage), once each, every link
    /// is whole, and nothing is parked.
    pub fn check_converged(&self) -> Result<(), String> {
        if !self.violations.is_empty() {
            return Err(format!("violations: {:#?}", self.violations));
        }
        if !self.parked.is_empty() {
            return Err(format!("still parked: {:#?}", self.parked));
        }
        let common = self
            .policy
            .crm_fields
            .intersection(self.policy.outlook_fields);
        let mut crm_linked = HashMap::new();
        let mut outlook_linked = HashMap::new();
        for link in self.links.values() {
            match link.state {
                LinkState::Linked => {
                    let crm_id = link.crm_id.as_ref().map(CrmEventId::as_str).unwrap_or("");
                    let outlook_id = link.outlook_id.as_deref().unwrap_or("");
                    let crm = self
                        .crm
                        .records
                        .get(crm_id)
                        .ok_or(format!("{} links a missing CRM record {crm_id}", link.key))?;
                    let outlook = self.outlook.records.get(outlook_id).ok_or(format!(
                        "{} links a missing Outlook event {outlook_id}",
                        link.key
                    ))?;
                    for field in common.iter() {
                        if !agree(&crm.event, &outlook.event, field) {
                            return Err(format!(
                                "{} differs in {field:?}: CRM {:?} vs Outlook {:?}",
                                link.key, crm.event, outlook.event
                            ));
                        }
                    }
                    if *crm_linked.entry(crm_id.to_owned()).or_insert(0) > 0 {
                        return Err(format!("CRM {crm_id} linked twice"));
                    }
                    crm_linked.insert(crm_id.to_owned(), 1);
                    *outlook_linked.entry(outlook_id.to_owned()).or_insert(0) += 1;
                }
                LinkState::Detached => {
                    let outlook_id = link.outlook_id.as_deref().unwrap_or("");
                    if !self.outlook.records.contains_key(outlook_id) {
                        return Err(format!("{} is detached from a missing event", link.key));
                    }
                    *outlook_linked.entry(outlook_id.to_owned()).or_insert(0) += 1;
                }
                state => return Err(format!("{} left in state {state:?}", link.key)),
            }
        }
        for id in self.crm.records.keys() {
            if !crm_linked.contains_key(id) {
                return Err(format!("CRM {id} has no Outlook copy"));
            }
        }
        for id in self.outlook.records.keys() {
            match outlook_linked.get(id) {
                Some(1) => {}
                Some(n) => return Err(format!("Outlook {id} linked {n} times")),
                None => return Err(format!("Outlook {id} has no CRM copy")),
            }
        }
        for (side, calendar) in [("CRM", &self.crm), ("Outlook", &self.outlook)] {
            let mut seen = HashMap::new();
            for (id, record) in &calendar.records {
                if let Some(other) = seen.insert(record.truth, id) {
                    return Err(format!("{side} holds one event twice: {other} and {id}"));
                }
            }
        }
        Ok(())
    }
}

/// The world as the executor sees it: every call takes the next fault of the script (`Ok` once
/// it runs out) and does what that fault says.
struct Target<'w> {
    /// Steps run at once.
    steps: usize,
    /// The xorshift state that decides which calls let other steps go first.
    interleave: Mutex<u64>,
    world: Mutex<&'w mut World>,
    faults: Mutex<VecDeque<Fault>>,
    /// The run's own idea of the stored link versions, as the live target keeps it (read with
    /// its snapshot, updated by its own link writes); `None`: the store's.
    versions: Option<Mutex<BTreeMap<LinkKey, u64>>>,
}

/// Whether a side can refuse the call for good: calendar writes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Write,
    Other,
}

impl Target<'_> {
    /// Lets the other steps of the wave go on first, when the interleave pattern says so.
    async fn interleave(&self) {
        let go_on = {
            let mut state = self.interleave.lock().unwrap();
            if *state == 0 {
                false
            } else {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state & 1 == 1
            }
        };
        if go_on {
            YieldOnce(false).await;
        }
    }

    /// One call. `lost`: the call's arguments, remembered when its answer is lost.
    fn call<T>(
        &self,
        kind: Call,
        lost: Option<String>,
        write: impl FnOnce(&mut World) -> Result<T, WriteFailure>,
    ) -> Result<T, WriteFailure> {
        let fault = self.faults.lock().unwrap().pop_front().unwrap_or(Fault::Ok);
        let mut world = self.world.lock().unwrap();
        match fault {
            Fault::Ok => write(&mut world),
            Fault::Refused if kind == Call::Other => write(&mut world),
            Fault::Refused => Err(WriteFailure::Rejected("refused".into())),
            Fault::Transient => Err(WriteFailure::Transient("503".into())),
            Fault::Ambiguous => {
                let _ = write(&mut world);
                if let Some(lost) = lost {
                    world.lost_answers.insert(lost);
                }
                Err(WriteFailure::Ambiguous("timeout".into()))
            }
            Fault::Crash => Err(WriteFailure::Fatal("crash".into())),
        }
    }
}

#[async_trait]
impl SyncTarget for Target<'_> {
    fn parallel_steps(&self) -> usize {
        self.steps
    }

    async fn stored_version(&self, key: &LinkKey) -> Result<Option<u64>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            Ok(match &self.versions {
                Some(versions) => versions.lock().unwrap().get(key).copied(),
                None => world.links.get(key).map(|link| link.version),
            })
        })
    }

    async fn put_link(&self, link: &Link) -> Result<bool, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            let stored = world.put_link(link);
            if let (true, Some(versions)) = (stored, &self.versions) {
                versions
                    .lock()
                    .unwrap()
                    .insert(link.key.clone(), link.version);
            }
            Ok(stored)
        })
    }

    /// A run holding its lease writes its bookkeeping without conditions, as the live runner
    /// does (one call per record here, so a crash may fall between any two); a late run, whose
    /// lease lapsed, writes each record on its condition.
    async fn store_all(&self, records: &[Bookkeeping]) -> Vec<Result<bool, WriteFailure>> {
        let mut answers = Vec::with_capacity(records.len());
        for record in records {
            self.interleave().await;
            answers.push(if self.versions.is_some() {
                record.store_alone(self).await
            } else {
                self.call(Call::Other, None, |world| {
                    match record {
                        Bookkeeping::Link(link) => world.put_link_unconditionally(link),
                        Bookkeeping::Conflict(conflict) => {
                            world.journal.insert(conflict.id.clone(), conflict.clone());
                        }
                        Bookkeeping::Unlink { key, .. } => {
                            world.links.remove(key);
                        }
                    }
                    Ok(true)
                })
            });
        }
        answers
    }

    async fn delete_link(&self, key: &LinkKey, expect: Option<u64>) -> Result<(), WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            world.delete_link(key, expect);
            if let Some(versions) = &self.versions {
                versions.lock().unwrap().remove(key);
            }
            Ok(())
        })
    }

    async fn record_conflict(&self, conflict: &Conflict) -> Result<(), WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            world.journal.insert(conflict.id.clone(), conflict.clone());
            Ok(())
        })
    }

    async fn create_in_crm(
        &self,
        event: &CalendarEvent,
        marker: &str,
    ) -> Result<CalendarEvent, WriteFailure> {
        self.interleave().await;
        self.call(Call::Write, None, |world| {
            Ok(world.create_crm(event, marker))
        })
    }

    /// As the vtiger adapter: a query by `source`, which holds the marker.
    async fn find_crm_created(&self, marker: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            Ok(world
                .crm
                .records
                .values()
                .find(|record| record.event.ids.crm_marker.as_deref() == Some(marker))
                .map(|record| record.event.clone()))
        })
    }

    /// As the Graph adapter: the event carrying the CRM id stamp calsync's create put on it.
    async fn find_outlook_created(
        &self,
        crm_id: &CrmEventId,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            Ok(world
                .outlook
                .by_crm_stamp
                .get(crm_id.as_str())
                .and_then(|id| world.outlook.records.get(id))
                .map(|record| record.event.clone()))
        })
    }

    async fn create_in_outlook(
        &self,
        crm_id: &CrmEventId,
        transaction_id: &str,
        event: &CalendarEvent,
    ) -> Result<CalendarEvent, WriteFailure> {
        self.interleave().await;
        self.call(Call::Write, None, |world| {
            Ok(world.create_outlook(crm_id, transaction_id, event))
        })
    }

    async fn update_crm(
        &self,
        crm_id: &CrmEventId,
        fields: &[EventField],
        event: &CalendarEvent,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        let call = format!("{crm_id} {fields:?} {event:?}");
        self.call(Call::Write, Some(call.clone()), |world| {
            world.update(Side::Crm, crm_id.as_str(), fields, event, &call)
        })
    }

    async fn update_outlook(
        &self,
        outlook_id: &str,
        fields: &[EventField],
        event: &CalendarEvent,
        _occurrence: Option<&Occurrence>,
    ) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Write, None, |world| {
            world.update(Side::Outlook, outlook_id, fields, event, "")
        })
    }

    async fn read_crm(&self, crm_id: &CrmEventId) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            Ok(world
                .crm
                .records
                .get(crm_id.as_str())
                .map(|record| record.event.clone()))
        })
    }

    async fn read_outlook(&self, outlook_id: &str) -> Result<Option<CalendarEvent>, WriteFailure> {
        self.interleave().await;
        self.call(Call::Other, None, |world| {
            Ok(world
                .outlook
                .records
                .get(outlook_id)
                .map(|record| record.event.clone()))
        })
    }

    async fn delete_in_crm(&self, crm_id: &CrmEventId) -> Result<(), WriteFailure> {
        self.interleave().await;
        self.call(Call::Write, None, |world| {
            world.remove(Side::Crm, crm_id.as_str(), None)
        })
    }

    async fn delete_in_outlook(
        &self,
        outlook_id: &str,
        if_match: Option<&str>,
    ) -> Result<(), WriteFailure> {
        self.interleave().await;
        self.call(Call::Write, None, |world| {
            world.remove(Side::Outlook, outlook_id, if_match)
        })
    }
}

/// Pending once (waking itself at once), then ready: the other futures polled beside it go
/// first.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}
