//! One place that sets up logging: JSON lines for Lambda (CloudWatch), plain text elsewhere.
//! Level from `RUST_LOG`, else `AWS_LAMBDA_LOG_LEVEL`, else info.

use tracing_subscriber::EnvFilter;

pub fn init(json: bool) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or_else(|| {
            std::env::var("AWS_LAMBDA_LOG_LEVEL")
                .ok()
                .map(|l| l.to_lowercase())
        })
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` so tests and binaries that call this twice do not panic.
    let _ = if json {
        builder.json().without_time().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}
