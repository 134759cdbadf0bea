//! `dfserve health`: asks the local server whether it is ready, for container health checks.
//! It needs no curl in the image and speaks TLS when the server does (it reads the same
//! `DFSERVE_HTTP_PORT` and `DFSERVE_TLS_CERT` as `dfserve serve`), so a health check keeps
//! working once TLS is turned on.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct HealthArgs {
    /// The server's HTTP port.
    #[arg(long, env = "DFSERVE_HTTP_PORT", default_value_t = 8000)]
    pub http_port: u16,
    /// The server's TLS certificate: when set (as for `serve`), the check uses HTTPS.
    #[arg(long, env = "DFSERVE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// What to ask: `/health/ready` (serving) or `/health/live` (the process answers).
    #[arg(long, default_value = "/health/ready")]
    pub path: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Exits 0 when the server answers 2xx, else fails saying what it got.
pub fn run(args: &HealthArgs) -> anyhow::Result<()> {
    let scheme = if args.tls_cert.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{}{}", args.http_port, args.path);
    // The check asks this machine's own server whether it answers; it carries no secret, and
    // a certificate issued for the service's name would not match 127.0.0.1.
    let client = reqwest::Client::builder().timeout(args.timeout).danger_accept_invalid_certs(true).build()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(async {
        let resp = client.get(&url).send().await.with_context(|| format!("{url}: no answer"))?;
        Ok::<_, anyhow::Error>(resp.status())
    })?;
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}
