//! The PostgreSQL store: several control planes on one database.
//!
//! [`PostgresStore`] keeps resources in one table keyed by (type, mesh,
//! name) as universal JSON ([`Resource::to_json`]) with their version,
//! taken from one database sequence so versions rise store-wide across
//! delete and re-create, on every replica. Updates check the version in
//! their `WHERE`; a Mesh's delete removes its resources in the same
//! transaction. [`migrate_up`] creates and upgrades the schema; a store
//! refuses a database that is not migrated.
//!
//! Events: every write sends `pg_notify` in its own transaction. Each store
//! keeps one dedicated connection (not from the pool) that `LISTEN`s and
//! feeds the notifications, in commit order, into its [`EventHub`], so each
//! replica's subscribers see the writes of every replica, as one ordered
//! stream. A write returns once its own notification was published
//! (bounded by a timeout), so a subscriber of the writing store sees it as
//! soon as the write returns. When the listening connection is lost the
//! store reconnects with backoff and then tells every subscriber to
//! re-list ([`EventHub::resync_all`]); [`PostgresStore::healthy`] is false
//! meanwhile. Leader election ([`PostgresStore::leadership`]) holds a
//! session advisory lock on another dedicated connection.
//!
//! See docs/architecture.md, "Postgres store".

mod background;
mod config;
mod migrate;
mod tls;

pub use config::{PostgresConfig, PostgresTls, TlsMode};
pub use migrate::{MigrationReport, SCHEMA_VERSION, migrate_up};

use super::memory::{decode_offset, encode_offset};
use super::{
    DEFAULT_EVENT_CAPACITY, EventHub, EventKind, ListPage, ListRequest, ResourceStore, StoreError,
    Subscription,
};
use crate::resource::{Resource, ResourceKey, ResourceType, Scope, Version};
use background::{Acks, Shared};
use std::sync::Arc;
use std::time::Duration;
use tls::MakeRustls;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;

/// The channel every change is notified on.
const CHANNEL: &str = "kuma_resources";

/// Why connecting to, or migrating, PostgreSQL failed. Each names the
/// setting to look at; none includes the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The database has no schema, or an older one.
    #[error(
        "database {db_name:?} is not migrated (schema version {found}, this kuma-cp needs {expected}): run `kuma-cp migrate up` first"
    )]
    NotMigrated {
        /// `store.postgres.dbName`.
        db_name: String,
        /// The schema version found (0: none).
        found: i64,
        /// [`SCHEMA_VERSION`].
        expected: i64,
    },
    /// The schema was migrated by a newer kuma-cp.
    #[error(
        "the database schema is at version {found}, newer than this kuma-cp supports ({supported}): upgrade kuma-cp"
    )]
    SchemaTooNew {
        /// The schema version found.
        found: i64,
        /// [`SCHEMA_VERSION`].
        supported: i64,
    },
    /// The server refused the credentials.
    #[error(
        "PostgreSQL refused the login of user {user:?}: check store.postgres.user and store.postgres.password ({detail})"
    )]
    Authentication {
        /// `store.postgres.user`.
        user: String,
        /// The server's reason.
        detail: String,
    },
    /// The database does not exist.
    #[error("PostgreSQL has no database {db_name:?}: check store.postgres.dbName")]
    NoDatabase {
        /// `store.postgres.dbName`.
        db_name: String,
    },
    /// No connection could be opened.
    #[error(
        "cannot reach PostgreSQL at {host}:{port}: check store.postgres.host and store.postgres.port ({reason})"
    )]
    Unreachable {
        /// `store.postgres.host`.
        host: String,
        /// `store.postgres.port`.
        port: u16,
        /// What failed.
        reason: String,
    },
    /// Opening a connection took longer than `connectionTimeout`.
    #[error(
        "no connection to PostgreSQL at {host}:{port} within {timeout:?} (store.postgres.connectionTimeout): check store.postgres.host and store.postgres.port"
    )]
    Timeout {
        /// `store.postgres.host`.
        host: String,
        /// `store.postgres.port`.
        port: u16,
        /// `store.postgres.connectionTimeout`.
        timeout: Duration,
    },
    /// TLS could not be set up or the handshake failed.
    #[error("TLS to PostgreSQL failed: check {setting}: {reason}")]
    Tls {
        /// The setting to look at (`store.postgres.tls.*`).
        setting: &'static str,
        /// What failed.
        reason: String,
    },
    /// A setting is invalid.
    #[error("invalid {setting}: {reason}")]
    Config {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// A statement failed.
    #[error("PostgreSQL error: {0}")]
    Database(String),
}

