//! The local store (feature `local`): conformance, durability across drops
//! and `kill -9`, the cross-process lock, and files it must not touch.
//!
//! Run with `cargo test -p kuma-core --features local --test local_store`.
//! Some tests re-run this test binary as a child process (the test
//! `child_process_entry`, selected by the `LOCAL_STORE_CHILD` variable).
#![cfg(feature = "local")]

use kuma_core::resource::{
    DataplaneSpec, MeshSpec, Resource, ResourceKey, ResourceType, TrafficPermissionSpec, Version,
};
use kuma_core::store::{
    ListRequest, LocalStore, LocalStoreError, ResourceStore, StoreError, conformance,
    local::DATABASE_FILE,
};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use time::OffsetDateTime;

const CHILD_MODE: &str = "LOCAL_STORE_CHILD";
const CHILD_DIR: &str = "LOCAL_STORE_CHILD_DIR";

fn dataplane(mesh: &str, name: &str, address: &str) -> Resource {
    let mut spec = DataplaneSpec::default();
    spec.networking.address = address.to_string();
    stamped(Resource::new(Some(mesh), name, spec))
}

/// With creation and modification times, as the manager stores them
/// (nanoseconds included, to check they come back exactly).
fn stamped(mut r: Resource) -> Resource {
    let now = OffsetDateTime::now_utc();
    r.meta.creation_time = Some(now);
    r.meta.modification_time = Some(now);
    r
}

fn dp_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Dataplane, Some(mesh), name)
}

/// Every resource of every type, in list order.
async fn everything(store: &dyn ResourceStore) -> Vec<Arc<Resource>> {
    let mut all = Vec::new();
    for ty in ResourceType::ALL {
        all.extend(store.list(&ListRequest::all(*ty)).await.unwrap().items);
    }
    all
}

fn max_version(resources: &[Arc<Resource>]) -> u64 {
    resources
        .iter()
        .filter_map(|r| r.meta.version)
        .map(|v| v.0)
        .max()
        .unwrap_or(0)
}

/// Kills (SIGKILL) and reaps a child when dropped, also when a test fails.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    /// Everything the child prints, once it exited successfully.
    fn finish(&mut self) -> String {
        let mut out = String::new();
        std::io::Read::read_to_string(&mut self.0.stdout.take().unwrap(), &mut out).unwrap();
        let status = self.0.wait().expect("wait for the child");
        assert!(status.success(), "child failed ({status}): {out}");
        out
    }
}

/// This test binary again, running only `child_process_entry` in `mode`
/// on `dir`, its stdout piped.
fn spawn_child(mode: &str, dir: &Path) -> ChildGuard {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, mode)
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the test binary as a child");
    ChildGuard(child)
}

/// Not a test of its own: the body of the child processes the other tests
/// start. Without `LOCAL_STORE_CHILD` it returns at once.
#[test]
fn child_process_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(CHILD_DIR).expect("LOCAL_STORE_CHILD_DIR"));
    match mode.as_str() {
        // Writes until killed; prints each key (and version) after its Ok.
        "writer" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let store = Arc::new(LocalStore::open(&dir, 16).expect("open"));
                store
                    .create(stamped(Resource::new(None, "m", MeshSpec::default())))
                    .await
                    .expect("create mesh");
                // Several writers at once, so commits are grouped too.
                let mut tasks = Vec::new();
                for t in 0..4 {
                    let store = store.clone();
                    tasks.push(tokio::spawn(async move {
                        for i in 0.. {
                            let name = format!("w{t}-{i}");
                            let r = store
                                .create(dataplane("m", &name, "10.0.0.1"))
                                .await
                                .expect("create");
                            println!("ACK {name} {}", r.meta.version.unwrap().0);
                        }
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            });
        }
        // Tries to open a directory the parent holds.
        "open" => match LocalStore::open(&dir, 16) {
            Err(e @ LocalStoreError::Locked { .. }) => {
                let LocalStoreError::Locked { path } = &e else {
                    unreachable!()
                };
                println!("LOCKED {}", path.display());
                println!("MESSAGE {e}");
            }
            Err(other) => println!("OTHER {other:?}"),
            Ok(_) => println!("OPENED"),
        },
        other => panic!("unknown child mode {other}"),
    }
}

