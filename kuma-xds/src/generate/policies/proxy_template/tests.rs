use super::super::super::{DataplanePolicies, Protocol, build};
use super::*;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use kuma_core::resource::{DataplaneSpec, ProxyTemplateSpec, Resource};
use std::collections::BTreeMap;

const DP: &str = "type: Dataplane\nmesh: m\nname: web\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n      kuma.io/protocol: http\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n  - port: 10002\n    tags:\n      kuma.io/service: db\n";

/// The proxy's config after applying the template `conf` (YAML under
/// `conf:`).
fn run(conf: &str) -> ProxyConfig {
    let dp = Resource::from_yaml(DP)
        .unwrap()
        .spec_as::<DataplaneSpec>()
        .unwrap()
        .clone();
    let template = Resource::from_yaml(&format!(
            "type: ProxyTemplate\nmesh: m\nname: t\nselectors:\n- match:\n    kuma.io/service: '*'\nconf:\n{conf}"
        ))
        .unwrap();
    let spec = template.spec_as::<ProxyTemplateSpec>().unwrap();
    let protocols = [("backend".to_string(), Protocol::Http)].into();
    let policies = BTreeMap::new();
    let vips = BTreeMap::new();
    let input = ProxyInput {
        mesh: "m",
        name: "web",
        dataplane: &dp,
        mesh_spec: None,
        outbound_policies: &policies,
        inbound_policies: &[],
        dataplane_policies: DataplanePolicies {
            proxy_template: Some(spec),
            ..Default::default()
        },
        protocols: &protocols,
        vips: &vips,
        sds_token: None,
    };
    let (mut config, _) = build(&input);
    apply(&mut config, &input);
    config
}

fn cluster_names(c: &ProxyConfig) -> Vec<&str> {
    c.clusters.iter().map(|c| c.name.as_str()).collect()
}

fn listener_names(c: &ProxyConfig) -> Vec<&str> {
    c.listeners.iter().map(|l| l.name.as_str()).collect()
}

fn listener<'a>(c: &'a ProxyConfig, name: &str) -> &'a Listener {
    c.listeners.iter().find(|l| l.name == name).unwrap()
}

fn hcm(l: &Listener) -> HttpConnectionManager {
    match &l.filter_chains[0].filters[0].config_type {
        Some(FilterConfig::TypedConfig(any)) => decode_any(any).unwrap(),
        other => panic!("{other:?}"),
    }
}

fn http_filter_names(l: &Listener) -> Vec<String> {
    hcm(l).http_filters.into_iter().map(|f| f.name).collect()
}

const RAW_CLUSTER: &str = "  resources:\n  - name: admin\n    version: v1\n    resource: |\n      '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n      name: admin\n      connectTimeout: 5s\n      type: STATIC\n";

#[test]
fn imports_keep_or_drop_generated_resources() {
    let kept = run(&format!("  imports:\n  - default-proxy\n{RAW_CLUSTER}"));
    assert_eq!(
        cluster_names(&kept),
        ["localhost:9000", "backend", "db", "admin"]
    );
    assert_eq!(kept.listeners.len(), 3);
    let only = run(RAW_CLUSTER);
    assert_eq!(cluster_names(&only), ["admin"]);
    assert!(only.listeners.is_empty());
    let c = &only.clusters[0];
    assert_eq!(c.connect_timeout.unwrap().seconds, 5);
    assert_eq!(
        c.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
    );
}

#[test]
fn raw_listener_and_unsupported_type() {
    let c = run(
        "  resources:\n  - name: l\n    resource: '{\"@type\": \"type.googleapis.com/envoy.config.listener.v3.Listener\", \"name\": \"extra\", \"address\": {\"socketAddress\": {\"address\": \"0.0.0.0\", \"portValue\": 9999}}}'\n  - name: r\n    resource: |\n      '@type': type.googleapis.com/envoy.config.route.v3.RouteConfiguration\n      name: r\n",
    );
    assert_eq!(listener_names(&c), ["extra"]);
    assert!(c.clusters.is_empty());
}