/// The `tokio-postgres` settings of `config` (TLS is done by [`MakeRustls`]).
fn pg_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, PostgresError> {
    if config.host.is_empty() {
        return Err(PostgresError::Config {
            setting: "store.postgres.host",
            reason: "must not be empty".into(),
        });
    }
    if config.port == 0 {
        return Err(PostgresError::Config {
            setting: "store.postgres.port",
            reason: "must be between 1 and 65535".into(),
        });
    }
    if config.connection_timeout.is_zero() {
        return Err(PostgresError::Config {
            setting: "store.postgres.connectionTimeout",
            reason: "must be above zero".into(),
        });
    }
    let mut pg = tokio_postgres::Config::new();
    pg.host(&config.host)
        .port(config.port)
        .user(&config.user)
        .password(&config.password)
        .dbname(&config.db_name)
        .application_name("kuma-cp")
        .connect_timeout(config.connection_timeout)
        // A dead peer is noticed in seconds, not hours, also when the
        // network drops it silently.
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(5))
        .keepalives_interval(Duration::from_secs(2))
        .keepalives_retries(3)
        .ssl_mode(if config.tls.mode == TlsMode::Disable {
            tokio_postgres::config::SslMode::Disable
        } else {
            tokio_postgres::config::SslMode::Require
        });
    Ok(pg)
}

/// Turns a failed connect into the error naming its setting.
fn classify(config: &PostgresConfig, e: tokio_postgres::Error) -> PostgresError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if code == &SqlState::INVALID_PASSWORD
            || code == &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return PostgresError::Authentication {
                user: config.user.clone(),
                detail: db.message().to_string(),
            };
        }
        if code == &SqlState::INVALID_CATALOG_NAME {
            return PostgresError::NoDatabase {
                db_name: config.db_name.clone(),
            };
        }
        return PostgresError::Database(e.to_string());
    }
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<tls::HandshakeError>() {
            return PostgresError::Tls {
                setting: "store.postgres.tls.mode",
                reason: h.0.clone(),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return PostgresError::Timeout {
                    host: config.host.clone(),
                    port: config.port,
                    timeout: config.connection_timeout,
                };
            }
            return PostgresError::Unreachable {
                host: config.host.clone(),
                port: config.port,
                reason: io.to_string(),
            };
        }
        source = s.source();
    }
    let text = e.to_string();
    if text.contains("password") {
        return PostgresError::Authentication {
            user: config.user.clone(),
            detail: text,
        };
    }
    if text.contains("TLS") || text.contains("SSL") || text.contains("tls") {
        return PostgresError::Tls {
            setting: "store.postgres.tls.mode",
            reason: text,
        };
    }
    PostgresError::Unreachable {
        host: config.host.clone(),
        port: config.port,
        reason: text,
    }
}

/// What the background connections need to connect again.
#[derive(Clone)]
pub(crate) struct Connector {
    config: PostgresConfig,
    pg: tokio_postgres::Config,
    tls: MakeRustls,
}

impl Connector {
    fn new(config: &PostgresConfig) -> Result<Self, PostgresError> {
        Ok(Self {
            config: config.clone(),
            pg: pg_config(config)?,
            tls: MakeRustls::new(&config.tls)?,
        })
    }

    /// One connection, its driver spawned: the client and the driver's
    /// handle, which ends when the connection does.
    pub(crate) async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                tls::RustlsStream<tokio_postgres::Socket>,
            >,
        ),
        PostgresError,
    > {
        let timeout = self.config.connection_timeout;
        match tokio::time::timeout(timeout, self.pg.connect(self.tls.clone())).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(e)) => Err(classify(&self.config, e)),
            Err(_) => Err(PostgresError::Timeout {
                host: self.config.host.clone(),
                port: self.config.port,
                timeout,
            }),
        }
    }

    /// Where, for messages.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.config.host, self.config.port)
    }
}

/// One connection with its driver spawned.
async fn connect_one(
    config: &PostgresConfig,
) -> Result<(tokio_postgres::Client, JoinHandle<()>), PostgresError> {
    let (client, connection) = Connector::new(config)?.connect().await?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok((client, driver))
}

