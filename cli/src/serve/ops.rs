//! The operator's status page (`GET /`): every tenant with its warnings, every user with their
//! sync health, the queue and the last jobs. Server-rendered, escaped, no scripts; it reloads
//! itself every few seconds so a connect or a sync shows up without clicking.

use anyhow::Result;
use axum::http::StatusCode;
use axum::response::Response;
use calsync::adapters::store::now_epoch;
use calsync::entry::html::{self, document, format_utc, Layout};
use calsync::services::tenants::TenantSettings;
use calsync::services::users::UserRecord;
use calsync::signed_url::{LinkRoute, SignedUrl, CONNECT_LINK_SECS};
use calsync::App;
use calsync_core::ids::{CrmUserName, TenantId};
use maud::{html, Markup};

use super::Shared;

/// A signed connect link for a demo user (the demo's tenant key, on this server).
pub async fn connect_link(app: &App, tenant: &TenantId, user: &CrmUserName) -> Result<String> {
    let context = app.tenants.context(tenant).await?;
    // Made afresh at every render of the page, so the short connect lifetime is enough.
    let claims = SignedUrl {
        route: LinkRoute::Connect,
        tenant: tenant.clone(),
        user: Some(user.clone()),
        expires_at: now_epoch() + CONNECT_LINK_SECS,
        return_to: None,
    };
    Ok(claims.url(app.config.require_public_url()?, &context.secret.link_key))
}

/// The demo's admin-consent link for a tenant that uses the publisher app.
pub async fn admin_consent_link(app: &App, tenant: &TenantId) -> Result<String> {
    let context = app.tenants.context(tenant).await?;
    crate::admin_consent_link(app, tenant, &context.secret.link_key)
}

fn when(epoch: Option<i64>) -> String {
    epoch.map(format_utc).unwrap_or_else(|| "never".to_owned())
}

pub async fn page(shared: &Shared) -> Response {
    let now = now_epoch();
    let mut demo_links = Vec::new();
    if let Some(demo) = &shared.demo {
        for user in &demo.users {
            let link = connect_link(&shared.app, &demo.tenant, &user.crm_user)
                .await
                .map_err(|error| format!("{error:#}"));
            demo_links.push((user, link));
        }
    }
    // The consent path: the administrator's link, then the user's.
    let mut consent_links = None;
    if let Some(consent) = shared.demo.as_ref().and_then(|d| d.consent.as_ref()) {
        let admin = admin_consent_link(&shared.app, &consent.tenant)
            .await
            .map_err(|error| format!("{error:#}"));
        let user = connect_link(&shared.app, &consent.tenant, &consent.user.crm_user)
            .await
            .map_err(|error| format!("{error:#}"));
        consent_links = Some((consent, admin, user));
    }
    let tenants = match shared.app.tenants.list().await {
        Ok(tenants) => {
            let mut sections = Vec::new();
            for settings in &tenants {
                sections.push(tenant_section(&shared.app, settings, now).await);
            }
            Ok(sections)
        }
        Err(error) => Err(calsync::errors::chain(&error)),
    };
    let body = html! {
        p {
            "Jobs waiting: " strong #pending { (shared.queue.pending()) }
            ". The scheduler looks for due users every " (shared.tick.as_secs())
            " s. This page reloads every 10 s."
        }
        @if let Some(demo) = &shared.demo {
            section aria-labelledby="demo" {
                h2 #demo { "Sandbox demo" }
                p {
                    "Connect a user: open their link, sign in at the sandbox with the address \
                     shown, and come back here. Then change an event on either side and watch \
                     the next sync."
                }
                ul {
                    @for (user, link) in &demo_links {
                        @match link {
                            Ok(link) => li {
                                a href=(link) { "Connect " (user.display_name) }
                                " — sign in as " code { (user.email) }
                            },
                            Err(error) => li { (user.crm_user.as_str()) ": no link (" (error) ")" },
                        }
                    }
                }
                p { a href=(demo.calendars_url) { "Edit events in Outlook and in the CRM" } }
                @if let Some((consent, admin, user)) = &consent_links {
                    h3 { "Onboarding by consent" }
                    p {
                        "Tenant " code { (consent.tenant.as_str()) } " uses the publisher app and                          holds no Microsoft credential. Its Microsoft 365 administrator consents                          once for the whole organisation; then its users connect."
                    }
                    ol {
                        @match admin {
                            Ok(link) => li {
                                a href=(link) { "Consent as the administrator" }
                                " — sign in as " code { (consent.admin) } " and accept"
                            },
                            Err(error) => li { "no consent link (" (error) ")" },
                        }
                        @match user {
                            Ok(link) => li {
                                a href=(link) { "Connect " (consent.user.display_name) }
                                " — sign in as " code { (consent.user.email) }
                            },
                            Err(error) => li { "no connect link (" (error) ")" },
                        }
                    }
                }
            }
        }
        @match &tenants {
            Ok(sections) if sections.is_empty() => {
                p { "No tenants yet. Add one with " code { "calsync tenant add" } "." }
            }
            Ok(sections) => { @for section in sections { (section) } }
            Err(error) => p role="alert" { "The tenants could not be read: " (error) },
        }
        (jobs_section(shared))
    };
    let layout = Layout {
        lang: "en",
        title: "calsync on this machine",
        wide: true,
        refresh_secs: Some(10),
    };
    html::page(StatusCode::OK, document(&layout, body))
}

