//! Typed store subscriptions and the hub every store publishes through.
//!
//! See docs/architecture.md, "Stores and subscriptions".
//!
//! The contract is on [`Subscription`]; [`EventHub`] implements it for
//! any store.

use super::StoreEvent;
use crate::resource::ResourceType;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use tokio::sync::Notify;

/// The queue a subscriber gets when the store does not say: deep enough for
/// a burst of Dataplane registrations while a consumer is busy.
pub const DEFAULT_EVENT_CAPACITY: usize = 4096;

/// One item of a [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Event {
    /// List everything you follow again: the first item of every
    /// subscription, and the item that replaces the changes a subscriber's
    /// full queue could not hold.
    Resync,
    /// One resource of a followed type changed.
    Changed(StoreEvent),
}

/// The state one subscriber shares with the hub.
#[derive(Debug)]
struct Queue {
    types: HashSet<ResourceType>,
    capacity: usize,
    state: Mutex<QueueState>,
    wake: Notify,
}

#[derive(Debug)]
struct QueueState {
    events: VecDeque<StoreEvent>,
    /// A [`Event::Resync`] is due before `events`.
    resync: bool,
    /// How many changes were dropped for a resync, in total.
    dropped: u64,
    /// The hub is gone: no more items after `events`.
    closed: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every critical section leaves the state consistent (single
        // pushes, pops and flag writes), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The publishing side of subscriptions, shared by store implementations:
/// type filtering, bounded per-subscriber queues and lag turned into
/// [`Event::Resync`] (the contract of [`Subscription`]).
///
/// Dropping the hub ends its subscriptions.
#[derive(Debug)]
pub struct EventHub {
    capacity: usize,
    subscribers: Mutex<Vec<Weak<Queue>>>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(DEFAULT_EVENT_CAPACITY)
    }
}

impl EventHub {
    /// A hub whose subscribers queue up to `capacity` changes each (at
    /// least one) before they are told to resync instead.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            subscribers: Mutex::new(Vec::new()),
        }
    }

    /// How many changes each subscriber may have queued.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn subscribers(&self) -> MutexGuard<'_, Vec<Weak<Queue>>> {
        // Pushes and retains only: consistent even after a panic.
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscription to changes of `types`, starting with
    /// [`Event::Resync`].
    pub fn subscribe(&self, types: &[ResourceType]) -> Subscription {
        let queue = Arc::new(Queue {
            types: types.iter().copied().collect(),
            capacity: self.capacity,
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                resync: true,
                dropped: 0,
                closed: false,
            }),
            wake: Notify::new(),
        });
        let mut subscribers = self.subscribers();
        subscribers.retain(|s| s.strong_count() > 0);
        subscribers.push(Arc::downgrade(&queue));
        Subscription { queue }
    }

    /// Queues `event` for every subscriber following its type. A store
    /// calls it once per change, in the order of its changes (the memory
    /// store does so under its write lock).
    pub fn publish(&self, event: StoreEvent) {
        let mut gone = false;
        for s in self.subscribers().iter() {
            let Some(queue) = s.upgrade() else {
                gone = true;
                continue;
            };
            if !queue.types.contains(&event.key.resource_type) {
                continue;
            }
            {
                let mut state = queue.lock();
                if state.events.len() >= queue.capacity {
                    // Full: what is queued is superseded by a re-list.
                    state.dropped += state.events.len() as u64 + 1;
                    state.events.clear();
                    state.resync = true;
                } else {
                    state.events.push_back(event.clone());
                }
            }
            queue.wake.notify_one();
        }
        if gone {
            self.subscribers().retain(|s| s.strong_count() > 0);
        }
    }

    /// Tells every subscriber to re-list: for a store that cannot say what
    /// changed (its backend's change feed was interrupted).
    pub fn resync_all(&self) {
        for queue in self.subscribers().iter().filter_map(Weak::upgrade) {
            {
                let mut state = queue.lock();
                state.dropped += state.events.len() as u64;
                state.events.clear();
                state.resync = true;
            }
            queue.wake.notify_one();
        }
    }
}

impl Drop for EventHub {
    fn drop(&mut self) {
        for queue in self.subscribers().iter().filter_map(Weak::upgrade) {
            queue.lock().closed = true;
            queue.wake.notify_one();
        }
    }
}

