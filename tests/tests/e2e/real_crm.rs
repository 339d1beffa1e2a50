//! The real-CRM tier: the CRM module against a real vtiger (8.2.0, set up on loopback as
//! docs/testing.md says), with calsync served on a loopback port and the sandbox as Microsoft.
//! Each test builds the module's zip, imports it through vtlib (`install.php`), points it at
//! calsync (`configure.php`), works as the CRM user would, and uninstalls it (`uninstall.php`)
//! so the CRM is left stock. Without `CALSYNC_REAL_VTIGER_URL` each test says it was skipped
//! and passes: CI has no vtiger.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use calsync::adapters::queue::{JobReason, SyncJob};
use calsync_core::ids::CrmUserName;
use calsync_testkit::realcrm::{skip_message, RealCrmBed, RealVtiger, USER_OID};
use calsync_testkit::testbed::query_value;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

/// The configured vtiger, or `None` after saying the test was skipped.
fn real_vtiger(what: &str) -> Result<Option<RealVtiger>> {
    let crm = RealVtiger::from_env()?;
    if crm.is_none() {
        println!("{}", skip_message(what));
    }
    Ok(crm)
}

/// Runs `scenario` on a bed, then uninstalls the module whatever happened; the scenario's
/// error first.
async fn with_bed<F>(crm: RealVtiger, integration_user: Option<&str>, scenario: F) -> Result<()>
where
    F: for<'a> FnOnce(
        &'a RealCrmBed,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>,
    >,
{
    let bed = RealCrmBed::start(crm, integration_user).await?;
    let outcome = scenario(&bed).await;
    let uninstalled = bed.finish().await;
    outcome?;
    let uninstalled = uninstalled?;
    ensure!(
        uninstalled.contains("calsync module unregistered"),
        "uninstall.php said: {uninstalled}"
    );
    Ok(())
}

/// A date a few days ahead, inside calsync's window, in `yyyy-mm-dd`.
fn soon(days: i64) -> Result<String> {
    let today = jiff::tz::TimeZone::UTC
        .to_datetime(jiff::Timestamp::now())
        .date();
    Ok(today.checked_add(jiff::Span::new().days(days))?.to_string())
}

fn unique(what: &str) -> String {
    format!("{what} {}", calsync_testkit::testbed::unique("rt"))
}

