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

// --- mTLS side effects: builtin CAs and provided CA checks (`pki` feature) ---

#[cfg(feature = "pki")]
mod mtls {
    use super::*;
    use kuma_core::pki::{self, Issuer};
    use kuma_core::resource::{MeshSpec, SecretSpec};
    use kuma_core::store::Subscription;

    fn mesh_yaml(name: &str, mtls: &str) -> Resource {
        Resource::from_yaml(&format!("type: Mesh\nname: {name}\nmtls:\n{mtls}")).expect("mesh yaml")
    }

    const BUILTIN: &str =
        "  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n";

    async fn secret(store: &Arc<dyn ResourceStore>, mesh: &str, name: &str) -> Option<String> {
        match store
            .get(&ResourceKey::new(ResourceType::Secret, Some(mesh), name))
            .await
        {
            Ok(r) => Some(String::from_utf8(r.spec_as::<SecretSpec>().unwrap().bytes()).unwrap()),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => panic!("{e}"),
        }
    }

    async fn secret_names(store: &Arc<dyn ResourceStore>, mesh: &str) -> Vec<String> {
        store
            .list(&ListRequest::in_mesh(ResourceType::Secret, mesh))
            .await
            .unwrap()
            .items
            .iter()
            .map(|r| r.meta.name.clone())
            .collect()
    }

    async fn builtin_issuer(store: &Arc<dyn ResourceStore>, mesh: &str, backend: &str) -> Issuer {
        let cert = secret(store, mesh, &pki::builtin_ca_cert_secret(mesh, backend))
            .await
            .expect("cert secret");
        let key = secret(store, mesh, &pki::builtin_ca_key_secret(mesh, backend))
            .await
            .expect("key secret");
        Issuer::from_pem(&cert, &key).expect("generated CA loads")
    }

    #[tokio::test]
    async fn creating_a_mesh_with_a_builtin_backend_generates_its_ca() {
        let (m, store) = setup();
        let created = m.create(mesh_yaml("demo", BUILTIN)).await.unwrap();
        assert_eq!(
            secret_names(&store, "demo").await,
            ["demo.ca-builtin-cert-ca-1", "demo.ca-builtin-key-ca-1"]
        );
        let issuer = builtin_issuer(&store, "demo", "ca-1").await;
        let left = issuer
            .not_after()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(
            left > std::time::Duration::from_secs(9 * 365 * 86_400),
            "{left:?}"
        );
        // The loader finds the same CA through the mesh.
        let spec = created.spec_as::<MeshSpec>().unwrap();
        let loaded = pki::load_mesh_issuer(store.as_ref(), "demo", spec)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(loaded.ca_cert_pem(), issuer.ca_cert_pem());
    }

    #[tokio::test]
    async fn updates_keep_existing_cas_and_generate_new_ones() {
        let (m, store) = setup();
        m.create(mesh_yaml("demo", BUILTIN)).await.unwrap();
        let first = builtin_issuer(&store, "demo", "ca-1").await;
        let two = "  enabledBackend: ca-2\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n    conf:\n      caCert:\n        expiration: 1d\n";
        let (_, created) = m.upsert(mesh_yaml("demo", two)).await.unwrap();
        assert!(!created);
        assert_eq!(
            builtin_issuer(&store, "demo", "ca-1").await.ca_cert_pem(),
            first.ca_cert_pem()
        );
        let second = builtin_issuer(&store, "demo", "ca-2").await;
        let left = second
            .not_after()
            .duration_since(std::time::SystemTime::now())
            .unwrap();
        assert!(left <= std::time::Duration::from_secs(86_400), "{left:?}");
        // Upsert of a new mesh goes through create.
        let (_, created) = m.upsert(mesh_yaml("other", BUILTIN)).await.unwrap();
        assert!(created);
        builtin_issuer(&store, "other", "ca-1").await;
    }

