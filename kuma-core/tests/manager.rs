//! The resource manager: validation, mesh checks, times and side effects.

use kuma_core::manager::{Clock, ManagerError, ResourceManager};
use kuma_core::resource::{DataplaneSpec, Resource, ResourceKey, ResourceType};
use kuma_core::store::{ListRequest, MemoryStore, ResourceStore, StoreError};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

/// A clock that advances one second per reading.
struct StepClock(AtomicI64);

impl Clock for StepClock {
    fn now(&self) -> OffsetDateTime {
        let s = self.0.fetch_add(1, Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + s).expect("valid time")
    }
}

fn setup() -> (ResourceManager, Arc<dyn ResourceStore>) {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let clock = Arc::new(StepClock(AtomicI64::new(0)));
    (ResourceManager::with_clock(store.clone(), clock), store)
}

fn dataplane(mesh: &str, name: &str, port: u32) -> Resource {
    Resource::from_yaml(&format!(
        "type: Dataplane\nmesh: {mesh}\nname: {name}\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: {port}\n    servicePort: 9000\n    tags:\n      kuma.io/service: backend\n"
    ))
    .expect("dataplane yaml")
}

fn mesh(name: &str) -> Resource {
    Resource::from_yaml(&format!("type: Mesh\nname: {name}\n")).expect("mesh yaml")
}

#[tokio::test]
async fn creating_a_mesh_creates_its_default_policies() {
    let (m, store) = setup();
    m.create(mesh("demo")).await.expect("create mesh");
    let tp = store
        .get(&ResourceKey::new(
            ResourceType::TrafficPermission,
            Some("demo"),
            "allow-all-demo",
        ))
        .await
        .expect("allow-all exists");
    tp.validate().expect("default permission is valid");
    let tr = store
        .get(&ResourceKey::new(
            ResourceType::TrafficRoute,
            Some("demo"),
            "route-all-demo",
        ))
        .await
        .expect("route-all exists");
    tr.validate().expect("default route is valid");
    assert!(tp.meta.creation_time.is_some());
}

#[tokio::test]
async fn writes_into_a_missing_mesh_are_refused() {
    let (m, store) = setup();
    let err = m.create(dataplane("nope", "dp-1", 8080)).await.unwrap_err();
    assert_eq!(err, ManagerError::MeshNotFound("nope".into()));
    let all = store
        .list(&ListRequest::all(ResourceType::Dataplane))
        .await
        .unwrap();
    assert!(all.items.is_empty());
}

#[tokio::test]
async fn invalid_resources_never_reach_the_store() {
    let (m, store) = setup();
    m.create(mesh("default")).await.unwrap();
    // Port out of range and no kuma.io/service: both reported, nothing stored.
    let bad = Resource::from_yaml(
        "type: Dataplane\nmesh: default\nname: bad\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 70000\n    tags:\n      version: v1\n",
    )
    .unwrap();
    match m.create(bad).await {
        Err(ManagerError::Validation(e)) => {
            assert!(e.has_field("networking.inbound[0].port"), "{e}");
            assert!(
                e.has_field(r#"networking.inbound[0].tags["kuma.io/service"]"#),
                "{e}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }
    assert!(matches!(
        store
            .get(&ResourceKey::new(
                ResourceType::Dataplane,
                Some("default"),
                "bad"
            ))
            .await,
        Err(StoreError::NotFound(_))
    ));
    // An invalid update leaves the stored version untouched.
    let good = m.create(dataplane("default", "dp", 8080)).await.unwrap();
    let mut broken = (*good).clone();
    broken.meta.name = "Not Valid".into();
    assert!(matches!(
        m.update(broken).await,
        Err(ManagerError::Validation(_))
    ));
    let stored = store.get(&good.key()).await.unwrap();
    assert_eq!(stored.meta.version, good.meta.version);
}

#[tokio::test]
async fn times_are_stamped_and_creation_time_is_kept() {
    let (m, _) = setup();
    m.create(mesh("default")).await.unwrap();
    let created = m.create(dataplane("default", "dp", 8080)).await.unwrap();
    assert_eq!(created.meta.creation_time, created.meta.modification_time);
    let mut next = (*created).clone();
    next.meta.creation_time = None;
    next.spec = dataplane("default", "dp", 8081).spec;
    let updated = m.update(next).await.unwrap();
    assert_eq!(updated.meta.creation_time, created.meta.creation_time);
    assert!(updated.meta.modification_time > created.meta.modification_time);
    let port = updated
        .spec_as::<DataplaneSpec>()
        .unwrap()
        .networking
        .inbound[0]
        .port;
    assert_eq!(port, 8081);
}

#[tokio::test]
async fn upsert_creates_then_updates_and_stale_updates_conflict() {
    let (m, _) = setup();
    m.create(mesh("default")).await.unwrap();
    let (first, created) = m.upsert(dataplane("default", "dp", 8080)).await.unwrap();
    assert!(created);
    let (second, created) = m.upsert(dataplane("default", "dp", 8081)).await.unwrap();
    assert!(!created);
    assert_eq!(
        second.meta.version.unwrap().0,
        first.meta.version.unwrap().0 + 1
    );
    // `first` carries an old version now.
    let stale = (*first).clone();
    assert!(matches!(
        m.update(stale).await,
        Err(ManagerError::Store(StoreError::Conflict { .. }))
    ));
}

#[tokio::test]
async fn deleting_a_mesh_deletes_its_contents() {
    let (m, store) = setup();
    m.create(mesh("a")).await.unwrap();
    m.create(mesh("b")).await.unwrap();
    m.create(dataplane("a", "dp", 8080)).await.unwrap();
    m.create(dataplane("b", "dp", 8080)).await.unwrap();
    m.delete(&ResourceKey::new(ResourceType::Mesh, None, "a"))
        .await
        .unwrap();
    for ty in [
        ResourceType::Dataplane,
        ResourceType::TrafficPermission,
        ResourceType::TrafficRoute,
    ] {
        let left = store.list(&ListRequest::all(ty)).await.unwrap();
        assert!(
            left.items
                .iter()
                .all(|r| r.meta.mesh.as_deref() == Some("b")),
            "{ty}"
        );
        assert_eq!(left.items.len(), 1, "{ty}");
    }
}
