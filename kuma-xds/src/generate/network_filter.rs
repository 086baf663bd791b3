//! The network filter of a generated listener (its tcp_proxy or HTTP
//! connection manager), kept typed from [`super::build`] until every policy
//! that edits it is done, then packed into its `Any` once.
//!
//! Packing a connection manager is the costliest part of encoding a proxy
//! (it holds the routes, access logs, tracing): packing it in `build` and
//! decoding it again in each policy that edits it encoded and decoded it
//! several times per proxy. While typed, the filter in the listener is a
//! placeholder: its name, no config. A listener's chains all carry the same
//! filter (PERMISSIVE mTLS copies the plain chain for TLS), so there is one
//! typed config per listener, written into every chain's placeholder.
//!
//! A config is encoded without its access logs first, and the access logs
//! are appended as encoded fields (protobuf allows a message's fields in
//! any order; a repeated field's elements keep theirs). The part without
//! access logs, the same for every proxy that calls a service under the
//! same policies, can then be taken from another proxy of the batch
//! ([`NetworkFilter::Encoded`], see [`super::shared`]): access logs are
//! the only per-proxy part of an outbound filter (their format names the
//! proxy's address).

use bytes::Bytes;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};

/// The HTTP connection manager's network filter name.
pub(crate) const HCM: &str = "envoy.filters.network.http_connection_manager";
/// The tcp_proxy's network filter name.
pub(crate) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";

/// A listener's network filter config while policies edit it.
#[derive(Debug, Clone)]
pub(crate) enum NetworkFilter {
    /// An HTTP connection manager.
    Http(Box<HttpConnectionManager>),
    /// A tcp_proxy.
    Tcp(Box<TcpProxy>),
    /// A config built, edited by policies and encoded (without access
    /// logs) for another proxy of the batch; policies other than
    /// TrafficLog, which adds this proxy's access logs, leave it alone.
    Encoded(Box<EncodedFilter>),
}

/// A [`NetworkFilter::Encoded`].
#[derive(Debug, Clone)]
pub(crate) struct EncodedFilter {
    /// An HTTP connection manager (else a tcp_proxy).
    pub(crate) http: bool,
    /// Its stat prefix.
    pub(crate) stat_prefix: String,
    /// The config without access logs, encoded.
    pub(crate) base: Bytes,
    /// This proxy's access logs.
    pub(crate) access_log: Vec<AccessLog>,
}

/// The field number of `access_log` in the HTTP connection manager.
const HCM_ACCESS_LOG: u32 = 13;
/// The field number of `access_log` in the tcp_proxy.
const TCP_PROXY_ACCESS_LOG: u32 = 5;

/// `base` (an encoded config without access logs) followed by `logs` as
/// field `tag`: the encoding of the config with those access logs.
fn with_access_logs(base: &[u8], tag: u32, logs: &[AccessLog]) -> Vec<u8> {
    let extra: usize = logs
        .iter()
        .map(|l| prost::encoding::message::encoded_len(tag, l))
        .sum();
    let mut out = Vec::with_capacity(base.len() + extra);
    out.extend_from_slice(base);
    for log in logs {
        prost::encoding::message::encode(tag, log, &mut out);
    }
    out
}

