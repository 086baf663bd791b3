//! Policies applied to a proxy's built listeners and clusters, before they
//! are encoded. TrafficRoute is applied while building (it decides which
//! clusters exist); every other policy modifies what was built, each in its
//! own module, in a fixed order (ProxyTemplate last, so its modifications
//! see the final resources).

mod circuit_breaker;
pub(crate) mod edit;
mod envoy_json;
mod fault_injection;
mod health_check;
mod proxy_template;
mod retry;
mod timeout;
mod traffic_log;
mod traffic_permission;
mod traffic_trace;

use super::{ProxyConfig, ProxyInput};

/// Applies every selected policy to `config`.
pub(super) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    // First: it inserts a network filter in front of the inbound
    // listeners' filters.
    traffic_permission::apply(config, input);
    fault_injection::apply(config, input);
    health_check::apply(config, input);
    circuit_breaker::apply(config, input);
    retry::apply(config, input);
    timeout::apply(config, input);
    traffic_log::apply(config, input);
    traffic_trace::apply(config, input);
    // The policies above edit the listeners' network filters typed; they
    // are packed once, here.
    config.pack();
    // Last: its modifications see every other policy's result (packed, as
    // Envoy would).
    proxy_template::apply(config, input);
}
