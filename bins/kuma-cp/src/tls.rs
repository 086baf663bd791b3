//! The control plane's server TLS identity (one for the bootstrap server,
//! ADS and SDS; see `docs/security.md`, "Transport") and a TLS listener for
//! the axum servers that speak HTTPS (the bootstrap server).

use anyhow::{Context, Result};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The control plane's server certificate and key (PEM) and the
/// certificate (PEM) proxies are told to trust.
#[derive(Clone)]
pub struct ServerTls {
    /// The certificate chain served, leaf first.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
    /// The CA proxies trust (the bootstrap's `trusted_ca`, kuma-dp's
    /// `--ca-cert-file`).
    pub trusted_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("trusted_pem", &self.trusted_pem)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The identity for tonic's (gRPC) servers.
    pub fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }

    /// A rustls server configuration (ring, TLS 1.2 and 1.3, ALPN h2 and
    /// http/1.1, no client certificates) for the HTTPS servers.
    pub fn rustls_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let certs = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("reading the server certificate (general.tlsCertFile)")?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .context("reading the server key (general.tlsKeyFile)")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the server certificate does not match its key (general.tlsCertFile, general.tlsKeyFile)")?;
        // HTTP/1.1 only, as every HTTP port is served (see
        // `server::serve_connection` and docs/security.md, "Limits").
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Connections whose handshake is done, waiting for the server to take them.
const READY_QUEUE: usize = 128;

/// A TCP listener whose connections are TLS: handshakes run concurrently,
/// each in its own task bounded by a handshake timeout, so a client that
/// stalls (or speaks plaintext) holds up no one; a failed handshake closes
/// that connection only. Serve it with `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`, giving each client
    /// `handshake_timeout` to complete the handshake; `server` names the
    /// server in logs.
    pub fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
        server: &'static str,
    ) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        let accept_task = tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of descriptors and the like: back off a little.
                            tracing::warn!(server, error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(server, %peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(server, %peer, "TLS handshake timed out");
                        }
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            accept_task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task only ends when this listener drops.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