    #[tokio::test]
    async fn a_failing_ca_leaves_nothing_behind() {
        let (m, store) = setup();
        // 9000 years does not fit in a certificate: generation fails.
        let bad = "  backends:\n  - name: ok\n    type: builtin\n  - name: bad\n    type: builtin\n    conf:\n      caCert:\n        expiration: 9000y\n";
        let err = m.create(mesh_yaml("demo", bad)).await.unwrap_err();
        assert!(
            matches!(&err, ManagerError::Ca { field, .. } if field == "mtls.backends[1]"),
            "{err}"
        );
        assert!(matches!(
            store
                .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(secret_names(&store, "demo").await.is_empty());
        let tp = ResourceKey::new(
            ResourceType::TrafficPermission,
            Some("demo"),
            "allow-all-demo",
        );
        assert!(store.get(&tp).await.is_err());

        // On update: the new backend's CA is rolled back and the Mesh is unchanged.
        m.create(mesh_yaml("demo", BUILTIN)).await.unwrap();
        let before = store
            .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
            .await
            .unwrap();
        let bad_update = "  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-2\n    type: builtin\n  - name: bad\n    type: builtin\n    conf:\n      caCert:\n        expiration: 9000y\n";
        let err = m.upsert(mesh_yaml("demo", bad_update)).await.unwrap_err();
        assert!(matches!(err, ManagerError::Ca { .. }), "{err}");
        assert_eq!(
            secret_names(&store, "demo").await,
            ["demo.ca-builtin-cert-ca-1", "demo.ca-builtin-key-ca-1"]
        );
        let after = store
            .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
            .await
            .unwrap();
        assert_eq!(before, after);
    }

    #[tokio::test]
    async fn half_a_builtin_pair_is_refused_with_advice() {
        let (m, store) = setup();
        m.create(mesh("demo")).await.unwrap();
        m.create(Resource::new(
            Some("demo"),
            "demo.ca-builtin-cert-ca-1",
            SecretSpec::from_bytes(b"stale"),
        ))
        .await
        .unwrap();
        let err = m.upsert(mesh_yaml("demo", BUILTIN)).await.unwrap_err();
        let ManagerError::Validation(v) = err else {
            panic!("{err}")
        };
        assert_eq!(v.violations[0].field, "mtls.backends[0]");
        assert!(v.violations[0].message.contains("demo.ca-builtin-key-ca-1"));
        assert_eq!(
            secret_names(&store, "demo").await,
            ["demo.ca-builtin-cert-ca-1"]
        );
    }

    /// A store that lets a "concurrent writer" create a key Secret just
    /// before this manager's own create of it.
    struct RacingStore {
        inner: MemoryStore,
        theirs: String,
    }

    #[async_trait::async_trait]
    impl ResourceStore for RacingStore {
        async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
            self.inner.get(key).await
        }
        async fn list(&self, r: &ListRequest) -> Result<kuma_core::store::ListPage, StoreError> {
            self.inner.list(r).await
        }
        async fn create(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
            if resource.resource_type() == ResourceType::Secret
                && resource.meta.name.contains("ca-builtin-key")
            {
                let mut theirs = resource.clone();
                theirs.spec = SecretSpec::from_bytes(self.theirs.as_bytes()).into();
                let _ = self.inner.create(theirs).await;
            }
            self.inner.create(resource).await
        }
        async fn update(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
            self.inner.update(resource).await
        }
        async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
            self.inner.delete(key).await
        }
        fn subscribe(&self, types: &[ResourceType]) -> Subscription {
            self.inner.subscribe(types)
        }
    }

    #[tokio::test]
    async fn a_concurrent_writer_keeps_its_ca() {
        let store: Arc<dyn ResourceStore> = Arc::new(RacingStore {
            inner: MemoryStore::new(),
            theirs: "their key".into(),
        });
        let m = ResourceManager::new(store.clone());
        m.create(mesh_yaml("demo", BUILTIN)).await.unwrap();
        // Our key lost the race, so we did not write our certificate either.
        assert_eq!(
            secret(&store, "demo", "demo.ca-builtin-key-ca-1")
                .await
                .as_deref(),
            Some("their key")
        );
        assert_eq!(
            secret(&store, "demo", "demo.ca-builtin-cert-ca-1").await,
            None
        );
    }

    fn provided(cert: &str, key: &str) -> String {
        format!(
            "  enabledBackend: p\n  backends:\n  - name: p\n    type: provided\n    conf:\n      cert:\n        {cert}\n      key:\n        {key}\n"
        )
    }

    #[tokio::test]
    async fn an_enabled_provided_ca_must_load() {
        let (m, store) = setup();
        // Secrets can only exist once the mesh does: create it without mTLS.
        m.create(mesh("demo")).await.unwrap();
        let bad = mesh_yaml("demo", &provided("secret: ca-cert", "secret: ca-key"));
        let err = m.upsert(bad.clone()).await.unwrap_err();
        let ManagerError::Validation(v) = err else {
            panic!("{err}")
        };
        assert_eq!(v.violations[0].field, "mtls.backends[0].conf.cert");
        assert_eq!(v.violations[0].message, "secret \"ca-cert\" not found");
        let stored = store
            .get(&ResourceKey::new(ResourceType::Mesh, None, "demo"))
            .await
            .unwrap();
        assert!(stored.spec_as::<MeshSpec>().unwrap().mtls.is_none());

        let ca = pki::generate_ca("demo", std::time::Duration::from_secs(3600)).unwrap();
        let other = pki::generate_ca("x", std::time::Duration::from_secs(3600)).unwrap();
        for (name, data) in [("ca-cert", &ca.cert_pem), ("ca-key", &other.key_pem)] {
            m.create(Resource::new(
                Some("demo"),
                name,
                SecretSpec::from_bytes(data.as_bytes()),
            ))
            .await
            .unwrap();
        }
        let ManagerError::Validation(v) = m.upsert(bad.clone()).await.unwrap_err() else {
            panic!()
        };
        assert_eq!(v.violations[0].field, "mtls.backends[0].conf.key");
        assert!(!v.violations[0].message.contains("PRIVATE"));

        // Inline sources on create work; a declared but not enabled provided
        // backend is not loaded.
        let inline = provided(
            &format!("inlineString: {:?}", ca.cert_pem),
            &format!("inlineString: {:?}", ca.key_pem),
        );
        m.create(mesh_yaml("inline", &inline)).await.unwrap();
        let disabled = "  backends:\n  - name: p\n    type: provided\n    conf:\n      cert:\n        secret: nope\n      key:\n        secret: nope\n";
        m.create(mesh_yaml("disabled", disabled)).await.unwrap();
        // Not PEM at all.
        let err = m
            .create(mesh_yaml(
                "junk",
                &provided("inlineString: junk", "inlineString: junk"),
            ))
            .await
            .unwrap_err();
        let ManagerError::Validation(v) = err else {
            panic!("{err}")
        };
        assert_eq!(v.violations[0].field, "mtls.backends[0].conf.cert");
        assert!(matches!(
            store
                .get(&ResourceKey::new(ResourceType::Mesh, None, "junk"))
                .await,
            Err(StoreError::NotFound(_))
        ));
    }
}