/// A [`ResourceStore`] on PostgreSQL, shared by any number of control
/// planes (see the [module docs](self)).
///
/// Needs a tokio runtime with the time and I/O drivers. Dropping it stops
/// its background connections (which releases its leadership).
pub struct PostgresStore {
    pool: deadpool_postgres::Pool,
    shared: Arc<Shared>,
    leadership: watch::Receiver<bool>,
    healthy: watch::Receiver<bool>,
    tasks: Vec<JoinHandle<()>>,
    address: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("address", &self.address)
            .field("leader", &*self.leadership.borrow())
            .field("healthy", &*self.healthy.borrow())
            .finish()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl PostgresStore {
    /// Connects to a migrated database: checks the credentials and the
    /// schema, starts listening for changes and competing for leadership.
    /// Subscribers each queue up to `event_capacity` changes (see
    /// [`EventHub::new`]; [`DEFAULT_EVENT_CAPACITY`] is the usual choice).
    pub async fn connect(
        config: &PostgresConfig,
        event_capacity: usize,
    ) -> Result<PostgresStore, PostgresError> {
        let connector = Connector::new(config)?;
        // The listener's connection first: it proves the settings and the
        // schema before anything else starts.
        let (client, connection) = connector.connect().await?;
        let listener = background::Listener::start(client, connection);
        migrate::check_schema(listener.client(), config).await?;
        listener.listen().await.map_err(|e| classify(config, e))?;

        let manager = deadpool_postgres::Manager::from_config(
            connector.pg.clone(),
            connector.tls.clone(),
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let mut pool = deadpool_postgres::Pool::builder(manager)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.connection_timeout))
            .create_timeout(Some(config.connection_timeout))
            .recycle_timeout(Some(config.connection_timeout));
        if config.max_open_connections > 0 {
            pool = pool.max_size(config.max_open_connections);
        }
        let pool = pool.build().map_err(|e| PostgresError::Config {
            setting: "store.postgres.maxOpenConnections",
            reason: e.to_string(),
        })?;

        let (healthy_tx, healthy) = watch::channel(true);
        let (leader_tx, leadership) = watch::channel(false);
        let shared = Arc::new(Shared {
            hub: EventHub::new(event_capacity),
            acks: std::sync::Mutex::new(Acks::default()),
            healthy: healthy_tx,
        });
        let tasks = vec![
            tokio::spawn(background::listen(
                connector.clone(),
                listener,
                shared.clone(),
            )),
            tokio::spawn(background::lead(connector.clone(), leader_tx)),
        ];
        Ok(PostgresStore {
            pool,
            shared,
            leadership,
            healthy,
            tasks,
            address: connector.address(),
        })
    }

    /// [`PostgresStore::connect`] with [`DEFAULT_EVENT_CAPACITY`].
    pub async fn connect_default(config: &PostgresConfig) -> Result<PostgresStore, PostgresError> {
        Self::connect(config, DEFAULT_EVENT_CAPACITY).await
    }

    /// Whether this store is the leader of the control planes on its
    /// database: true while it holds the leader advisory lock on its own
    /// connection. A store that is not leader tries again about every
    /// second; the value turns false as soon as that connection is lost.
    /// At most one store per database is leader at a time.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leadership.clone()
    }

    /// False while the connection that receives changes is down (the
    /// store is reconnecting; subscribers get [`super::Event::Resync`]
    /// when it is back), for readiness.
    pub fn healthy(&self) -> watch::Receiver<bool> {
        self.healthy.clone()
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Backend(format!("PostgreSQL at {}: {e}", self.address)))
    }

    fn backend(&self, e: tokio_postgres::Error) -> StoreError {
        StoreError::Backend(format!("PostgreSQL at {}: {e}", self.address))
    }

    /// Returns once the change with event id `id` was published to this
    /// store's subscribers, or after a timeout (then the resync that follows
    /// a reconnect covers it).
    async fn published(&self, id: i64) {
        self.shared.wait_published(id).await;
    }
}

fn mesh_column(key: &ResourceKey) -> &str {
    key.mesh.as_deref().unwrap_or("")
}

fn decode(key: &ResourceKey, version: i64, json: &str) -> Result<Arc<Resource>, StoreError> {
    let mut resource = Resource::from_json(json)
        .map_err(|e| StoreError::Backend(format!("stored {key} cannot be read: {e}")))?;
    resource.meta.version = Some(Version(version as u64));
    Ok(Arc::new(resource))
}

fn key_of(ty: ResourceType, mesh: &str, name: &str) -> ResourceKey {
    ResourceKey {
        resource_type: ty,
        mesh: (!mesh.is_empty()).then(|| mesh.to_string()),
        name: name.to_string(),
    }
}

/// `pg_notify` of one change, completed by `(kind, type, mesh, name, id)`:
/// the payload is the JSON array the listener parses (see `background`).
const NOTIFY: &str = "pg_notify('kuma_resources', json_build_array";

