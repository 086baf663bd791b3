//! A conformance suite for [`ResourceStore`] implementations.
//!
//! Every store (the in-memory one here, a Postgres one later) runs the same
//! checks, so they are interchangeable. The functions panic on the first
//! difference, like any test assertion: this module is test code, built
//! only with the `conformance` feature, which the dev-dependencies of a
//! store's tests enable.
//!
//! ```
//! use kuma_core::store::{conformance, MemoryStore};
//!
//! # tokio_test_block_on(async {
//! conformance::run(MemoryStore::with_event_capacity).await;
//! # });
//! # fn tokio_test_block_on(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```

use super::{Event, EventKind, ListRequest, ResourceStore, StoreError, StoreEvent, Subscription};
use crate::resource::{
    DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType, TrafficPermissionSpec,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many changes a subscriber may queue in the stores [`run`] makes.
pub const CAPACITY: usize = 4;

/// Runs every check, each on a fresh store from `make`: `make(capacity)`
/// is a store whose subscribers each queue up to `capacity` changes.
pub async fn run<S: ResourceStore, F: Fn(usize) -> S>(make: F) {
    let make = || make(CAPACITY);
    create_and_get(&make()).await;
    update_and_conflicts(&make()).await;
    delete(&make()).await;
    list_and_page(&make()).await;
    mesh_cascade(&make()).await;
    events(&make()).await;
    subscriptions_start_with_resync(&make()).await;
    subscriptions_filter_by_type(&make()).await;
    lag_becomes_resync(&make(), CAPACITY).await;
    keys_are_independent(&make()).await;
    versions_never_repeat(&make()).await;
}

/// Takes the items queued in `sub` now, without waiting.
fn queued(sub: &mut Subscription) -> Vec<Event> {
    std::iter::from_fn(|| sub.try_next()).collect()
}

/// The changes queued in `sub` after its leading [`Event::Resync`].
fn changes_after_resync(sub: &mut Subscription) -> Vec<StoreEvent> {
    let items = queued(sub);
    assert_eq!(items.first(), Some(&Event::Resync), "{items:?}");
    items[1..]
        .iter()
        .map(|e| match e {
            Event::Changed(e) => e.clone(),
            Event::Resync => panic!("an unexpected resync in {items:?}"),
        })
        .collect()
}

fn mesh(name: &str) -> Resource {
    Resource::new(None, name, MeshSpec::default())
}

fn dataplane(mesh: &str, name: &str, address: &str) -> Resource {
    let mut spec = DataplaneSpec::default();
    spec.networking.address = address.to_string();
    Resource::new(Some(mesh), name, spec)
}

fn address(r: &Resource) -> &str {
    r.spec_as::<DataplaneSpec>()
        .map(|d| d.networking.address.as_str())
        .unwrap_or_default()
}

fn dp_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Dataplane, Some(mesh), name)
}

/// `create` stores with a version; `get` returns it; a second `create` fails.
pub async fn create_and_get(store: &dyn ResourceStore) {
    let created = store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    assert!(created.meta.version.is_some(), "create sets a version");
    let got = store.get(&dp_key("m", "a")).await.expect("get");
    assert_eq!(*got, *created);
    assert_eq!(address(&got), "10.0.0.1");
    match store.create(dataplane("m", "a", "10.0.0.2")).await {
        Err(StoreError::AlreadyExists(k)) => assert_eq!(k, dp_key("m", "a")),
        other => panic!("second create must fail with AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        address(&store.get(&dp_key("m", "a")).await.expect("get")),
        "10.0.0.1"
    );
    match store.get(&dp_key("m", "missing")).await {
        Err(StoreError::NotFound(k)) => assert_eq!(k, dp_key("m", "missing")),
        other => panic!("get of a missing key must be NotFound, got {other:?}"),
    }
}

/// `update` needs the stored version, bumps it, and reports conflicts.
pub async fn update_and_conflicts(store: &dyn ResourceStore) {
    let v1 = store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    let mut next = (*v1).clone();
    next.spec = dataplane("m", "a", "10.0.0.2").spec;
    let v2 = store.update(next.clone()).await.expect("update");
    assert!(
        v2.meta.version > v1.meta.version,
        "update must raise the version: {:?} -> {:?}",
        v1.meta.version,
        v2.meta.version
    );
    assert_eq!(
        address(&store.get(&dp_key("m", "a")).await.expect("get")),
        "10.0.0.2"
    );

    // `next` still carries the first version: a stale write.
    next.spec = dataplane("m", "a", "10.0.0.3").spec;
    match store.update(next.clone()).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, dp_key("m", "a"));
            assert_eq!(Some(expected), v1.meta.version);
            assert_eq!(Some(actual), v2.meta.version);
        }
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert_eq!(
        address(&store.get(&dp_key("m", "a")).await.expect("get")),
        "10.0.0.2"
    );

    next.meta.version = None;
    assert!(matches!(
        store.update(next).await,
        Err(StoreError::MissingVersion(_))
    ));

    let mut missing = dataplane("m", "missing", "10.0.0.9");
    missing.meta.version = v1.meta.version;
    assert!(matches!(
        store.update(missing).await,
        Err(StoreError::NotFound(_))
    ));
}

