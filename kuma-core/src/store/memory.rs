//! The in-memory store.

use super::{ListPage, ListRequest, ResourceStore, StoreError, StoreEvent};
use crate::resource::{Resource, ResourceKey};
use std::sync::Arc;
use tokio::sync::broadcast;

/// The reference [`ResourceStore`]: everything in memory, nothing to install.
#[derive(Debug)]
pub struct MemoryStore {
    events: broadcast::Sender<StoreEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            events: broadcast::channel(4096).0,
        }
    }
}

#[async_trait::async_trait]
impl ResourceStore for MemoryStore {
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        Err(StoreError::NotFound(key.clone()))
    }
    async fn list(&self, _request: &ListRequest) -> Result<ListPage, StoreError> {
        Err(StoreError::Backend("not yet".into()))
    }
    async fn create(&self, _resource: Resource) -> Result<Arc<Resource>, StoreError> {
        Err(StoreError::Backend("not yet".into()))
    }
    async fn update(&self, _resource: Resource) -> Result<Arc<Resource>, StoreError> {
        Err(StoreError::Backend("not yet".into()))
    }
    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        Err(StoreError::NotFound(key.clone()))
    }
    fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }
}
