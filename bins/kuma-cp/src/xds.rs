//! The xDS side of the control plane: the ADS gRPC server
//! (`xdsServer.grpcPort`), the SDS gRPC server (`sdsServer.grpcPort`), the
//! bootstrap server (`bootstrapServer.port`), all three over TLS with one
//! server identity ([`server_tls`]), and the reconciler that turns store
//! events into proxy snapshots.

use crate::config::{GrpcLimitsConfig, KumaCpConfig};
use crate::tls::{ServerTls, TlsListener};
use anyhow::{Context, Result, bail};
use kuma_core::manager::ResourceManager;
use kuma_core::store::ResourceStore;
use kuma_core::tokens::DataplaneAuth;
use kuma_xds::ads::AdsServer;
use kuma_xds::bootstrap::{self, BootstrapConfig, SdsBootstrap};
use kuma_xds::cache::SnapshotCache;
use kuma_xds::reconcile::Reconciler;
use kuma_xds::sds::SdsServer;
use kuma_xds::stream::StreamLimits;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::ServerTlsConfig;
use tracing::info;

/// The bound xDS and bootstrap sockets.
pub struct XdsListeners {
    xds: TcpListener,
    /// Where ADS listens.
    pub xds_addr: SocketAddr,
    bootstrap: TcpListener,
    /// Where the bootstrap server listens.
    pub bootstrap_addr: SocketAddr,
    sds: TcpListener,
    /// Where SDS listens.
    pub sds_addr: SocketAddr,
    /// The servers' TLS identity and the certificate proxies trust (see
    /// [`server_tls`]).
    tls: ServerTls,
}

impl XdsListeners {
    /// The CA certificate (PEM) proxies are told to trust: what kuma-dp's
    /// `--ca-cert-file` should hold.
    pub fn trusted_ca_pem(&self) -> &str {
        &self.tls.trusted_pem
    }
}

/// Loads the servers' TLS material (see [`server_tls`]), then binds the
/// ADS, SDS and bootstrap ports (0: ephemeral).
pub async fn bind(config: &KumaCpConfig, store: &dyn ResourceStore) -> Result<XdsListeners> {
    let tls = server_tls(config, store).await?;
    let (xds, xds_addr) =
        crate::server::bind("xdsServer.grpcPort", config.xds_server.grpc_port).await?;
    let (bootstrap, bootstrap_addr) =
        crate::server::bind("bootstrapServer.port", config.bootstrap_server.port).await?;
    let (sds, sds_addr) =
        crate::server::bind("sdsServer.grpcPort", config.sds_server.grpc_port).await?;
    Ok(XdsListeners {
        xds,
        xds_addr,
        bootstrap,
        bootstrap_addr,
        sds,
        sds_addr,
        tls,
    })
}

