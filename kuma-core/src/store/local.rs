//! The local store: every resource in memory, every write made durable in
//! one embedded database file before it is acknowledged.
//!
//! See docs/architecture.md, "Stores and subscriptions".
//!
//! Layout: a directory holding one redb file, [`DATABASE_FILE`]. Its
//! `meta` table records the [`FORMAT_VERSION`] and the store-wide version
//! counter; its `resources` table maps `(type, mesh, name)` to `(version,
//! universal JSON)`. redb locks the file, so one process at a time has a
//! directory open; its copy-on-write commits recover by themselves from a
//! crash or a power loss.
//!
//! Reads never touch the disk. Writes go to one writer thread, which
//! checks them against its copy of the state, commits them to the file
//! (fsync'd), and only then applies them to the state reads see and
//! publishes their events, in commit order. Writes that arrive while a
//! commit is in flight are committed together in the next transaction
//! (group commit); each is acknowledged only after that commit.

use super::memory::{Types, list_page, remove_mesh_members, slot};
use super::{
    EventHub, EventKind, ListPage, ListRequest, ResourceStore, StoreError, StoreEvent, Subscription,
};
use crate::resource::{Resource, ResourceKey, ResourceType, Version};
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableError,
    TableHandle,
};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use tokio::sync::oneshot;

/// The database file inside a local store's directory.
pub const DATABASE_FILE: &str = "store.redb";

/// The layout of the records this version reads and writes; recorded in
/// the file, and a file recording another one is refused as
/// [`LocalStoreError::Corrupt`].
pub const FORMAT_VERSION: u64 = 1;

/// At most this many writes go into one transaction.
const MAX_BATCH: usize = 1024;

/// The page cache redb keeps; reads are served from memory, so this only
/// holds the pages a commit touches.
const CACHE_BYTES: usize = 32 * 1024 * 1024;

const RESOURCES: TableDefinition<(&str, &str, &str), (u64, &str)> =
    TableDefinition::new("resources");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format_version";
const LAST_VERSION_KEY: &str = "last_version";

/// Why a [`LocalStore`] could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalStoreError {
    /// Another process (or another `LocalStore` in this one) has the
    /// directory's database open.
    #[error("{} is in use by another process", path.display())]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// The file is not a database of this store: not a redb file, another
    /// format version, or a record that does not decode. Nothing was
    /// written to it.
    #[error("{} is not a usable store database: {reason}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Reading or creating the directory or the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A durable [`ResourceStore`] in a local directory (feature `local`).