#[test]
fn cluster_add_patch_remove() {
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - cluster:\n      operation: add\n      value: |\n        name: extra\n        connectTimeout: 1s\n  - cluster:\n      operation: patch\n      match:\n        origin: outbound\n      value: |\n        connectTimeout: 7s\n  - cluster:\n      operation: remove\n      match:\n        name: db\n",
    );
    assert_eq!(cluster_names(&c), ["localhost:9000", "backend", "extra"]);
    let timeout = |name: &str| {
        c.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .connect_timeout
            .map(|d| d.seconds)
    };
    // `extra` was added by a modification: its origin is not outbound.
    assert_eq!(timeout("extra"), Some(1));
    assert_eq!(timeout("backend"), Some(7));
    assert_ne!(timeout("localhost:9000"), Some(7));
}

#[test]
fn listener_add_patch_remove_by_name_origin_tags() {
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - listener:\n      operation: add\n      value: |\n        name: extra\n        address:\n          socketAddress: {address: 0.0.0.0, portValue: 9999}\n  - listener:\n      operation: patch\n      match:\n        origin: inbound\n      value: |\n        perConnectionBufferLimitBytes: 1024\n  - listener:\n      operation: remove\n      match:\n        tags:\n          kuma.io/service: db\n",
    );
    assert_eq!(
        listener_names(&c),
        ["inbound:10.0.0.1:8080", "outbound:127.0.0.1:10001", "extra"]
    );
    let limit = |name: &str| {
        listener(&c, name)
            .per_connection_buffer_limit_bytes
            .map(|v| v.value)
    };
    assert_eq!(limit("inbound:10.0.0.1:8080"), Some(1024));
    assert_eq!(limit("outbound:127.0.0.1:10001"), None);
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - listener:\n      operation: remove\n      match:\n        name: outbound:127.0.0.1:10001\n",
    );
    assert_eq!(
        listener_names(&c),
        ["inbound:10.0.0.1:8080", "outbound:127.0.0.1:10002"]
    );
}

const TCP: &str = "envoy.filters.network.tcp_proxy";
const RBAC: &str = "name: envoy.filters.network.rbac\n        typedConfig:\n          '@type': type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC\n          statPrefix: rbac\n";

fn network_filter_names(l: &Listener) -> Vec<&str> {
    l.filter_chains[0]
        .filters
        .iter()
        .map(|f| f.name.as_str())
        .collect()
}

#[test]
fn network_filter_operations() {
    for (op, extra, want) in [
        ("addFirst", "", vec!["envoy.filters.network.rbac", TCP]),
        ("addLast", "", vec![TCP, "envoy.filters.network.rbac"]),
        (
            "addBefore",
            "        name: envoy.filters.network.tcp_proxy\n",
            vec!["envoy.filters.network.rbac", TCP],
        ),
        (
            "addAfter",
            "        name: envoy.filters.network.tcp_proxy\n",
            vec![TCP, "envoy.filters.network.rbac"],
        ),
        (
            "addAfter",
            "        name: envoy.filters.network.missing\n",
            vec![TCP],
        ),
    ] {
        let c = run(&format!(
            "  imports: [default-proxy]\n  modifications:\n  - networkFilter:\n      operation: {op}\n      match:\n        listenerName: outbound:127.0.0.1:10002\n{extra}      value: |\n        {RBAC}"
        ));
        assert_eq!(
            network_filter_names(listener(&c, "outbound:127.0.0.1:10002")),
            want,
            "{op}"
        );
        // Other listeners untouched.
        assert_eq!(
            network_filter_names(listener(&c, "outbound:127.0.0.1:10001")),
            ["envoy.filters.network.http_connection_manager"]
        );
    }
}

#[test]
fn network_filter_patch_merges_typed_config_and_remove() {
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - networkFilter:\n      operation: patch\n      match:\n        name: envoy.filters.network.tcp_proxy\n      value: |\n        name: envoy.filters.network.tcp_proxy\n        typedConfig:\n          '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          idleTimeout: 10s\n",
    );
    let f = &listener(&c, "outbound:127.0.0.1:10002").filter_chains[0].filters[0];
    let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
        panic!()
    };
    let p: TcpProxy = decode_any(any).unwrap();
    assert_eq!(p.idle_timeout.unwrap().seconds, 10);
    assert_eq!(p.stat_prefix, "db", "existing fields kept");

    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - networkFilter:\n      operation: remove\n      match:\n        name: envoy.filters.network.tcp_proxy\n",
    );
    assert!(network_filter_names(listener(&c, "outbound:127.0.0.1:10002")).is_empty());
    assert_eq!(
        network_filter_names(listener(&c, "outbound:127.0.0.1:10001")).len(),
        1
    );
}

