//! Opens the resource store `store.type` selects.

use crate::config::{KumaCpConfig, StoreType};
use kuma_core::store::{LocalStore, LocalStoreError, MemoryStore, ResourceStore};
use std::sync::Arc;

/// How many changes each store subscriber may have queued.
///
/// Subscriptions are filtered by type at the store, so the
/// DataplaneInsight write every connected proxy makes after a push reaches
/// only the metrics (which recount when they overflow), not the
/// reconciler. The reconciler's queue holds the Dataplane and policy
/// changes that arrive while it regenerates; a queue that overflows costs a
/// full resync (a regeneration of every connected proxy), so it is deep
/// enough for a bulk registration of Dataplanes. Memory is taken only while
/// changes wait.
pub const STORE_EVENTS: usize = 1 << 14;

/// Why the store could not be opened: one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `store.local.path` cannot be used.
    #[error("store.local.path (KUMA_STORE_LOCAL_PATH): {0}")]
    Local(String),
    /// The build does not have this store.
    #[error(
        "store.type (KUMA_STORE_TYPE): {0:?} is not supported by this build yet; use \"local\" or \"memory\""
    )]
    Unsupported(&'static str),
}

/// Opens the store of `config`. The local store loads everything it holds
/// before this returns.
pub fn open(config: &KumaCpConfig) -> Result<Arc<dyn ResourceStore>, OpenError> {
    match config.store.store_type {
        StoreType::Memory => Ok(Arc::new(MemoryStore::with_event_capacity(STORE_EVENTS))),
        StoreType::Local => {
            let store = LocalStore::open(&config.store.local.path, STORE_EVENTS)
                .map_err(|e| OpenError::Local(describe(e)))?;
            tracing::info!(path = %store.dir().display(), "opened the local store");
            Ok(Arc::new(store))
        }
        StoreType::Postgres => Err(OpenError::Unsupported("postgres")),
    }
}

fn describe(e: LocalStoreError) -> String {
    match e {
        LocalStoreError::Locked { path } => {
            format!("{} is in use by another kuma-cp process", path.display())
        }
        LocalStoreError::Corrupt { path, reason } => format!(
            "{} is not a kuma-cp store database ({reason}); it was left untouched: move it away or point the setting elsewhere",
            path.display()
        ),
        other => other.to_string(),
    }
}
