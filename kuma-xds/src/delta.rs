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
use crate::insight::InsightRecorder;
use crate::resource::{Snapshot, XdsResource, XdsType};
use crate::session::{AdsProtocol, Session, Shared};
use envoy_types::pb::envoy::config::core::v3::ControlPlane;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use tonic::Status;
use tracing::{debug, warn};

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
    /// Nonce of the last response of this type.
    nonce: String,
    /// `system_version_info` of the last response of this type.
    sent_version: String,
}

fn version(r: &XdsResource) -> String {
    format!("{:016x}", r.hash)
}

/// One delta ADS stream.
pub(crate) struct DeltaStream {
    shared: Arc<Shared>,
    tx: ResponseSender,
    nonce: u64,
    types: HashMap<XdsType, TypeState>,
}

impl AdsProtocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn on_request(
        &mut self,
        request: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
    ) -> impl Future<Output = bool> + Send {
        self.handle_request(request, snapshot, session)
    }

    fn push_all(
        &mut self,
        snapshot: &Snapshot,
        insight: &mut InsightRecorder,
    ) -> impl Future<Output = bool> + Send {
        self.push_changes(snapshot, insight)
    }

    async fn fail(&self, status: Status) {
        let _ = self.tx.send(Outgoing::End(status)).await;
    }
}

impl DeltaStream {
    pub(crate) fn new(shared: Arc<Shared>, tx: ResponseSender) -> Self {
        Self {
            shared,
            tx,
            nonce: 0,
            types: HashMap::new(),
        }
    }

    async fn handle_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snapshot: Option<&Snapshot>,
        session: &mut Session,
    ) -> bool {
        let Some(t) = XdsType::from_type_url(&req.type_url) else {
            debug!(type_url = %req.type_url, "ignoring delta request for an unknown type");
            return true;
        };
        let st = self.types.entry(t).or_default();
        // A reconnecting Envoy that already holds listeners serves traffic
        // already: it is ready at once (see the SotW stream).
        let mut listeners_acked =
            t == XdsType::Listener && !st.subscribed && !req.initial_resource_versions.is_empty();
        if !req.response_nonce.is_empty() && req.response_nonce == st.nonce {
            match &req.error_detail {
                Some(err) => {
                    warn!(r#type = t.short(), version = %st.sent_version, error = %err.message, "proxy rejected config (delta)");
                    session.insight.nacked(t, &st.sent_version, &err.message);
                }
                None => {
                    session.insight.acked(t);
                    listeners_acked = t == XdsType::Listener;
                }
            }
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
            session.listeners_acked();
        }
        match snapshot {
            Some(s) => self.send(t, s, &mut session.insight).await,
            None => true,
        }
    }

    async fn push_changes(&mut self, snapshot: &Snapshot, insight: &mut InsightRecorder) -> bool {
        for t in XdsType::PUSH_ORDER {
            if self.types.get(&t).is_some_and(|s| s.subscribed)
                && !self.send(t, snapshot, insight).await
            {
                return false;
            }
        }
        true
    }

    /// Sends what changed for type `t` since the client's known state.
    async fn send(
        &mut self,
        t: XdsType,
        snapshot: &Snapshot,
        insight: &mut InsightRecorder,
    ) -> bool {
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
            return true;
        }
        for n in &removed {
            st.known.remove(n);
        }
        self.nonce += 1;
        st.nonce = self.nonce.to_string();
        st.sent_version = snapshot.version(t).to_string();
        let head = DeltaDiscoveryResponse {
            system_version_info: snapshot.version(t).to_string(),
            type_url: t.type_url().to_string(),
            removed_resources: removed,
            nonce: st.nonce.clone(),
            control_plane: Some(ControlPlane {
                identifier: self.shared.instance_id.clone(),
            }),
            ..Default::default()
        };
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
        insight.sent(t);
        self.tx.send(Outgoing::Message(response)).await.is_ok()
    }
}
