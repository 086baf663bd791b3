//! TrafficPermission: with mTLS on, an `envoy.filters.network.rbac` filter
//! first in the TLS filter chain of every inbound listener (before the
//! tcp_proxy or HTTP connection manager), so a connection is checked once,
//! on the peer's certificate, before any byte reaches the app.
//!
//! The rules ALLOW one policy named after the permission selected for the
//! inbound: any action ([`Rule::Any`]) for the principals of its sources,
//! `spiffe://<mesh>/<service>` exactly, or any `spiffe://<mesh>/` identity
//! for `kuma.io/service: '*'`. Without a selected permission the rules
//! allow no policy, i.e. deny everything.
//!
//! In `PERMISSIVE` mode only the TLS chain gets the filter: plain-text
//! connections carry no identity an RBAC principal could match, and the
//! point of `PERMISSIVE` is to keep callers without mTLS working while a
//! mesh migrates (Kuma applies its RBAC to TLS-identified traffic only, the
//! same way). Without mTLS nothing is added.

use super::super::tls::MeshTls;
use super::super::{InboundPolicies, Named, ProxyConfig, ProxyInput, names};
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::rbac::v3::permission::Rule;
use envoy_types::pb::envoy::config::rbac::v3::principal::{Authenticated, Identifier};
use envoy_types::pb::envoy::config::rbac::v3::rbac::Action;
use envoy_types::pb::envoy::config::rbac::v3::{Permission, Policy, Principal, Rbac as RbacRules};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::util::pack_any;
use kuma_core::resource::{SERVICE_TAG, TrafficPermissionSpec, WILDCARD};
use std::collections::HashMap;

/// Adds the RBAC filter of every inbound when the mesh has mTLS on.
pub(crate) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    let Some(tls) = MeshTls::of(input) else {
        return;
    };
    let dp = input.dataplane;
    for (i, inbound) in dp.networking.inbound.iter().enumerate() {
        let policies = input.inbound_policies.get(i).copied().unwrap_or_default();
        let address = inbound.address.as_deref().unwrap_or(&dp.networking.address);
        let name = names::inbound_listener(address, inbound.port);
        let Some(listener) = config.listeners.iter_mut().find(|l| l.name == name) else {
            continue;
        };
        let filter = rbac_filter(
            &tls,
            &names::rbac_stat_prefix(address, inbound.port),
            &policies,
        );
        // The TLS chains are those with a transport socket (see
        // `MeshTls::secure_inbound`).
        for chain in listener
            .filter_chains
            .iter_mut()
            .filter(|c| c.transport_socket.is_some())
        {
            chain.filters.insert(0, filter.clone());
        }
    }
}

/// The RBAC filter of an inbound under its selected permission (none:
/// deny all).
fn rbac_filter(tls: &MeshTls<'_>, stat_prefix: &str, policies: &InboundPolicies<'_>) -> Filter {
    let policies: HashMap<String, Policy> = policies
        .traffic_permission
        .and_then(|Named { name, spec }| Some((name.to_string(), policy(tls.mesh, spec)?)))
        .into_iter()
        .collect();
    let rbac = Rbac {
        stat_prefix: stat_prefix.into(),
        rules: Some(RbacRules {
            action: Action::Allow as i32,
            policies,
            ..Default::default()
        }),
        ..Default::default()
    };
    Filter {
        name: names::NETWORK_RBAC.into(),
        config_type: Some(FilterConfig::TypedConfig(pack_any(rbac))),
    }
}

/// Any action by the sources of `spec`. A source without a
/// `kuma.io/service` (validation refuses those) allows nobody; with no
/// principal at all there is no policy (Envoy requires at least one
/// principal per policy), which denies everything too.
fn policy(mesh: &str, spec: &TrafficPermissionSpec) -> Option<Policy> {
    let mut principals: Vec<Principal> = Vec::new();
    for source in &spec.sources {
        let Some(service) = source.match_tags.get(SERVICE_TAG) else {
            continue;
        };
        let pattern = if service == WILDCARD {
            MatchPattern::Prefix(names::spiffe_prefix(mesh))
        } else {
            MatchPattern::Exact(names::spiffe_id(mesh, service))
        };
        let principal = Principal {
            identifier: Some(Identifier::Authenticated(Authenticated {
                principal_name: Some(StringMatcher {
                    match_pattern: Some(pattern),
                    ..Default::default()
                }),
            })),
        };
        if !principals.contains(&principal) {
            principals.push(principal);
        }
    }
    if principals.is_empty() {
        return None;
    }
    Some(Policy {
        permissions: vec![Permission {
            rule: Some(Rule::Any(true)),
        }],
        principals,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests;
