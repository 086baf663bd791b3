//! The reconciler, driven through `reload` and `apply`.

use super::*;
use crate::generate;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use kuma_core::manager::ResourceManager;
use kuma_core::store::{EventKind, MemoryStore};
use prost::Message;

const MTLS_MESH: &str = "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n";
const DP: &str = "type: Dataplane\nmesh: m\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 8081\n    tags:\n      kuma.io/service: backend\n";
const LISTENER: &str = "inbound:10.0.0.2:8080";

fn resource(yaml: &str) -> Resource {
    Resource::from_yaml(yaml).unwrap()
}

fn updated(r: &Resource) -> StoreEvent {
    StoreEvent {
        kind: EventKind::Updated,
        key: r.key(),
    }
}

fn node() -> NodeId {
    NodeId {
        mesh: "m".into(),
        name: "backend-1".into(),
    }
}

fn inbound(cache: &SnapshotCache) -> Listener {
    let snapshot = cache.get(&node()).expect("a snapshot");
    let r = &snapshot.resources(crate::resource::XdsType::Listener)[LISTENER];
    Listener::decode(r.body.to_bytes()).unwrap()
}

/// The RBAC policy names of the inbound's first filter, or `None`
/// without an RBAC filter.
fn rbac_policies(l: &Listener) -> Option<Vec<String>> {
    let f = &l.filter_chains[0].filters[0];
    if f.name != generate::names::NETWORK_RBAC {
        return None;
    }
    let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
        panic!("untyped RBAC filter");
    };
    let rbac = Rbac::decode(any.value.as_slice()).unwrap();
    let mut names: Vec<String> = rbac.rules.unwrap().policies.into_keys().collect();
    names.sort();
    Some(names)
}

#[tokio::test]
async fn mesh_and_permission_changes_regenerate_with_the_proxy_token() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let manager = ResourceManager::new(store.clone());
    let plain_mesh = resource("type: Mesh\nname: m\n");
    manager.upsert(plain_mesh.clone()).await.unwrap();
    manager.upsert(resource(DP)).await.unwrap();
    let cache = Arc::new(SnapshotCache::new());
    let mut r = Reconciler::new(store.clone(), cache.clone());
    r.reload().await;
    let token: Arc<str> = Arc::from("the-token");
    r.apply(
        [],
        [ProxyEvent::Connected {
            node: node(),
            token: Some(token.clone()),
            resumed: false,
        }],
    )
    .await;
    // mTLS off: no TLS, no RBAC, and the token appears nowhere.
    let l = inbound(&cache);
    assert!(l.filter_chains[0].transport_socket.is_none());
    assert_eq!(rbac_policies(&l), None);

    // The Mesh turns mTLS on: TLS and the default allow-all RBAC, SDS
    // sources carrying the token.
    let mtls_mesh = resource(MTLS_MESH);
    manager.upsert(mtls_mesh.clone()).await.unwrap();
    r.apply([&updated(&mtls_mesh)], []).await;
    let l = inbound(&cache);
    assert!(l.filter_chains[0].transport_socket.is_some());
    assert_eq!(rbac_policies(&l), Some(vec!["allow-all-m".to_string()]));
    let bytes = l.encode_to_vec();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"authorization") && has(b"the-token"));

    // A more specific permission replaces allow-all for the inbound.
    let tp = resource(
        "type: TrafficPermission\nmesh: m\nname: web-only\nsources:\n- match:\n    kuma.io/service: web\ndestinations:\n- match:\n    kuma.io/service: backend\n",
    );
    manager.upsert(tp.clone()).await.unwrap();
    r.apply([&updated(&tp)], []).await;
    assert_eq!(
        rbac_policies(&inbound(&cache)),
        Some(vec!["web-only".to_string()])
    );

    // No permission left: deny all.
    let mut events = Vec::new();
    for name in ["web-only", "allow-all-m"] {
        let key = ResourceKey::new(ResourceType::TrafficPermission, Some("m"), name);
        manager.delete(&key).await.unwrap();
        events.push(StoreEvent {
            kind: EventKind::Deleted,
            key,
        });
    }
    r.apply(&events, []).await;
    assert_eq!(rbac_policies(&inbound(&cache)), Some(vec![]));

    // A resync keeps the proxy's token.
    r.reload().await;
    let bytes = inbound(&cache).encode_to_vec();
    assert!(bytes.windows(9).any(|w| w == b"the-token"));

    // mTLS off again: back to plain.
    manager.upsert(plain_mesh.clone()).await.unwrap();
    r.apply([&updated(&plain_mesh)], []).await;
    let l = inbound(&cache);
    assert!(l.filter_chains[0].transport_socket.is_none());
    assert_eq!(rbac_policies(&l), None);
}

