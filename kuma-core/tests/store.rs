//! Store behaviour under concurrency, through the public API.

use kuma_core::store::{MemoryStore, ResourceStore, conformance};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_store_loses_no_write_under_contention() {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    let report = conformance::hammer(store, 16, 50).await;
    assert_eq!(report.updates, 800);
    // With 16 writers racing on one counter, some writes must have lost a
    // race; each was reported rather than silently applied.
    assert!(report.conflicts > 0, "{report:?}");
}
