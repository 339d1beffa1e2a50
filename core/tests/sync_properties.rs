//! Property test of the sync engine in the simulated world (`sync_sim`), which plans with
//! `calsync_core::sync::plan` and executes with the library's own executor,
//! `calsync_core::sync::execute`, the code path of the live runner. Random edits on both sides
//! (creates, field edits, deletions, reassignments, invitations, recurring series) alternate with
//! syncs under random faults, one per call the executor makes (calendar writes, link and journal
//! writes, link deletions, stored-version reads):
//!
//! - 429/503: the call does nothing and fails ([`WriteFailure::Transient`]), retried;
//! - timeouts: the call takes effect but its answer is lost ([`WriteFailure::Ambiguous`]);
//! - crashes: the process dies before the call ([`WriteFailure::Fatal`]), so nothing more is
//!   written and no cursor is committed, and the job runs again;
//! - duplicate delivery: the same job run twice, and the same plan executed twice.
//!
//! After a final clean sync both sides must hold the same events, nothing twice, and every
//! overwritten edit must have been journalled before the write that lost it (checked at the
//! moment of the write).
//!
//! [`WriteFailure::Transient`]: calsync_core::sync::WriteFailure::Transient
//! [`WriteFailure::Ambiguous`]: calsync_core::sync::WriteFailure::Ambiguous
//! [`WriteFailure::Fatal`]: calsync_core::sync::WriteFailure::Fatal
//!
//! Cases: `PROPTEST_CASES` (default 64, a few seconds in debug). A longer run:
//!
//! ```text
//! PROPTEST_CASES=5000 cargo test -p calsync-core --release \
//!     --test sync_properties
//! ```

mod sync_sim;

use std::collections::HashSet;

use calsync_core::event::CalendarEvent;
use calsync_core::sync::ConflictPolicy;
use calsync_core::sync::Side;
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use sync_sim::{Edit, Fault, RunOutcome, World};

#[derive(Debug, Clone)]
enum Op {
    CrmCreate(Shape),
    OutlookCreate(Shape),
    Invitation(Shape),
    Series(Shape, u8),
    Edit(Side, u16, Edit),
    EditBoth(u16, Edit, Edit),
    OrganizerUpdate(u16, Edit),
    EditInvitationCopy(u16, Edit),
    SeriesEdit(u16, u8),
    Delete(Side, u16),
    DeleteSeries(u16, bool),
    Reassign(u16),
    /// Many events at once, then everything on one side gone: the deletion guard's case.
    Burst(Side, Shape),
    Wipe(Side),
    Sync {
        faults: Vec<Fault>,
        replay: bool,
        redeliver: bool,
    },
}

/// An event's subject and place in time, drawn from small pools so that look-alikes happen.
#[derive(Debug, Clone, Copy)]
struct Shape {
    subject: u8,
    slot: u8,
    all_day: bool,
    detail: u16,
}

impl Shape {
    fn event(self) -> CalendarEvent {
        // Around the October DST change in Europe, on a 45-minute grid.
        let origin: Timestamp = "2026-10-20T07:00:00Z".parse().unwrap();
        let mut event = if self.all_day {
            let day: jiff::civil::Date = "2026-10-20".parse().unwrap();
            let start = day.saturating_add(jiff::Span::new().days(i64::from(self.slot % 12)));
            CalendarEvent::all_day(self.subject(), start, start.tomorrow().unwrap())
        } else {
            let start = origin
                .saturating_add(SignedDuration::from_mins(45 * i64::from(self.slot)))
                .unwrap();
            let end = start.saturating_add(SignedDuration::from_mins(30)).unwrap();
            CalendarEvent::timed(self.subject(), start, end)
        };
        // A unique detail keeps a user's new event from looking exactly like another one.
        event.description = format!("detail {}", self.detail);
        event
    }

    fn subject(self) -> String {
        ["Demo", "Call ACME", "Lunch", "Review"][usize::from(self.subject % 4)].to_owned()
    }
}

fn shape() -> impl Strategy<Value = Shape> {
    (0u8..4, 0u8..40, prop::bool::weighted(0.2), any::<u16>()).prop_map(
        |(subject, slot, all_day, detail)| Shape {
            subject,
            slot,
            all_day,
            detail,
        },
    )
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Crm), Just(Side::Outlook)]
}

