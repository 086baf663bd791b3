//! gRPC response streams for ADS written without copying resources.
//!
//! tonic encodes every response message into one per-stream buffer, which
//! grows to the largest message and is kept for the stream's life (the
//! size of a whole state-of-the-world response, per connected proxy), and
//! every push first copies each resource into an `Any` (figures in
//! docs/performance.md). Here a response
//! is framed by hand instead, into one buffer of exactly its size that is
//! freed once HTTP/2 has written it: the fields around the resources are
//! encoded with prost, resource bodies are copied in once (a very large one
//! goes as the shared [`Bytes`] of its [`XdsResource`]), and a stream
//! holds nothing between pushes.
//!
//! Protobuf allows a message's fields in any order (repeated fields may even
//! be interleaved with others), so a response is its scalar fields followed
//! by its repeated resources; decoders (prost, Envoy's) read it as usual.

use crate::resource::{Body as ResourceBody, XdsResource};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::{Body, Frame};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic::codegen::http::{self, HeaderMap, HeaderValue};

/// Bodies at least this large are handed to HTTP/2 as their own shared
/// chunk; smaller ones (nearly all listeners and clusters) are copied into
/// the message's one buffer, freed once it is written. Every chunk takes a
/// slot in h2's per-connection send queue while it waits, and that queue
/// keeps its largest size for the connection's life, so one chunk per
/// resource would make every connection's queue grow with its config.
const SHARE_MIN: usize = 64 * 1024;

/// Initial size of a stream's request buffer. Envoy's requests (ACKs) are a
/// few hundred bytes; tonic's default is 8 KiB per stream. It grows when a
/// request is larger (the first one carries the node).
const REQUEST_BUFFER: usize = 1024;

/// One encoded gRPC message (5-byte frame header included), as the chunks
/// to hand to HTTP/2 in order.
#[derive(Debug, Default)]
pub(crate) struct EncodedMessage {
    chunks: Vec<Bytes>,
}

impl EncodedMessage {
    /// The whole message as one buffer (tests).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }
}

/// Builds an [`EncodedMessage`]: small pieces are appended to a scratch
/// buffer, large bodies become chunks of their own.
struct Builder {
    chunks: Vec<Bytes>,
    scratch: BytesMut,
}

impl Builder {
    /// A message of `len` protobuf bytes; writes the gRPC frame header
    /// (uncompressed) and `head`, the message's non-repeated fields.
    fn new(len: usize, head: &impl Message) -> Self {
        let mut scratch = BytesMut::with_capacity(5 + len);
        scratch.put_u8(0);
        scratch.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        // Encoding into a growable buffer cannot fail.
        let _ = head.encode(&mut scratch);
        Self {
            chunks: Vec::new(),
            scratch,
        }
    }

    fn key(&mut self, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, &mut self.scratch);
        encode_varint(len as u64, &mut self.scratch);
    }

    fn string(&mut self, tag: u32, s: &str) {
        self.key(tag, s.len());
        self.scratch.put_slice(s.as_bytes());
    }

    /// `b` as is (part of a field whose key is written).
    fn raw(&mut self, b: &Bytes) {
        if b.len() < SHARE_MIN {
            self.scratch.put_slice(b);
        } else {
            if !self.scratch.is_empty() {
                self.chunks.push(self.scratch.split().freeze());
            }
            self.chunks.push(b.clone());
        }
    }

    /// Field `tag` holding a `google.protobuf.Any` of `type_url` and `body`.
    fn any(&mut self, tag: u32, type_url: &str, body: &ResourceBody) {
        self.key(tag, any_len(type_url, body));
        self.string(1, type_url);
        self.key(2, body.len());
        for part in body.parts() {
            self.raw(part);
        }
    }

    fn finish(mut self) -> EncodedMessage {
        if !self.scratch.is_empty() {
            self.chunks.push(self.scratch.freeze());
        }
        EncodedMessage {
            chunks: self.chunks,
        }
    }
}

/// Length of a length-delimited field's value with its key (tags < 16).
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn any_len(type_url: &str, body: &ResourceBody) -> usize {
    field_len(type_url.len()) + field_len(body.len())
}

