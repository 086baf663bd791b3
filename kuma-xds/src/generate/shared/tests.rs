use super::*;
use crate::generate::{MeshView, generate_proxy};
use crate::resource::XdsType;
use kuma_core::matching::PolicyIndex;
use kuma_core::resource::{DataplaneSpec, MeshSpec, Resource};
use std::collections::BTreeMap;

fn parse(yaml: &str) -> Arc<Resource> {
    Arc::new(Resource::from_yaml(yaml).expect("valid yaml"))
}

fn dataplane(name: &str, service: &str, address: &str) -> Arc<Resource> {
    parse(&format!(
        "type: Dataplane\nmesh: m\nname: {name}\nnetworking:\n  address: {address}\n  \
             inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      \
             kuma.io/service: {service}\n      kuma.io/protocol: http\n  outbound:\n  \
             - port: 10001\n    tags:\n      kuma.io/service: backend\n  \
             - port: 10002\n    tags:\n      kuma.io/service: db\n"
    ))
}

fn policy(kind: &str, name: &str, src: &str, dst: &str, conf: &str) -> Arc<Resource> {
    parse(&format!(
        "type: {kind}\nmesh: m\nname: {name}\nsources:\n- match:\n    kuma.io/service: '{src}'\n\
             destinations:\n- match:\n    kuma.io/service: '{dst}'\n{conf}"
    ))
}

/// name -> encoded bytes of a proxy's clusters and listeners.
fn bodies(out: &crate::generate::ProxyResources) -> BTreeMap<(XdsType, String), bytes::Bytes> {
    out.resources
        .iter()
        .map(|r| ((r.xds_type, r.name.clone()), r.body.to_bytes()))
        .collect()
}

#[test]
fn shared_clusters_are_what_each_proxy_would_get_alone() {
    let policies = [
        policy(
            "TrafficRoute",
            "split",
            "*",
            "backend",
            "conf:\n  split:\n  - weight: 50\n    destination:\n      kuma.io/service: backend\n      version: v1\n  \
                 - weight: 50\n    destination:\n      kuma.io/service: db\n",
        ),
        policy(
            "HealthCheck",
            "hc-all",
            "*",
            "*",
            "conf:\n  interval: 10s\n  timeout: 2s\n",
        ),
        // Only web's clusters of backend get this one.
        policy(
            "HealthCheck",
            "hc-web-backend",
            "web",
            "backend",
            "conf:\n  interval: 3s\n  timeout: 1s\n",
        ),
        policy(
            "CircuitBreaker",
            "cb-api-db",
            "api",
            "db",
            "conf:\n  thresholds:\n    maxConnections: 2\n",
        ),
        policy(
            "Timeout",
            "t-all",
            "*",
            "*",
            "conf:\n  connectTimeout: 7s\n  http:\n    requestTimeout: 2s\n",
        ),
        policy(
            "Retry",
            "retry-web",
            "web",
            "*",
            "conf:\n  http:\n    numRetries: 3\n",
        ),
        // Access logs name the proxy's address: never shared.
        policy("TrafficLog", "log-all", "*", "*", ""),
        parse(
            "type: TrafficTrace\nmesh: m\nname: trace-all\nselectors:\n- match:\n    \
                 kuma.io/service: '*'\n",
        ),
    ];
    let dataplanes = [
        dataplane("web-1", "web", "10.0.0.1"),
        dataplane("api-1", "api", "10.0.0.2"),
        dataplane("web-2", "web", "10.0.0.3"),
        dataplane("api-2", "api", "10.0.0.4"),
        dataplane("other-1", "other", "10.0.0.5"),
    ];
    let mesh = parse(
        "type: Mesh\nname: m\nlogging:\n  defaultBackend: file\n  backends:\n  \
             - name: file\n    type: file\n    conf:\n      path: /tmp/access.log\n\
             tracing:\n  defaultBackend: zipkin\n  backends:\n  - name: zipkin\n    \
             type: zipkin\n    conf:\n      url: http://127.0.0.1:9411/api/v2/spans\n",
    );
    let protocols = [
        ("backend".to_string(), Protocol::Http),
        ("db".to_string(), Protocol::Tcp),
    ]
    .into();
    let vips = BTreeMap::new();
    let view = MeshView {
        name: "m",
        spec: mesh.spec_as::<MeshSpec>(),
        protocols: &protocols,
        vips: &vips,
    };
    let index = PolicyIndex::new(policies.iter());
    let mut shared = BatchCache::for_index(&index);
    for dp in &dataplanes {
        let spec = dp.spec_as::<DataplaneSpec>().expect("dataplane");
        let name = &dp.meta.name;
        let alone = generate_proxy(&index, &view, name, spec, None, None);
        let in_batch = generate_proxy(&index, &view, name, spec, None, Some(&mut shared));
        assert_eq!(bodies(&alone), bodies(&in_batch), "{name}");
        // In a batch, an outbound listener holds its connection
        // manager as a shared part of its body; alone, one buffer.
        let parts = |out: &crate::generate::ProxyResources| -> Vec<usize> {
            out.resources
                .iter()
                .filter(|r| r.name.starts_with("outbound:"))
                .map(|r| r.body.parts().len())
                .collect()
        };
        assert_eq!(parts(&in_batch), [3, 3], "{name}");
        assert_eq!(parts(&alone), [1, 1], "{name}");
        assert_eq!(alone.eds_clusters, in_batch.eds_clusters, "{name}");
    }
    // Clusters: each proxy has `backend;version=v1` and `db` (the
    // split). web's `backend;version=v1` (hc-web-backend) and api's
    // `db` (cb-api-db) are their own; api's `backend;version=v1` and
    // web's `db` are the plain ones `other` gets too. Filters: web's
    // two have retry-web; api's backend filter is other's, api's db
    // filter (cb-api-db: the key names every policy) its own, other's
    // db filter differs from web's (no retry). The second instances
    // take all four of theirs from the cache, `other` three.
    assert_eq!(shared.len(), 4 + 5);
    assert_eq!(shared.hits(), 4 + 4 + 3);
}