///
/// Opening loads every resource into memory; reads are as fast as
/// [`super::MemoryStore`]'s. A write returns `Ok` only once it is committed
/// to disk, so a `kill -9` right after loses nothing; versions come from one
/// store-wide counter kept in the same file, so they keep rising across
/// restarts. Dropping the store finishes the writes in flight and closes
/// the file, releasing the directory for the next `open`.
#[derive(Debug)]
pub struct LocalStore {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

/// What readers and the writer thread share.
#[derive(Debug)]
struct Shared {
    /// The committed state; only the writer thread writes it.
    types: RwLock<Types>,
    events: EventHub,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, Types> {
        // Every critical section applies whole changes, so a poisoned lock
        // still guards a consistent map.
        self.types.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Types> {
        self.types.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
enum Op {
    Create(Resource),
    Update(Resource),
    Delete(ResourceKey),
}

type Reply = Result<Option<Arc<Resource>>, StoreError>;

#[derive(Debug)]
struct Job {
    op: Op,
    reply: oneshot::Sender<Reply>,
}

/// One change a commit makes, in order.
#[derive(Debug)]
enum Change {
    Put(Arc<Resource>),
    Remove(ResourceKey),
}

impl LocalStore {
    /// Opens the store in `dir` (created, with its parents, if missing),
    /// creating its database file if there is none, and loads every
    /// resource. Subscribers each queue up to `event_capacity` changes.
    ///
    /// Opening never rewrites a file that is not this store's database:
    /// such a file is reported as [`LocalStoreError::Corrupt`] and left
    /// as it was.
    pub fn open(dir: impl AsRef<Path>, event_capacity: usize) -> Result<Self, LocalStoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|source| LocalStoreError::Io {
            path: dir.clone(),
            source: if source.kind() == std::io::ErrorKind::AlreadyExists {
                std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    "it exists and is not a directory",
                )
            } else {
                source
            },
        })?;
        let file = dir.join(DATABASE_FILE);
        let exists = match std::fs::metadata(&file) {
            Ok(m) => m.len() > 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(source) => return Err(LocalStoreError::Io { path: file, source }),
        };
        let mut builder = Database::builder();
        builder.set_cache_size(CACHE_BYTES);
        // `open` never initializes a file; `create` only initializes a
        // missing or empty one.
        let opened = if exists {
            builder.open(&file)
        } else {
            builder.create(&file)
        };
        let db = opened.map_err(|e| open_error(e, &dir, &file))?;
        let (types, last_version) = load(&db, &file)?;
        let shared = Arc::new(Shared {
            types: RwLock::new(types.clone()),
            events: EventHub::new(event_capacity),
        });
        let (jobs, queue) = mpsc::channel();
        let writer = Writer {
            db,
            shared: shared.clone(),
            shadow: types,
            last_version,
        };
        let writer = std::thread::Builder::new()
            .name("local-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|source| LocalStoreError::Io {
                path: dir.clone(),
                source,
            })?;
        Ok(Self {
            shared,
            jobs: Some(jobs),
            writer: Some(writer),
            dir,
        })
    }

    /// The directory this store keeps its database in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn submit(&self, op: Op) -> Reply {
        let stopped = || StoreError::Backend("the local store's writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(Job { op, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for LocalStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer after the writes already in
        // it; joining it closes the database before the drop returns.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn open_error(e: DatabaseError, dir: &Path, file: &Path) -> LocalStoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            LocalStoreError::Locked {
                path: dir.to_path_buf(),
            }
        }
        DatabaseError::UpgradeRequired(v) => LocalStoreError::Corrupt {
            path: file.to_path_buf(),
            reason: format!("written in redb file format {v}, which this version does not read"),
        },
        DatabaseError::Storage(e) => redb_error(e.into(), file),
        other => LocalStoreError::Corrupt {
            path: file.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Classifies an error of redb while reading the file at open.
fn redb_error(e: redb::Error, file: &Path) -> LocalStoreError {
    match e {
        // redb reports a file without its magic number as InvalidData.
        redb::Error::Io(source) if source.kind() != std::io::ErrorKind::InvalidData => {
            LocalStoreError::Io {
                path: file.to_path_buf(),
                source,
            }
        }
        other => LocalStoreError::Corrupt {
            path: file.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

/// Loads every resource and the version counter, initializing a database
/// that has no tables at all (new, or created by a process that died
/// before its first commit).
fn load(db: &Database, file: &Path) -> Result<(Types, u64), LocalStoreError> {
    let corrupt = |reason: String| LocalStoreError::Corrupt {
        path: file.to_path_buf(),
        reason,
    };
    let err = |e: redb::Error| redb_error(e, file);
    let read = db.begin_read().map_err(|e| err(e.into()))?;
    let meta = match read.open_table(META) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => {
            let tables: Vec<String> = read
                .list_tables()
                .map_err(|e| err(e.into()))?
                .map(|t| t.name().to_string())
                .collect();
            if !tables.is_empty() {
                return Err(corrupt(format!(
                    "it has no format version (tables: {}): not a kuma-cp store",
                    tables.join(", ")
                )));
            }
            drop(read);
            initialize(db).map_err(err)?;
            return Ok((Types::new(), 0));
        }
        Err(e) => return Err(err(e.into())),
    };
    let format = meta
        .get(FORMAT_KEY)
        .map_err(|e| err(e.into()))?
        .map(|v| v.value());
    match format {
        Some(FORMAT_VERSION) => {}
        Some(other) => {
            return Err(corrupt(format!(
                "its format version is {other}; this version reads {FORMAT_VERSION}"
            )));
        }
        None => return Err(corrupt("it has no format version".into())),
    }
    let mut last_version = meta
        .get(LAST_VERSION_KEY)
        .map_err(|e| err(e.into()))?
        .map(|v| v.value())
        .ok_or_else(|| corrupt("it has no version counter".into()))?;
    let resources = read.open_table(RESOURCES).map_err(|e| err(e.into()))?;
    let mut types = Types::new();
    for entry in resources.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        let (ty, mesh, name) = k.value();
        let (version, json) = v.value();
        let record = || format!("record {ty} {mesh}/{name}");
        let mut resource = Resource::from_json(json)
            .map_err(|e| corrupt(format!("{} does not decode: {e}", record())))?;
        let key = resource.key();
        if key.resource_type.name() != ty
            || key.mesh.as_deref().unwrap_or("") != mesh
            || key.name != name
        {
            return Err(corrupt(format!("{} holds {key}", record())));
        }
        resource.meta.version = Some(Version(version));
        // The counter is written with every record; a larger record
        // version is still honoured so versions can never repeat.
        last_version = last_version.max(version);
        types
            .entry(key.resource_type)
            .or_default()
            .insert(slot(&key), Arc::new(resource));
    }
    Ok((types, last_version))
}

fn initialize(db: &Database) -> Result<(), redb::Error> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)?;
        meta.insert(LAST_VERSION_KEY, 0)?;
        tx.open_table(RESOURCES)?;
    }
    tx.commit()?;
    Ok(())
}