/// A state-of-the-world `DiscoveryResponse`: `head` with every field but
/// `resources` (field 2), then `resources` as `Any`s of `type_url`.
pub(crate) fn sotw_response(
    head: &envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse,
    type_url: &str,
    resources: &[std::sync::Arc<XdsResource>],
) -> EncodedMessage {
    debug_assert!(head.resources.is_empty());
    let len = head.encoded_len()
        + resources
            .iter()
            .map(|r| field_len(any_len(type_url, &r.body)))
            .sum::<usize>();
    let mut b = Builder::new(len, head);
    for r in resources {
        b.any(2, type_url, &r.body);
    }
    b.finish()
}

/// One resource of a delta response: its name, version and body.
pub(crate) struct DeltaItem<'a> {
    /// The resource's name.
    pub(crate) name: &'a str,
    /// Its version.
    pub(crate) version: &'a str,
    /// The resource.
    pub(crate) resource: &'a XdsResource,
}

/// Length of an `envoy.service.discovery.v3.Resource` with `version` (1),
/// the `Any` (2) and `name` (3).
fn delta_item_len(type_url: &str, item: &DeltaItem<'_>) -> usize {
    field_len(item.version.len())
        + field_len(any_len(type_url, &item.resource.body))
        + field_len(item.name.len())
}

/// An incremental `DeltaDiscoveryResponse`: `head` with every field but
/// `resources` (field 2), then `items` as `Resource`s wrapping `Any`s of
/// `type_url`.
pub(crate) fn delta_response(
    head: &envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse,
    type_url: &str,
    items: &[DeltaItem<'_>],
) -> EncodedMessage {
    debug_assert!(head.resources.is_empty());
    let len = head.encoded_len()
        + items
            .iter()
            .map(|i| field_len(delta_item_len(type_url, i)))
            .sum::<usize>();
    let mut b = Builder::new(len, head);
    for item in items {
        b.key(2, delta_item_len(type_url, item));
        b.string(1, item.version);
        b.any(2, type_url, &item.resource.body);
        b.string(3, item.name);
    }
    b.finish()
}

/// What a stream's task hands to its response body.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// A response message.
    Message(EncodedMessage),
    /// The end of the stream with this status.
    End(Status),
}

/// The sending half of a response stream. Bounded (see
/// [`ResponseBody::channel`]): when full, the stream's task waits until
/// HTTP/2 has taken a message, i.e. until the proxy reads.
pub(crate) type ResponseSender = mpsc::Sender<Outgoing>;

impl crate::stream::Sink for ResponseSender {
    async fn end(&self, status: Status) {
        let _ = self.send(Outgoing::End(status)).await;
    }
}

/// The HTTP body of a response stream: the messages of its channel, then
/// the status as trailers (`OK` when the sender is dropped).
pub(crate) struct ResponseBody {
    rx: mpsc::Receiver<Outgoing>,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl ResponseBody {
    /// A body fed by the returned sender, which buffers `capacity` messages.
    pub(crate) fn channel(capacity: usize) -> (ResponseSender, Self) {
        let (tx, rx) = mpsc::channel(capacity);
        let body = Self {
            rx,
            pending: VecDeque::new(),
            done: false,
        };
        (tx, body)
    }

    /// The HTTP response: gRPC headers, then this body.
    pub(crate) fn into_response(self) -> http::Response<tonic::body::Body> {
        let mut response = http::Response::new(tonic::body::Body::new(self));
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        response
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut h = HeaderMap::new();
    if status.add_header(&mut h).is_err() {
        h.insert("grpc-status", HeaderValue::from_static("13"));
    }
    h
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.pending.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(self.rx.poll_recv(cx)) {
                Some(Outgoing::Message(m)) => self.pending.extend(m.chunks),
                Some(Outgoing::End(status)) => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&status)))));
                }
                None => {
                    self.done = true;
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers(&Status::ok(""))))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

/// A prost decoder with a small initial buffer (see [`REQUEST_BUFFER`]).
#[derive(Debug)]
pub(crate) struct RequestDecoder<T>(PhantomData<fn() -> T>);

