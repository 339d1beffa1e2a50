//! `calsync serve --sandbox` as a new user tries it, in a real (headless) browser: open a demo
//! user's connect link, sign in on the sandbox's Microsoft page, land on the success page, then
//! find the user connected on the status page and their first job run by the worker.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use calsync_testkit::binary_path;
use calsync_testkit::webdriver::{browser_paths, Browser};

const WAIT: Duration = Duration::from_secs(15);

/// The real `calsync serve` binary; stopped with SIGINT, as Ctrl-C would.
struct Serve {
    child: Child,
    banner: Vec<String>,
    log: std::path::PathBuf,
}

impl Serve {
    fn start() -> Result<Self> {
        let log = std::env::temp_dir().join(format!(
            "{}.log",
            calsync_testkit::testbed::unique("calsync-serve")
        ));
        let mut child = Command::new(binary_path("calsync"))
            .args([
                "serve",
                "--sandbox",
                "--listen",
                "127.0.0.1:0",
                "--tick",
                "2s",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting calsync serve (cargo build --workspace --bins builds it)")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Self {
            child,
            banner: Vec::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    let done = line.starts_with("Press Ctrl-C");
                    serve.banner.push(line);
                    if done {
                        return Ok(serve);
                    }
                }
                Err(_) => bail!(
                    "calsync serve printed no banner; stdout so far: {:?}; log: {}",
                    serve.banner,
                    serve.log_text()
                ),
            }
        }
    }

    /// The URL on the banner line that starts with `prefix` (after indentation).
    fn url_after(&self, prefix: &str) -> Result<String> {
        self.banner
            .iter()
            .find(|line| line.trim_start().starts_with(prefix))
            .and_then(|line| line.split_whitespace().find(|w| w.starts_with("http://")))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no {prefix:?} line in the banner: {:#?}", self.banner))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C, then wait for a clean exit.
    fn stop(mut self) -> Result<()> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!(
                        "calsync serve exited with {status}; log: {}",
                        self.log_text()
                    );
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("calsync serve did not stop within 20 s of Ctrl-C");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_user_connects_through_the_browser_and_shows_up_on_the_status_page() -> Result<()> {
    // Fail loudly, never skip: the test command installs both.
    browser_paths()?;
    let serve = Serve::start()?;
    let connect = serve.url_after("connect adele")?;
    let status_page = serve.url_after("status page:")?;
    let calendars = serve.url_after("3. Edit an event")?;
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