#[async_trait::async_trait]
impl ResourceStore for PostgresStore {
    async fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT version, resource FROM kuma_resources
                 WHERE type = $1 AND mesh = $2 AND name = $3",
            )
            .await
            .map_err(|e| self.backend(e))?;
        let row = client
            .query_opt(
                &stmt,
                &[&key.resource_type.name(), &mesh_column(key), &key.name],
            )
            .await
            .map_err(|e| self.backend(e))?
            .ok_or_else(|| StoreError::NotFound(key.clone()))?;
        decode(key, row.get(0), row.get(1))
    }

    async fn list(&self, request: &ListRequest) -> Result<ListPage, StoreError> {
        let ty = request.resource_type;
        let scope = ty.scope();
        let start = match &request.offset {
            Some(o) => Some(decode_offset(o, scope)?),
            None => None,
        };
        let mesh = match (&request.mesh, scope) {
            (Some(m), Scope::Mesh) => Some(m.as_str()),
            _ => None,
        };
        let client = self.client().await?;
        let (count_sql, mut list_sql) = match mesh {
            Some(_) => (
                "SELECT count(*) FROM kuma_resources WHERE type = $1 AND mesh = $2",
                String::from(
                    "SELECT version, resource, mesh, name FROM kuma_resources
                     WHERE type = $1 AND mesh = $2",
                ),
            ),
            None => (
                "SELECT count(*) FROM kuma_resources WHERE type = $1 AND $2::text IS NULL",
                String::from(
                    "SELECT version, resource, mesh, name FROM kuma_resources
                     WHERE type = $1 AND $2::text IS NULL",
                ),
            ),
        };
        list_sql.push_str(" AND ($3::text IS NULL OR (mesh, name) >= ($3, $4))");
        list_sql.push_str(" ORDER BY mesh, name LIMIT $5");
        let (start_mesh, start_name) = match &start {
            Some((m, n)) => (Some(m.clone().unwrap_or_default()), Some(n.clone())),
            None => (None, None),
        };
        let limit: Option<i64> = request
            .page_size
            .map(|s| i64::try_from(s).unwrap_or(i64::MAX - 1) + 1);
        let count_stmt = client
            .prepare_cached(count_sql)
            .await
            .map_err(|e| self.backend(e))?;
        let list_stmt = client
            .prepare_cached(&list_sql)
            .await
            .map_err(|e| self.backend(e))?;
        let type_name = ty.name();
        let count_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&type_name, &mesh];
        let list_params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
            [&type_name, &mesh, &start_mesh, &start_name, &limit];
        let (total, rows) = futures::try_join!(
            client.query_one(&count_stmt, &count_params),
            client.query(&list_stmt, &list_params),
        )
        .map_err(|e| self.backend(e))?;
        let total: i64 = total.get(0);
        let size = request.page_size.unwrap_or(usize::MAX);
        let mut items = Vec::with_capacity(rows.len().min(size));
        let mut next_offset = None;
        for row in &rows {
            let (m, n): (&str, &str) = (row.get(2), row.get(3));
            let key = key_of(ty, m, n);
            if items.len() == size {
                next_offset = Some(encode_offset(&(key.mesh, key.name)));
                break;
            }
            items.push(decode(&key, row.get(0), row.get(1))?);
        }
        Ok(ListPage {
            items,
            total: total as usize,
            next_offset,
        })
    }

    async fn create(&self, mut resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        resource.meta.version = None;
        let json = resource.to_json();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH ins AS (
                     INSERT INTO kuma_resources (type, mesh, name, version, resource)
                     VALUES ($1, $2, $3, nextval('kuma_resource_version'), $4)
                     ON CONFLICT DO NOTHING
                     RETURNING version)
                 SELECT version, {NOTIFY}('A', $1::text, $2::text, $3::text, version)::text)
                 FROM ins"
            ))
            .await
            .map_err(|e| self.backend(e))?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &key.resource_type.name(),
                    &mesh_column(&key),
                    &key.name,
                    &json,
                ],
            )
            .await
            .map_err(|e| self.backend(e))?
            .ok_or_else(|| StoreError::AlreadyExists(key.clone()))?;
        drop(client);
        let version: i64 = row.get(0);
        self.published(version).await;
        resource.meta.version = Some(Version(version as u64));
        Ok(Arc::new(resource))
    }

    async fn update(&self, mut resource: Resource) -> Result<Arc<Resource>, StoreError> {
        let key = resource.key();
        let expected = resource
            .meta
            .version
            .ok_or_else(|| StoreError::MissingVersion(key.clone()))?;
        resource.meta.version = None;
        let json = resource.to_json();
        let client = self.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH upd AS (
                     UPDATE kuma_resources
                     SET version = nextval('kuma_resource_version'), resource = $5
                     WHERE type = $1 AND mesh = $2 AND name = $3 AND version = $4
                     RETURNING version)
                 SELECT version, {NOTIFY}('U', $1::text, $2::text, $3::text, version)::text)
                 FROM upd"
            ))
            .await
            .map_err(|e| self.backend(e))?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&key.resource_type.name(), &mesh_column(&key), &key.name];
        let row = client
            .query_opt(
                &stmt,
                &[params[0], params[1], params[2], &(expected.0 as i64), &json],
            )
            .await
            .map_err(|e| self.backend(e))?;
        let Some(row) = row else {
            // Not updated: the key is gone, or its version moved on.
            let stmt = client
                .prepare_cached(
                    "SELECT version FROM kuma_resources
                     WHERE type = $1 AND mesh = $2 AND name = $3",
                )
                .await
                .map_err(|e| self.backend(e))?;
            let actual = client
                .query_opt(&stmt, &params)
                .await
                .map_err(|e| self.backend(e))?
                .ok_or_else(|| StoreError::NotFound(key.clone()))?;
            return Err(StoreError::Conflict {
                key,
                expected,
                actual: Version(actual.get::<_, i64>(0) as u64),
            });
        };
        drop(client);
        let version: i64 = row.get(0);
        self.published(version).await;
        resource.meta.version = Some(Version(version as u64));
        Ok(Arc::new(resource))
    }

    async fn delete(&self, key: &ResourceKey) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let ty = key.resource_type.name();
        let mesh = mesh_column(key);
        if key.resource_type != ResourceType::Mesh {
            let stmt = client
                .prepare_cached(&format!(
                    "WITH del AS (
                         DELETE FROM kuma_resources
                         WHERE type = $1 AND mesh = $2 AND name = $3
                         RETURNING 1),
                     id AS (SELECT nextval('kuma_resource_version') AS id FROM del)
                     SELECT id, {NOTIFY}('D', $1::text, $2::text, $3::text, id)::text)
                     FROM id"
                ))
                .await
                .map_err(|e| self.backend(e))?;
            let row = client
                .query_opt(&stmt, &[&ty, &mesh, &key.name])
                .await
                .map_err(|e| self.backend(e))?
                .ok_or_else(|| StoreError::NotFound(key.clone()))?;
            drop(client);
            self.published(row.get(0)).await;
            return Ok(());
        }
        // A Mesh: it and everything in it, in one transaction; the events
        // of its resources sorted, then the Mesh's.
        let tx = client.transaction().await.map_err(|e| self.backend(e))?;
        let found = tx
            .query_opt(
                "DELETE FROM kuma_resources WHERE type = $1 AND mesh = '' AND name = $2
                 RETURNING 1",
                &[&ty, &key.name],
            )
            .await
            .map_err(|e| self.backend(e))?;
        if found.is_none() {
            return Err(StoreError::NotFound(key.clone()));
        }
        let rows = tx
            .query(
                "DELETE FROM kuma_resources WHERE mesh = $1 RETURNING type, name",
                &[&key.name],
            )
            .await
            .map_err(|e| self.backend(e))?;
        let mut cascade: Vec<ResourceKey> = rows
            .iter()
            .filter_map(|r| {
                let ty = ResourceType::from_name(r.get(0))?;
                Some(key_of(ty, &key.name, r.get(1)))
            })
            .collect();
        cascade.sort();
        let payloads: Vec<String> = cascade
            .iter()
            .map(|k| background::payload(EventKind::Deleted, k, None))
            .collect();
        let row = tx
            .query_one(
                &format!(
                    "WITH notified AS (
                         SELECT count(*) FROM (
                             SELECT pg_notify('kuma_resources', p)
                             FROM (SELECT p FROM unnest($1::text[]) WITH ORDINALITY AS t(p, i)
                                   ORDER BY i) AS ordered) AS sent),
                     id AS (SELECT nextval('kuma_resource_version') AS id FROM notified)
                     SELECT id, {NOTIFY}('D', $2::text, ''::text, $3::text, id)::text)
                     FROM id"
                ),
                &[&payloads, &ty, &key.name],
            )
            .await
            .map_err(|e| self.backend(e))?;
        tx.commit().await.map_err(|e| self.backend(e))?;
        drop(client);
        self.published(row.get(0)).await;
        Ok(())
    }

    fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        self.shared.hub.subscribe(types)
    }
}

#[cfg(test)]
mod tests;