impl<T> Default for RequestDecoder<T> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T: Message + Default> Decoder for RequestDecoder<T> {
    type Item = T;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<T>, Status> {
        T::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(REQUEST_BUFFER, REQUEST_BUFFER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::XdsType;
    use envoy_types::pb::envoy::config::core::v3::ControlPlane;
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse, Resource,
    };
    use envoy_types::pb::google::protobuf::Any;
    use std::sync::Arc;

    fn resources() -> Vec<Arc<XdsResource>> {
        let mut rs: Vec<Arc<XdsResource>> = [0usize, 3, 511, 512, 40_000, SHARE_MIN, 7]
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                Arc::new(XdsResource {
                    name: format!("r{i}"),
                    xds_type: XdsType::Cluster,
                    body: Bytes::from(vec![i as u8 + 1; n]).into(),
                    hash: i as u64,
                })
            })
            .collect();
        // A body in parts (a small own part, a large shared one, a small
        // own part) is written as the bytes it makes up.
        let shared = Bytes::from(vec![0xAB; 2 * SHARE_MIN]);
        let whole = [&b"head"[..], &shared, &b"tail"[..]].concat();
        rs.push(Arc::new(XdsResource {
            name: "parts".into(),
            xds_type: XdsType::Cluster,
            body: crate::resource::Body::sharing(&whole, &shared),
            hash: 99,
        }));
        rs
    }

    /// The gRPC frame's payload, checking the frame header.
    fn payload(m: &EncodedMessage) -> Vec<u8> {
        let all = m.to_vec();
        assert_eq!(all[0], 0, "uncompressed");
        let len = u32::from_be_bytes(all[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, all.len() - 5);
        all[5..].to_vec()
    }

    #[test]
    fn sotw_responses_decode_as_prost_encodes_them() {
        let t = XdsType::Cluster.type_url();
        let rs = resources();
        let head = DiscoveryResponse {
            version_info: "v1".into(),
            type_url: t.into(),
            nonce: "7".into(),
            control_plane: Some(ControlPlane {
                identifier: "cp".into(),
            }),
            ..Default::default()
        };
        let m = sotw_response(&head, t, &rs);
        assert_eq!(
            m.chunks.len(),
            5,
            "only the large bodies (and the large part) are chunks of their own"
        );
        let expected = DiscoveryResponse {
            resources: rs
                .iter()
                .map(|r| Any {
                    type_url: t.into(),
                    value: r.body.to_bytes().to_vec(),
                })
                .collect(),
            ..head
        };
        let decoded = DiscoveryResponse::decode(payload(&m).as_slice()).unwrap();
        assert_eq!(decoded, expected);
        let empty = sotw_response(&DiscoveryResponse::default(), t, &[]);
        assert!(payload(&empty).is_empty());
    }

    #[test]
    fn delta_responses_decode_as_prost_encodes_them() {
        let t = XdsType::Cluster.type_url();
        let rs = resources();
        let versions: Vec<String> = rs.iter().map(|r| format!("{:016x}", r.hash)).collect();
        let items: Vec<DeltaItem<'_>> = rs
            .iter()
            .zip(&versions)
            .map(|(r, v)| DeltaItem {
                name: &r.name,
                version: v,
                resource: r,
            })
            .collect();
        let head = DeltaDiscoveryResponse {
            system_version_info: "v2".into(),
            type_url: t.into(),
            removed_resources: vec!["gone".into()],
            nonce: "3".into(),
            control_plane: Some(ControlPlane {
                identifier: "cp".into(),
            }),
            ..Default::default()
        };
        let m = delta_response(&head, t, &items);
        let expected = DeltaDiscoveryResponse {
            resources: rs
                .iter()
                .zip(&versions)
                .map(|(r, v)| Resource {
                    name: r.name.clone(),
                    version: v.clone(),
                    resource: Some(Any {
                        type_url: t.into(),
                        value: r.body.to_bytes().to_vec(),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..head
        };
        let decoded = DeltaDiscoveryResponse::decode(payload(&m).as_slice()).unwrap();
        assert_eq!(decoded, expected);
    }
}
