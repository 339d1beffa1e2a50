//! `calsync resync`: sync users now, queue their jobs, or show what a sync would do.

use anyhow::{bail, Context, Result};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync::config::Backend;
use calsync::services::sync_run::RunOptions;
use calsync::services::users::UserStatus;
use calsync::App;
use calsync_core::event::{CalendarEvent, EventTime};
use calsync_core::ids::{CrmUserName, TenantId};
use calsync_core::sync::{Action, HeldDeletion, Plan, Side};

/// How to resync.
pub struct How {
    pub options: RunOptions,
    /// Sync in this process instead of queueing jobs.
    pub now: bool,
    /// Confirm the deletions the guard held back before syncing.
    pub confirm_deletions: bool,
    /// Print one JSON document instead of lines.
    pub json: bool,
}

pub async fn run(app: &App, tenant: &str, user: Option<&str>, how: How) -> Result<()> {
    let How {
        options,
        now,
        confirm_deletions,
        json,
    } = how;
    let tenant = TenantId::parse(tenant)?;
    let context = app.tenants.context(&tenant).await?;
    let users: Vec<CrmUserName> = match user {
        Some(name) => vec![CrmUserName::parse(name)?],
        None => app
            .users
            .list(&tenant)
            .await?
            .into_iter()
            .filter(|u| u.status == UserStatus::Connected)
            .map(|u| u.user)
            .collect(),
    };
    if users.is_empty() {
        bail!("tenant {tenant} has no connected users");
    }
    let mut confirmed = Vec::new();
    if confirm_deletions {
        for user in &users {
            let held = confirm(app, &tenant, user, json).await?;
            confirmed.push(serde_json::json!({
                "user": user,
                "confirmed": held.iter().map(held_json).collect::<Vec<_>>(),
            }));
        }
    }
    // The embedded store has no sync function to take queued jobs: sync here.
    let here = now || options.dry_run || matches!(app.config.backend, Backend::Embedded { .. });
    if !here {
        let jobs: Vec<SyncJob> = users
            .iter()
            .map(|user| SyncJob {
                tenant: tenant.clone(),
                user: user.clone(),
                reason: JobReason::Manual,
                full: options.full,
                origin: None,
            })
            .collect();
        app.queue.send(&jobs).await.context("queueing the jobs")?;
        if json {
            let out = serde_json::json!({
                "tenant": tenant,
                "queued": jobs.iter().map(|j| &j.user).collect::<Vec<_>>(),
                "confirmed_deletions": confirmed,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        } else {
            println!("queued {} sync job(s) for tenant {tenant}", jobs.len());
        }
        return Ok(());
    }
    let mut failed = 0;
    let mut results = Vec::new();
    for user in &users {
        let outcome = app.runner.sync_user(&context, user, options).await;
        if json {
            results.push(match &outcome {
                Ok(report) => serde_json::json!({
                    "user": user,
                    "outcome": format!("{:?}", report.outcome),
                    "counts": report.counts,
                    "plan": report.plan.as_ref().map(plan_lines),
                    "held": report.plan.as_ref().and_then(|p| p.guard.as_ref()).map(|trip| {
                        trip.held.iter().map(held_json).collect::<Vec<_>>()
                    }),
                    "failures": report.failures,
                    "skipped": report.skipped,
                }),
                Err(e) => serde_json::json!({
                    "user": user,
                    "error": calsync::errors::chain(e),
                }),
            });
            if outcome.is_err() {
                failed += 1;
            }
            continue;
        }
        match outcome {
            Ok(report) => {
                println!("{user}: {:?}", report.outcome);
                if let Some(plan) = &report.plan {
                    print_plan(plan);
                } else {
                    let c = &report.counts;
                    println!(
                        "  CRM: {} created, {} updated, {} deleted; Outlook: {} created, {} updated, {} deleted; {} conflicts; {} failed",
                        c.crm_created, c.crm_updated, c.crm_deleted,
                        c.outlook_created, c.outlook_updated, c.outlook_deleted,
                        c.conflicts, c.failed
                    );
                }
                for why in report.failures.iter().chain(&report.skipped) {
                    println!("  ! {why}");
                }
            }
            Err(e) => {
                failed += 1;
                println!("{user}: failed: {}", calsync::errors::chain(&e));
            }
        }
    }
    if json {
        let out = serde_json::json!({
            "tenant": tenant,
            "dry_run": options.dry_run,
            "users": results,
            "confirmed_deletions": confirmed,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    if failed > 0 {
        bail!("{failed} of {} user(s) could not be synced", users.len());
    }
    Ok(())
}

fn held_json(held: &HeldDeletion) -> serde_json::Value {
    serde_json::json!({
        "key": held.key,
        "subject": held.subject,
        "side": match held.side {
            Side::Crm => "crm",
            Side::Outlook => "outlook",
        },
    })
}

/// Confirms what the guard held back for `user`, printing exactly what is confirmed (unless
/// the output is JSON), and returns it.
async fn confirm(
    app: &App,
    tenant: &TenantId,
    user: &CrmUserName,
    json: bool,
) -> Result<Vec<HeldDeletion>> {
    let Some(confirmed) = app
        .users
        .confirm_held_deletions(tenant, user)
        .await
        .context("confirming the held deletions")?
    else {
        bail!("tenant {tenant} has no user {user}");
    };
    if json {
        return Ok(confirmed);
    }
    if confirmed.is_empty() {
        println!("{user}: the deletion guard holds nothing back; nothing to confirm");
        return Ok(confirmed);
    }
    println!("{user}: confirmed {} deletion(s):", confirmed.len());
    for held in &confirmed {
        println!("  {}", held_line(held));
    }
    Ok(confirmed)
}

/// One held deletion, as status and resync print it.
pub fn held_line(held: &HeldDeletion) -> String {
    let side = match held.side {
        Side::Crm => "the CRM",
        Side::Outlook => "Outlook",
    };
    format!("delete {:?} from {side} ({})", held.subject, held.key)
}

fn when(event: &CalendarEvent) -> String {
    match &event.time {
        EventTime::Timed { start, end } => format!(
            "{} – {}",
            start.strftime("%Y-%m-%d %H:%MZ"),
            end.strftime("%H:%MZ")
        ),
        EventTime::AllDay { start, end } => format!("{start} – {end} (all day)"),
    }
}

/// What a sync would do, one line per write.
fn print_plan(plan: &Plan) {
    if plan.is_empty() {
        println!("  nothing to do");
    }
    for line in plan_lines(plan) {
        println!("  {line}");
    }
    if let Some(trip) = &plan.guard {
        println!(
            "  held back by the deletion guard: {} CRM and {} Outlook deletions ({} events of {} linked)",
            trip.crm_deletions, trip.outlook_deletions, trip.events, trip.linked
        );
        for held in &trip.held {
            println!("    {}", held_line(held));
        }
    }
}

/// The writes a plan would make, one line each.
fn plan_lines(plan: &Plan) -> Vec<String> {
    let mut lines = Vec::new();
    for step in &plan.steps {
        for action in &step.actions {
            let line = match action {
                Action::CreateInCrm { event, .. } => {
                    format!("create in the CRM: {:?} {}", event.subject, when(event))
                }
                Action::CreateInOutlook { event, .. } => {
                    format!("create in Outlook: {:?} {}", event.subject, when(event))
                }
                Action::UpdateCrm {
                    crm_id,
                    fields,
                    event,
                    ..
                } => {
                    format!("update CRM {crm_id} ({:?}): {fields:?}", event.subject)
                }
                Action::UpdateOutlook { fields, event, .. } => {
                    format!("update Outlook {:?}: {fields:?}", event.subject)
                }
                Action::DeleteInCrm { crm_id } => format!("delete CRM {crm_id}"),
                Action::DeleteInOutlook { outlook_id, .. } => {
                    format!("delete Outlook {outlook_id}")
                }
                Action::RecordConflict(c) => format!(
                    "conflict on {:?} ({:?}): {:?} wins",
                    c.subject, c.field, c.winner
                ),
                Action::Remember(_) | Action::Link(_) | Action::Unlink => continue,
            };
            lines.push(line);
        }
    }
    lines
}