#[test]
fn proxies_with_a_proxy_template_or_a_token_under_mtls_share_nothing() {
    let template = parse(
        "type: ProxyTemplate\nmesh: m\nname: pt\nselectors:\n- match:\n    \
             kuma.io/service: web\nconf:\n  imports:\n  - default-proxy\n",
    );
    let plain = parse("type: Mesh\nname: m\n");
    let mtls = parse(
        "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  \
             - name: ca-1\n    type: builtin\n",
    );
    let protocols = BTreeMap::new();
    let vips = BTreeMap::new();
    let policies = [template];
    let index = PolicyIndex::new(policies.iter());
    let shared_by = |mesh: &Resource, name: &str, service: &str, token: Option<&str>| {
        let view = MeshView {
            name: "m",
            spec: mesh.spec_as::<MeshSpec>(),
            protocols: &protocols,
            vips: &vips,
        };
        let dp = dataplane(name, service, "10.0.0.1");
        let spec = dp.spec_as::<DataplaneSpec>().expect("dataplane");
        let mut shared = BatchCache::for_index(&index);
        generate_proxy(&index, &view, name, spec, token, Some(&mut shared));
        shared.len()
    };
    // `web` has the ProxyTemplate, `api` has not.
    // Two clusters and two outbound filters, or nothing.
    assert_eq!(shared_by(&plain, "web-1", "web", None), 0);
    assert_eq!(shared_by(&plain, "api-1", "api", None), 4);
    assert_eq!(shared_by(&mtls, "api-1", "api", None), 4);
    // Filters only: the clusters carry the token.
    assert_eq!(shared_by(&mtls, "api-1", "api", Some("token")), 2);
    assert_eq!(shared_by(&plain, "api-1", "api", Some("token")), 4);
}
