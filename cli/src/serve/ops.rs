//! The operator's status page (`GET /`): every tenant with its warnings, every user with their
//! sync health, the queue and the last jobs. Server-rendered, escaped, no scripts; it reloads
//! itself every few seconds so a connect or a sync shows up without clicking.

use anyhow::Result;
use calsync::auth::format_utc;
use calsync::ids::{CrmUserName, TenantId};
use calsync::links::LinkClaims;
use calsync::store::now_epoch;
use calsync::tenant::TenantSettings;
use calsync::users::{list_users, UserRecord};
use calsync::web::{escape_html as esc, WebResponse};
use calsync::App;

use super::Shared;

/// Connect links shown by the demo live this long.
const DEMO_LINK_TTL_SECS: i64 = 24 * 3600;

/// A signed connect link for a demo user (the demo's tenant key, on this server).
pub async fn connect_link(app: &App, tenant: &TenantId, user: &CrmUserName) -> Result<String> {
    let context = app.tenants.context(tenant).await?;
    let claims = LinkClaims {
        tenant: tenant.clone(),
        user: Some(user.clone()),
        expires_at: now_epoch() + DEMO_LINK_TTL_SECS,
        return_to: None,
    };
    Ok(claims.url(
        app.config.require_public_url()?,
        "connect",
        &context.secret.link_key,
    ))
}

fn when(epoch: Option<i64>) -> String {
    epoch.map(format_utc).unwrap_or_else(|| "never".to_owned())
}

pub async fn page(shared: &Shared) -> WebResponse {
    let now = now_epoch();
    let mut body = String::new();
    body.push_str("<h1>calsync on this machine</h1>");
    body.push_str(&format!(
        "<p>Jobs waiting: <strong id=\"pending\">{}</strong>. The scheduler looks for due users \
         every {} s. This page reloads every 10 s.</p>",
        shared.queue.pending(),
        shared.tick.as_secs()
    ));
    if let Some(demo) = &shared.demo {
        body.push_str("<section aria-labelledby=\"demo\"><h2 id=\"demo\">Sandbox demo</h2>");
        body.push_str(
            "<p>Connect a user: open their link, sign in at the sandbox with the address shown, \
             and come back here. Then change an event on either side and watch the next sync.</p><ul>",
        );
        for user in &demo.users {
            let link = connect_link(&shared.app, &demo.tenant, &user.crm_user).await;
            match link {
                Ok(link) => body.push_str(&format!(
                    "<li><a href=\"{}\">Connect {}</a> — sign in as <code>{}</code></li>",
                    esc(&link),
                    esc(&user.display_name),
                    esc(&user.email)
                )),
                Err(error) => body.push_str(&format!(
                    "<li>{}: no link ({})</li>",
                    esc(user.crm_user.as_str()),
                    esc(&format!("{error:#}"))
                )),
            }
        }
        body.push_str(&format!(
            "</ul><p><a href=\"{}\">Edit events in Outlook and in the CRM</a></p></section>",
            esc(&demo.calendars_url)
        ));
    }
    match shared.app.tenants.list().await {
        Ok(tenants) if tenants.is_empty() => {
            body.push_str("<p>No tenants yet. Add one with <code>calsync tenant add</code>.</p>")
        }
        Ok(tenants) => {
            for settings in &tenants {
                body.push_str(&tenant_section(&shared.app, settings, now).await);
            }
        }
        Err(error) => body.push_str(&format!(
            "<p role=\"alert\">The tenants could not be read: {}</p>",
            esc(&error.to_string())
        )),
    }
    body.push_str(&jobs_section(shared));
    WebResponse::html(200, document(&body))
}

async fn tenant_section(app: &App, settings: &TenantSettings, now: i64) -> String {
    let tenant = settings.tenant.as_str();
    let mut out = format!(
        "<section aria-labelledby=\"t-{id}\"><h2 id=\"t-{id}\">{name} <small>({id})</small></h2>",
        id = esc(tenant),
        name = esc(&settings.display_name)
    );
    let warnings = settings.warnings(now);
    if !warnings.is_empty() {
        out.push_str("<ul class=\"warnings\" role=\"alert\">");
        for warning in &warnings {
            out.push_str(&format!("<li>{}</li>", esc(warning)));
        }
        out.push_str("</ul>");
    }
    match list_users(app.store.as_ref(), &settings.tenant).await {
        Ok(users) if users.is_empty() => out.push_str("<p>No user has connected yet.</p>"),
        Ok(users) => out.push_str(&users_table(tenant, &users)),
        Err(error) => out.push_str(&format!(
            "<p role=\"alert\">The users could not be read: {}</p>",
            esc(&error.to_string())
        )),
    }
    out.push_str("</section>");
    out
}

