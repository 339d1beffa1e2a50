//! The sandbox in a child process for benchmarks, so what the benchmark's own process measures
//! (CPU, memory) is calsync's alone. The child is the benchmark binary itself with other
//! arguments: it starts the sandbox, prints `READY {url}` and answers one JSON line per
//! command line on its standard input until that closes.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use anyhow::{Context, Result};
use calsync_sandbox::Sandbox;
use serde_json::Value;

/// The parent's handle on the child.
pub struct SandboxProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    pub url: String,
}

impl SandboxProcess {
    /// Runs this binary again with `args` and waits for its `READY` line.
    pub fn start<I, S>(args: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the sandbox process")?;
        let stdin = child.stdin.take().context("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let url = line
            .strip_prefix("READY ")
            .with_context(|| format!("the sandbox said {line:?}"))?
            .trim()
            .to_owned();
        Ok(Self {
            child,
            stdin: Some(stdin),
            stdout,
            url,
        })
    }

    /// Sends one command and reads its answer.
    pub fn ask(&mut self, command: &str) -> Result<Value> {
        let stdin = self.stdin.as_mut().context("sandbox stdin closed")?;
        writeln!(stdin, "{command}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).with_context(|| format!("the sandbox answered {line:?}"))
    }

    /// Closes the child's input and waits for it to end.
    pub fn stop(mut self) -> Result<()> {
        drop(self.stdin.take());
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest)?;
        self.child.wait()?;
        Ok(())
    }
}

/// The child's side: announces `sandbox` and answers each command with `answer` until the
/// parent closes the input; the sandbox stops when this returns.
pub async fn serve_commands(
    sandbox: Sandbox,
    answer: impl Fn(&Sandbox, &str) -> Value + Send + 'static,
) -> Result<()> {
    println!("READY {}", sandbox.base_url());
    std::io::stdout().flush()?;
    let sandbox = Arc::new(sandbox);
    let control = sandbox.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let mut out = std::io::stdout();
        for line in std::io::stdin().lock().lines() {
            writeln!(out, "{}", answer(&control, line?.trim()))?;
            out.flush()?;
        }
        Ok(())
    })
    .await??;
    drop(sandbox);
    Ok(())
}
