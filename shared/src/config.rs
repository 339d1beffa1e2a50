//! calsync's one typed configuration, read from the environment once at start (docs/design.md §2).

use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not a valid URL")]
    BadUrl {
        name: &'static str,
        #[source]
        source: url::ParseError,
    },
    #[error("{name} must be an http or https URL")]
    NotHttp { name: &'static str },
    #[error("{name} must be set: {why}")]
    Missing {
        name: &'static str,
        why: &'static str,
    },
    #[error("{name} has an unknown value {value:?} (expected {expected})")]
    BadValue {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

/// Where state lives: AWS (DynamoDB, Secrets Manager, SQS) or one embedded SQLite file with an
/// in-process queue, for a single machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Aws,
    Embedded { data_dir: PathBuf },
}

#[derive(Debug, Clone)]
pub struct Config {
    pub backend: Backend,
    pub table: String,
    pub queue_url: Option<String>,
    pub secret_prefix: String,
    /// Base URL of the auth function; the OAuth redirect URI is this plus `/callback`.
    pub public_url: Option<Url>,
    pub webhook_url: Option<Url>,
    pub login_url: Url,
    pub graph_url: Url,
    /// Upper bound for every outbound HTTP call (identity, Graph, CRM).
    pub http_timeout: Duration,
    /// Lifetime asked for Graph subscriptions (`CALSYNC_SUBSCRIPTION_MINUTES`). Graph keeps
    /// the expiry it returns, which is what calsync stores.
    pub subscription_lifetime: Duration,
    /// Job metrics per tenant too (`CALSYNC_METRICS_BY_TENANT=true`), not only fleet-wide:
    /// each (metric, tenant) pair is a custom metric CloudWatch bills monthly.
    pub metrics_by_tenant: bool,
}

/// Just under three days: within every published maximum for event subscriptions (older
/// revisions say 4,230 minutes, the newest 10,080).
pub const DEFAULT_SUBSCRIPTION_MINUTES: u64 = 4230;
/// The newest published maximum for basic event subscriptions.
pub const MAX_SUBSCRIPTION_MINUTES: u64 = 10_080;

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Reads through `lookup`, so tests can configure without touching the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let backend = match lookup("CALSYNC_BACKEND").as_deref() {
            None | Some("aws") => Backend::Aws,
            Some("embedded") => Backend::Embedded {
                data_dir: lookup("CALSYNC_DATA_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from(".calsync")),
            },
            Some(other) => {
                return Err(ConfigError::BadValue {
                    name: "CALSYNC_BACKEND",
                    value: other.to_owned(),
                    expected: "aws or embedded",
                })
            }
        };
        let http_timeout = match lookup("CALSYNC_HTTP_TIMEOUT_SECS") {
            None => Duration::from_secs(15),
            Some(v) => match v.parse::<u64>() {
                Ok(secs) if (1..=300).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    return Err(ConfigError::BadValue {
                        name: "CALSYNC_HTTP_TIMEOUT_SECS",
                        value: v,
                        expected: "whole seconds between 1 and 300",
                    })
                }
            },
        };
        let subscription_minutes = match lookup("CALSYNC_SUBSCRIPTION_MINUTES") {
            None => DEFAULT_SUBSCRIPTION_MINUTES,
            Some(v) => match v.parse::<u64>() {
                Ok(minutes) if (45..=MAX_SUBSCRIPTION_MINUTES).contains(&minutes) => minutes,
                _ => {
                    return Err(ConfigError::BadValue {
                        name: "CALSYNC_SUBSCRIPTION_MINUTES",
                        value: v,
                        expected: "whole minutes between 45 and 10080",
                    })
                }
            },
        };
        Ok(Self {
            backend,
            table: lookup("CALSYNC_TABLE").unwrap_or_else(|| "calsync".into()),
            queue_url: lookup("CALSYNC_QUEUE_URL"),
            secret_prefix: lookup("CALSYNC_SECRET_PREFIX").unwrap_or_else(|| "calsync/".into()),
            public_url: optional_url(&lookup, "CALSYNC_PUBLIC_URL")?,
            webhook_url: optional_url(&lookup, "CALSYNC_WEBHOOK_URL")?,
            login_url: optional_url(&lookup, "CALSYNC_LOGIN_URL")?
                .unwrap_or_else(|| fixed_url("https://login.microsoftonline.com")),
            graph_url: optional_url(&lookup, "CALSYNC_GRAPH_URL")?
                .unwrap_or_else(|| fixed_url("https://graph.microsoft.com")),
            http_timeout,
            subscription_lifetime: Duration::from_secs(subscription_minutes * 60),
            metrics_by_tenant: match lookup("CALSYNC_METRICS_BY_TENANT").as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::BadValue {
                        name: "CALSYNC_METRICS_BY_TENANT",
                        value: other.to_owned(),
                        expected: "true or false",
                    })
                }
            },
        })
    }

    pub fn require_public_url(&self) -> Result<&Url, ConfigError> {
        self.public_url.as_ref().ok_or(ConfigError::Missing {
            name: "CALSYNC_PUBLIC_URL",
            why: "links and the OAuth redirect URI are built from it",
        })
    }
}

/// `base` + `/` + `path`, whether or not `base` ends in a slash.
pub fn join_url(base: &Url, path: &str) -> String {
    format!("{}/{}", base.as_str().trim_end_matches('/'), path)
}

fn optional_url(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<Url>, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(None);
    };
    let url = Url::parse(&raw).map_err(|source| ConfigError::BadUrl { name, source })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::NotHttp { name });
    }
    Ok(Some(url))
}

fn fixed_url(raw: &str) -> Url {
    match Url::parse(raw) {
        Ok(url) => url,
        Err(_) => unreachable!("built-in default URLs are valid"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_design_table() {
        let c = config(&[]).unwrap();
        assert_eq!(c.table, "calsync");
        assert_eq!(c.secret_prefix, "calsync/");
        assert_eq!(c.backend, Backend::Aws);
        assert_eq!(c.login_url.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(c.graph_url.as_str(), "https://graph.microsoft.com/");
        assert!(c.queue_url.is_none());
        assert!(c.require_public_url().is_err());
        assert_eq!(c.subscription_lifetime, Duration::from_secs(4230 * 60));
    }

    #[test]
    fn urls_join_with_one_slash() {
        let base = Url::parse("https://auth.example.com/").unwrap();
        assert_eq!(
            join_url(&base, "callback"),
            "https://auth.example.com/callback"
        );
        let base = Url::parse("https://example.com/calsync").unwrap();
        assert_eq!(
            join_url(&base, "callback"),
            "https://example.com/calsync/callback"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = config(&[("CALSYNC_PUBLIC_URL", "ftp://x")]).unwrap_err();
        assert!(err.to_string().contains("CALSYNC_PUBLIC_URL"));
        let err = config(&[("CALSYNC_BACKEND", "redis")]).unwrap_err();
        assert!(err.to_string().contains("CALSYNC_BACKEND"));
        let err = config(&[("CALSYNC_SUBSCRIPTION_MINUTES", "20000")]).unwrap_err();
        assert!(err.to_string().contains("CALSYNC_SUBSCRIPTION_MINUTES"));
    }
}