/// `delete` removes; deleting a missing key is `NotFound`.
pub async fn delete(store: &dyn ResourceStore) {
    let first = store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    store.delete(&dp_key("m", "a")).await.expect("delete");
    assert!(matches!(
        store.get(&dp_key("m", "a")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete(&dp_key("m", "a")).await,
        Err(StoreError::NotFound(_))
    ));
    // A deleted key can be created again, at a version above every
    // version it had (see `versions_never_repeat`).
    let again = store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    assert!(again.meta.version > first.meta.version);
}

/// The versions of one key strictly increase over its whole history,
/// across delete and re-create and across a mesh's cascade: a consumer
/// that caches by (key, version), such as the token signing-key cache,
/// never mistakes a re-created resource for the one it replaced.
pub async fn versions_never_repeat(store: &dyn ResourceStore) {
    let mut seen = Vec::new();
    let mut last = store.create(mesh("m")).await.expect("create mesh");
    let key = dp_key("m", "a");
    for round in 0..3 {
        let created = store
            .create(dataplane("m", "a", "10.0.0.1"))
            .await
            .expect("create");
        seen.push(created.meta.version);
        let mut next = (*created).clone();
        next.spec = dataplane("m", "a", "10.0.0.2").spec;
        let updated = store.update(next).await.expect("update");
        seen.push(updated.meta.version);
        if round == 1 {
            // Removed by the mesh's cascade this time.
            store.delete(&last.key()).await.expect("delete mesh");
            last = store.create(mesh("m")).await.expect("re-create mesh");
        } else {
            store.delete(&key).await.expect("delete");
        }
    }
    assert!(seen.iter().all(Option::is_some), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "versions of {key} must strictly increase across delete and re-create: {seen:?}"
    );
    let _ = last;
}

fn names(items: &[Arc<Resource>]) -> Vec<String> {
    items
        .iter()
        .map(|r| format!("{}/{}", r.meta.mesh.as_deref().unwrap_or("-"), r.meta.name))
        .collect()
}

/// `list` filters by type and mesh, orders by (mesh, name) and pages.
pub async fn list_and_page(store: &dyn ResourceStore) {
    for (m, n) in [
        ("m2", "b"),
        ("m1", "c"),
        ("m1", "a"),
        ("m2", "a"),
        ("m1", "b"),
    ] {
        store
            .create(dataplane(m, n, "10.0.0.1"))
            .await
            .expect("create");
    }
    store
        .create(Resource::new(
            Some("m1"),
            "a",
            TrafficPermissionSpec::default(),
        ))
        .await
        .expect("create");
    store.create(mesh("m1")).await.expect("create");
    store.create(mesh("m2")).await.expect("create");

    let all = store
        .list(&ListRequest::all(ResourceType::Dataplane))
        .await
        .expect("list");
    assert_eq!(names(&all.items), ["m1/a", "m1/b", "m1/c", "m2/a", "m2/b"]);
    assert_eq!(all.total, 5);
    assert_eq!(all.next_offset, None);

    let m2 = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "m2"))
        .await
        .expect("list");
    assert_eq!(names(&m2.items), ["m2/a", "m2/b"]);
    assert_eq!(m2.total, 2);

    let none = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "m3"))
        .await
        .expect("list");
    assert!(none.items.is_empty());
    assert_eq!(none.total, 0);

    let meshes = store
        .list(&ListRequest::all(ResourceType::Mesh))
        .await
        .expect("list");
    assert_eq!(names(&meshes.items), ["-/m1", "-/m2"]);

    let empty = store
        .list(&ListRequest::all(ResourceType::Timeout))
        .await
        .expect("list");
    assert!(empty.items.is_empty());

    // Pages of 2 over 5 items: 2 + 2 + 1, then no next offset.
    let mut seen = Vec::new();
    let mut offset = None;
    let mut pages = 0;
    loop {
        let page = store
            .list(&ListRequest::all(ResourceType::Dataplane).paged(2, offset.take()))
            .await
            .expect("list page");
        assert_eq!(page.total, 5);
        assert!(page.items.len() <= 2);
        seen.extend(names(&page.items));
        pages += 1;
        match page.next_offset {
            Some(o) => offset = Some(o),
            None => break,
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["m1/a", "m1/b", "m1/c", "m2/a", "m2/b"]);

    // Paging within a mesh.
    let p1 = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "m1").paged(2, None))
        .await
        .expect("list");
    assert_eq!(names(&p1.items), ["m1/a", "m1/b"]);
    assert_eq!(p1.total, 3);
    let p2 = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "m1").paged(2, p1.next_offset))
        .await
        .expect("list");
    assert_eq!(names(&p2.items), ["m1/c"]);
    assert_eq!(p2.next_offset, None);

    // An exact fit leaves no next page.
    let fit = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "m2").paged(2, None))
        .await
        .expect("list");
    assert_eq!(fit.next_offset, None);

    let bad = store
        .list(&ListRequest::all(ResourceType::Dataplane).paged(2, Some("not-an-offset!".into())))
        .await;
    assert!(matches!(bad, Err(StoreError::InvalidOffset(_))), "{bad:?}");
}

