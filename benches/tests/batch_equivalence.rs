//! The reconciler's batches share clusters and outbound network filters
//! between proxies (`kuma_xds::generate::BatchCache`); what every proxy is
//! sent must still be exactly what generating it alone gives. Checked on the
//! benchmark mesh (every policy kind, a split, access logs naming each
//! proxy's address) at a size where the reconciler splits the batch
//! between threads, after the initial generation and after a mesh-wide
//! policy change.

use kuma_benches::core::matching::PolicyIndex;
use kuma_benches::core::resource::{DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType};
use kuma_benches::core::store::{EventKind, MemoryStore, ResourceStore, StoreEvent};
use kuma_benches::fixture::{MESH, Shape, mesh_yaml, policies_yaml, timeout_all_yaml};
use kuma_xds::cache::{NodeId, SnapshotCache};
use kuma_xds::generate::{MeshView, generate_proxy};
use kuma_xds::reconcile::{ProxyEvent, Reconciler};
use kuma_xds::resource::XdsType;
use std::collections::BTreeMap;
use std::sync::Arc;

const SHAPE: Shape = Shape {
    services: 40,
    instances: 5,
    outbounds: 12,
};

fn parse(yaml: &str) -> Resource {
    Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
}

/// Every proxy's clusters and listeners as the cache has them must be
/// those `generate_proxy` gives for it alone.
fn assert_as_alone(
    cache: &SnapshotCache,
    mesh: &Resource,
    dataplanes: &[Arc<Resource>],
    policies: &[Arc<Resource>],
) {
    let index = PolicyIndex::new(policies.iter());
    let (_, protocols) = kuma_benches::derived::endpoints_and_protocols(dataplanes);
    let vips = BTreeMap::new();
    let view = MeshView {
        name: MESH,
        spec: mesh.spec_as::<MeshSpec>(),
        protocols: &protocols,
        vips: &vips,
    };
    for dp in dataplanes {
        let name = &dp.meta.name;
        let spec = dp.spec_as::<DataplaneSpec>().expect("dataplane");
        let alone: BTreeMap<(XdsType, String), bytes::Bytes> =
            generate_proxy(&index, &view, name, spec, None, None)
                .resources
                .iter()
                .map(|r| ((r.xds_type, r.name.clone()), r.body.to_bytes()))
                .collect();
        let node = NodeId {
            mesh: MESH.into(),
            name: name.clone(),
        };
        let snapshot = cache.get(&node).expect("a snapshot");
        let sent: BTreeMap<(XdsType, String), bytes::Bytes> = [XdsType::Cluster, XdsType::Listener]
            .iter()
            .flat_map(|t| snapshot.resources(*t).values())
            .map(|r| ((r.xds_type, r.name.clone()), r.body.to_bytes()))
            .collect();
        assert_eq!(sent.len(), alone.len(), "{name}: resource count");
        for (key, body) in &alone {
            assert_eq!(sent.get(key), Some(body), "{name}: {key:?}");
        }
    }
}

#[tokio::test]
async fn batches_send_every_proxy_what_it_would_get_alone() {
    let mesh = Arc::new(parse(&mesh_yaml()));
    let dataplanes: Vec<Arc<Resource>> = (0..SHAPE.dataplanes())
        .map(|n| Arc::new(parse(&SHAPE.dataplane_yaml(n, 8080))))
        .collect();
    let mut policies: Vec<Arc<Resource>> =
        policies_yaml().iter().map(|y| Arc::new(parse(y))).collect();
    let store = Arc::new(MemoryStore::with_event_capacity(1 << 12));
    let cache = Arc::new(SnapshotCache::new());
    store.create((*mesh).clone()).await.expect("mesh");
    for r in dataplanes.iter().chain(&policies) {
        store.create((**r).clone()).await.expect("create");
    }
    let nodes: Vec<NodeId> = dataplanes
        .iter()
        .map(|d| NodeId {
            mesh: MESH.into(),
            name: d.meta.name.clone(),
        })
        .collect();
    let mut r = Reconciler::new(store.clone(), cache.clone());
    r.reload().await;
    r.apply(
        [],
        nodes.iter().cloned().map(|node| ProxyEvent::Connected {
            node,
            token: None,
            resumed: false,
        }),
    )
    .await;
    r.apply([], nodes.iter().cloned().map(ProxyEvent::Ready))
        .await;
    assert_as_alone(&cache, &mesh, &dataplanes, &policies);

    // A mesh-wide change: every proxy is regenerated in one batch.
    let key = ResourceKey::new(ResourceType::Timeout, Some(MESH), "timeout-all");
    let mut changed = parse(&timeout_all_yaml("9s"));
    changed.meta.version = store.get(&key).await.expect("timeout").meta.version;
    store.update(changed).await.expect("update");
    r.apply(
        [&StoreEvent {
            kind: EventKind::Updated,
            key: key.clone(),
        }],
        [],
    )
    .await;
    let stored = store.get(&key).await.expect("timeout");
    for p in &mut policies {
        if p.meta.name == "timeout-all" {
            *p = stored.clone();
        }
    }
    assert_as_alone(&cache, &mesh, &dataplanes, &policies);
}