impl NetworkFilter {
    /// The network filter's name.
    pub(crate) fn name(&self) -> &'static str {
        if self.is_http() { HCM } else { TCP_PROXY }
    }

    /// Whether this is an HTTP connection manager.
    pub(crate) fn is_http(&self) -> bool {
        match self {
            Self::Http(_) => true,
            Self::Tcp(_) => false,
            Self::Encoded(e) => e.http,
        }
    }

    /// The stat prefix (the service, for generated listeners).
    pub(crate) fn stat_prefix(&self) -> &str {
        match self {
            Self::Http(h) => &h.stat_prefix,
            Self::Tcp(t) => &t.stat_prefix,
            Self::Encoded(e) => &e.stat_prefix,
        }
    }

    /// The access logs.
    pub(crate) fn access_log_mut(&mut self) -> &mut Vec<AccessLog> {
        match self {
            Self::Http(h) => &mut h.access_log,
            Self::Tcp(t) => &mut t.access_log,
            Self::Encoded(e) => &mut e.access_log,
        }
    }

    /// The filter standing for this config in a listener until it is
    /// packed: the name, no config.
    pub(crate) fn placeholder(&self) -> Filter {
        Filter {
            name: self.name().into(),
            config_type: None,
        }
    }

    /// The connection manager, if this is one.
    pub(crate) fn http_mut(&mut self) -> Option<&mut HttpConnectionManager> {
        match self {
            Self::Http(h) => Some(h),
            Self::Tcp(_) | Self::Encoded(_) => None,
        }
    }

    /// The tcp_proxy, if this is one (still typed).
    pub(crate) fn tcp_mut(&mut self) -> Option<&mut TcpProxy> {
        match self {
            Self::Tcp(t) => Some(t),
            Self::Http(_) | Self::Encoded(_) => None,
        }
    }

    /// Encodes the config: the part without access logs, and the whole.
    fn encode(self) -> (Bytes, Any) {
        let (type_url, base, tag, logs) = match self {
            Self::Http(mut h) => {
                let logs = std::mem::take(&mut h.access_log);
                let base = Bytes::from(h.encode_to_vec());
                (
                    HttpConnectionManager::type_url(),
                    base,
                    HCM_ACCESS_LOG,
                    logs,
                )
            }
            Self::Tcp(mut t) => {
                let logs = std::mem::take(&mut t.access_log);
                let base = Bytes::from(t.encode_to_vec());
                (TcpProxy::type_url(), base, TCP_PROXY_ACCESS_LOG, logs)
            }
            Self::Encoded(e) => {
                let (type_url, tag) = if e.http {
                    (HttpConnectionManager::type_url(), HCM_ACCESS_LOG)
                } else {
                    (TcpProxy::type_url(), TCP_PROXY_ACCESS_LOG)
                };
                (type_url, e.base, tag, e.access_log)
            }
        };
        let value = with_access_logs(&base, tag, &logs);
        (base, Any { type_url, value })
    }

    /// Packs the config into the placeholders of `listener`'s chains;
    /// returns its encoding without access logs.
    fn pack_into(self, listener: &mut Listener) -> Bytes {
        let name = self.name();
        let (base, any) = self.encode();
        let mut any = Some(any);
        let mut slots = listener
            .filter_chains
            .iter_mut()
            .flat_map(|c| c.filters.iter_mut())
            .filter(|f| f.config_type.is_none() && f.name == name)
            .peekable();
        while let Some(filter) = slots.next() {
            // Copied for all but the last placeholder (almost always the
            // only one).
            let config = if slots.peek().is_some() {
                any.clone()
            } else {
                any.take()
            };
            filter.config_type = config.map(ConfigType::TypedConfig);
        }
        base
    }
}

/// The typed network filter of each listener of a proxy, by listener
/// index (`None`: the listener has none, or it is packed already).
#[derive(Debug, Clone, Default)]
pub(crate) struct NetworkFilters(Vec<Option<NetworkFilter>>);

impl NetworkFilters {
    /// Room for `n` listeners.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    /// Records `filter` as the typed config of listener `index`.
    pub(crate) fn insert(&mut self, index: usize, filter: NetworkFilter) {
        if self.0.len() <= index {
            self.0.resize_with(index + 1, || None);
        }
        self.0[index] = Some(filter);
    }

    /// The typed config of listener `index`, if it is still typed.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut NetworkFilter> {
        self.0.get_mut(index).and_then(Option::as_mut)
    }

    /// Every typed config, with its listener's index.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = (usize, &mut NetworkFilter)> {
        self.0
            .iter_mut()
            .enumerate()
            .filter_map(|(i, f)| Some((i, f.as_mut()?)))
    }

    /// Packs every typed config into its listener; afterwards the
    /// listeners are complete and nothing is typed. `encoded` gets each
    /// listener's config encoded without access logs (see the module
    /// docs), by listener index.
    pub(crate) fn pack(
        &mut self,
        listeners: &mut [Listener],
        mut encoded: impl FnMut(usize, Bytes),
    ) {
        let filters = std::mem::take(&mut self.0).into_iter().zip(listeners);
        for (i, (filter, listener)) in filters.enumerate() {
            if let Some(filter) = filter {
                encoded(i, filter.pack_into(listener));
            }
        }
    }
}
