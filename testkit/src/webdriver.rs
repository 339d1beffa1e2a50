//! A headless Chromium driven through chromedriver's W3C WebDriver HTTP API, with plain
//! `reqwest` JSON calls: enough to open pages, type, click and read text, the way a person
//! walks calsync's pages. Chromium and chromedriver come from Debian's `chromium` and
//! `chromium-driver` packages, which the test command installs.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

/// The W3C name of an element reference in WebDriver replies.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where the browser and its driver are, or a clear reason why the test cannot run.
pub fn browser_paths() -> Result<(PathBuf, PathBuf)> {
    let chromium =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    let driver = std::env::var_os("CHROMEDRIVER")
        .map_or_else(|| "/usr/bin/chromedriver".into(), PathBuf::from);
    for (path, what) in [(&chromium, "chromium"), (&driver, "chromedriver")] {
        if !path.exists() {
            bail!(
                "{what} is not installed at {}: run the tests with ./scripts/test, which installs \
                 it, or `apt-get install -y chromium chromium-driver` (or set CHROMIUM and \
                 CHROMEDRIVER)",
                path.display()
            );
        }
    }
    Ok((chromium, driver))
}

/// A chromedriver process and one browser session; both end when this is dropped.
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session_url: String,
    profile: PathBuf,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let (chromium, driver_path) = browser_paths()?;
        let port = free_port()?;
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver_path.display()))?;
        let profile = std::env::temp_dir().join(format!(
            "calsync-chromium-{}",
            crate::testbed::unique("profile")
        ));
        let mut browser = Self {
            driver,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            session_url: String::new(),
            profile,
        };
        let base = format!("http://127.0.0.1:{port}");
        browser.wait_ready(&base).await?;
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--lang=en-US",
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            },
        }}});
        let reply = browser
            .call("POST", &format!("{base}/session"), Some(capabilities))
            .await
            .context("opening a browser session")?;
        let id = reply
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("no session id in {reply}"))?;
        browser.session_url = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn wait_ready(&self, base: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(reply) = self.http.get(format!("{base}/status")).send().await {
                if let Ok(body) = reply.json::<Value>().await {
                    if body["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready on {base}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; returns its `value`, or the WebDriver error as an error.
    async fn call(&self, method: &str, url: &str, body: Option<Value>) -> Result<Value> {
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let reply = request.send().await?;
        let status = reply.status();
        let body: Value = reply.json().await?;
        let value = body.get("value").cloned().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "WebDriver {method} {url}: {status}: {} {}",
                value["error"],
                value["message"]
            );
        }
        Ok(value)
    }

    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call(
            "POST",
            &format!("{}/url", self.session_url),
            Some(json!({ "url": url })),
        )
        .await
        .map(|_| ())
    }

    pub async fn current_url(&self) -> Result<String> {
        let value = self
            .call("GET", &format!("{}/url", self.session_url), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    pub async fn title(&self) -> Result<String> {
        let value = self
            .call("GET", &format!("{}/title", self.session_url), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    /// The first element matching `css`, waiting up to `wait` for it to appear.
    pub async fn find(&self, css: &str, wait: Duration) -> Result<Element<'_>> {
        let deadline = Instant::now() + wait;
        loop {
            let found = self
                .call(
                    "POST",
                    &format!("{}/element", self.session_url),
                    Some(json!({ "using": "css selector", "value": css })),
                )
                .await;
            match found {
                Ok(value) => {
                    let id = value
                        .get(ELEMENT_KEY)
                        .and_then(Value::as_str)
                        .ok_or_else(|| anyhow!("no element reference in {value}"))?;
                    return Ok(Element {
                        browser: self,
                        url: format!("{}/element/{id}", self.session_url),
                    });
                }
                Err(error) if Instant::now() > deadline => {
                    let url = self.current_url().await.unwrap_or_default();
                    return Err(error.context(format!("no element {css:?} on {url}")));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The text of the first element matching `css`. Pages that reload themselves (the status
    /// page does) can replace the element between finding and reading it; then it is found
    /// again, until `wait` is over.
    pub async fn find_text(&self, css: &str, wait: Duration) -> Result<String> {
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.find(css, remaining).await?.text().await {
                Ok(text) => return Ok(text),
                Err(error)
                    if Instant::now() < deadline
                        && error.to_string().contains("stale element reference") =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn close(&mut self) {
        if !self.session_url.is_empty() {
            let _ = self.call("DELETE", &self.session_url, None).await;
            self.session_url.clear();
        }
    }

    /// Ends the session (closing Chromium) and stops chromedriver.
    pub async fn quit(mut self) {
        self.close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium exits with its driver's session; the driver is ours to stop.
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

pub struct Element<'a> {
    browser: &'a Browser,
    url: String,
}

impl Element<'_> {
    pub async fn text(&self) -> Result<String> {
        let value = self
            .browser
            .call("GET", &format!("{}/text", self.url), None)
            .await?;
        Ok(value.as_str().unwrap_or_default().to_owned())
    }

    pub async fn type_text(&self, text: &str) -> Result<()> {
        self.browser
            .call(
                "POST",
                &format!("{}/value", self.url),
                Some(json!({ "text": text })),
            )
            .await
            .map(|_| ())
    }

    pub async fn click(&self) -> Result<()> {
        self.browser
            .call("POST", &format!("{}/click", self.url), None)
            .await
            .map(|_| ())
    }
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
