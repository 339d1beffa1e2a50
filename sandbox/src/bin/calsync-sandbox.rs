//! `calsync-sandbox [--port N] [--seed FILE] [--demo]`: runs the sandbox until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use calsync_sandbox::{Sandbox, SandboxSeed};

const USAGE: &str = "\
usage: calsync-sandbox [--port N] [--seed FILE] [--demo]

Runs local stand-ins for Microsoft identity, Microsoft Graph and a vtiger CRM on 127.0.0.1.

  --port N     listen on port N (default: any free port)
  --seed FILE  load tenants, apps and users from a JSON seed file:
               {\"identity\": {\"tenants\": [{\"tenant_id\": \"...\", \"apps\": [...],
                 \"users\": [...], \"auto_approve\": \"user@example\", \"admin_consents\": [...]}]}}
  --demo       add the demo tenant (client secret: calsync_sandbox::identity::DEMO_CLIENT_SECRET)
";

struct Options {
    port: u16,
    seed: Option<PathBuf>,
    demo: bool,
}

/// Ok(None) asks for the usage text; Err carries a usage mistake.
fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        port: 0,
        seed: None,
        demo: false,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a value")?;
                options.port = value
                    .parse()
                    .map_err(|_| format!("--port: {value} is not a port number"))?;
            }
            "--seed" => options.seed = Some(args.next().ok_or("--seed needs a file")?.into()),
            "--demo" => options.demo = true,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Some(options))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{USAGE}");
            return Ok(());
        }
        Err(mistake) => {
            eprint!("calsync-sandbox: {mistake}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let sandbox = Sandbox::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, options.port))).await?;
    if let Some(path) = &options.seed {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading seed file {}", path.display()))?;
        let seed: SandboxSeed = serde_json::from_str(&text)
            .with_context(|| format!("parsing seed file {}", path.display()))?;
        sandbox
            .apply_seed(&seed)
            .with_context(|| format!("loading seed file {}", path.display()))?;
    }
    if options.demo {
        let demo = sandbox.identity().seed_demo();
        println!(
            "demo: tenant {} app {} user {} redirect {}",
            demo.tenant_id, demo.client_id, demo.username, demo.redirect_uri
        );
    }
    println!("calsync-sandbox listening on {}", sandbox.base_url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    sandbox.shutdown().await
}