#[tokio::test(flavor = "multi_thread")]
async fn real_vtiger_imports_the_module_and_its_connect_button_leads_to_microsoft() -> Result<()> {
    let Some(crm) = real_vtiger("the module's import and Connect on a real vtiger")? else {
        return Ok(());
    };
    let admin = crm.admin.clone();
    with_bed(crm, Some(&admin), |bed| {
        Box::pin(async move {
            // vtlib's import registered the handler for the three events.
            for event in ["beforesave", "aftersave", "afterdelete"] {
                ensure!(
                    bed.installed.contains(&format!("vtiger.entity.{event}")),
                    "install.php printed no {event} handler: {}",
                    bed.installed
                );
            }
            let before = bed.panel().await?;
            ensure!(
                before
                    .body
                    .contains("data-calsync-status=\"never_connected\""),
                "the panel before connecting: {}",
                before.body
            );

            let trace = bed.connect().await?;
            // vtiger's Connect action → calsync's /connect, signed for this user and tenant,
            // with the way back to the panel.
            let connect = url::Url::parse(&trace.connect_url)?;
            let query = connect.query().unwrap_or("");
            assert_eq!(
                query_value(query, "user").as_deref(),
                Some(bed.crm.user.as_str())
            );
            assert_eq!(
                query_value(query, "tenant").as_deref(),
                Some(bed.calsync.tenant.as_str())
            );
            let return_to = query_value(query, "return_to").unwrap_or_default();
            assert!(
                return_to.starts_with(&format!(
                    "{}/index.php?module=Calsync&view=Panel",
                    bed.crm.url
                )),
                "{return_to}"
            );
            let lifetime = query_value(query, "exp")
                .and_then(|e| e.parse::<i64>().ok())
                .context("no expiry")?
                - calsync_testkit::testbed::now();
            assert!(
                (800..=900).contains(&lifetime),
                "a connect link for {lifetime} s"
            );
            // calsync → Microsoft's authorize page (the sandbox's).
            let authorize = url::Url::parse(&trace.authorize_url)?;
            assert!(
                trace
                    .authorize_url
                    .starts_with(&bed.calsync.sandbox.base_url()),
                "{}",
                trace.authorize_url
            );
            assert!(
                authorize.path().ends_with("/oauth2/v2.0/authorize"),
                "{authorize}"
            );
            let authorize_query = authorize.query().unwrap_or("");
            assert_eq!(
                query_value(authorize_query, "client_id").as_deref(),
                Some(calsync_testkit::testbed::CLIENT_ID)
            );
            assert_eq!(
                query_value(authorize_query, "code_challenge_method").as_deref(),
                Some("S256")
            );
            // After the sign-in: back on the panel, connected.
            assert!(
                trace.back_to.starts_with(&return_to)
                    && trace.back_to.contains("calsync=connected"),
                "{}",
                trace.back_to
            );
            assert_eq!(trace.panel_status, "connected");
            Ok(())
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn real_vtiger_an_event_edited_in_the_crm_reaches_outlook_through_a_nudge() -> Result<()> {
    let Some(crm) = real_vtiger("a CRM edit reaching Outlook through a nudge")? else {
        return Ok(());
    };
    let admin = crm.admin.clone();
    with_bed(crm, Some(&admin), |bed| {
        Box::pin(async move {
            let subject = unique("Visit");
            let id = bed
                .create_event(&subject, &soon(3)?, "09:00:00", "10:00:00", &[])
                .await?;
            let outcome = async {
                bed.connect().await?;
                let copied = bed
                    .calsync
                    .wait_for_outlook(WAIT, |e| e["subject"] == subject.as_str())
                    .await?;
                // The user edits the event in the CRM, through the webservice as themselves.
                let edited = format!("{subject} (moved)");
                let started = Instant::now();
                bed.crm
                    .as_user()?
                    .post(
                        "revise",
                        &[(
                            "element",
                            &json!({"id": id, "subject": edited, "location": "Room 7"}).to_string(),
                        )],
                    )
                    .await?;
                let arrived = bed
                    .calsync
                    .wait_for_outlook(WAIT, |e| e["subject"] == edited.as_str())
                    .await?;
                let latency = started.elapsed();
                assert_eq!(arrived["id"], copied["id"], "the same Outlook event");
                assert_eq!(arrived["location"]["displayName"], "Room 7");
                // It came through the nudge: no scheduler runs here, and the user's first job
                // since the save is the nudge's. Outlook holds the edit before that job has
                // recorded its end, so the job is waited for.
                let first = bed
                    .calsync
                    .wait_for_job(&bed.crm.user, started, WAIT, |_| true)
                    .await?;
                ensure!(
                    first.reason == JobReason::Nudge && first.writes > 0,
                    "the first job after the save: {first:?}"
                );
                println!("CRM save → Outlook: {latency:?}");
                // Once the echoes are read, a scheduled run finds the real feed quiet from
                // the stored cursor and writes nothing.
                bed.calsync.settle(Duration::from_secs(2), WAIT).await?;
                let scheduled = SyncJob {
                    tenant: bed.calsync.tenant.clone(),
                    user: CrmUserName::parse(&bed.crm.user)?,
                    reason: JobReason::Schedule,
                    full: false,
                    origin: None,
                };
                let report = calsync::entry::jobs::run_job(&bed.calsync.app, &scheduled).await?;
                ensure!(report.looked_only, "the scheduled run ran: {report:?}");
                Ok(())
            }
            .await;
            bed.delete_events(&[id]).await;
            outcome
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn real_vtiger_a_calsync_update_keeps_the_invitees_and_sends_no_nudge() -> Result<()> {
    let Some(crm) = real_vtiger("invitees kept through a calsync update")? else {
        return Ok(());
    };
    let admin = crm.admin.clone();
    with_bed(crm, Some(&admin), |bed| {
        Box::pin(async move {
            let subject = unique("Review");
            let admin_id = bed.crm.as_admin()?.session().await?.user_id.clone();
            let admin_number = admin_id
                .split_once('x')
                .map(|(_, n)| n.to_owned())
                .unwrap_or_default();
            // A meeting of the user's with the administrator invited (a CRM invitee).
            let id = bed
                .create_event(
                    &subject,
                    &soon(4)?,
                    "14:00:00",
                    "15:00:00",
                    &[("inviteesid", &admin_number)],
                )
                .await?;
            let outcome = async {
                let invited = bed.crm.invitees(&id)?;
                ensure!(
                    invited
                        .iter()
                        .any(|(user, _)| user.to_string() == admin_number),
                    "the invitee was not stored: {invited:?}"
                );
                bed.connect().await?;
                let copy = bed
                    .calsync
                    .wait_for_outlook(WAIT, |e| e["subject"] == subject.as_str())
                    .await?;
                // The user moves the meeting's room in Outlook; Graph notifies calsync, whose
                // run revises the CRM event as the integration user.
                let started = Instant::now();
                bed.calsync.sandbox.graph().update_event(
                    USER_OID,
                    copy["id"].as_str().unwrap_or_default(),
                    json!({"location": {"displayName": "Room 12"}}),
                )?;
                let run = bed
                    .calsync
                    .wait_for_job(&bed.crm.user, started, WAIT, |j| {
                        j.reason == JobReason::Notification && j.writes > 0
                    })
                    .await?;
                assert_eq!(run.failure, None);
                bed.calsync
                    .settle(Duration::from_millis(1500), WAIT)
                    .await?;
                let stored = bed.crm.as_admin()?.get("retrieve", &[("id", &id)]).await?;
                assert_eq!(stored["location"], "Room 12", "{stored}");
                // The module kept the invitee through calsync's save.
                assert_eq!(bed.crm.invitees(&id)?, invited);
                // calsync's own save nudged nobody (its user is the module's integration user):
                // nudges go out before vtiger answers here, so one would be queued by now.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let nudged: Vec<_> = bed
                    .calsync
                    .jobs()
                    .into_iter()
                    .filter(|j| j.finished >= started && j.reason == JobReason::Nudge)
                    .collect();
                ensure!(nudged.is_empty(), "calsync's own save nudged: {nudged:?}");
                // The user's own save still nudges.
                let edited = Instant::now();
                bed.crm
                    .as_user()?
                    .post(
                        "revise",
                        &[(
                            "element",
                            &json!({"id": id, "location": "Room 14"}).to_string(),
                        )],
                    )
                    .await?;
                bed.calsync
                    .wait_for_job(&bed.crm.user, edited, WAIT, |j| {
                        j.reason == JobReason::Nudge
                    })
                    .await?;
                // Saved by the user without naming invitees: kept too.
                assert_eq!(bed.crm.invitees(&id)?, invited);
                Ok(())
            }
            .await;
            bed.delete_events(&[id]).await;
            outcome
        })
    })
    .await
}
