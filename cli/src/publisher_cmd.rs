//! `calsync publisher …`: the deployment's one multi-tenant Microsoft app, which customers'
//! administrators consent to instead of registering apps of their own. Its credential is read
//! from files or stdin, never from the command line.

use anyhow::{bail, Context, Result};
use calsync::adapters::store::now_epoch;
use calsync::services::publisher::{StoredCredential, StoredPublisher};
use calsync::App;
use calsync_core::secret::Secret;
use clap::Subcommand;
use std::io::Read;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum PublisherCommand {
    /// Store the publisher app's client id and credential (replacing the one before). A
    /// certificate is the default: --certificate with the certificate uploaded to the app
    /// registration and --private-key-file with its key (PKCS#8 PEM; `-` reads stdin). Or a
    /// client secret: --client-secret-file (`-` for stdin) and --client-secret-expires.
    Set {
        /// The app registration's Application (client) ID.
        #[arg(long)]
        client_id: String,
        /// PEM certificate (public) registered on the app.
        #[arg(
            long,
            requires = "private_key_file",
            conflicts_with = "client_secret_file"
        )]
        certificate: Option<PathBuf>,
        /// The certificate's private key, PKCS#8 PEM, or `-` for stdin.
        #[arg(long, requires = "certificate")]
        private_key_file: Option<PathBuf>,
        /// A client secret instead of a certificate: a file holding its value, or `-`.
        #[arg(long, required_unless_present = "certificate")]
        client_secret_file: Option<PathBuf>,
        /// When the client secret expires (YYYY-MM-DD); calsync warns 30 days ahead.
        #[arg(long, requires = "client_secret_file")]
        client_secret_expires: Option<String>,
    },
    /// Show the publisher app: client id, credential kind, its thumbprint and expiry, warnings.
    Show {
        #[arg(long)]
        json: bool,
    },
}

fn read_text(path: &PathBuf, what: &str) -> Result<String> {
    let mut raw = String::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .read_to_string(&mut raw)
            .with_context(|| format!("reading the {what} from stdin"))?;
    } else {
        raw = std::fs::read_to_string(path)
            .with_context(|| format!("reading the {what} from {}", path.display()))?;
    }
    Ok(raw)
}

pub async fn run(app: &App, command: PublisherCommand) -> Result<()> {
    let publisher = app.tenants.publisher();
    match command {
        PublisherCommand::Set {
            client_id,
            certificate,
            private_key_file,
            client_secret_file,
            client_secret_expires,
        } => {
            let credential = match (certificate, private_key_file, client_secret_file) {
                (Some(certificate), Some(key), None) => StoredCredential::Certificate {
                    certificate: read_text(&certificate, "certificate")?,
                    private_key: Secret::new(read_text(&key, "private key")?),
                },
                (None, None, Some(secret)) => StoredCredential::Secret {
                    client_secret: Secret::new(read_text(&secret, "client secret")?.trim()),
                    expires: client_secret_expires,
                },
                _ => bail!("give --certificate with --private-key-file, or --client-secret-file"),
            };
            let stored = StoredPublisher {
                client_id,
                credential,
                set_at: now_epoch(),
            };
            let loaded = publisher.set(&stored).await?;
            println!(
                "publisher app {} stored ({})",
                loaded.client_id,
                loaded.kind()
            );
            for warning in loaded.warnings(now_epoch()) {
                println!("warning: {warning}");
            }
            Ok(())
        }
        PublisherCommand::Show { json } => {
            let Some(loaded) = publisher.get().await? else {
                bail!("no publisher app is set (calsync publisher set)");
            };
            let thumbprint = match &loaded.credential {
                calsync::services::publisher::Credential::Certificate(c) => {
                    Some(c.thumbprint().to_owned())
                }
                calsync::services::publisher::Credential::Secret(_) => None,
            };
            let out = serde_json::json!({
                "client_id": loaded.client_id,
                "credential": loaded.kind(),
                "thumbprint_sha256": thumbprint,
                "expires_at": loaded.expires_at,
                "warnings": loaded.warnings(now_epoch()),
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if let Some(map) = out.as_object() {
                for (k, v) in map {
                    println!(
                        "{k:<20} {}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    );
                }
            }
            Ok(())
        }
    }
}