/// The writer thread: owns the database and a copy of the state that
/// runs ahead of the committed one by the batch being built.
struct Writer {
    db: Database,
    shared: Arc<Shared>,
    /// The committed state plus the changes of the batch being built.
    shadow: Types,
    /// The last version handed out, in `shadow`.
    last_version: u64,
}

impl Writer {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        while let Ok(first) = queue.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    fn commit_batch(&mut self, batch: Vec<Job>) {
        let start_version = self.last_version;
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let mut replies = Vec::with_capacity(batch.len());
        for job in batch {
            let result = self.apply(job.op, &mut changes, &mut events);
            replies.push((job.reply, result));
        }
        if !changes.is_empty() {
            match self.persist(&changes) {
                Ok(()) => {
                    let mut types = self.shared.write();
                    for change in changes {
                        match change {
                            Change::Put(r) => {
                                let key = r.key();
                                types
                                    .entry(key.resource_type)
                                    .or_default()
                                    .insert(slot(&key), r);
                            }
                            Change::Remove(key) => {
                                if let Some(m) = types.get_mut(&key.resource_type) {
                                    m.remove(&slot(&key));
                                }
                            }
                        }
                    }
                    // Published under the lock: subscribers see events in
                    // commit order, and a reader woken by one sees its change.
                    for event in events {
                        self.shared.events.publish(event);
                    }
                }
                Err(e) => {
                    // Nothing of the batch is stored: start again from the
                    // committed state.
                    self.shadow = self.shared.read().clone();
                    self.last_version = start_version;
                    let message = format!("commit to the local store failed: {e}");
                    for (_, result) in &mut replies {
                        *result = Err(StoreError::Backend(message.clone()));
                    }
                }
            }
        }
        for (reply, result) in replies {
            // The writer may have stopped waiting (its future was dropped);
            // the write stands either way.
            let _ = reply.send(result);
        }
    }

    fn next_version(&mut self) -> Version {
        self.last_version += 1;
        Version(self.last_version)
    }