/// Starts the reconciler, the ADS server and the bootstrap server; both
/// servers check dataplane tokens as `auth` says.
pub fn start(
    listeners: XdsListeners,
    config: &KumaCpConfig,
    manager: &ResourceManager,
    store: Arc<dyn ResourceStore>,
    auth: DataplaneAuth,
    stop: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let cache = Arc::new(SnapshotCache::new());
    let (proxies_tx, proxies_rx) = kuma_xds::ads::proxy_event_channel();
    let reconciler = Reconciler::new(store, cache.clone());
    let reconcile_task = tokio::spawn(reconciler.run(proxies_rx));

    let instance_id = format!(
        "{}-{}",
        config.general.advertised_hostname,
        std::process::id()
    );
    let grpc = &config.limits.grpc;
    let stream_limits = StreamLimits {
        first_request_timeout: grpc.first_request_timeout,
        max_request_bytes: grpc.max_message_bytes,
    };
    let ads = AdsServer::new(manager.clone(), cache, proxies_tx, instance_id)
        .with_shutdown(stop.clone())
        .with_limits(stream_limits)
        .with_auth(auth.clone())
        .with_dataplane_cleanup_age(config.runtime.universal.dataplane_cleanup_age);
    let tls = listeners.tls;
    let sds_task = start_sds(
        listeners.sds,
        listeners.sds_addr,
        &tls,
        manager,
        auth.clone(),
        config,
        stop.clone(),
    )?;
    let mut ads_stop = stop.clone();
    let incoming = TcpListenerStream::new(listeners.xds);
    let mut ads_builder = grpc_limits(tonic::transport::Server::builder(), grpc)
        .tls_config(ServerTlsConfig::new().identity(tls.identity()))
        .context("configuring TLS for xdsServer.grpcPort (check general.tlsCertFile and general.tlsKeyFile if set)")?;
    let ads_task = tokio::spawn(async move {
        let result = ads_builder
            .add_service(ads.into_service())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = ads_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(server = "xds", error = %e, "server failed");
        }
    });
    info!(server = "xds", address = %listeners.xds_addr, "listening");

    let bootstrap_config = BootstrapConfig {
        xds_host: config.bootstrap_server.params.xds_host.clone(),
        xds_port: listeners.xds_addr.port(),
        xds_ca_pem: Some(tls.trusted_pem.clone()),
        sds: Some(SdsBootstrap {
            port: listeners.sds_addr.port(),
            ca_pem: tls.trusted_pem.clone(),
        }),
    };
    let app = bootstrap::router(manager.clone(), bootstrap_config, auth);
    let bootstrap_listener =
        // A client gets the header-read timeout for its handshake too: a
        // silent client is cut off as on the plain HTTP ports.
        TlsListener::new(
            listeners.bootstrap,
            tls.rustls_config()?,
            config.limits.http.header_read_timeout,
            "bootstrap",
        )
            .context("bootstrapServer.port")?;
    let bootstrap_task = crate::server::serve(
        "bootstrap",
        bootstrap_listener,
        app,
        crate::server::HttpLimits::from(&config.limits.http),
        stop.clone(),
    );
    info!(server = "bootstrap", address = %listeners.bootstrap_addr, "listening");
    // The reconciler ends when the store or the ADS server goes away.
    let mut reconcile_stop = stop;
    let reconcile_guard = tokio::spawn(async move {
        let _ = reconcile_stop.wait_for(|s| *s).await;
        reconcile_task.abort();
    });
    Ok(vec![ads_task, sds_task, bootstrap_task, reconcile_guard])
}

/// The connection-level limits of a gRPC port (`limits.grpc`): streams per
/// HTTP/2 connection, keepalive pings that close dead peers, TCP
/// keepalive. (Request size and the first-request deadline are per
/// stream: [`StreamLimits`].)
fn grpc_limits(
    builder: tonic::transport::Server,
    limits: &GrpcLimitsConfig,
) -> tonic::transport::Server {
    builder
        .max_concurrent_streams(u32::try_from(limits.max_concurrent_streams).unwrap_or(u32::MAX))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .tcp_keepalive(Some(std::time::Duration::from_secs(60)))
        .http2_max_header_list_size(Some(64 * 1024))
}

/// How long the SDS CA kept in the store is valid (each start's server
/// certificate ends with it).
const SDS_CA_VALIDITY: std::time::Duration = kuma_core::pki::DEFAULT_CA_VALIDITY;

/// Serves SDS over TLS with `tls` on `listener`; the server task.
fn start_sds(
    listener: TcpListener,
    addr: SocketAddr,
    tls: &ServerTls,
    manager: &ResourceManager,
    auth: DataplaneAuth,
    config: &KumaCpConfig,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    let tls = ServerTlsConfig::new().identity(tls.identity());
    let grpc = &config.limits.grpc;
    let sds = SdsServer::new(manager.clone(), auth)
        .with_shutdown(stop.clone())
        .with_limits(StreamLimits {
            first_request_timeout: grpc.first_request_timeout,
            max_request_bytes: grpc.max_message_bytes,
        });
    let mut builder = grpc_limits(tonic::transport::Server::builder(), grpc)
        .tls_config(tls)
        .context("configuring TLS for sdsServer.grpcPort (check general.tlsCertFile and general.tlsKeyFile if set)")?;
    let mut sds_stop = stop;
    let incoming = TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let result = builder
            .add_service(sds.into_service())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = sds_stop.wait_for(|s| *s).await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(server = "sds", error = %e, "server failed");
        }
    });
    info!(server = "sds", address = %addr, "listening");
    Ok(task)
}

