//! From matcher to generator: the policies selected for one Dataplane,
//! turned into its [`ProxyInput`] and generated. What the reconciler runs
//! for every proxy it regenerates (see docs/architecture.md, "Reconciler
//! and generator").

use super::{
    BatchCache, DataplanePolicies, InboundPolicies, Named, OutboundPolicies, Protocol, ProxyInput,
    ProxyResources, outbound_service,
};
use kuma_core::matching::PolicyIndex;
use kuma_core::resource::{DataplaneSpec, MeshSpec, Resource, Spec};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What generating a proxy needs to know of its mesh besides the policies.
#[derive(Debug, Clone, Copy)]
pub struct MeshView<'a> {
    /// The mesh's name.
    pub name: &'a str,
    /// The Mesh resource's spec (mTLS, logging and tracing backends), if
    /// known.
    pub spec: Option<&'a MeshSpec>,
    /// The protocol of every service of the mesh.
    pub protocols: &'a BTreeMap<String, Protocol>,
    /// The DNS VIP of every service of the mesh, in dotted form: the
    /// validated [`kuma_core::resource::MeshVips`] rendered once per batch
    /// (the generator names listeners after them).
    pub vips: &'a BTreeMap<String, String>,
}

/// Matches the policies of `index` against one Dataplane and generates its
/// listeners and clusters: what the reconciler does for every proxy it
/// regenerates (`index` is built once per batch). `sds_token` is the
/// proxy's dataplane token ([`ProxyInput::sds_token`]). Service clusters
/// already generated for another proxy of the batch are taken from
/// `shared` (made for the same `index`), and those generated here are
/// added to it.
pub fn generate_proxy<'p>(
    index: &PolicyIndex<'p, Arc<Resource>>,
    mesh: &MeshView<'_>,
    name: &str,
    spec: &DataplaneSpec,
    sds_token: Option<&str>,
    shared: Option<&mut BatchCache<'p>>,
) -> ProxyResources {
    let vips = mesh.vips;
    let mut services: BTreeSet<&str> = spec
        .networking
        .outbound
        .iter()
        .filter_map(outbound_service)
        .collect();
    if spec.networking.transparent_proxying.is_some() {
        services.extend(vips.keys().map(String::as_str));
    }
    let matched = index.match_dataplane_with_services(spec, services.iter().copied());
    let mut outbound_policies = BTreeMap::new();
    for service in services {
        fn pick<'a, S: Spec>(
            map: &kuma_core::matching::OutboundPolicyMap<'a, Arc<Resource>>,
            service: &str,
        ) -> Option<&'a S> {
            map.get(service).and_then(|r| r.spec_as::<S>())
        }
        outbound_policies.insert(
            service.to_string(),
            OutboundPolicies {
                route: pick(&matched.traffic_routes, service),
                health_check: pick(&matched.health_checks, service),
                circuit_breaker: pick(&matched.circuit_breakers, service),
                retry: pick(&matched.retries, service),
                timeout: pick(&matched.timeouts, service),
                traffic_log: pick(&matched.traffic_logs, service),
            },
        );
    }
    let inbound_policies: Vec<InboundPolicies> = (0..spec.networking.inbound.len())
        .map(|i| InboundPolicies {
            traffic_permission: matched
                .traffic_permissions
                .get(i)
                .copied()
                .flatten()
                .and_then(|r| {
                    Some(Named {
                        name: &r.meta.name,
                        spec: r.spec_as()?,
                    })
                }),
            fault_injection: matched
                .fault_injections
                .get(i)
                .copied()
                .flatten()
                .and_then(|r| r.spec_as()),
        })
        .collect();
    let dataplane_policies = DataplanePolicies {
        traffic_trace: matched.traffic_trace.and_then(|r| r.spec_as()),
        proxy_template: matched.proxy_template.and_then(|r| r.spec_as()),
    };
    let input = ProxyInput {
        mesh: mesh.name,
        name,
        dataplane: spec,
        mesh_spec: mesh.spec,
        outbound_policies: &outbound_policies,
        inbound_policies: &inbound_policies,
        dataplane_policies,
        protocols: mesh.protocols,
        vips,
        sds_token,
    };
    super::generate_shared(&input, shared)
}
