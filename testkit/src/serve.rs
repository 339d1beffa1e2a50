//! The real `calsync serve --sandbox` binary as a process: started on a free loopback port, its
//! banner read, its log kept in a temporary file, stopped with SIGINT as Ctrl-C would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::binary_path;

pub struct ServeProcess {
    child: Child,
    banner: Vec<String>,
    log: std::path::PathBuf,
}

impl ServeProcess {
    /// Starts it with the scheduler ticking every `tick` (`2s`, `1h`) and waits for its banner.
    pub fn start(tick: &str) -> Result<Self> {
        let log =
            std::env::temp_dir().join(format!("{}.log", crate::testbed::unique("calsync-serve")));
        let mut child = Command::new(binary_path("calsync"))
            .args([
                "serve",
                "--sandbox",
                "--listen",
                "127.0.0.1:0",
                "--tick",
                tick,
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

    /// The banner line that starts with `prefix` (after indentation).
    pub fn line(&self, prefix: &str) -> Result<&str> {
        self.banner
            .iter()
            .find(|line| line.trim_start().starts_with(prefix))
            .map(String::as_str)
            .ok_or_else(|| anyhow!("no {prefix:?} line in the banner: {:#?}", self.banner))
    }

    /// The URL on the banner line that starts with `prefix`.
    pub fn url_on(&self, prefix: &str) -> Result<String> {
        self.line(prefix)?
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no URL on the {prefix:?} line"))
    }

    /// What it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ctrl-C, then a clean exit within 20 s.
    pub fn stop(mut self) -> Result<()> {
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

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}