#[tokio::test]
async fn conforms() {
    let root = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run(|capacity| {
        let dir = root
            .path()
            .join(format!("store-{}", n.fetch_add(1, Ordering::SeqCst)));
        LocalStore::open(dir, capacity).expect("open a fresh local store")
    })
    .await;
    assert!(n.load(Ordering::SeqCst) > 5, "run made a store per check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn loses_no_write_under_contention() {
    let root = tempfile::tempdir().unwrap();
    let store: Arc<dyn ResourceStore> = Arc::new(LocalStore::open(root.path(), 1024).unwrap());
    let report = conformance::hammer(store.clone(), 16, 20).await;
    assert_eq!(report.updates, 320);
    assert!(report.conflicts > 0, "{report:?}");
    // And all of it is on disk.
    let before = everything(store.as_ref()).await;
    drop(store);
    let reopened = LocalStore::open(root.path(), 16).unwrap();
    assert_eq!(everything(&reopened).await, before);
}

#[tokio::test]
async fn reopened_store_has_every_resource_and_versions_continue() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("nested/data");
    let store = LocalStore::open(&dir, 16).unwrap();
    assert!(dir.join(DATABASE_FILE).is_file());
    for mesh in ["default", "other"] {
        store
            .create(stamped(Resource::new(None, mesh, MeshSpec::default())))
            .await
            .unwrap();
        store
            .create(stamped(Resource::new(
                Some(mesh),
                "allow-all",
                TrafficPermissionSpec::default(),
            )))
            .await
            .unwrap();
    }
    for i in 0..20 {
        store
            .create(dataplane("default", &format!("dp-{i}"), "10.0.0.1"))
            .await
            .unwrap();
    }
    let dp = store.get(&dp_key("default", "dp-3")).await.unwrap();
    let mut next = (*dp).clone();
    next.spec = dataplane("default", "dp-3", "10.0.0.99").spec;
    next.meta.modification_time = Some(OffsetDateTime::now_utc());
    store.update(next).await.unwrap();
    store.delete(&dp_key("default", "dp-4")).await.unwrap();
    // A mesh delete cascades on disk too.
    store
        .create(dataplane("other", "gone", "10.0.0.2"))
        .await
        .unwrap();
    store
        .delete(&ResourceKey::new(ResourceType::Mesh, None, "other"))
        .await
        .unwrap();
    let before = everything(&store).await;
    assert_eq!(before.len(), 2 + 20 - 1);
    let top = max_version(&before);
    drop(store);

    let store = LocalStore::open(&dir, 16).unwrap();
    let after = everything(&store).await;
    assert_eq!(
        after, before,
        "spec, times and versions come back as they were"
    );
    assert!(
        after
            .iter()
            .all(|r| r.meta.creation_time.is_some() && r.meta.version.is_some())
    );
    assert!(matches!(
        store.get(&dp_key("other", "gone")).await,
        Err(StoreError::NotFound(_))
    ));
    // The counter continues above every version handed out before, also
    // those of deleted resources: re-creating a deleted key gets a new one.
    let recreated = store
        .create(dataplane("default", "dp-4", "10.0.0.4"))
        .await
        .unwrap();
    assert!(recreated.meta.version.unwrap() > Version(top));
    let updated = store.get(&dp_key("default", "dp-3")).await.unwrap();
    assert_eq!(
        updated
            .spec_as::<DataplaneSpec>()
            .unwrap()
            .networking
            .address,
        "10.0.0.99"
    );
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let root = tempfile::tempdir().unwrap();
    let mut child = spawn_child("writer", root.path());
    let stdout = child.0.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut acked: Vec<(String, u64)> = Vec::new();
    let parse = |line: &str| {
        let mut parts = line.strip_prefix("ACK ")?.split(' ');
        Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
    };
    // Kill it mid-stream, with writes in flight.
    while acked.len() < 200 {
        let line = lines
            .next()
            .expect("the writer stopped before 200 writes")
            .unwrap();
        acked.extend(parse(&line));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    // Acknowledgements already in the pipe count too.
    for line in lines {
        acked.extend(parse(&line.unwrap()));
    }
    drop(child);

    let store = LocalStore::open(root.path(), 16).expect("reopen after kill -9");
    for (name, version) in &acked {
        let r = store
            .get(&dp_key("m", name))
            .await_blocking()
            .unwrap_or_else(|e| panic!("acknowledged {name} is lost: {e}"));
        assert_eq!(r.meta.version, Some(Version(*version)), "{name}");
    }
}

/// Runs a store future to completion on a throwaway runtime (the reads of
/// the local store never wait).
trait AwaitBlocking: std::future::Future + Sized {
    fn await_blocking(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(self)
    }
}

impl<F: std::future::Future> AwaitBlocking for F {}

#[test]
fn a_second_process_is_refused_naming_the_directory() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("data");
    let _held = LocalStore::open(&dir, 16).unwrap();
    let mut child = spawn_child("open", &dir);
    let output = child.finish();
    assert!(
        output.contains(&format!("LOCKED {}\n", dir.display())),
        "{output}"
    );
    assert!(
        output.contains(&format!("MESSAGE {} is in use", dir.display())),
        "{output}"
    );
    // In this process too.
    match LocalStore::open(&dir, 16) {
        Err(LocalStoreError::Locked { path }) => assert_eq!(path, dir),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn the_lock_is_released_when_the_store_is_dropped() {
    let root = tempfile::tempdir().unwrap();
    drop(LocalStore::open(root.path(), 16).unwrap());
    LocalStore::open(root.path(), 16).expect("reopen after drop");
}

#[test]
fn a_file_that_is_not_the_database_is_refused_and_left_alone() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(DATABASE_FILE);
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &garbage).unwrap();
    match LocalStore::open(root.path(), 16) {
        Err(LocalStoreError::Corrupt { path, reason }) => {
            assert_eq!(path, file);
            assert!(!reason.is_empty());
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        garbage,
        "the file is untouched"
    );
    // A short one too.
    std::fs::write(&file, b"hello").unwrap();
    assert!(matches!(
        LocalStore::open(root.path(), 16),
        Err(LocalStoreError::Corrupt { .. })
    ));
    assert_eq!(std::fs::read(&file).unwrap(), b"hello");
}

#[test]
fn a_redb_file_of_another_program_or_format_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join(DATABASE_FILE);
    {
        let db = redb::Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("theirs"))
            .unwrap()
            .insert("k", 1)
            .unwrap();
        tx.commit().unwrap();
    }
    match LocalStore::open(root.path(), 16) {
        Err(LocalStoreError::Corrupt { path, reason }) => {
            assert_eq!(path, file);
            assert!(reason.contains("format version"), "{reason}");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // Ours, but from a future format.
    let root = tempfile::tempdir().unwrap();
    drop(LocalStore::open(root.path(), 16).unwrap());
    {
        let db = redb::Database::open(root.path().join(DATABASE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, u64>::new("meta"))
            .unwrap()
            .insert("format_version", 99)
            .unwrap();
        tx.commit().unwrap();
    }
    match LocalStore::open(root.path(), 16) {
        Err(LocalStoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("99"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }

    // Ours, with a record that does not decode.
    let root = tempfile::tempdir().unwrap();
    drop(LocalStore::open(root.path(), 16).unwrap());
    {
        let db = redb::Database::open(root.path().join(DATABASE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<(&str, &str, &str), (u64, &str)>::new("resources"))
            .unwrap()
            .insert(("Dataplane", "m", "bad"), (1, "{not json"))
            .unwrap();
        tx.commit().unwrap();
    }
    match LocalStore::open(root.path(), 16) {
        Err(LocalStoreError::Corrupt { reason, .. }) => {
            assert!(reason.contains("Dataplane m/bad"), "{reason}")
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn a_regular_file_in_place_of_the_directory_is_an_io_error() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    match LocalStore::open(&file, 16) {
        Err(e @ LocalStoreError::Io { .. }) => {
            let LocalStoreError::Io { path, .. } = &e else {
                unreachable!()
            };
            assert_eq!(path, &file);
            assert!(e.to_string().contains("not a directory"), "{e}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}
