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
    };
    let text = format!("{e:?}");
    assert!(
        !text.contains("secret-token") && text.contains("<redacted>"),
        "{text}"
    );
    let p = ProxyState::new(1, Some(Arc::from("secret-token")));
    assert!(!format!("{p:?}").contains("secret-token"));
}
