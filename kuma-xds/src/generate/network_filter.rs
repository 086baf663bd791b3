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

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{Filter, Listener};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::util::pack_any;

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
}

impl NetworkFilter {
    /// The network filter's name.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Http(_) => HCM,
            Self::Tcp(_) => TCP_PROXY,
        }
    }

    /// The stat prefix (the service, for generated listeners).
    pub(crate) fn stat_prefix(&self) -> &str {
        match self {
            Self::Http(h) => &h.stat_prefix,
            Self::Tcp(t) => &t.stat_prefix,
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
            Self::Tcp(_) => None,
        }
    }

    /// The tcp_proxy, if this is one.
    pub(crate) fn tcp_mut(&mut self) -> Option<&mut TcpProxy> {
        match self {
            Self::Tcp(t) => Some(t),
            Self::Http(_) => None,
        }
    }

    /// Packs the config into the placeholders of `listener`'s chains.
    fn pack_into(self, listener: &mut Listener) {
        let name = self.name();
        let any = match self {
            Self::Http(h) => pack_any(*h),
            Self::Tcp(t) => pack_any(*t),
        };
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
    /// listeners are complete and nothing is typed.
    pub(crate) fn pack(&mut self, listeners: &mut [Listener]) {
        for (filter, listener) in std::mem::take(&mut self.0).into_iter().zip(listeners) {
            if let Some(filter) = filter {
                filter.pack_into(listener);
            }
        }
    }
}
