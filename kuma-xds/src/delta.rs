//! Incremental (delta) ADS on the same port as state-of-the-world.
//!
//! Per type the stream tracks what the client subscribed to (by name, or
//! everything for a wildcard subscription) and which version of each
//! resource the client holds. Whenever the snapshot or the subscription
//! changes, only resources whose version differs are sent, and resources the
//! client holds that are gone are listed in `removed_resources`.
//!
//! Protocol points (xDS "incremental" variant):
//! - subscription changes (`resource_names_subscribe`/`_unsubscribe`) are
//!   deltas and are applied from every request, stale or not; the nonce
//!   only decides whether the request ACKs or NACKs the last response;
//! - the first request of a type may carry `initial_resource_versions` (a
//!   reconnecting Envoy says what it already has), so an unchanged resource
//!   is not sent again after a control-plane restart;
//! - for CDS and LDS an initial request without names means "wildcard"; `*`
//!   subscribes to everything explicitly;
//! - after a NACK the rejected versions are not sent again; the next change
//!   is.

use crate::grpc::{DeltaItem, Outgoing, ResponseSender};
use crate::resource::{Snapshot, XdsResource, XdsType};
use crate::session::{AdsProtocol, Session};
use crate::stream::{AckTracker, Nonces, Reply, hung_up};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use tonic::Status;
use tracing::{debug, warn};

/// What a delta stream knows of one type.
#[derive(Debug, Default)]
struct TypeState {
    /// Whether the client asked for this type at all.
    subscribed: bool,
    /// Whether the client wants every resource of the type.
    wildcard: bool,
    /// Names subscribed explicitly.
    names: BTreeSet<String>,
    /// What the client holds: name -> version.
    known: HashMap<String, String>,
    /// The last response (its `system_version_info` and nonce) and its ACK.
    acks: AckTracker,
}

/// The most resource names one delta stream may subscribe to, or say it
/// holds, per type: a proxy's real configuration has far fewer (one per
/// service it reaches), and each name is kept for the stream's life. More
/// ends the stream with `RESOURCE_EXHAUSTED`.
pub const MAX_SUBSCRIBED_NAMES: usize = 10_000;

fn too_many_names(t: XdsType) -> Status {
    Status::resource_exhausted(format!(
        "delta {} subscription exceeds {MAX_SUBSCRIBED_NAMES} resource names",
        t.short()
    ))
}

fn version(r: &XdsResource) -> String {
    format!("{:016x}", r.hash)
}

/// One delta ADS stream.
#[derive(Default)]
pub(crate) struct DeltaStream {
    nonces: Nonces,
    types: HashMap<XdsType, TypeState>,
}

impl AdsProtocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;

    /// One service with state-of-the-world ADS (logs and operators say
    /// "ADS" for both).
    const NAME: &'static str = "ADS";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    /// Envoy's first request of a type on a new stream lists the resources
    /// of that type it holds, with their versions.
    fn resumes(first: &DeltaDiscoveryRequest) -> bool {
        !first.initial_resource_versions.is_empty()
    }

    async fn on_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        let Some(t) = XdsType::from_type_url(&req.type_url) else {
            debug!(type_url = %req.type_url, "ignoring delta request for an unknown type");
            return Ok(());
        };
        let st = self.types.entry(t).or_default();
        // A reconnecting Envoy that already holds listeners serves traffic
        // already: it is ready at once (see the SotW stream).
        let mut listeners_acked =
            t == XdsType::Listener && !st.subscribed && !req.initial_resource_versions.is_empty();
        let error = req.error_detail.as_ref().map(|e| e.message.as_str());
        // Stale or not, the request's subscription changes apply below.
        match st.acks.on_request(&req.response_nonce, error) {
            Reply::Initial | Reply::Stale => {}
            Reply::Nack => {
                let rejected = st.acks.sent_version().unwrap_or_default();
                let error = error.unwrap_or_default();
                warn!(
                    r#type = t.short(),
                    version = rejected,
                    error,
                    "proxy rejected config (delta)"
                );
                session.insight.nacked(t, rejected, error);
            }
            Reply::Ack => {
                session.insight.acked(t);
                listeners_acked = t == XdsType::Listener;
            }
        }
        if req.initial_resource_versions.len() > MAX_SUBSCRIBED_NAMES
            || st.names.len() + req.resource_names_subscribe.len() > MAX_SUBSCRIBED_NAMES
        {
            return Err(too_many_names(t));
        }
        if !st.subscribed {
            st.subscribed = true;
            st.known = req.initial_resource_versions.into_iter().collect();
            if t.is_wildcard() && req.resource_names_subscribe.is_empty() {
                st.wildcard = true;
            }
        }
        for name in req.resource_names_subscribe {
            if name == "*" {
                st.wildcard = true;
            } else {
                // A name subscribed mid-stream is one the client lacks.
                if !st.names.contains(&name) && !req.response_nonce.is_empty() {
                    st.known.remove(&name);
                }
                st.names.insert(name);
            }
        }
        for name in req.resource_names_unsubscribe {
            if name == "*" {
                st.wildcard = false;
            } else {
                st.names.remove(&name);
                st.known.remove(&name);
            }
        }
        if listeners_acked {
            session.listeners_acked().await;
        }
        match snapshot {
            Some(s) => self.send(t, s, session, tx).await,
            None => Ok(()),
        }
    }

    async fn push_all(
        &mut self,
        snapshot: &Snapshot,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        for t in XdsType::PUSH_ORDER {
            if self.types.get(&t).is_some_and(|s| s.subscribed) {
                self.send(t, snapshot, session, tx).await?;
            }
        }
        Ok(())
    }
}

impl DeltaStream {
    /// Sends what changed for type `t` since the client's known state.
    async fn send(
        &mut self,
        t: XdsType,
        snapshot: &Snapshot,
        session: &mut Session,
        tx: &ResponseSender,
    ) -> Result<(), Status> {
        let st = self.types.entry(t).or_default();
        let all = snapshot.resources(t);
        let wanted = |name: &str| st.wildcard || st.names.contains(name);
        let mut changed: Vec<(&String, &Arc<XdsResource>, String)> = Vec::new();
        for (name, r) in all.iter().filter(|(n, _)| wanted(n)) {
            let v = version(r);
            if st.known.get(name) != Some(&v) {
                changed.push((name, r, v));
            }
        }
        let removed: Vec<String> = st
            .known
            .keys()
            .filter(|n| !(wanted(n) && all.contains_key(n)))
            .cloned()
            .collect();
        if changed.is_empty() && removed.is_empty() {
            return Ok(());
        }
        for n in &removed {
            st.known.remove(n);
        }
        let nonce = self.nonces.next_nonce();
        let head = DeltaDiscoveryResponse {
            system_version_info: snapshot.version(t).to_string(),
            type_url: t.type_url().to_string(),
            removed_resources: removed,
            nonce: nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: session.instance_id().to_string(),
            }),
            ..Default::default()
        };
        st.acks.sent(snapshot.version(t), nonce);
        let items: Vec<DeltaItem<'_>> = changed
            .iter()
            .map(|(name, r, v)| DeltaItem {
                name,
                version: v,
                resource: r,
            })
            .collect();
        let response = crate::grpc::delta_response(&head, t.type_url(), &items);
        for (name, _, v) in changed {
            st.known.insert(name.clone(), v);
        }
        session.insight.sent(t);
        tx.send(Outgoing::Message(response))
            .await
            .map_err(|_| hung_up())
    }
}
