//! The Linux UDP loop: `recvmmsg` takes up to [`BATCH`] ready datagrams
//! in one system call, each is answered into its own reused buffer, and
//! `sendmmsg` sends the answers in one more.

use super::MAX_UDP_REQUEST;
use crate::error::DnsError;
use crate::handler::{DnsHandler, Transport};
use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tracing::debug;

/// Datagrams taken per `recvmmsg`. dnsperf-like floods fill batches of
/// this size; a lone query still costs one `recvmmsg` and one `sendmmsg`.
const BATCH: usize = 32;

/// Yield to other tasks on this thread after about this many datagrams
/// (`try_io` bypasses tokio's cooperative budget).
const YIELD_EVERY: usize = 256;

/// The kernel has no `recvmmsg`/`sendmmsg` (e.g. a seccomp filter or an
/// emulator answering ENOSYS): use the portable loop instead.
#[derive(Debug)]
pub(super) struct Unsupported;

/// Answers UDP queries on `socket` until a readiness error, in batches.
pub(super) async fn serve(
    handler: &DnsHandler,
    socket: &UdpSocket,
) -> Result<Result<(), DnsError>, Unsupported> {
    let fd = socket.as_raw_fd();
    // Each slot can take the largest datagram, as the single-datagram loop
    // does. The zeroed allocation is lazily mapped: only the pages
    // datagrams are written to are ever touched.
    let mut requests = vec![0u8; BATCH * MAX_UDP_REQUEST];
    let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
    let mut responses: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
    // The slots with something to send, and their peers (same order).
    let mut pending: Vec<usize> = Vec::with_capacity(BATCH);
    let mut peers: Vec<Option<SockaddrStorage>> = Vec::with_capacity(BATCH);
    let mut since_yield = 0;
    let mut any_received = false;
    loop {
        if since_yield >= YIELD_EVERY {
            since_yield = 0;
            tokio::task::yield_now().await;
        }
        received.clear();
        let got = socket.try_io(Interest::READABLE, || {
            // nix's headers hold raw pointers (not `Send`): they live only
            // within the call, so this future can move between threads.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = requests
                .chunks_exact_mut(MAX_UDP_REQUEST)
                .map(|slot| [IoSliceMut::new(slot)])
                .collect();
            let messages = recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )
            .map_err(std::io::Error::from)?;
            received.extend(messages.map(|m| (m.bytes, m.address)));
            Ok(())
        });
        match got {
            Ok(()) => any_received = true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if let Err(e) = socket.readable().await {
                    return Ok(Err(e.into()));
                }
                continue;
            }
            Err(e) if !any_received && e.raw_os_error() == Some(Errno::ENOSYS as i32) => {
                return Err(Unsupported);
            }
            // ICMP errors of earlier sends surface here.
            Err(e) => {
                debug!(error = %e, "udp receive failed");
                continue;
            }
        }
        since_yield += received.len().max(1);

        pending.clear();
        peers.clear();
        for (slot, (len, peer)) in received.iter().enumerate() {
            let start = slot * MAX_UDP_REQUEST;
            let Some(request) = requests.get(start..start + len) else {
                continue;
            };
            let response = &mut responses[slot];
            handler.handle(request, Transport::Udp, response);
            if !response.is_empty() && peer.is_some() {
                pending.push(slot);
                peers.push(*peer);
            }
        }
        if let Err(e) = send_all(socket, &responses, &pending, &peers).await {
            return Ok(Err(e.into()));
        }
    }
}

/// Sends `responses[pending[i]]` to `peers[i]` for every `i`, waiting when
/// the socket buffer is full. A datagram the kernel refuses is logged and
/// skipped; only a readiness error is returned.
async fn send_all(
    socket: &UdpSocket,
    responses: &[Vec<u8>],
    pending: &[usize],
    peers: &[Option<SockaddrStorage>],
) -> std::io::Result<()> {
    let fd = socket.as_raw_fd();
    let mut next = 0;
    while next < pending.len() {
        let sent = socket.try_io(Interest::WRITABLE, || {
            let slices: Vec<[IoSlice<'_>; 1]> = pending[next..]
                .iter()
                .map(|&slot| [IoSlice::new(&responses[slot])])
                .collect();
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(slices.len(), None);
            let results = sendmmsg(
                fd,
                &mut headers,
                slices.iter(),
                &peers[next..],
                no_cmsgs,
                MsgFlags::MSG_DONTWAIT,
            )
            .map_err(std::io::Error::from)?;
            Ok(results.count())
        });
        match sent {
            // sendmmsg sends at least one message or fails.
            Ok(n) => next += n.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => socket.writable().await?,
            Err(e) => {
                debug!(peer = ?peers[next], error = %e, "udp send failed");
                next += 1;
            }
        }
    }
    Ok(())
}
