use super::super::super::{DataplanePolicies, generate};
use super::*;
use crate::resource::XdsType;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use kuma_core::resource::{DataplaneSpec, FaultInjectionSpec, MeshSpec, ProxyTemplateSpec};
use prost::Message;
use std::collections::BTreeMap;

use super::super::edit::testing::spec;

const DP: &str = "type: Dataplane\nmesh: m\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 8081\n    tags:\n      kuma.io/service: backend\n      kuma.io/protocol: http\n  - port: 9090\n    servicePort: 9091\n    tags:\n      kuma.io/service: db\n";

fn mesh(mode: &str) -> MeshSpec {
    spec(&format!(
        "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n{mode}"
    ))
}

const TP: &str = "type: TrafficPermission\nmesh: m\nname: tp\nsources:\n- match:\n    kuma.io/service: web\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\n";

/// Generates the proxy and decodes its listeners.
fn listeners(
    mesh_spec: Option<&MeshSpec>,
    inbound: &[InboundPolicies<'_>],
    dataplane_policies: DataplanePolicies<'_>,
    sds_token: Option<&str>,
) -> BTreeMap<String, Listener> {
    let dp: DataplaneSpec = spec(DP);
    let protocols = BTreeMap::new();
    let out = generate(&ProxyInput {
        mesh: "m",
        name: "backend-1",
        dataplane: &dp,
        mesh_spec,
        outbound_policies: &BTreeMap::new(),
        inbound_policies: inbound,
        dataplane_policies,
        protocols: &protocols,
        vips: &BTreeMap::new(),
        sds_token,
    });
    out.resources
        .iter()
        .filter(|r| r.xds_type == XdsType::Listener)
        .map(|r| (r.name.clone(), Listener::decode(r.body.to_bytes()).unwrap()))
        .collect()
}

fn filter_names(l: &Listener, chain: usize) -> Vec<&str> {
    l.filter_chains[chain]
        .filters
        .iter()
        .map(|f| f.name.as_str())
        .collect()
}

fn rbac(l: &Listener, chain: usize) -> Rbac {
    let f = &l.filter_chains[chain].filters[0];
    assert_eq!(f.name, names::NETWORK_RBAC);
    let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
        panic!("untyped");
    };
    Rbac::decode(any.value.as_slice()).unwrap()
}

#[test]
fn no_mtls_no_tls_and_no_rbac() {
    let tp: TrafficPermissionSpec = spec(TP);
    let inbound = [InboundPolicies {
        traffic_permission: Some(Named {
            name: "tp",
            spec: &tp,
        }),
        ..Default::default()
    }];
    let plain: MeshSpec = spec("type: Mesh\nname: m\n");
    for mesh_spec in [None, Some(&plain)] {
        for l in listeners(mesh_spec, &inbound, Default::default(), Some("t")).values() {
            assert_eq!(l.filter_chains.len(), 1);
            assert!(l.filter_chains[0].transport_socket.is_none());
            assert!(l.listener_filters.is_empty());
            assert_ne!(l.filter_chains[0].filters[0].name, names::NETWORK_RBAC);
        }
    }
}

