//! The one HTTP client every command that talks to a control plane uses (`remote`, `agent`):
//! rustls with the ring provider, verifying the server's certificate against the system's
//! roots or only `--ca FILE`, presenting `--client-cert`/`--client-key` when given.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How a client trusts the server and identifies itself (the global flags).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// Trust only this CA (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM, chain leaf first) for mutual TLS …
    pub client_cert: Option<PathBuf>,
    /// … and its private key (PEM).
    pub client_key: Option<PathBuf>,
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{flag} {}: cannot read it", path.display()))
}

/// A client builder configured for `tls`; callers add their timeouts and pools.
pub fn builder(tls: &ClientTls) -> Result<reqwest::ClientBuilder> {
    // one crypto provider for the process (reqwest is built without its default, aws-lc);
    // an Err only says one is installed already
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .tls_backend_rustls()
        // the server closes keep-alive connections idle for its --header-timeout (10 s by
        // default): drop them here first rather than send on a closing one
        .pool_idle_timeout(Duration::from_secs(5));
    if let Some(ca) = &tls.ca {
        let pem = read("--ca", ca)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("--ca {}: not a PEM certificate file", ca.display()))?;
        if certs.is_empty() {
            bail!("--ca {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it", ca.display());
        }
        b = b.tls_certs_only(certs);
    }
    match (&tls.client_cert, &tls.client_key) {
        (None, None) => {}
        (Some(_), None) => bail!("--client-cert needs --client-key FILE (the certificate's private key)"),
        (None, Some(_)) => bail!("--client-key needs --client-cert FILE"),
        (Some(cert), Some(key)) => {
            let mut pem = read("--client-cert", cert)?;
            if !pem.ends_with(b"\n") {
                pem.push(b'\n');
            }
            pem.extend(read("--client-key", key)?);
            let id = reqwest::Identity::from_pem(&pem).with_context(|| {
                format!(
                    "--client-cert {} / --client-key {}: not a PEM certificate and private key",
                    cert.display(),
                    key.display()
                )
            })?;
            b = b.identity(id);
        }
    }
    Ok(b)
}
