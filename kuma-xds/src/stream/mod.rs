//! The xDS stream core: what every DiscoveryRequest/DiscoveryResponse
//! stream does, whatever it serves (see docs/architecture.md, "xDS stream
//! core").
//!
//! The path of a change ends here: the reconciler publishes a proxy's
//! snapshot into the [`SnapshotCache`](crate::cache::SnapshotCache) (a
//! [`ResourceSource`]), the proxy's stream wakes up on its [`Watch`], and
//! the stream's [`ClientStream`] sends what changed to Envoy.
//!
//! Per stream, [`run`]:
//!
//! 1. reads the first request and identifies its client once for every
//!    service ([`Client::identify`]): the node id `<mesh>.<name>`, Envoy's
//!    and kuma-dp's versions, and the dataplane token of the stream's
//!    `authorization` metadata ([`Credentials`]), checked before anything
//!    is registered or recorded for the node;
//! 2. lets the service open its per-client state ([`Service::open`]), which
//!    watches the client's resources ([`ResourceSource::watch`]);
//! 3. answers requests ([`ClientStream::on_request`]), sends changes when
//!    the watch fires ([`ClientStream::on_change`]), runs the service's
//!    periodic work ([`Service::HOUSEKEEPING`]), and ends the stream when
//!    the client hangs up, a handler fails, or the server stops
//!    (`UNAVAILABLE`, so proxies reconnect);
//! 4. closes the per-client state ([`ClientStream::close`]).
//!
//! ACKs are tracked per type with an [`AckTracker`] (the protocol's nonce
//! rules are there, once); handlers keep one per type URL.
//!
//! Decisions:
//!
//! - The core is generic over where resources come from (the
//!   [`ResourceSource`] and its [`Watch`]) and over the wire (the service's
//!   request type and [`Sink`]): state-of-the-world ADS and delta ADS watch
//!   the snapshot cache and write hand-framed responses (`crate::grpc`),
//!   SDS watches the mesh's CA and the proxy's Dataplane and answers
//!   through tonic. KDS (Kuma resources between global and zones) and MADS
//!   (monitoring assignments) are further sources with thin services on
//!   top.
//! - Handlers return `Result<(), Status>`: an error ends the stream with
//!   that status, except `CANCELLED` ([`hung_up`]), which means the client
//!   is gone and nothing more can be sent.
//! - The handlers' futures are boxed: awaited in place they would all be
//!   laid out in the stream's task, which lives as long as the stream; the
//!   stream's state is what should stay.
//! - Every channel a stream writes to is bounded: its responses (a few,
//!   then the stream's task waits for HTTP/2 to take them) and the events
//!   ADS sends the reconciler ([`crate::ads::ProxyEventSender`]).

pub mod ack;
pub mod client;

pub use ack::{AckTracker, Nack, Nonces, Reply};
pub use client::{Client, Credentials};

use crate::cache::NodeId;
use envoy_types::pb::envoy::config::core::v3::Node;
use std::future::Future;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Interval;
use tonic::{Status, Streaming};
use tracing::debug;

/// What one client may take of a stream server (`limits.grpc` in kuma-cp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// A stream that sends no first request within this is ended with
    /// `DEADLINE_EXCEEDED` (a proxy sends its first request at once).
    pub first_request_timeout: Duration,
    /// The largest request message accepted; a larger one ends the stream
    /// with `RESOURCE_EXHAUSTED` (tonic's decoder enforces it).
    pub max_request_bytes: usize,
}

impl Default for StreamLimits {
    /// 15 s and 4 MiB.
    fn default() -> Self {
        Self {
            first_request_timeout: Duration::from_secs(15),
            max_request_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Where a service's resources come from: something a client's stream can
/// watch. The snapshot cache is the source of ADS; the SDS server's
/// certificate state is the source of SDS.
pub trait ResourceSource {
    /// What a stream waits on.
    type Watch: Watch;

    /// A watch on what `node` is served, created before the stream sends
    /// anything so that no change falls in between.
    fn watch(&self, node: &NodeId) -> Self::Watch;
}

/// One client's view of a [`ResourceSource`].
pub trait Watch: Send {
    /// Resolves when what the client is served may have changed; `false`
    /// when the source is gone (the stream then ends).
    fn wait(&mut self) -> impl Future<Output = bool> + Send;
}

/// Where a stream's responses go.
pub trait Sink: Send + Sync + 'static {
    /// Ends the stream with `status`.
    fn end(&self, status: Status) -> impl Future<Output = ()> + Send;
}

/// One service (SotW ADS, delta ADS, SDS, ...) on top of the core: how it
/// reads a request's node and opens its per-client state.
pub trait Service: Send + Sync + 'static {
    /// The request message.
    type Request: Send + 'static;
    /// Where responses go.
    type Sink: Sink;
    /// The per-client state of one stream.
    type Stream: ClientStream<Request = Self::Request, Sink = Self::Sink>;

    /// The service's name in logs.
    const NAME: &'static str;

    /// How often [`ClientStream::housekeeping`] runs; never when `None`.
    const HOUSEKEEPING: Option<Duration> = None;

    /// The node of a request (set on a stream's first request).
    fn node(request: &Self::Request) -> Option<&Node>;

    /// Whether a stream's first request shows that the client holds
    /// configuration it accepted on an earlier stream (Envoy sends the
    /// versions it has when it reconnects); sets [`Client::resumed`].
    fn resumes(_first: &Self::Request) -> bool {
        false
    }

    /// Opens the per-client state of stream `stream` for an authenticated
    /// `client` whose first request carried `node`; the error is the status
    /// to end the stream with.
    fn open(
        &self,
        client: Client,
        node: &Node,
        stream: u64,
    ) -> impl Future<Output = Result<Self::Stream, Status>> + Send;
}

/// The per-client state of one stream: its handlers.
pub trait ClientStream: Send {
    /// The request message.
    type Request: Send + 'static;
    /// Where responses go.
    type Sink: Sink;
    /// What the stream waits on.
    type Watch: Watch;

