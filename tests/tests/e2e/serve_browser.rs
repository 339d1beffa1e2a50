//! `calsync serve --sandbox` as a new user tries it, in a real (headless) browser: open a demo
//! user's connect link, sign in on the sandbox's Microsoft page, land on the success page, then
//! find the user connected on the status page and their first job run by the worker.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calsync_testkit::serve::ServeProcess;
use calsync_testkit::webdriver::{browser_paths, Browser};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_connects_through_the_browser_and_shows_up_on_the_status_page() -> Result<()> {
    // Fail loudly, never skip: the test command installs both.
    browser_paths()?;
    let serve = ServeProcess::start("2s")?;
    let connect = serve.url_on("connect adele")?;
    let status_page = serve.url_on("status page:")?;
    let calendars = serve.url_on("3. Edit an event")?;
    let browser = Browser::start().await?;
    let outcome = walk(&browser, &connect, &status_page, &calendars).await;
    browser.quit().await;
    let log = serve.log_text();
    let stopped = serve.stop();
    outcome.with_context(|| format!("calsync serve's log:\n{log}"))?;
    stopped
}

async fn walk(browser: &Browser, connect: &str, status_page: &str, calendars: &str) -> Result<()> {
    // The connect link leads to the sandbox's Microsoft sign-in page.
    browser.goto(connect).await?;
    assert_eq!(browser.title().await?, "Sign in to your account");
    browser
        .find("#username", WAIT)
        .await?
        .type_text("adele.vance@contoso.example")
        .await?;
    browser
        .find("button[value=accept]", WAIT)
        .await?
        .click()
        .await?;

    // Back on calsync: the success page.
    let heading = browser.find_text("h1", WAIT).await?;
    assert_eq!(
        heading,
        "Calendar connected",
        "at {}",
        browser.current_url().await?
    );
    let page = browser.find_text("main", WAIT).await?;
    assert!(page.contains("adele.vance@contoso.example"), "{page}");

    // The operator's status page lists the user as connected, and the worker ran the first
    // sync job to the end.
    browser.goto(status_page).await?;
    let status = browser
        .find_text("tr[data-user=adele] td.status", WAIT)
        .await?;
    assert_eq!(status, "connected");
    let deadline = Instant::now() + WAIT;
    loop {
        browser.goto(status_page).await?;
        let ran = browser
            .find(
                "tr[data-job-user=adele][data-reason=connected]",
                Duration::ZERO,
            )
            .await;
        if ran.is_ok() {
            let row = browser
                .find_text("tr[data-job-user=adele][data-reason=connected]", WAIT)
                .await?;
            assert!(row.contains("done"), "{row}");
            break;
        }
        if Instant::now() > deadline {
            bail!("the worker never ran adele's first job");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Alex has not connected, so has no row.
    assert!(browser
        .find("tr[data-user=alex]", Duration::ZERO)
        .await
        .is_err());

    // The sandbox's calendar page shows both sides' sample events, ready to edit.
    browser.goto(calendars).await?;
    let desk = browser.find_text("main", WAIT).await?;
    assert!(desk.contains("Adele Vance"), "{desk}");
    browser
        .find("form[action$=crm] input[name=subject]", WAIT)
        .await?;
    Ok(())
}
