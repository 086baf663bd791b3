//! The store's two dedicated connections: the listener that feeds
//! notifications into the [`EventHub`], and the leader election.

use super::{CHANNEL, Connector, PostgresError};
use crate::resource::{ResourceKey, ResourceType};
use crate::store::{EventHub, EventKind, StoreEvent};
use futures::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// How long a write waits for its own notification before returning anyway.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many published ids are remembered for writers that have not asked yet.
const SEEN_LIMIT: usize = 16 * 1024;
/// The first and the longest wait between reconnects.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often a non-leader tries the lock, and a leader checks its connection.
const LEADER_PERIOD: Duration = Duration::from_secs(1);
/// The session advisory lock held by the leader ("kumalead").
const LEADER_LOCK: i64 = 0x6b75_6d61_6c65_6164;

/// What the store and its listener share.
pub(super) struct Shared {
    pub(super) hub: EventHub,
    pub(super) acks: Mutex<Acks>,
    pub(super) healthy: watch::Sender<bool>,
}

/// Writers waiting for their notification, and ids published before their
/// writer asked.
#[derive(Default)]
pub(super) struct Acks {
    waiters: HashMap<i64, oneshot::Sender<()>>,
    seen: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Shared {
    fn acks(&self) -> std::sync::MutexGuard<'_, Acks> {
        // Single inserts and removes: consistent after a panic.
        self.acks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the change `id` was published, at most [`ACK_TIMEOUT`];
    /// not at all while the listener is down (the resync after its
    /// reconnect covers the change).
    pub(super) async fn wait_published(&self, id: i64) {
        let rx = {
            let mut acks = self.acks();
            if acks.seen.remove(&id) {
                return;
            }
            if !*self.healthy.borrow() {
                return;
            }
            let (tx, rx) = oneshot::channel();
            acks.waiters.insert(id, tx);
            rx
        };
        if tokio::time::timeout(ACK_TIMEOUT, rx).await.is_err() {
            self.acks().waiters.remove(&id);
        }
    }

    /// Publishes one notification's change, then releases its writer.
    fn deliver(&self, payload: &str) {
        let Some((event, id)) = parse(payload) else {
            tracing::warn!(payload, "ignoring a malformed store notification");
            return;
        };
        self.hub.publish(event);
        let Some(id) = id else { return };
        let mut acks = self.acks();
        if let Some(tx) = acks.waiters.remove(&id) {
            let _ = tx.send(());
        } else {
            acks.seen.insert(id);
            acks.order.push_back(id);
            while acks.order.len() > SEEN_LIMIT {
                if let Some(old) = acks.order.pop_front() {
                    acks.seen.remove(&old);
                }
            }
        }
    }
}

/// The notification payload of a change: `[kind, type, mesh, name, id]`,
/// the JSON array the write statements build in SQL.
pub(super) fn payload(kind: EventKind, key: &ResourceKey, id: Option<i64>) -> String {
    let kind = match kind {
        EventKind::Added => "A",
        EventKind::Updated => "U",
        EventKind::Deleted => "D",
    };
    serde_json::json!([
        kind,
        key.resource_type.name(),
        key.mesh.as_deref().unwrap_or(""),
        key.name,
        id
    ])
    .to_string()
}

fn parse(payload: &str) -> Option<(StoreEvent, Option<i64>)> {
    let (kind, ty, mesh, name, id): (String, String, String, String, Option<i64>) =
        serde_json::from_str(payload).ok()?;
    let kind = match kind.as_str() {
        "A" => EventKind::Added,
        "U" => EventKind::Updated,
        "D" => EventKind::Deleted,
        _ => return None,
    };
    let key = super::key_of(ResourceType::from_name(&ty)?, &mesh, &name);
    Some((StoreEvent { kind, key }, id))
}

type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    super::tls::RustlsStream<tokio_postgres::Socket>,
>;

/// A listening connection: its client, and its notifications in order
/// (the channel ends when the connection does).
pub(super) struct Listener {
    client: tokio_postgres::Client,
    notifications: mpsc::UnboundedReceiver<String>,
}

impl Listener {
    /// Drives `connection`, forwarding its notifications.
    pub(super) fn start(client: tokio_postgres::Client, mut connection: Connection) -> Self {
        let (tx, notifications) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                        if tx.send(n.payload().to_string()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "the store's listening connection failed");
                        return;
                    }
                }
            }
        });
        Self {
            client,
            notifications,
        }
    }

    pub(super) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// Subscribes to the store's channel.
    pub(super) async fn listen(&self) -> Result<(), tokio_postgres::Error> {
        self.client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
    }
}