async fn tenant_section(app: &App, settings: &TenantSettings, now: i64) -> Markup {
    let tenant = settings.tenant.as_str();
    let heading = format!("t-{tenant}");
    let warnings = app.tenants.warnings(settings, now).await;
    let users = app.users.list_for_status(&settings.tenant).await;
    html! {
        section aria-labelledby=(heading) {
            h2 id=(heading) { (settings.display_name) " " small { "(" (tenant) ")" } }
            @if !warnings.is_empty() {
                ul.warnings role="alert" { @for warning in &warnings { li { (warning) } } }
            }
            @match &users {
                Ok(users) if users.is_empty() => p { "No user has connected yet." },
                Ok(users) => (users_table(settings, users, now)),
                Err(error) => p role="alert" {
                    "The users could not be read: " (calsync::errors::chain(error))
                },
            }
        }
    }
}

fn users_table(settings: &TenantSettings, users: &[UserRecord], now: i64) -> Markup {
    let tenant = settings.tenant.as_str();
    html! {
        table {
            caption { "Users of " (tenant) }
            thead {
                tr {
                    th scope="col" { "CRM user" } th scope="col" { "Status" }
                    th scope="col" { "Microsoft account" } th scope="col" { "Last run" }
                    th scope="col" { "Outlook → CRM" } th scope="col" { "CRM → Outlook" }
                    th scope="col" { "Push subscription until" } th scope="col" { "Problems" }
                }
            }
            tbody {
                @for user in users {
                    @let sync = user.last_sync.clone().unwrap_or_default();
                    tr data-user=(user.user.as_str()) {
                        th scope="row" { (user.user.as_str()) }
                        td.status { (user.status.as_str()) }
                        td { (user.ms_username) }
                        td { (when(sync.last_run_at)) }
                        td { (when(sync.to_crm_at)) }
                        td { (when(sync.to_outlook_at)) }
                        td {
                            (user.subscription_expires_at
                                .map(format_utc)
                                .unwrap_or_else(|| "none".to_owned()))
                        }
                        td.problems {
                            @if user.overdue_in(settings, now) {
                                (calsync::services::users::OVERDUE_TEXT)
                            } @else if user.problems.is_empty() {
                                "none"
                            } @else {
                                ul {
                                    @for problem in &user.problems {
                                        li {
                                            code { (problem.code.as_str()) }
                                            " since " (format_utc(problem.since)) ": "
                                            (problem.detail)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn jobs_section(shared: &Shared) -> Markup {
    let jobs = shared.recent_jobs();
    html! {
        section aria-labelledby="jobs" {
            h2 #jobs { "Recent sync jobs" }
            @if jobs.is_empty() {
                p { "None yet." }
            } @else {
                table {
                    caption { "The last jobs the worker ran, newest first" }
                    thead {
                        tr {
                            th scope="col" { "Finished" } th scope="col" { "Tenant" }
                            th scope="col" { "User" } th scope="col" { "Why" }
                            th scope="col" { "Attempt" } th scope="col" { "Outcome" }
                        }
                    }
                    tbody {
                        @for job in &jobs {
                            tr data-job-user=(job.user) data-reason=(job.reason) {
                                td { (format_utc(job.at)) }
                                td { (job.tenant) }
                                td { (job.user) }
                                td { (job.reason) }
                                td { (job.attempt) }
                                td {
                                    @match &job.failure {
                                        None => "done",
                                        Some(why) => { "failed: " (why) },
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calsync::services::users::{Problem, ProblemCode, UserStatus};

    #[test]
    fn user_rows_are_escaped_and_marked_for_reading() {
        let user = UserRecord {
            tenant: TenantId::parse("acme").unwrap(),
            user: CrmUserName::parse("maria").unwrap(),
            status: UserStatus::ReconnectRequired,
            ms_tenant_id: "t".into(),
            ms_user_id: "o".into(),
            ms_username: "<script>@x".into(),
            refresh_token_sealed: None,
            refresh_token_stored_at: None,
            connected_at: 0,
            updated_at: 0,
            problems: vec![Problem {
                code: ProblemCode::ReconnectRequired,
                detail: "Microsoft said \"no\" & more".into(),
                since: 0,
            }],
            subscription_id: None,
            subscription_expires_at: None,
            last_sync: None,
            held_deletions: Vec::new(),
            confirmed_deletions: Vec::new(),
            parked: Vec::new(),
            skipped: Vec::new(),
            nudge_queued: None,
            run_lease: None,
            progress: None,
        };
        // Connected, no problem, and nothing synced for ten hours: overdue.
        let silent = UserRecord {
            user: CrmUserName::parse("silent").unwrap(),
            status: UserStatus::Connected,
            problems: Vec::new(),
            ..user.clone()
        };
        let settings =
            TenantSettings::new(user.tenant.clone(), "Acme".into(), "https://crm.example", 0)
                .unwrap();
        let html = users_table(&settings, &[user, silent], 10 * 3600).into_string();
        assert!(html.contains("<tr data-user=\"maria\">"));
        assert!(html.contains("overdue: nothing synced for several sweeps"));
        assert!(html.contains("<td class=\"status\">reconnect_required</td>"));
        assert!(html.contains("&lt;script&gt;@x"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("Microsoft said &quot;no&quot; &amp; more"));
        assert!(html.contains("never"));
    }
}