/// Deleting a Mesh deletes everything in it and nothing else.
pub async fn mesh_cascade(store: &dyn ResourceStore) {
    store.create(mesh("doomed")).await.expect("create");
    store.create(mesh("kept")).await.expect("create");
    for m in ["doomed", "kept"] {
        store
            .create(dataplane(m, "dp", "10.0.0.1"))
            .await
            .expect("create");
        store
            .create(Resource::new(
                Some(m),
                "tp",
                TrafficPermissionSpec::default(),
            ))
            .await
            .expect("create");
    }
    let mut events = store.subscribe(ResourceType::ALL);
    store
        .delete(&ResourceKey::new(ResourceType::Mesh, None, "doomed"))
        .await
        .expect("delete mesh");
    for ty in [ResourceType::Dataplane, ResourceType::TrafficPermission] {
        let left = store.list(&ListRequest::all(ty)).await.expect("list");
        assert_eq!(
            names(&left.items).len(),
            1,
            "{ty}: {:?}",
            names(&left.items)
        );
        assert_eq!(left.items[0].meta.mesh.as_deref(), Some("kept"));
    }
    let mut deleted = BTreeSet::new();
    for e in changes_after_resync(&mut events) {
        assert_eq!(e.kind, EventKind::Deleted);
        deleted.insert(e.key);
    }
    let expected: BTreeSet<_> = [
        ResourceKey::new(ResourceType::Mesh, None, "doomed"),
        dp_key("doomed", "dp"),
        ResourceKey::new(ResourceType::TrafficPermission, Some("doomed"), "tp"),
    ]
    .into();
    assert_eq!(deleted, expected);
}