    /// The stream's watch on its resources.
    fn watch(&mut self) -> &mut Self::Watch;

    /// Handles one request.
    fn on_request(
        &mut self,
        request: Self::Request,
        sink: &Self::Sink,
    ) -> impl Future<Output = Result<(), Status>> + Send;

    /// Sends what changed after the watch fired.
    fn on_change(&mut self, sink: &Self::Sink) -> impl Future<Output = Result<(), Status>> + Send;

    /// Periodic work (see [`Service::HOUSEKEEPING`]).
    fn housekeeping(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Closes the per-client state once the stream ended.
    fn close(self, stream: u64) -> impl Future<Output = ()> + Send;
}

/// The status of a stream whose client is gone: nothing is sent.
pub fn hung_up() -> Status {
    Status::cancelled("the client hung up")
}

/// Resolves once `stop` is `true` (or its sender is gone); never without one.
pub(crate) async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(rx) => {
            let _ = rx.wait_for(|s| *s).await;
        }
        None => std::future::pending().await,
    }
}

async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The status ending a stream whose request was larger than the limit
/// (tonic's decoder says `OUT_OF_RANGE`; gRPC's convention for a message
/// over the size limit is `RESOURCE_EXHAUSTED`).
fn too_large(e: &Status) -> Status {
    Status::resource_exhausted(e.message().to_string())
}

/// Runs stream `stream` of `service` from its first request to its end:
/// requests come from `inbound`, responses go to `sink`, and the stream
/// ends with `UNAVAILABLE` once `stop` turns `true`, or with
/// `DEADLINE_EXCEEDED` when no first request came within
/// `first_request_timeout`.
pub async fn run<S: Service>(
    service: &S,
    stream: u64,
    credentials: Credentials,
    mut inbound: Streaming<S::Request>,
    sink: S::Sink,
    mut stop: Option<watch::Receiver<bool>>,
    first_request_timeout: Duration,
) {
    let first = tokio::select! {
        first = tokio::time::timeout(first_request_timeout, inbound.message()) => first,
        () = stopped(&mut stop) => return,
    };
    let first = match first {
        Ok(Ok(Some(r))) => r,
        Ok(Err(e)) if e.code() == tonic::Code::OutOfRange => {
            return Box::pin(sink.end(too_large(&e))).await;
        }
        Ok(_) => return,
        Err(_) => {
            debug!(service = S::NAME, stream, "no first request in time");
            let status = Status::deadline_exceeded(format!(
                "no DiscoveryRequest within {first_request_timeout:?} of opening the stream"
            ));
            return Box::pin(sink.end(status)).await;
        }
    };
    let opened = Box::pin(async {
        let node = S::node(&first);
        let mut client = Client::identify(node, credentials, S::NAME).await?;
        client.resumed = S::resumes(&first);
        // `identify` checked that there is a node.
        let node = node.ok_or_else(|| Status::invalid_argument("no node"))?;
        service.open(client, node, stream).await
    })
    .await;
    let mut state = match opened {
        Ok(s) => s,
        Err(status) => return Box::pin(sink.end(status)).await,
    };
    let mut housekeeping = S::HOUSEKEEPING.map(tokio::time::interval);
    let mut result = Box::pin(state.on_request(first, &sink)).await;
    while result.is_ok() {
        result = tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => Box::pin(state.on_request(req, &sink)).await,
                Ok(None) => break,
                Err(e) if e.code() == tonic::Code::OutOfRange => Err(too_large(&e)),
                Err(e) => {
                    debug!(service = S::NAME, stream, error = %e, "stream error");
                    break;
                }
            },
            alive = state.watch().wait() => match alive {
                true => Box::pin(state.on_change(&sink)).await,
                false => break,
            },
            () = tick(&mut housekeeping) => {
                Box::pin(state.housekeeping()).await;
                Ok(())
            }
            () = stopped(&mut stop) => Err(Status::unavailable("the control plane is shutting down")),
        };
    }
    if let Err(status) = result
        && status.code() != tonic::Code::Cancelled
    {
        Box::pin(sink.end(status)).await;
    }
    Box::pin(state.close(stream)).await;
}