#[test]
fn debug_never_shows_the_token() {
    let e = ProxyEvent::Connected {
        node: node(),
        token: Some(Arc::from("secret-token")),
        resumed: false,
    };
    let text = format!("{e:?}");
    assert!(
        !text.contains("secret-token") && text.contains("<redacted>"),
        "{text}"
    );
    let p = ProxyState::new(1, Some(Arc::from("secret-token")));
    assert!(!format!("{p:?}").contains("secret-token"));
}

/// The endpoints (`address:port`) `web-1`'s snapshot has for `backend`.
fn backend_endpoints(cache: &SnapshotCache) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::address::Address as Addr;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let web = NodeId {
        mesh: "m".into(),
        name: "web-1".into(),
    };
    let snapshot = cache.get(&web).expect("web-1 has a snapshot");
    let mut out = Vec::new();
    for r in snapshot
        .resources(crate::resource::XdsType::Endpoint)
        .values()
    {
        let cla = ClusterLoadAssignment::decode(r.body.to_bytes()).unwrap();
        if !cla.cluster_name.starts_with("backend") {
            continue;
        }
        for lb in cla.endpoints.iter().flat_map(|l| &l.lb_endpoints) {
            if let Some(HostIdentifier::Endpoint(e)) = &lb.host_identifier
                && let Some(Addr::SocketAddress(sa)) =
                    e.address.as_ref().and_then(|a| a.address.as_ref())
            {
                let port = match &sa.port_specifier {
                    Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => *p,
                    _ => 0,
                };
                out.push(format!("{}:{port}", sa.address));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_new_proxy_warms_until_ready_and_a_resumed_one_does_not() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let manager = ResourceManager::new(store.clone());
    manager
        .upsert(resource("type: Mesh\nname: m\n"))
        .await
        .unwrap();
    manager
        .upsert(resource(
            "type: Dataplane\nmesh: m\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 8081\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n",
        ))
        .await
        .unwrap();
    let cache = Arc::new(SnapshotCache::new());
    let mut r = Reconciler::new(store.clone(), cache.clone());
    r.reload().await;
    let connected = |name: &str, resumed| ProxyEvent::Connected {
        node: NodeId {
            mesh: "m".into(),
            name: name.into(),
        },
        token: None,
        resumed,
    };
    r.apply([], [connected("web-1", false)]).await;
    assert_eq!(backend_endpoints(&cache), Vec::<String>::new());

    // A proxy that just started announces itself before its Dataplane is
    // written (as the ADS session does): its instance waits for Ready.
    r.apply([], [connected("backend-1", false)]).await;
    // No snapshot without its Dataplane: an empty one would take away
    // what a reconnecting Envoy serves with.
    assert!(cache.get(&node()).is_none());
    let dp = resource(DP);
    manager.upsert(dp.clone()).await.unwrap();
    r.apply([&updated(&dp)], []).await;
    assert_eq!(backend_endpoints(&cache), Vec::<String>::new());
    assert!(cache.get(&node()).is_some());
    r.apply([], [ProxyEvent::Ready(node())]).await;
    assert_eq!(backend_endpoints(&cache), vec!["10.0.0.2:8080"]);

    // A proxy that reconnects holding configuration (a control-plane
    // restart) has its listeners: its instance is advertised at once.
    let dp2 = resource(
        &DP.replace("backend-1", "backend-2")
            .replace("10.0.0.2", "10.0.0.3"),
    );
    manager.upsert(dp2.clone()).await.unwrap();
    r.apply([&updated(&dp2)], [connected("backend-2", true)])
        .await;
    assert_eq!(
        backend_endpoints(&cache),
        vec!["10.0.0.2:8080", "10.0.0.3:8080"]
    );
}