#[test]
fn strict_rbac_first_with_principals_and_deny_all_without_permission() {
    let tp: TrafficPermissionSpec = spec(TP);
    // The second inbound has no selected permission (and the list of
    // inbound policies may be shorter than the inbounds).
    let inbound = [InboundPolicies {
        traffic_permission: Some(Named {
            name: "tp",
            spec: &tp,
        }),
        ..Default::default()
    }];
    let m = mesh("");
    let ls = listeners(Some(&m), &inbound, Default::default(), None);
    let http = &ls["inbound:10.0.0.2:8080"];
    assert_eq!(
        filter_names(http, 0),
        [
            names::NETWORK_RBAC,
            "envoy.filters.network.http_connection_manager"
        ]
    );
    let rules = rbac(http, 0).rules.unwrap();
    assert_eq!(rules.action, Action::Allow as i32);
    let policy = &rules.policies["tp"];
    let patterns: Vec<_> = policy
        .principals
        .iter()
        .map(|p| match &p.identifier {
            Some(Identifier::Authenticated(a)) => {
                a.principal_name.clone().unwrap().match_pattern.unwrap()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        patterns,
        [
            MatchPattern::Exact("spiffe://m/web".into()),
            MatchPattern::Prefix("spiffe://m/".into())
        ]
    );
    assert_eq!(rbac(http, 0).stat_prefix, "inbound_10_0_0_2_8080.");

    let tcp = &ls["inbound:10.0.0.2:9090"];
    assert_eq!(
        filter_names(tcp, 0),
        [names::NETWORK_RBAC, "envoy.filters.network.tcp_proxy"]
    );
    let rules = rbac(tcp, 0).rules.expect("rules present: deny all");
    assert!(rules.policies.is_empty());
    assert!(tcp.filter_chains[0].transport_socket.is_some());
    assert!(tcp.listener_filters.is_empty());
}

#[test]
fn a_permission_without_service_sources_allows_nobody() {
    let tp = TrafficPermissionSpec::default();
    let inbound = [InboundPolicies {
        traffic_permission: Some(Named {
            name: "tp",
            spec: &tp,
        }),
        ..Default::default()
    }];
    let m = mesh("");
    let ls = listeners(Some(&m), &inbound, Default::default(), None);
    let rules = rbac(&ls["inbound:10.0.0.2:8080"], 0).rules.unwrap();
    assert!(rules.policies.is_empty());
}

#[test]
fn permissive_rbac_on_the_tls_chain_only() {
    let m = mesh("    mode: PERMISSIVE\n");
    let ls = listeners(Some(&m), &[], Default::default(), None);
    for l in ls.values() {
        assert_eq!(l.listener_filters[0].name, names::TLS_INSPECTOR);
        assert_eq!(l.filter_chains.len(), 2);
        let protocol = |i: usize| {
            l.filter_chains[i]
                .filter_chain_match
                .clone()
                .unwrap()
                .transport_protocol
        };
        assert_eq!(
            (protocol(0).as_str(), protocol(1).as_str()),
            ("tls", "raw_buffer")
        );
        assert!(l.filter_chains[0].transport_socket.is_some());
        assert_eq!(l.filter_chains[0].filters[0].name, names::NETWORK_RBAC);
        assert!(l.filter_chains[1].transport_socket.is_none());
        assert!(
            l.filter_chains[1]
                .filters
                .iter()
                .all(|f| f.name != names::NETWORK_RBAC)
        );
        // Same filters otherwise.
        assert_eq!(filter_names(l, 0)[1..], filter_names(l, 1)[..]);
    }
}

#[test]
fn sds_sources_carry_the_token_only_when_there_is_one() {
    let m = mesh("");
    let metadata = |token: Option<&str>| {
        let ls = listeners(Some(&m), &[], Default::default(), token);
        let l = &ls["inbound:10.0.0.2:9090"];
        let Some(SocketConfig::TypedConfig(any)) = &l.filter_chains[0]
            .transport_socket
            .as_ref()
            .unwrap()
            .config_type
        else {
            panic!("untyped");
        };
        let ctx = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
        let common = ctx.common_tls_context.unwrap();
        let sds = &common.tls_certificate_sds_secret_configs[0];
        assert_eq!(sds.name, names::IDENTITY_CERT_SECRET);
        let Some(ConfigSourceSpecifier::ApiConfigSource(api)) =
            &sds.sds_config.as_ref().unwrap().config_source_specifier
        else {
            panic!("not an API config source");
        };
        api.grpc_services[0]
            .initial_metadata
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect::<Vec<_>>()
    };
    assert!(metadata(None).is_empty());
    assert_eq!(
        metadata(Some("tok")),
        [("authorization".to_string(), "tok".to_string())]
    );
}

#[test]
fn fault_injection_and_proxy_template_keep_rbac_first() {
    let fi: FaultInjectionSpec = spec(
        "type: FaultInjection\nmesh: m\nname: fi\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n  abort:\n    httpStatus: 503\n    percentage: 10\n",
    );
    let pt: ProxyTemplateSpec = spec(
        "type: ProxyTemplate\nmesh: m\nname: pt\nselectors:\n- match:\n    kuma.io/service: backend\nconf:\n  imports:\n  - default-proxy\n  modifications:\n  - listener:\n      operation: patch\n      match:\n        origin: inbound\n      value: |\n        perConnectionBufferLimitBytes: 32768\n  - httpFilter:\n      operation: addBefore\n      match:\n        name: envoy.filters.http.router\n        origin: inbound\n      value: |\n        name: envoy.filters.http.cors\n        typedConfig:\n          '@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n",
    );
    let inbound = [InboundPolicies {
        fault_injection: Some(&fi),
        ..Default::default()
    }];
    let m = mesh("    mode: PERMISSIVE\n");
    let policies = DataplanePolicies {
        proxy_template: Some(&pt),
        ..Default::default()
    };
    let ls = listeners(Some(&m), &inbound, policies, None);
    let l = &ls["inbound:10.0.0.2:8080"];
    assert_eq!(
        l.per_connection_buffer_limit_bytes.map(|v| v.value),
        Some(32768)
    );
    for (chain, hcm_at) in [(0, 1), (1, 0)] {
        let f = &l.filter_chains[chain].filters[hcm_at];
        let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
            panic!("untyped");
        };
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
        let names: Vec<&str> = hcm.http_filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "envoy.filters.http.fault",
                "envoy.filters.http.cors",
                "envoy.filters.http.router"
            ]
        );
    }
    assert_eq!(l.filter_chains[0].filters[0].name, names::NETWORK_RBAC);
    assert!(l.filter_chains[0].transport_socket.is_some());
}