fn users_table(tenant: &str, users: &[UserRecord]) -> String {
    let mut out = format!(
        "<table><caption>Users of {}</caption><thead><tr>\
         <th scope=\"col\">CRM user</th><th scope=\"col\">Status</th>\
         <th scope=\"col\">Microsoft account</th><th scope=\"col\">Last run</th>\
         <th scope=\"col\">Outlook → CRM</th><th scope=\"col\">CRM → Outlook</th>\
         <th scope=\"col\">Push subscription until</th><th scope=\"col\">Problems</th>\
         </tr></thead><tbody>",
        esc(tenant)
    );
    for user in users {
        let sync = user.last_sync.clone().unwrap_or_default();
        let problems = if user.problems.is_empty() {
            "none".to_owned()
        } else {
            let items: String = user
                .problems
                .iter()
                .map(|p| {
                    format!(
                        "<li><code>{}</code> since {}: {}</li>",
                        esc(&p.code),
                        esc(&format_utc(p.since)),
                        esc(&p.detail)
                    )
                })
                .collect();
            format!("<ul>{items}</ul>")
        };
        out.push_str(&format!(
            "<tr data-user=\"{user}\"><th scope=\"row\">{user}</th>\
             <td class=\"status\">{status}</td><td>{account}</td><td>{run}</td>\
             <td>{to_crm}</td><td>{to_outlook}</td><td>{subscription}</td>\
             <td class=\"problems\">{problems}</td></tr>",
            user = esc(user.user.as_str()),
            status = esc(user.status.as_str()),
            account = esc(&user.ms_username),
            run = esc(&when(sync.last_run_at)),
            to_crm = esc(&when(sync.to_crm_at)),
            to_outlook = esc(&when(sync.to_outlook_at)),
            subscription = esc(&user
                .subscription_expires_at
                .map(format_utc)
                .unwrap_or_else(|| "none".to_owned())),
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn jobs_section(shared: &Shared) -> String {
    let jobs = shared.recent_jobs();
    let mut out =
        String::from("<section aria-labelledby=\"jobs\"><h2 id=\"jobs\">Recent sync jobs</h2>");
    if jobs.is_empty() {
        out.push_str("<p>None yet.</p></section>");
        return out;
    }
    out.push_str(
        "<table><caption>The last jobs the worker ran, newest first</caption><thead><tr>\
         <th scope=\"col\">Finished</th><th scope=\"col\">Tenant</th><th scope=\"col\">User</th>\
         <th scope=\"col\">Why</th><th scope=\"col\">Attempt</th><th scope=\"col\">Outcome</th>\
         </tr></thead><tbody>",
    );
    for job in &jobs {
        let outcome = match &job.failure {
            None => "done".to_owned(),
            Some(why) => format!("failed: {why}"),
        };
        out.push_str(&format!(
            "<tr data-job-user=\"{user}\" data-reason=\"{reason}\"><td>{}</td><td>{}</td>\
             <td>{user}</td><td>{reason}</td><td>{}</td><td>{}</td></tr>",
            esc(&format_utc(job.at)),
            esc(&job.tenant),
            job.attempt,
            esc(&outcome),
            user = esc(&job.user),
            reason = esc(&job.reason),
        ));
    }
    out.push_str("</tbody></table></section>");
    out
}

fn document(body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"10\">\
         <title>calsync status</title><style>\
         body{{font-family:system-ui,sans-serif;margin:1.5rem;max-width:75rem}}\
         table{{border-collapse:collapse;margin:.5rem 0}}\
         th,td{{border:1px solid #999;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
         caption{{text-align:left;font-weight:bold}}.warnings{{color:#8a1c00}}\
         </style></head><body><main>{body}</main></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use calsync::users::{Problem, UserStatus};

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
            access_token_sealed: None,
            access_token_expires_at: None,
            connected_at: 0,
            updated_at: 0,
            problems: vec![Problem {
                code: "reconnect_required".into(),
                detail: "Microsoft said \"no\" & more".into(),
                since: 0,
            }],
            subscription_id: None,
            subscription_expires_at: None,
            last_sync: None,
            sync_state: None,
        };
        let html = users_table("acme", &[user]);
        assert!(html.contains("<tr data-user=\"maria\">"));
        assert!(html.contains("<td class=\"status\">reconnect_required</td>"));
        assert!(html.contains("&lt;script&gt;@x"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("Microsoft said &quot;no&quot; &amp; more"));
        assert!(html.contains("never"));
    }
}
