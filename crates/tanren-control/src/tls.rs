//! TLS for REST and the WebSocket (`--tls-cert`/`--tls-key`), and for dialling `https://` workers
//! (`--worker-ca-cert`). rustls with ring; PEM files are read and checked once, at start, so a bad
//! file stops the process with its name instead of failing every handshake later.
//!
//! The listener hands axum only finished handshakes: a background task accepts TCP connections and
//! runs each handshake in its own task (with a deadline), so one slow or hostile client cannot hold up
//! the others, and plain HTTP sent to the TLS port just fails its handshake.

use anyhow::Context;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// A certificate chain and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every certificate in a PEM file; an error names the file and what is wrong with it.
pub fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "{what} {} holds no certificate (expected a PEM `-----BEGIN CERTIFICATE-----` block)",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read TLS key {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "TLS key {} holds no usable private key (expected PEM PKCS#8, PKCS#1 or SEC1): {e}",
            path.display()
        )
    })
}

/// The server side of REST: the chain and key from `paths`, HTTP/1.1 only (axum serves HTTP/1.1;
/// WebSocket upgrades need it).
pub fn server_config(paths: &TlsPaths) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(&paths.cert, "TLS certificate")?;
    let key = read_key(&paths.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "TLS key {} does not fit certificate {}: {e}",
                paths.key.display(),
                paths.cert.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The gRPC client's TLS for `https://` workers: `ca` (`--worker-ca-cert`) when given, the OS trust
/// store otherwise. Not both: tonic refuses to build a client when the OS store is empty (slim
/// containers), and a private CA is the usual case.
pub fn worker_client_config(ca: Option<&Path>) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
    let tls = tonic::transport::ClientTlsConfig::new();
    Ok(match ca {
        Some(ca) => {
            read_certs(ca, "worker CA certificate")?;
            let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
            tls.ca_certificate(tonic::transport::Certificate::from_pem(pem))
        }
        None => tls.with_native_roots(),
    })
}

/// An `axum::serve::Listener` that yields TLS streams.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Takes over `listener`; its accept task ends when this is dropped (axum stopped serving).
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    _ = tx.closed() => return,
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { local_addr, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends once this receiver is gone, so this cannot happen while
            // `self` lives; park rather than panic.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> TlsPaths {
        TlsPaths {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[test]
    fn a_missing_or_wrong_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = paths(dir.path());
        let e = format!("{:#}", server_config(&p).unwrap_err());
        assert!(
            e.contains("cannot read TLS certificate") && e.contains("cert.pem"),
            "{e}"
        );

        std::fs::write(&p.cert, "not a certificate").unwrap();
        let e = format!("{:#}", server_config(&p).unwrap_err());
        assert!(e.contains("cert.pem holds no certificate"), "{e}");

        // A certificate where the key should be: no key in it.
        std::fs::write(
            &p.cert,
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::copy(&p.cert, &p.key).unwrap();
        let e = format!("{:#}", server_config(&p).unwrap_err());
        assert!(e.contains("key.pem holds no usable private key"), "{e}");

        let e = format!(
            "{:#}",
            worker_client_config(Some(&dir.path().join("nope.pem"))).unwrap_err()
        );
        assert!(
            e.contains("worker CA certificate") && e.contains("nope.pem"),
            "{e}"
        );
    }
}