fn edit() -> impl Strategy<Value = Edit> {
    let n = any::<u8>();
    prop_oneof![
        3 => n.prop_map(Edit::Subject),
        2 => n.prop_map(Edit::Location),
        1 => n.prop_map(Edit::Description),
        2 => n.prop_map(Edit::Reminder),
        2 => n.prop_map(Edit::Shift),
        1 => Just(Edit::ToggleAllDay),
        1 => n.prop_map(Edit::Sensitivity),
        1 => n.prop_map(Edit::Status),
        1 => n.prop_map(Edit::ActivityType),
        1 => n.prop_map(Edit::ShowAs),
        1 => n.prop_map(Edit::Categories),
    ]
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        12 => Just(Fault::Ok),
        2 => Just(Fault::Transient),
        1 => Just(Fault::Ambiguous),
        1 => Just(Fault::Crash),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => shape().prop_map(Op::CrmCreate),
        4 => shape().prop_map(Op::OutlookCreate),
        1 => shape().prop_map(Op::Invitation),
        1 => (shape(), 2u8..5).prop_map(|(shape, count)| Op::Series(shape, count)),
        8 => (side(), any::<u16>(), edit()).prop_map(|(side, n, edit)| Op::Edit(side, n, edit)),
        4 => (any::<u16>(), edit(), edit()).prop_map(|(n, a, b)| Op::EditBoth(n, a, b)),
        1 => (any::<u16>(), edit()).prop_map(|(n, edit)| Op::OrganizerUpdate(n, edit)),
        1 => (any::<u16>(), edit()).prop_map(|(n, edit)| Op::EditInvitationCopy(n, edit)),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(n, s)| Op::SeriesEdit(n, s)),
        3 => (side(), any::<u16>()).prop_map(|(side, n)| Op::Delete(side, n)),
        1 => (any::<u16>(), any::<bool>()).prop_map(|(n, by)| Op::DeleteSeries(n, by)),
        1 => any::<u16>().prop_map(Op::Reassign),
        1 => (side(), shape()).prop_map(|(side, shape)| Op::Burst(side, shape)),
        1 => side().prop_map(Op::Wipe),
        6 => (
            // A step costs a read and store writes besides its calendar writes: a script this
            // long reaches about as many steps as one fault per calendar write used to.
            prop::collection::vec(fault(), 0..24),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
        )
            .prop_map(|(faults, replay, redeliver)| Op::Sync {
                faults,
                replay,
                redeliver,
            }),
    ]
}

fn policy() -> impl Strategy<Value = ConflictPolicy> {
    prop_oneof![
        2 => Just(ConflictPolicy::Latest),
        1 => Just(ConflictPolicy::CrmWins),
        1 => Just(ConflictPolicy::OutlookWins),
    ]
}

/// Events that exist before the first sync: some on one side, some identical on both.
#[derive(Debug, Clone)]
struct Start {
    crm: Vec<Shape>,
    outlook: Vec<Shape>,
    both: Vec<Shape>,
}

fn start() -> impl Strategy<Value = Start> {
    (
        prop::collection::vec(shape(), 0..5),
        prop::collection::vec(shape(), 0..5),
        prop::collection::vec(shape(), 0..4),
    )
        .prop_map(|(crm, outlook, both)| Start { crm, outlook, both })
}

