//! Records a proxy's xDS stream in its DataplaneInsight: connect and
//! disconnect times, the control-plane instance, and per-type counters of
//! responses sent, acknowledged and rejected, and the last rejected
//! response with Envoy's error (`status.lastNack`, resolved by the next ACK
//! of its type).

use crate::resource::XdsType;
use kuma_core::manager::{ManagerError, ResourceManager};
use kuma_core::resource::{
    BuildVersion, DataplaneInsightSpec, DataplaneVersion, DiscoveryServiceStats,
    DiscoverySubscription, EnvoyVersion, NackStatus, Resource, ResourceKey, ResourceType,
};
use kuma_core::store::StoreError;
use time::OffsetDateTime;
use tracing::debug;

/// How many past subscriptions an insight keeps.
const KEEP_SUBSCRIPTIONS: usize = 5;

/// One stream's subscription, kept in memory and flushed to the store.
#[derive(Debug)]
pub struct InsightRecorder {
    key: ResourceKey,
    subscription: DiscoverySubscription,
    dirty: bool,
}

impl InsightRecorder {
    /// A new subscription of `mesh`/`name` opened now.
    pub fn new(
        mesh: &str,
        name: &str,
        stream_id: &str,
        instance: &str,
        envoy_version: Option<String>,
        kuma_dp_version: Option<String>,
    ) -> Self {
        let mut subscription =
            DiscoverySubscription::new(stream_id, instance, OffsetDateTime::now_utc());
        if envoy_version.is_some() || kuma_dp_version.is_some() {
            subscription.version = Some(DataplaneVersion {
                kuma_dp: kuma_dp_version.map(|v| BuildVersion {
                    version: Some(v),
                    ..Default::default()
                }),
                envoy: envoy_version.map(|v| EnvoyVersion {
                    version: Some(v),
                    ..Default::default()
                }),
            });
        }
        Self {
            key: ResourceKey::new(ResourceType::DataplaneInsight, Some(mesh), name),
            subscription,
            dirty: true,
        }
    }

    fn stats(&mut self, t: XdsType) -> Option<&mut DiscoveryServiceStats> {
        let s = &mut self.subscription.status;
        match t {
            XdsType::Cluster => Some(&mut s.cds),
            XdsType::Endpoint => Some(&mut s.eds),
            XdsType::Listener => Some(&mut s.lds),
            XdsType::Route => Some(&mut s.rds),
            XdsType::Secret => None,
        }
    }

    fn touch(&mut self) {
        self.subscription.status.last_update_time = Some(OffsetDateTime::now_utc());
        self.dirty = true;
    }

    /// A response of type `t` was sent.
    pub fn sent(&mut self, t: XdsType) {
        self.subscription.status.total.responses_sent += 1;
        if let Some(s) = self.stats(t) {
            s.responses_sent += 1;
        }
        self.touch();
    }

    /// Envoy acknowledged a response of type `t`: a standing NACK of that
    /// type is resolved.
    pub fn acked(&mut self, t: XdsType) {
        self.subscription.status.total.responses_acknowledged += 1;
        if let Some(s) = self.stats(t) {
            s.responses_acknowledged += 1;
        }
        if let Some(nack) = &mut self.subscription.status.last_nack
            && nack.resolved_time.is_none()
            && nack.type_url == t.type_url()
        {
            nack.resolved_time = Some(OffsetDateTime::now_utc());
        }
        self.touch();
    }

    /// Envoy rejected `version` of type `t` with `error`: counted as
    /// [`Self::rejected`] and kept as the subscription's `lastNack`.
    pub fn nacked(&mut self, t: XdsType, version: &str, error: &str) {
        self.subscription.status.last_nack = Some(NackStatus {
            type_url: t.type_url().to_string(),
            version: version.to_string(),
            error: crate::stream::ack::truncate_detail(error).into_owned(),
            time: OffsetDateTime::now_utc(),
            resolved_time: None,
        });
        self.rejected(t);
    }

    /// The subscription as it stands (what [`Self::flush`] writes).
    pub fn subscription(&self) -> &DiscoverySubscription {
        &self.subscription
    }

    /// Envoy rejected a response of type `t`.
    pub fn rejected(&mut self, t: XdsType) {
        self.subscription.status.total.responses_rejected += 1;
        if let Some(s) = self.stats(t) {
            s.responses_rejected += 1;
        }
        self.touch();
    }

    /// The stream ended now.
    pub fn disconnected(&mut self) {
        self.subscription.disconnect_time = Some(OffsetDateTime::now_utc());
        self.dirty = true;
    }

    /// Writes the subscription into the store if anything changed; retries
    /// once on a concurrent update. A missing mesh (deleted meanwhile) is
    /// not an error.
    pub async fn flush(&mut self, manager: &ResourceManager) {
        if !self.dirty {
            return;
        }
        for _ in 0..3 {
            let (mut spec, version) = match manager.get(&self.key).await {
                Ok(r) => (
                    r.spec_as::<DataplaneInsightSpec>()
                        .cloned()
                        .unwrap_or_default(),
                    r.meta.version,
                ),
                Err(_) => (DataplaneInsightSpec::default(), None),
            };
            spec.upsert_subscription(self.subscription.clone());
            spec.truncate_subscriptions(KEEP_SUBSCRIPTIONS);
            let mut r = Resource::new(self.key.mesh.as_deref(), &self.key.name, spec);
            r.meta.version = version;
            let result = match version {
                Some(_) => manager.update(r).await.map(|_| ()),
                None => manager.create(r).await.map(|_| ()),
            };
            match result {
                Ok(()) => {
                    self.dirty = false;
                    return;
                }
                Err(ManagerError::Store(
                    StoreError::Conflict { .. } | StoreError::AlreadyExists(_),
                )) => continue,
                Err(e) => {
                    debug!(key = %self.key, error = %e, "insight not written");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nack_is_kept_and_resolved_by_an_ack_of_its_type() {
        let mut r = InsightRecorder::new("m", "dp", "1", "cp", None, None);
        r.sent(XdsType::Listener);
        r.nacked(XdsType::Listener, "v2", "duplicate listener");
        let status = &r.subscription().status;
        assert_eq!(status.lds.responses_rejected, 1);
        assert_eq!(status.total.responses_rejected, 1);
        let nack = status.last_nack.as_ref().unwrap();
        assert_eq!(
            (nack.version.as_str(), nack.error.as_str()),
            ("v2", "duplicate listener")
        );
        assert_eq!(nack.type_url, XdsType::Listener.type_url());
        r.acked(XdsType::Cluster);
        assert!(
            r.subscription()
                .status
                .last_nack
                .as_ref()
                .unwrap()
                .resolved_time
                .is_none()
        );
        r.acked(XdsType::Listener);
        let nack = r.subscription().status.last_nack.as_ref().unwrap();
        assert!(nack.resolved_time.is_some());
        assert_eq!(nack.error, "duplicate listener", "kept after resolution");
    }
}
