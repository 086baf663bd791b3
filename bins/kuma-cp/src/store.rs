//! Opens the resource store `store.type` selects, with what the rest of
//! the control plane needs to know about it: whether this process leads
//! (runs the work that must happen once, such as DNS VIP allocation) and
//! whether the store is reachable (for `/ready`).

use crate::config::{KumaCpConfig, StoreType};
use kuma_core::store::postgres::{PostgresError, PostgresStore};
use kuma_core::store::{LocalStore, LocalStoreError, MemoryStore, ResourceStore};
use std::sync::Arc;
use tokio::sync::watch;

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
    /// The Postgres store refused to start; the error names the setting
    /// (or says to run `kuma-cp migrate up`).
    #[error(transparent)]
    Postgres(#[from] PostgresError),
}

/// An open store and its state.
pub struct OpenStore {
    /// The store.
    pub store: Arc<dyn ResourceStore>,
    /// True while this process leads. A store only this process uses
    /// (memory, local) always leads; on Postgres one replica at a time does.
    pub leadership: watch::Receiver<bool>,
    /// True while the store is reachable: always for memory and local.
    pub healthy: watch::Receiver<bool>,
}

/// A receiver that stays `value`: its sender is gone, so it keeps the last
/// value for good.
fn constant(value: bool) -> watch::Receiver<bool> {
    watch::channel(value).1
}

/// Opens the store of `config`. The local store loads everything it holds
/// before this returns; the Postgres store refuses a database that
/// `kuma-cp migrate up` has not prepared.
pub async fn open(config: &KumaCpConfig) -> Result<OpenStore, OpenError> {
    let local = |store: Arc<dyn ResourceStore>| OpenStore {
        store,
        leadership: constant(true),
        healthy: constant(true),
    };
    match config.store.store_type {
        StoreType::Memory => Ok(local(Arc::new(MemoryStore::with_event_capacity(
            STORE_EVENTS,
        )))),
        StoreType::Local => {
            let path = config.store.local.path.clone();
            // Opening reads every record from disk: off the async threads.
            let store = tokio::task::spawn_blocking(move || LocalStore::open(path, STORE_EVENTS))
                .await
                .map_err(|e| OpenError::Local(format!("opening the store failed: {e}")))?
                .map_err(|e| OpenError::Local(describe(e)))?;
            tracing::info!(path = %store.dir().display(), "opened the local store");
            Ok(local(Arc::new(store)))
        }
        StoreType::Postgres => {
            let settings = config.store.postgres.to_store_config();
            let store = PostgresStore::connect(&settings, STORE_EVENTS).await?;
            tracing::info!(
                host = %settings.host,
                port = settings.port,
                db = %settings.db_name,
                "using the postgres store"
            );
            Ok(OpenStore {
                leadership: store.leadership(),
                healthy: store.healthy(),
                store: Arc::new(store),
            })
        }
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