fn run(conflict: ConflictPolicy, start: &Start, ops: &[Op]) -> Result<World, TestCaseError> {
    let mut world = World::new(conflict);
    for shape in &start.crm {
        world.crm_create(&shape.event());
    }
    for shape in &start.outlook {
        world.outlook_create(&shape.event());
    }
    for shape in &start.both {
        let event = shape.event();
        world.crm_create(&event);
        world.outlook_create(&event);
    }
    for op in ops {
        match op {
            Op::CrmCreate(shape) => {
                world.crm_create(&shape.event());
            }
            Op::OutlookCreate(shape) => {
                world.outlook_create(&shape.event());
            }
            Op::Invitation(shape) => {
                world.outlook_invitation(&shape.event());
            }
            Op::Series(shape, count) => world.outlook_series(&shape.event(), *count),
            Op::Edit(side, n, edit) => world.edit(*side, *n, *edit),
            Op::EditBoth(n, crm, outlook) => world.edit_both(*n, *crm, *outlook),
            Op::OrganizerUpdate(n, edit) => world.organizer_update(*n, *edit),
            Op::EditInvitationCopy(n, edit) => world.edit_invitation_copy(*n, *edit),
            Op::SeriesEdit(n, subject) => world.series_edit(*n, *subject),
            Op::Delete(side, n) => world.delete(*side, *n),
            Op::DeleteSeries(n, by_master) => world.delete_series(*n, *by_master),
            Op::Reassign(n) => world.reassign(*n),
            Op::Burst(side, shape) => {
                for n in 0..25u16 {
                    let mut event = shape.event();
                    event.description = format!("burst {} {n}", shape.detail);
                    match side {
                        Side::Crm => world.crm_create(&event),
                        Side::Outlook => world.outlook_create(&event),
                    };
                }
            }
            Op::Wipe(side) => {
                let count = match side {
                    Side::Crm => world.crm.records.len(),
                    Side::Outlook => world.outlook.records.len(),
                };
                for _ in 0..count {
                    world.delete(*side, 0);
                }
            }
            Op::Sync {
                faults,
                replay,
                redeliver,
            } => {
                let outcome = world.sync(faults, &HashSet::new());
                if *replay {
                    world.replay_last_plan();
                }
                if *redeliver || outcome == RunOutcome::Crashed {
                    // The job comes back (a redelivery, or the retry after a crash).
                    world.sync(&[], &HashSet::new());
                }
            }
        }
        prop_assert!(
            world.violations.is_empty(),
            "after {op:?}: {:#?}\n{}\nlast plan: {:#?}",
            world.violations,
            world.dump(),
            world.last_plan
        );
    }
    let rounds = world.settle().map_err(TestCaseError::fail)?;
    prop_assert!(rounds <= 3, "took {rounds} clean runs to settle");
    world.check_converged().map_err(TestCaseError::fail)?;
    Ok(world)
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn both_sides_converge_without_duplicates_or_silent_overwrites(
        conflict in policy(),
        start in start(),
        ops in prop::collection::vec(op(), 1..30),
    ) {
        run(conflict, &start, &ops)?;
    }
}

/// The same work delivered again late, after the user edited the event once more: the replayed
/// update's step is skipped because its link moved on, so the newer edit is not overwritten
/// (the world would report an unjournalled overwrite).
#[test]
fn a_late_replay_keeps_newer_edits() {
    let shape = Shape {
        subject: 0,
        slot: 1,
        all_day: false,
        detail: 1,
    };
    let mut world = World::new(ConflictPolicy::Latest);
    world.crm_create(&shape.event());
    assert_eq!(world.sync(&[], &HashSet::new()), RunOutcome::Committed);
    world.edit(Side::Outlook, 0, Edit::Subject(1));
    assert_eq!(world.sync(&[], &HashSet::new()), RunOutcome::Committed);
    world.edit(Side::Crm, 0, Edit::Subject(2));
    world.replay_last_plan();
    assert!(world.violations.is_empty(), "{:#?}", world.violations);
    let subjects: Vec<&str> = world
        .crm
        .records
        .values()
        .map(|r| r.event.subject.as_str())
        .collect();
    assert_eq!(subjects, ["Subject 2"]);
    world.settle().unwrap();
    world.check_converged().unwrap();
}

/// A fixed day in the simulated world under each policy: a conflict, a CRM edit of a meeting
/// the user only attends, a crash, a replayed plan, a redelivered job, a reassignment, a series
/// edited and deleted.
#[test]
fn a_scripted_day_converges() {
    let shape = |subject, slot, detail| Shape {
        subject,
        slot,
        all_day: false,
        detail,
    };
    let ops = vec![
        Op::Sync {
            faults: vec![],
            replay: false,
            redeliver: false,
        },
        Op::CrmCreate(shape(0, 1, 1)),
        Op::OutlookCreate(shape(1, 2, 2)),
        Op::Series(shape(2, 3, 3), 3),
        Op::Invitation(shape(3, 4, 4)),
        Op::Sync {
            faults: vec![
                Fault::Ok,
                Fault::Transient,
                Fault::Ok,
                Fault::Ambiguous,
                Fault::Crash,
            ],
            replay: true,
            redeliver: false,
        },
        Op::EditBoth(0, Edit::Subject(7), Edit::Subject(8)),
        Op::EditInvitationCopy(0, Edit::Subject(5)),
        Op::OrganizerUpdate(0, Edit::Location(6)),
        Op::Edit(Side::Outlook, 1, Edit::Location(2)),
        Op::SeriesEdit(0, 9),
        Op::Reassign(1),
        Op::Sync {
            faults: vec![],
            replay: false,
            redeliver: true,
        },
        Op::Delete(Side::Outlook, 2),
        Op::DeleteSeries(0, true),
        Op::Sync {
            faults: vec![Fault::Crash],
            replay: false,
            redeliver: false,
        },
    ];
    let start = Start {
        crm: vec![shape(0, 10, 10)],
        outlook: vec![shape(1, 11, 11)],
        both: vec![shape(2, 12, 12)],
    };
    for conflict in [
        ConflictPolicy::Latest,
        ConflictPolicy::CrmWins,
        ConflictPolicy::OutlookWins,
    ] {
        let world = match run(conflict, &start, &ops) {
            Ok(world) => world,
            Err(err) => panic!("{err}\n{conflict:?}\n{start:?}\n{ops:?}"),
        };
        assert!(
            !world.journal.is_empty(),
            "the subject conflict is journalled"
        );
        assert!(world.crashes >= 1);
    }
}

