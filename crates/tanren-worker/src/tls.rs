//! TLS on the worker: its gRPC server's certificate and key (`--tls-cert`/`--tls-key`), and the extra
//! root (`--ca-cert`) its HTTP client trusts for an `https://` control plane. The files are read and
//! checked at start, so a bad one stops the worker with its name.

use anyhow::Context;
use std::path::Path;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM file that must hold at least one certificate; the error names the file.
fn read_cert_pem(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let n = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {} is not valid PEM: {e}", path.display()))?
        .len();
    if n == 0 {
        anyhow::bail!(
            "{what} {} holds no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)",
            path.display()
        );
    }
    Ok(bytes)
}

/// The gRPC server's TLS from a PEM certificate chain and private key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    let cert_pem = read_cert_pem(cert, "TLS certificate")?;
    let key_pem = std::fs::read(key).with_context(|| format!("cannot read TLS key {}", key.display()))?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {} holds no usable private key (expected PEM PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    Ok(tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(cert_pem, key_pem)))
}

/// The client for registration, dataset downloads and weight uploads: the OS trust store plus `ca`.
pub fn http_client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder();
    if let Some(ca) = ca {
        let pem = read_cert_pem(ca, "CA certificate")?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("CA certificate {} could not be used", ca.display()))?
        {
            b = b.add_root_certificate(cert);
        }
    }
    b.build().context("building the HTTP client")
}
