//! The DNS server over already-bound UDP and TCP sockets.
//!
//! UDP: one task receives, answers and sends, reusing its buffers. TCP:
//! one task per connection reading length-prefixed messages (RFC 1035
//! 4.2.2), closed after an idle timeout, or when writing an answer takes
//! as long (a client that never reads blocks only its own connection), with
//! a cap on open connections overall and per client address.

use crate::config::DnsConfig;
use crate::error::DnsError;
use crate::handler::{DnsHandler, Transport};
use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tracing::debug;

#[cfg(target_os = "linux")]
mod batch;

/// The largest UDP payload: every request fits a buffer of this size.
const MAX_UDP_REQUEST: usize = 65_535;

/// Serves a [`DnsHandler`] over UDP and TCP.
#[derive(Debug, Clone)]
pub struct DnsServer {
    handler: Arc<DnsHandler>,
    tcp_idle_timeout: Duration,
    tcp_slots: Arc<Semaphore>,
    per_client: Arc<PerClient>,
}

/// Open TCP connections per client address.
#[derive(Debug)]
struct PerClient {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted in [`PerClient`]; uncounted when dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            clients: self.clone(),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.clients.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl DnsServer {
    /// A server answering with `handler`, with TCP limits from `config`.
    pub fn new(handler: DnsHandler, config: &DnsConfig) -> Self {
        Self {
            handler: Arc::new(handler),
            tcp_idle_timeout: config.tcp_idle_timeout,
            tcp_slots: Arc::new(Semaphore::new(config.max_tcp_connections.max(1))),
            per_client: Arc::new(PerClient {
                max: config.max_tcp_connections_per_client.max(1),
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The handler answering queries.
    pub fn handler(&self) -> &DnsHandler {
        &self.handler
    }

    /// Serves UDP and TCP until `shutdown` completes.
    pub async fn serve(
        self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DnsError> {
        tokio::select! {
            () = shutdown => Ok(()),
            r = self.serve_udp(udp) => r,
            r = self.serve_tcp(tcp) => r,
        }
    }

    /// Answers UDP queries on `socket` forever.
    ///
    /// On Linux, datagrams are received and answers sent in batches
    /// (`recvmmsg`/`sendmmsg`): one system call each way per burst instead
    /// of one per packet. Elsewhere, or where the kernel lacks them, one
    /// datagram at a time.
    pub async fn serve_udp(&self, socket: UdpSocket) -> Result<(), DnsError> {
        #[cfg(target_os = "linux")]
        {
            match batch::serve(&self.handler, &socket).await {
                Err(batch::Unsupported) => {
                    debug!("recvmmsg unavailable; answering one datagram at a time");
                }
                Ok(r) => return r,
            }
        }
        self.serve_udp_single(&socket).await
    }

    /// The portable UDP loop: one `recv_from` and one `send_to` per query.
    async fn serve_udp_single(&self, socket: &UdpSocket) -> Result<(), DnsError> {
        let mut request = vec![0u8; MAX_UDP_REQUEST];
        let mut response = Vec::with_capacity(1232);
        let mut served: u32 = 0;
        loop {
            // `try_*` calls bypass tokio's cooperative budget: yield now and
            // then so a flood cannot starve other tasks on this thread.
            served = served.wrapping_add(1);
            if served.is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
            // Drain every datagram that is ready before waiting again: one
            // readiness wake-up per burst instead of one per packet.
            let (len, peer) = match socket.try_recv_from(&mut request) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    socket.readable().await?;
                    continue;
                }
                // ICMP errors of earlier sends surface here on some systems.
                Err(e) => {
                    debug!(error = %e, "udp receive failed");
                    continue;
                }
            };
            self.handler
                .handle(&request[..len], Transport::Udp, &mut response);
            if response.is_empty() {
                continue;
            }
            let sent = match socket.try_send_to(&response, peer) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    socket.send_to(&response, peer).await
                }
                r => r,
            };
            if let Err(e) = sent {
                debug!(%peer, error = %e, "udp send failed");
            }
        }
    }

    /// Accepts TCP connections on `listener` forever.
    pub async fn serve_tcp(&self, listener: TcpListener) -> Result<(), DnsError> {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    debug!(error = %e, "tcp accept failed");
                    // Out of file descriptors: give others a moment.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Some(client) = self.per_client.acquire(peer.ip()) else {
                debug!(%peer, "too many tcp connections from this client; closing");
                continue;
            };
            let Ok(permit) = self.tcp_slots.clone().try_acquire_owned() else {
                debug!(%peer, "too many tcp connections; closing");
                continue;
            };
            let handler = self.handler.clone();
            let idle = self.tcp_idle_timeout;
            tokio::spawn(async move {
                if let Err(e) = serve_connection(&handler, stream, idle).await {
                    debug!(%peer, error = %e, "tcp connection ended");
                }
                drop(permit);
                drop(client);
            });
        }
    }
}

async fn serve_connection(
    handler: &DnsHandler,
    mut stream: TcpStream,
    idle: Duration,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut request = Vec::with_capacity(512);
    let mut response = Vec::with_capacity(512);
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(idle, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        }
        request.resize(usize::from(u16::from_be_bytes(len)), 0);
        match tokio::time::timeout(idle, stream.read_exact(&mut request)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        };
        handler.handle(&request, Transport::Tcp, &mut response);
        if response.is_empty() {
            // Nothing sensible to say: the stream is out of sync.
            return Ok(());
        }
        let Ok(n) = u16::try_from(response.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&response);
        // A client that does not read its answers is closed after as long
        // as an idle one.
        match tokio::time::timeout(idle, stream.write_all(&framed)).await {
            Ok(r) => r?,
            Err(_) => return Ok(()),
        }
    }
}