/// The receiving side of [`super::ResourceStore::subscribe`]: the changes
/// of the types it follows, preceded by [`Event::Resync`]. Dropping it
/// unsubscribes.
///
/// The contract, which [`super::ResourceStore::subscribe`] promises and the
/// conformance suite checks:
///
/// - A subscription names the resource types it follows; the store filters
///   at the source, so a subscriber never sees, queues or lags on events of
///   other types (a stream of DataplaneInsight writes does not push the
///   reconciler out of its queue).
/// - The first item of every subscription is [`Event::Resync`]: the
///   subscriber lists what it follows then, and applies the
///   [`Event::Changed`] items that come after. Every change made after
///   `subscribe` returned is covered by that listing or by a later item.
/// - Each subscriber has its own bounded queue. When a change finds it full,
///   the queued changes are dropped and the subscriber's next item is
///   [`Event::Resync`] instead: a slow subscriber re-lists, it never gets an
///   error and never loses a change silently. Changes queued after that
///   point follow the `Resync`.
/// - Within one subscription, changes arrive in the order the store made
///   them.
/// - The subscription ends ([`Subscription::next`] returns `None`) once the
///   store is gone and the queued items are consumed.
///
/// [`EventHub`] implements all of this; a store only calls
/// [`EventHub::publish`] for each change, in order, and
/// [`EventHub::resync_all`] when it cannot know what changed (a store whose
/// change feed from its backend broke and reconnected).
#[derive(Debug)]
pub struct Subscription {
    queue: Arc<Queue>,
}

impl Subscription {
    /// The next item, waiting for one; `None` once the store is gone and
    /// everything queued was taken. Cancel safe: an item is only taken
    /// when this returns it.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            {
                let mut state = self.queue.lock();
                if let Some(item) = take(&mut state) {
                    return Some(item);
                }
                if state.closed {
                    return None;
                }
            }
            // A publish between the look above and this wait is not
            // missed: `notify_one` leaves a permit when nobody waits.
            self.queue.wake.notified().await;
        }
    }

    /// The next item if one is queued, without waiting: for draining a
    /// burst before acting on it.
    pub fn try_next(&mut self) -> Option<Event> {
        take(&mut self.queue.lock())
    }

    /// The types this subscription follows.
    pub fn types(&self) -> impl Iterator<Item = ResourceType> + '_ {
        self.queue.types.iter().copied()
    }

    /// How many changes were replaced by a resync so far because the queue
    /// was full (for logs and metrics).
    pub fn dropped(&self) -> u64 {
        self.queue.lock().dropped
    }
}

fn take(state: &mut QueueState) -> Option<Event> {
    if std::mem::take(&mut state.resync) {
        return Some(Event::Resync);
    }
    state.events.pop_front().map(Event::Changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::ResourceKey;
    use crate::store::EventKind;

    fn event(ty: ResourceType, name: &str) -> StoreEvent {
        StoreEvent {
            kind: EventKind::Added,
            key: ResourceKey::new(ty, Some("m"), name),
        }
    }

    #[tokio::test]
    async fn a_full_queue_becomes_a_resync_and_a_dropped_hub_ends_it() {
        let hub = EventHub::new(2);
        let mut sub = hub.subscribe(&[ResourceType::Dataplane]);
        assert_eq!(sub.next().await, Some(Event::Resync));
        for n in ["a", "b", "c", "d"] {
            hub.publish(event(ResourceType::Dataplane, n));
        }
        // "a" and "b" filled the queue, "c" overflowed it, "d" follows.
        assert_eq!(sub.try_next(), Some(Event::Resync));
        assert_eq!(
            sub.try_next(),
            Some(Event::Changed(event(ResourceType::Dataplane, "d")))
        );
        assert_eq!(sub.try_next(), None);
        assert_eq!(sub.dropped(), 3);
        hub.resync_all();
        assert_eq!(sub.next().await, Some(Event::Resync));
        drop(hub);
        assert_eq!(sub.next().await, None);
    }

    #[tokio::test]
    async fn a_waiting_subscriber_is_woken() {
        let hub = Arc::new(EventHub::default());
        let mut sub = hub.subscribe(&[ResourceType::Mesh]);
        assert_eq!(sub.next().await, Some(Event::Resync));
        let publisher = hub.clone();
        let task = tokio::spawn(async move {
            tokio::task::yield_now().await;
            publisher.publish(event(ResourceType::Dataplane, "ignored"));
            publisher.publish(event(ResourceType::Mesh, "x"));
        });
        assert_eq!(
            sub.next().await,
            Some(Event::Changed(event(ResourceType::Mesh, "x")))
        );
        task.await.unwrap();
        drop(sub);
        hub.publish(event(ResourceType::Mesh, "y"));
        assert!(hub.subscribers().is_empty());
    }
}