const ROUTER: &str = "envoy.filters.http.router";
const CORS: &str = "name: envoy.filters.http.cors\n        typedConfig:\n          '@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors\n";

#[test]
fn http_filter_operations() {
    let cors = "envoy.filters.http.cors";
    for (op, extra, want) in [
        ("addFirst", "", vec![cors, ROUTER]),
        ("addLast", "", vec![ROUTER, cors]),
        (
            "addBefore",
            "        name: envoy.filters.http.router\n",
            vec![cors, ROUTER],
        ),
        (
            "addAfter",
            "        name: envoy.filters.http.router\n",
            vec![ROUTER, cors],
        ),
    ] {
        let c = run(&format!(
            "  imports: [default-proxy]\n  modifications:\n  - httpFilter:\n      operation: {op}\n      match:\n        origin: inbound\n{extra}      value: |\n        {CORS}"
        ));
        assert_eq!(
            http_filter_names(listener(&c, "inbound:10.0.0.1:8080")),
            want,
            "{op}"
        );
        assert_eq!(
            http_filter_names(listener(&c, "outbound:127.0.0.1:10001")),
            [ROUTER]
        );
    }
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - httpFilter:\n      operation: patch\n      match:\n        name: envoy.filters.http.router\n      value: |\n        name: envoy.filters.http.router\n        typedConfig:\n          '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n          suppressEnvoyHeaders: true\n  - httpFilter:\n      operation: remove\n      match:\n        name: envoy.filters.http.router\n        listenerName: outbound:127.0.0.1:10001\n",
    );
    use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
    let h = hcm(listener(&c, "inbound:10.0.0.1:8080"));
    let Some(HttpFilterConfig::TypedConfig(any)) = &h.http_filters[0].config_type else {
        panic!()
    };
    assert!(decode_any::<Router>(any).unwrap().suppress_envoy_headers);
    assert!(http_filter_names(listener(&c, "outbound:127.0.0.1:10001")).is_empty());
}

fn hosts(l: &Listener) -> Vec<VirtualHost> {
    match hcm(l).route_specifier {
        Some(RouteSpecifier::RouteConfig(r)) => r.virtual_hosts,
        other => panic!("{other:?}"),
    }
}

#[test]
fn virtual_host_add_patch_remove() {
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - virtualHost:\n      operation: add\n      match:\n        routeConfigurationName: outbound:backend\n      value: |\n        name: extra\n        domains: [extra.com]\n  - virtualHost:\n      operation: patch\n      match:\n        origin: inbound\n      value: |\n        responseHeadersToAdd:\n        - header: {key: x-patched, value: 'yes'}\n",
    );
    let out = hosts(listener(&c, "outbound:127.0.0.1:10001"));
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].name, "extra");
    assert_eq!(out[1].domains, ["extra.com"]);
    assert!(out.iter().all(|h| h.response_headers_to_add.is_empty()));
    let inb = hosts(listener(&c, "inbound:10.0.0.1:8080"));
    assert_eq!(inb[0].response_headers_to_add.len(), 1);
    assert!(!inb[0].domains.is_empty(), "existing fields kept");

    let name = out[0].name.clone();
    let c = run(&format!(
        "  imports: [default-proxy]\n  modifications:\n  - virtualHost:\n      operation: remove\n      match:\n        name: {name}\n"
    ));
    assert!(hosts(listener(&c, "outbound:127.0.0.1:10001")).is_empty());
}

#[test]
fn invalid_values_are_skipped_not_fatal() {
    let c = run(
        "  imports: [default-proxy]\n  modifications:\n  - cluster:\n      operation: patch\n      value: |\n        connectTimeout: soon\n  - cluster:\n      operation: remove\n      match:\n        name: db\n",
    );
    assert_eq!(cluster_names(&c), ["localhost:9000", "backend"]);
}
