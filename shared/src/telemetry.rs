//! One place that sets up logging, for the functions and the CLI alike, honouring Lambda's
//! logging controls: `AWS_LAMBDA_LOG_FORMAT=JSON` gives one JSON object per line (anything else,
//! or no Lambda at all, plain text), and the level is `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`
//! (which may also filter by module), else info. Logs go to stderr, so a command's output on
//! stdout stays clean.

use tracing_subscriber::EnvFilter;

/// The filter the environment asks for.
fn filter(lookup: impl Fn(&str) -> Option<String>) -> EnvFilter {
    let lambda_level = lookup("AWS_LAMBDA_LOG_LEVEL").map(|level| {
        // Lambda's levels, in tracing's words (tracing has no FATAL).
        match level.to_ascii_lowercase().as_str() {
            "fatal" => "error".to_owned(),
            other => other.to_owned(),
        }
    });
    lambda_level
        .or_else(|| lookup("RUST_LOG"))
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
}

fn json_wanted(lookup: impl Fn(&str) -> Option<String>) -> bool {
    lookup("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"))
}

pub fn init() {
    let lookup = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(lookup))
        .with_writer(std::io::stderr);
    // `try_init` so tests and binaries that call this twice do not panic.
    let _ = if json_wanted(lookup) {
        // CloudWatch stamps every line itself.
        builder.json().without_time().try_init()
    } else {
        builder.with_ansi(false).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn lambda_settings_win() {
        assert!(json_wanted(env(&[("AWS_LAMBDA_LOG_FORMAT", "JSON")])));
        assert!(!json_wanted(env(&[("AWS_LAMBDA_LOG_FORMAT", "Text")])));
        assert!(!json_wanted(env(&[])));
        let f = filter(env(&[
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
            ("RUST_LOG", "debug"),
        ]));
        assert_eq!(f.to_string(), "warn");
        let f = filter(env(&[("AWS_LAMBDA_LOG_LEVEL", "FATAL")]));
        assert_eq!(f.to_string(), "error");
        let f = filter(env(&[("RUST_LOG", "calsync=debug")]));
        assert_eq!(f.to_string(), "calsync=debug");
        assert_eq!(filter(env(&[])).to_string(), "info");
    }
}