/// The TLS identity of the bootstrap, ADS and SDS servers and the
/// certificate (PEM) proxies are told to trust: from `general.tlsCertFile`/`tlsKeyFile` when set (the
/// last certificate of the file is trusted), else a server certificate
/// issued now from the SDS CA kept in the store (created by the first
/// control plane to start, shared by every replica and restart, see
/// [`kuma_core::pki::load_or_create_server_ca`]) for `localhost`,
/// `127.0.0.1`, `::1`, the advertised hostname and the bootstrap's xDS
/// host. Proxies bootstrapped before a restart, or by another replica,
/// trust it.
async fn server_tls(config: &KumaCpConfig, store: &dyn ResourceStore) -> Result<ServerTls> {
    let general = &config.general;
    match (&general.tls_cert_file, &general.tls_key_file) {
        (Some(_), None) => bail!("general.tlsKeyFile: must be set when general.tlsCertFile is"),
        (None, Some(_)) => bail!("general.tlsCertFile: must be set when general.tlsKeyFile is"),
        _ => {}
    }
    if let (Some(cert_file), Some(key_file)) = (&general.tls_cert_file, &general.tls_key_file) {
        let cert = std::fs::read_to_string(cert_file)
            .with_context(|| format!("general.tlsCertFile: cannot read {cert_file:?}"))?;
        let key = std::fs::read_to_string(key_file)
            .with_context(|| format!("general.tlsKeyFile: cannot read {key_file:?}"))?;
        let trusted = last_certificate(&cert).with_context(|| {
            format!("general.tlsCertFile: {cert_file:?} holds no PEM certificate")
        })?;
        if !key.contains("PRIVATE KEY-----") {
            bail!("general.tlsKeyFile: {key_file:?} holds no PEM private key");
        }
        return Ok(ServerTls {
            cert_pem: cert,
            key_pem: key,
            trusted_pem: trusted,
        });
    }
    let mut sans = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
        config.general.advertised_hostname.clone(),
    ];
    sans.extend(config.bootstrap_server.params.xds_host.clone());
    let ca = kuma_core::pki::load_or_create_server_ca(store, SDS_CA_VALIDITY)
        .await
        .context("loading the SDS server's CA from the store")?;
    let issuer = kuma_core::pki::Issuer::from_pem(&ca.cert_pem, &ca.key_pem)
        .context("loading the SDS server's CA from the store")?;
    let server = issuer
        .issue_server(&sans)
        .context("issuing the SDS server's TLS certificate (check general.advertisedHostname and bootstrapServer.params.xdsHost)")?;
    Ok(ServerTls {
        cert_pem: server.cert_pem,
        key_pem: server.key_pem,
        trusted_pem: issuer.ca_cert_pem().to_string(),
    })
}

/// The last `CERTIFICATE` PEM block of `pem`, with its armour.
fn last_certificate(pem: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.rfind(BEGIN)?;
    let end = pem[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

#[cfg(test)]
mod tests {
    use super::{last_certificate, server_tls};
    use crate::config::KumaCpConfig;
    use kuma_core::store::MemoryStore;

    /// Two control planes starting on one store (replicas, or one restarted
    /// on a durable store) hand proxies the same CA in the bootstrap, and
    /// each serves a certificate of its own issued by it.
    #[tokio::test]
    async fn starts_on_one_store_trust_the_same_sds_ca() {
        let store = MemoryStore::new();
        let mut a = KumaCpConfig::default();
        a.general.advertised_hostname = "cp-a.example".into();
        let mut b = KumaCpConfig::default();
        b.general.advertised_hostname = "cp-b.example".into();
        let trusted_a = server_tls(&a, &store).await.unwrap().trusted_pem;
        let trusted_b = server_tls(&b, &store).await.unwrap().trusted_pem;
        let trusted_a2 = server_tls(&a, &store).await.unwrap().trusted_pem;
        assert_eq!(trusted_a, trusted_b);
        assert_eq!(trusted_a, trusted_a2);
        let stored =
            kuma_core::pki::load_or_create_server_ca(&store, std::time::Duration::from_secs(60))
                .await
                .unwrap();
        assert_eq!(trusted_a, stored.cert_pem.trim().to_string() + "\n");
        // A different store: a different CA.
        let elsewhere = server_tls(&a, &MemoryStore::new())
            .await
            .unwrap()
            .trusted_pem;
        assert_ne!(elsewhere, trusted_a);
    }

    #[test]
    fn the_last_certificate_of_a_chain_is_trusted() {
        let chain = "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                     -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            last_certificate(chain).unwrap(),
            "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n"
        );
        assert_eq!(last_certificate("-----BEGIN PRIVATE KEY-----\nx\n"), None);
        assert_eq!(
            last_certificate("-----BEGIN CERTIFICATE-----\nno end"),
            None
        );
    }
}
