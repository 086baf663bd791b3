//! The protocol a service speaks (`kuma.io/protocol`).

use kuma_core::resource::{PROTOCOL_TAG, Tags};

/// What a service speaks; decides tcp_proxy vs HTTP connection manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Plain TCP (the default).
    #[default]
    Tcp,
    /// HTTP/1.1.
    Http,
    /// HTTP/2.
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
}

impl Protocol {
    /// The protocol named by a tag set's `kuma.io/protocol` (TCP if absent
    /// or unknown).
    pub fn of_tags(tags: &Tags) -> Self {
        tags.get(PROTOCOL_TAG)
            .map_or(Protocol::Tcp, |p| Self::parse(p))
    }

    /// Parses a `kuma.io/protocol` value (TCP if unknown).
    pub fn parse(p: &str) -> Self {
        match p {
            "http" => Protocol::Http,
            "http2" => Protocol::Http2,
            "grpc" => Protocol::Grpc,
            _ => Protocol::Tcp,
        }
    }

    /// Whether traffic goes through the HTTP connection manager.
    pub fn is_http(self) -> bool {
        !matches!(self, Protocol::Tcp)
    }

    /// Whether upstream connections must use HTTP/2.
    pub fn is_http2(self) -> bool {
        matches!(self, Protocol::Http2 | Protocol::Grpc)
    }

    /// The protocol all instances of a service agree on: when inbounds of
    /// one service declare different protocols, fall back to TCP, which
    /// carries anything.
    pub fn common<'a>(tag_sets: impl IntoIterator<Item = &'a Tags>) -> Self {
        let mut it = tag_sets.into_iter().map(Self::of_tags);
        let Some(first) = it.next() else {
            return Protocol::Tcp;
        };
        if it.all(|p| p == first) {
            first
        } else {
            Protocol::Tcp
        }
    }
}
