//! Benchmark: how long each function binary takes to initialise — from the process start to its
//! first `GET /runtime/invocation/next` under the Runtime API stand-in, which is what Lambda
//! counts as init — and how big it is. Binaries are taken in turns, so a noisy machine slows
//! them alike; medians and p90 per binary are printed.
//!
//! ```sh
//! cargo build --release -p calsync-auth -p calsync-webhook -p calsync-sync
//! cargo run --release -p calsync-tests --bin bench-init -- [--runs 40] [label=path ...]
//! ```
//!
//! Without `label=path` arguments it measures the three release binaries of this workspace.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use calsync_testkit::FunctionProcess;

fn environment() -> Vec<(String, String)> {
    [
        ("CALSYNC_TABLE", "calsync-bench"),
        (
            "CALSYNC_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/000000000000/jobs.fifo",
        ),
        ("CALSYNC_PUBLIC_URL", "https://auth.calsync.test"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ACCESS_KEY_ID", "bench"),
        ("AWS_SECRET_ACCESS_KEY", "bench"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut runs = 40;
    let mut binaries: Vec<(String, PathBuf)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--runs" {
            runs = args.next().context("--runs N")?.parse()?;
        } else if let Some((label, path)) = arg.split_once('=') {
            binaries.push((label.to_owned(), PathBuf::from(path)));
        } else {
            bail!("unknown argument {arg:?}: --runs N or label=path");
        }
    }
    if binaries.is_empty() {
        let release = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release");
        for name in ["calsync-auth", "calsync-webhook", "calsync-sync"] {
            binaries.push((name.to_owned(), release.join(name)));
        }
    }
    let env = environment();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); binaries.len()];
    for _ in 0..runs {
        for (n, (label, path)) in binaries.iter().enumerate() {
            let started = Instant::now();
            let function = FunctionProcess::spawn(path, label, &env).await?;
            function
                .wait_until_ready(Duration::from_secs(10))
                .await
                .with_context(|| format!("{label} did not get ready"))?;
            samples[n].push(started.elapsed());
            function.stop().await?;
        }
    }
    println!("| binary | size | init, median | init, p90 |");
    println!("|---|---|---|---|");
    for ((label, path), samples) in binaries.iter().zip(samples) {
        let size = std::fs::metadata(path)?.len() as f64 / (1024.0 * 1024.0);
        println!(
            "| {label} | {size:.1} MiB | {:.1} ms | {:.1} ms |",
            percentile(samples.clone(), 0.5).as_secs_f64() * 1000.0,
            percentile(samples, 0.9).as_secs_f64() * 1000.0,
        );
    }
    Ok(())
}
