//! Wires Kuma DNS into the control plane: binds `dnsServer.port` on UDP and
//! TCP, runs the VIP controller over the store (VIPs persisted as Config
//! resources) and serves `.<dnsServer.domain>` queries. Standalone and
//! remote modes only.

use crate::config::KumaCpConfig;
use anyhow::{Context, Result};
use kuma_core::store::ResourceStore;
use kuma_dns::{DnsConfig, KumaDns, StorePersistence};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tracing::{error, info};

/// Kuma DNS built from the configuration, before its ports are bound.
pub fn prepare(config: &KumaCpConfig) -> Result<KumaDns> {
    let dns = &config.dns_server;
    KumaDns::new(DnsConfig::new(dns.domain.clone(), dns.cidr))
        .context("dnsServer (KUMA_DNS_SERVER_*)")
}

/// Binds UDP then TCP on the same port. With port 0 the ephemeral UDP port
/// may already be taken on TCP by another process, so that case retries with
/// a fresh UDP port a few times instead of failing start-up.
async fn bind_pair(port: u16) -> Result<(UdpSocket, TcpListener, SocketAddr)> {
    const EPHEMERAL_ATTEMPTS: usize = 16;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = UdpSocket::bind(("0.0.0.0", port))
            .await
            .with_context(|| format!("cannot listen on dnsServer.port {port} (udp)"))?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(("0.0.0.0", addr.port())).await {
            Ok(tcp) => return Ok((udp, tcp, addr)),
            Err(e)
                if port == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < EPHEMERAL_ATTEMPTS =>
            {
                continue;
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot listen on dnsServer.port {} (tcp)", addr.port())
                });
            }
        }
    }
}

/// Binds UDP then TCP on the same port (so port 0 gives one ephemeral port
/// for both), starts the VIP controller and the server, and returns the
/// bound address and the tasks to await on shutdown.
///
/// `leadership` says whether this replica allocates VIPs (`true`) or serves
/// the VIPs the leading replica persisted (`false`); see
/// `kuma_dns::VipController::with_leadership`.
pub async fn start(
    dns: KumaDns,
    port: u16,
    store: Arc<dyn ResourceStore>,
    leadership: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
) -> Result<(SocketAddr, [tokio::task::JoinHandle<()>; 2])> {
    let (udp, tcp, addr) = bind_pair(port).await?;
    let server = dns.server()?;
    let controller = dns
        .controller(store.clone(), StorePersistence::new(store))
        .with_leadership(leadership);
    let stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let vips = tokio::spawn({
        let stop = stop(shutdown.clone());
        async move {
            if let Err(e) = controller.run(stop).await {
                error!(error = %e, "DNS VIP controller failed");
            }
        }
    });
    let serve = tokio::spawn({
        let stop = stop(shutdown);
        async move {
            if let Err(e) = server.serve(udp, tcp, stop).await {
                error!(server = "dns", error = %e, "server failed");
            }
        }
    });
    info!(server = "dns", address = %addr, "listening");
    Ok((addr, [vips, serve]))
}