    /// Checks one write against `shadow`, applies it there and records
    /// what to commit and publish.
    fn apply(&mut self, op: Op, changes: &mut Vec<Change>, events: &mut Vec<StoreEvent>) -> Reply {
        match op {
            Op::Create(mut resource) => {
                let key = resource.key();
                let s = slot(&key);
                if self
                    .shadow
                    .get(&key.resource_type)
                    .is_some_and(|m| m.contains_key(&s))
                {
                    return Err(StoreError::AlreadyExists(key));
                }
                resource.meta.version = Some(self.next_version());
                let resource = Arc::new(resource);
                self.shadow
                    .entry(key.resource_type)
                    .or_default()
                    .insert(s, resource.clone());
                changes.push(Change::Put(resource.clone()));
                events.push(StoreEvent {
                    kind: EventKind::Added,
                    key,
                });
                Ok(Some(resource))
            }
            Op::Update(mut resource) => {
                let key = resource.key();
                let expected = resource
                    .meta
                    .version
                    .ok_or_else(|| StoreError::MissingVersion(key.clone()))?;
                let actual = self
                    .shadow
                    .get(&key.resource_type)
                    .and_then(|m| m.get(&slot(&key)))
                    .ok_or_else(|| StoreError::NotFound(key.clone()))?
                    .meta
                    .version
                    .unwrap_or(Version(0));
                if actual != expected {
                    return Err(StoreError::Conflict {
                        key,
                        expected,
                        actual,
                    });
                }
                resource.meta.version = Some(self.next_version());
                let resource = Arc::new(resource);
                self.shadow
                    .entry(key.resource_type)
                    .or_default()
                    .insert(slot(&key), resource.clone());
                changes.push(Change::Put(resource.clone()));
                events.push(StoreEvent {
                    kind: EventKind::Updated,
                    key,
                });
                Ok(Some(resource))
            }
            Op::Delete(key) => {
                let removed = self
                    .shadow
                    .get_mut(&key.resource_type)
                    .and_then(|m| m.remove(&slot(&key)));
                if removed.is_none() {
                    return Err(StoreError::NotFound(key));
                }
                if key.resource_type == ResourceType::Mesh {
                    for member in remove_mesh_members(&mut self.shadow, &key.name) {
                        changes.push(Change::Remove(member.clone()));
                        events.push(StoreEvent {
                            kind: EventKind::Deleted,
                            key: member,
                        });
                    }
                }
                changes.push(Change::Remove(key.clone()));
                events.push(StoreEvent {
                    kind: EventKind::Deleted,
                    key,
                });
                Ok(None)
            }
        }
    }

    /// Commits `changes` and the version counter in one durable transaction.
    fn persist(&self, changes: &[Change]) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut resources = tx.open_table(RESOURCES)?;
            for change in changes {
                match change {
                    Change::Put(r) => {
                        let json = r.to_json();
                        let version = r.meta.version.map_or(0, |v| v.0);
                        resources.insert(record_key(&r.key()), (version, json.as_str()))?;
                    }
                    Change::Remove(key) => {
                        resources.remove(record_key(key))?;
                    }
                }
            }
            let mut meta = tx.open_table(META)?;
            meta.insert(LAST_VERSION_KEY, self.last_version)?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn record_key(key: &ResourceKey) -> (&str, &str, &str) {
    (
        key.resource_type.name(),
        key.mesh.as_deref().unwrap_or(""),
        &key.name,
    )
}

#[async_trait::async_trait]
impl ResourceStore for LocalStore {
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        self.shared
            .read()
            .get(&key.resource_type)
            .and_then(|m| m.get(&slot(key)))
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage, StoreError> {
        list_page(&self.shared.read(), request)
    }

    async fn create(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        self.submit(Op::Create(resource))
            .await?
            .ok_or_else(|| StoreError::Backend(format!("no result for the create of {key}")))
    }

    async fn update(&self, resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        self.submit(Op::Update(resource))
            .await?
            .ok_or_else(|| StoreError::Backend(format!("no result for the update of {key}")))
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        self.submit(Op::Delete(key.clone())).await.map(|_| ())
    }

    fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        self.shared.events.subscribe(types)
    }
}