/// Every write is published, in order, after the leading resync.
pub async fn events(store: &dyn ResourceStore) {
    let mut rx = store.subscribe(&[ResourceType::Dataplane]);
    let v1 = store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    store.update((*v1).clone()).await.expect("update");
    store.delete(&dp_key("m", "a")).await.expect("delete");
    let _ = store.delete(&dp_key("m", "a")).await; // a failed write publishes nothing
    let got = changes_after_resync(&mut rx);
    let k = dp_key("m", "a");
    assert_eq!(
        got,
        [
            StoreEvent {
                kind: EventKind::Added,
                key: k.clone()
            },
            StoreEvent {
                kind: EventKind::Updated,
                key: k.clone()
            },
            StoreEvent {
                kind: EventKind::Deleted,
                key: k
            },
        ]
    );
}

/// A subscription's first item is a resync, ready at once, and a change
/// made after `subscribe` returned comes after it, for every subscriber.
pub async fn subscriptions_start_with_resync(store: &dyn ResourceStore) {
    let mut quiet = store.subscribe(&[ResourceType::Dataplane]);
    assert_eq!(queued(&mut quiet), [Event::Resync]);
    let mut sub = store.subscribe(&[ResourceType::Dataplane]);
    store
        .create(dataplane("m", "a", "10.0.0.1"))
        .await
        .expect("create");
    assert_eq!(sub.next().await, Some(Event::Resync));
    assert_eq!(
        sub.next().await,
        Some(Event::Changed(StoreEvent {
            kind: EventKind::Added,
            key: dp_key("m", "a"),
        }))
    );
    assert_eq!(queued(&mut quiet).len(), 1, "the change reached both");
}

/// A subscriber sees only the types it follows, and changes of other types,
/// however many, never make it lag.
pub async fn subscriptions_filter_by_type(store: &dyn ResourceStore) {
    let mut meshes = store.subscribe(&[ResourceType::Mesh]);
    let mut both = store.subscribe(&[ResourceType::Mesh, ResourceType::TrafficPermission]);
    store.create(mesh("m")).await.expect("create");
    for n in 0..4 * CAPACITY {
        store
            .create(dataplane("m", &format!("dp-{n}"), "10.0.0.1"))
            .await
            .expect("create");
    }
    store
        .create(Resource::new(
            Some("m"),
            "tp",
            TrafficPermissionSpec::default(),
        ))
        .await
        .expect("create");
    store.delete(&dp_key("m", "dp-0")).await.expect("delete");
    let mesh_added = StoreEvent {
        kind: EventKind::Added,
        key: ResourceKey::new(ResourceType::Mesh, None, "m"),
    };
    assert_eq!(
        changes_after_resync(&mut meshes),
        std::slice::from_ref(&mesh_added)
    );
    assert_eq!(
        changes_after_resync(&mut both),
        [
            mesh_added,
            StoreEvent {
                kind: EventKind::Added,
                key: ResourceKey::new(ResourceType::TrafficPermission, Some("m"), "tp"),
            },
        ]
    );
}

/// A subscriber that lets more than `capacity` changes queue up (the
/// store's per-subscriber bound) gets a resync in their place, never an
/// error; once it re-listed, it sees everything, and it follows changes as
/// before.
pub async fn lag_becomes_resync(store: &dyn ResourceStore, capacity: usize) {
    let mut sub = store.subscribe(&[ResourceType::Dataplane]);
    assert_eq!(sub.next().await, Some(Event::Resync));
    let writes = 2 * capacity + 1;
    for n in 0..writes {
        store
            .create(dataplane("m", &format!("dp-{n}"), "10.0.0.1"))
            .await
            .expect("create");
    }
    // The resync comes first; what follows it (if anything) are changes
    // made after the queue overflowed, in order.
    let after = changes_after_resync(&mut sub);
    assert!(after.len() <= capacity, "{after:?}");
    let listed = store
        .list(&ListRequest::all(ResourceType::Dataplane))
        .await
        .expect("list");
    assert_eq!(listed.total, writes);
    store.delete(&dp_key("m", "dp-0")).await.expect("delete");
    assert_eq!(
        sub.next().await,
        Some(Event::Changed(StoreEvent {
            kind: EventKind::Deleted,
            key: dp_key("m", "dp-0"),
        }))
    );
}