/// What the generator reaches: run with `--ignored --nocapture` to print how often each kind
/// of action was planned over 500 random cases.
#[test]
#[ignore]
fn generator_coverage() {
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (policy(), start(), prop::collection::vec(op(), 1..30));
    let mut totals = std::collections::BTreeMap::new();
    let (mut runs, mut crashes, mut journal, mut stale, mut failed) = (0, 0, 0, 0, 0);
    for _ in 0..500 {
        let (conflict, start, ops) = strategy.new_tree(&mut runner).unwrap().current();
        let world = match run(conflict, &start, &ops) {
            Ok(world) => world,
            Err(err) => panic!("{err}\n{conflict:?}\n{start:?}\n{ops:?}"),
        };
        for (name, n) in &world.planned {
            *totals.entry(*name).or_insert(0) += n;
        }
        runs += world.runs;
        crashes += world.crashes;
        journal += world.journal.len();
        stale += world.stale_steps;
        failed += world.failed_steps;
    }
    eprintln!(
        "runs {runs}, crashes {crashes}, journal entries {journal}, steps stale {stale}, \
         steps failed {failed}"
    );
    for (name, n) in totals {
        eprintln!("{name:>16} {n}");
    }
}

/// A crash at every possible point of a first sync and of a busy later sync (before each call
/// the executor makes in turn: reads, journal and link writes, calendar writes), followed by
/// the job's retry: always the same end state as a clean run.
#[test]
fn a_crash_at_any_point_is_recovered() {
    let shape = |subject, slot, detail| Shape {
        subject,
        slot,
        all_day: slot % 5 == 0,
        detail,
    };
    let day = |world: &mut World| {
        world.edit_both(0, Edit::Subject(1), Edit::Subject(2));
        world.edit_both(1, Edit::Location(3), Edit::Reminder(1));
        world.edit(Side::Outlook, 2, Edit::Shift(2));
        world.delete(Side::Crm, 3);
        world.delete(Side::Outlook, 4);
        world.reassign(5);
        world.crm_create(&shape(1, 30, 900).event());
        world.outlook_create(&shape(2, 31, 901).event());
    };
    let mut clean_counts = None;
    let mut crash_at = 0;
    loop {
        let mut world = World::new(ConflictPolicy::Latest);
        for n in 0..4u16 {
            world.crm_create(&shape(0, n as u8, n).event());
            world.outlook_create(&shape(1, 10 + n as u8, 100 + n).event());
        }
        world.crm_create(&shape(3, 20, 200).event());
        world.outlook_create(&shape(3, 20, 200).event());
        world.outlook_series(&shape(2, 21, 300).event(), 3);
        world.outlook_invitation(&shape(0, 22, 400).event());

        let mut faults = vec![Fault::Ok; crash_at];
        faults.push(Fault::Crash);
        let mut crashed = false;
        if world.sync(&faults, &HashSet::new()) == RunOutcome::Crashed {
            crashed = true;
            world.sync(&[], &HashSet::new());
        }
        day(&mut world);
        if world.sync(&faults, &HashSet::new()) == RunOutcome::Crashed {
            crashed = true;
            world.sync(&[], &HashSet::new());
        }
        world.settle().unwrap();
        if let Err(err) = world.check_converged() {
            panic!("crash before call {crash_at}: {err}\n{}", world.dump());
        }
        let counts = (
            world.crm.records.len(),
            world.outlook.records.len(),
            world.links.len(),
        );
        // Where the crash happens must not change the outcome.
        match clean_counts {
            None => clean_counts = Some(counts),
            Some(clean) => assert_eq!(counts, clean, "crash before call {crash_at}"),
        }
        // Past the last call of both runs the crash no longer happens: every point was tried.
        if !crashed {
            break;
        }
        crash_at += 1;
    }
    // The busier run makes 50 calls; far fewer would mean the scenario stopped exercising much.
    assert!(
        crash_at >= 40,
        "only {crash_at} calls: the scenario lost its work"
    );
}