/// Feeds notifications into the hub for as long as the store lives; after
/// a lost connection, reconnects with backoff and tells every subscriber
/// to re-list.
pub(super) async fn listen(
    connector: Connector,
    mut listener: Listener,
    shared: std::sync::Arc<Shared>,
) {
    loop {
        while let Some(payload) = listener.notifications.recv().await {
            shared.deliver(&payload);
        }
        shared.healthy.send_replace(false);
        tracing::warn!(address = %connector.address(), "lost the store's listening connection; reconnecting");
        listener = reconnect_listener(&connector).await;
        // Changes made while nobody listened are unknown: everyone re-lists.
        shared.hub.resync_all();
        shared.healthy.send_replace(true);
        tracing::info!(address = %connector.address(), "the store's listening connection is back");
    }
}

async fn reconnect_listener(connector: &Connector) -> Listener {
    let mut backoff = BACKOFF_MIN;
    loop {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        let attempt = async {
            let (client, connection) = connector.connect().await?;
            let listener = Listener::start(client, connection);
            listener
                .listen()
                .await
                .map_err(|e| PostgresError::Database(e.to_string()))?;
            Ok::<_, PostgresError>(listener)
        };
        match attempt.await {
            Ok(l) => return l,
            Err(e) => {
                tracing::debug!(error = %e, "reconnecting the store's listener");
            }
        }
    }
}

/// Competes for leadership for as long as the store lives: holds the
/// leader lock on its own connection, tries again every [`LEADER_PERIOD`]
/// when another store holds it, and reports false as soon as the
/// connection is lost.
pub(super) async fn lead(connector: Connector, leader: watch::Sender<bool>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if let Ok((client, connection)) = connector.connect().await {
            backoff = BACKOFF_MIN;
            let mut driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            loop {
                let leading = *leader.borrow();
                let check = async {
                    if leading {
                        client.simple_query("SELECT 1").await.map(|_| true)
                    } else {
                        client
                            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEADER_LOCK])
                            .await
                            .map(|row| row.get::<_, bool>(0))
                    }
                };
                let result = tokio::select! {
                    r = tokio::time::timeout(LEADER_PERIOD * 3, check) => r,
                    _ = &mut driver => break,
                };
                match result {
                    Ok(Ok(true)) => {
                        if !leading {
                            tracing::info!("this control plane is now the leader");
                            leader.send_replace(true);
                        }
                    }
                    Ok(Ok(false)) => {}
                    _ => break,
                }
                tokio::select! {
                    _ = tokio::time::sleep(LEADER_PERIOD) => {}
                    _ = &mut driver => break,
                }
            }
            if leader.send_replace(false) {
                tracing::warn!("lost the leader's connection: no longer the leader");
            }
            driver.abort();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let key = ResourceKey::new(ResourceType::Dataplane, Some("m\"1"), "a,b");
        let p = payload(EventKind::Updated, &key, Some(7));
        let (event, id) = parse(&p).expect("parse");
        assert_eq!(event.key, key);
        assert_eq!(event.kind, EventKind::Updated);
        assert_eq!(id, Some(7));
        let global = ResourceKey::new(ResourceType::Mesh, None, "m");
        let (event, id) = parse(&payload(EventKind::Deleted, &global, None)).expect("parse");
        assert_eq!(event.key, global);
        assert_eq!(id, None);
        assert!(parse("[\"X\",\"Mesh\",\"\",\"m\",1]").is_none());
        assert!(parse("not json").is_none());
    }
}