/// The same name in another type or mesh is another resource.
pub async fn keys_are_independent(store: &dyn ResourceStore) {
    store
        .create(dataplane("m1", "x", "10.0.0.1"))
        .await
        .expect("create");
    store
        .create(dataplane("m2", "x", "10.0.0.2"))
        .await
        .expect("create");
    store
        .create(Resource::new(
            Some("m1"),
            "x",
            TrafficPermissionSpec::default(),
        ))
        .await
        .expect("create");
    store.create(mesh("x")).await.expect("create");
    assert_eq!(
        address(&store.get(&dp_key("m1", "x")).await.expect("get")),
        "10.0.0.1"
    );
    assert_eq!(
        address(&store.get(&dp_key("m2", "x")).await.expect("get")),
        "10.0.0.2"
    );
    store.delete(&dp_key("m1", "x")).await.expect("delete");
    assert!(store.get(&dp_key("m2", "x")).await.is_ok());
    assert!(
        store
            .get(&ResourceKey::new(
                ResourceType::TrafficPermission,
                Some("m1"),
                "x"
            ))
            .await
            .is_ok()
    );
}

/// What [`hammer`] observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HammerReport {
    /// Updates of the shared resource that succeeded.
    pub updates: usize,
    /// Updates of the shared resource rejected as conflicts.
    pub conflicts: usize,
}

/// Hammers a store from `tasks` tokio tasks at once: each creates and deletes
/// resources of its own and increments a shared counter resource with
/// read-modify-write, retrying on conflict. Checks that no write is lost
/// (the counter equals the number of successful updates and its version
/// rose at least once per update), that every lost race was reported as a conflict, and that each
/// task's own resources are exactly what it left. Needs a tokio runtime.
pub async fn hammer(store: Arc<dyn ResourceStore>, tasks: usize, rounds: usize) -> HammerReport {
    let counter = dp_key("hammer", "counter");
    let initial = store
        .create(dataplane("hammer", "counter", "0"))
        .await
        .expect("create counter")
        .meta
        .version
        .expect("create sets a version");
    let updates = Arc::new(AtomicUsize::new(0));
    let conflicts = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, counter) = (store.clone(), counter.clone());
        let (updates, conflicts) = (updates.clone(), conflicts.clone());
        handles.push(tokio::spawn(async move {
            for r in 0..rounds {
                let own = format!("t{t}-r{r}");
                store
                    .create(dataplane("hammer", &own, "10.0.0.1"))
                    .await
                    .expect("create own");
                loop {
                    let cur = store.get(&counter).await.expect("get counter");
                    let n: u64 = address(&cur).parse().expect("counter value");
                    let mut next = (*cur).clone();
                    next.spec = dataplane("hammer", "counter", &(n + 1).to_string()).spec;
                    // Let other tasks run between the read and the write, so
                    // read-modify-write races happen even on one core.
                    tokio::task::yield_now().await;
                    match store.update(next).await {
                        Ok(_) => {
                            updates.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => {
                            conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => panic!("unexpected update error: {e}"),
                    }
                }
                if r % 2 == 1 {
                    store
                        .delete(&dp_key("hammer", &own))
                        .await
                        .expect("delete own");
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("task panicked");
    }
    let updates = updates.load(Ordering::SeqCst);
    let conflicts = conflicts.load(Ordering::SeqCst);
    let cur = store.get(&counter).await.expect("get counter");
    assert_eq!(updates, tasks * rounds, "every increment eventually lands");
    assert_eq!(
        address(&cur),
        (tasks * rounds).to_string(),
        "no increment lost"
    );
    assert!(
        cur.meta.version.map_or(0, |v| v.0) >= initial.0 + updates as u64,
        "every update raises the version: {:?} after {updates} updates from {initial:?}",
        cur.meta.version
    );
    let left = store
        .list(&ListRequest::in_mesh(ResourceType::Dataplane, "hammer"))
        .await
        .expect("list");
    let mut expected: BTreeSet<String> = (0..tasks)
        .flat_map(|t| {
            (0..rounds)
                .filter(|r| r % 2 == 0)
                .map(move |r| format!("t{t}-r{r}"))
        })
        .collect();
    expected.insert("counter".into());
    let got: BTreeSet<String> = left.items.iter().map(|r| r.meta.name.clone()).collect();
    assert_eq!(got, expected);
    HammerReport { updates, conflicts }
}
