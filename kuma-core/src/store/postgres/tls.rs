//! TLS to PostgreSQL through rustls (ring), for `tokio-postgres`.
//!
//! [`TlsMode`] picks the checks: `VerifyNone` encrypts without checking the
//! server's certificate, `VerifyCa` checks it was issued by the CA of
//! `tls.caPath` (any host name), `VerifyFull` also checks that it names
//! `store.postgres.host`.

use super::{PostgresError, PostgresTls, TlsMode};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// Makes TLS connections for `tokio-postgres`; `None` when TLS is off
/// (then `tokio-postgres` never asks it, its `sslmode` is `disable`).
#[derive(Clone)]
pub(crate) struct MakeRustls {
    config: Option<Arc<rustls::ClientConfig>>,
}

impl MakeRustls {
    /// The connector for `tls`, with its files read and checked now so a
    /// bad path fails at start, naming its setting.
    pub(crate) fn new(tls: &PostgresTls) -> Result<Self, PostgresError> {
        if tls.mode == TlsMode::Disable {
            return Ok(Self { config: None });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_error("store.postgres.tls.mode", e))?;
        let roots = || -> Result<Arc<rustls::RootCertStore>, PostgresError> {
            let path = tls.ca_path.as_ref().ok_or_else(|| PostgresError::Config {
                setting: "store.postgres.tls.caPath",
                reason: format!("tls.mode {} needs a CA certificate file", tls.mode),
            })?;
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    tls_error(
                        "store.postgres.tls.caPath",
                        format!("{}: {e}", path.display()),
                    )
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(tls_error(
                    "store.postgres.tls.caPath",
                    format!("{}: no usable certificate", path.display()),
                ));
            }
            Ok(Arc::new(roots))
        };
        let verifier: Arc<dyn ServerCertVerifier> = match tls.mode {
            TlsMode::Disable => unreachable!("handled above"),
            TlsMode::VerifyNone => Arc::new(AcceptAny(provider.clone())),
            TlsMode::VerifyCa | TlsMode::VerifyFull => {
                let webpki = WebPkiServerVerifier::builder_with_provider(roots()?, provider)
                    .build()
                    .map_err(|e| tls_error("store.postgres.tls.caPath", e))?;
                if tls.mode == TlsMode::VerifyCa {
                    Arc::new(AnyName(webpki))
                } else {
                    webpki
                }
            }
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&tls.cert_path, &tls.key_path) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| {
                        tls_error(
                            "store.postgres.tls.certPath",
                            format!("{}: {e}", cert.display()),
                        )
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    tls_error(
                        "store.postgres.tls.keyPath",
                        format!("{}: {e}", key.display()),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error("store.postgres.tls.keyPath", e))?
            }
            (Some(_), None) => {
                return Err(PostgresError::Config {
                    setting: "store.postgres.tls.keyPath",
                    reason: "tls.certPath is set, so the client key is needed too".into(),
                });
            }
            (None, Some(_)) => {
                return Err(PostgresError::Config {
                    setting: "store.postgres.tls.certPath",
                    reason: "tls.keyPath is set, so the client certificate is needed too".into(),
                });
            }
        };
        Ok(Self {
            config: Some(Arc::new(config)),
        })
    }
}

fn tls_error(setting: &'static str, reason: impl std::fmt::Display) -> PostgresError {
    PostgresError::Tls {
        setting,
        reason: reason.to_string(),
    }
}

/// The error of a failed TLS handshake, recognised when classifying a
/// connection error.
#[derive(Debug, thiserror::Error)]
#[error("TLS handshake failed: {0}")]
pub(crate) struct HandshakeError(pub(crate) String);

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = HandshakeError;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnect, HandshakeError> {
        // Asked even with TLS disabled (`sslmode=disable`), which then never
        // connects through it.
        let config = self.config.clone();
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| HandshakeError(format!("{domain:?} is not a valid server name: {e}")))?;
        Ok(RustlsConnect { config, name })
    }
}

/// One TLS handshake to be made.
pub(crate) struct RustlsConnect {
    config: Option<Arc<rustls::ClientConfig>>,
    name: ServerName<'static>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = HandshakeError;
    type Future = Pin<Box<dyn Future<Output = Result<RustlsStream<S>, HandshakeError>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| HandshakeError("TLS is disabled (tls.mode: disable)".into()))?;
            tokio_rustls::TlsConnector::from(config)
                .connect(self.name, stream)
                .await
                .map(RustlsStream)
                .map_err(|e| HandshakeError(e.to_string()))
        })
    }
}

/// A TLS stream to the server.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

/// `verifyNone`: encryption without authentication of the server.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verifyCa`: the chain must lead to the configured CA; the name is not
/// checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
