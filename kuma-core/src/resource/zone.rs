//! The `Zone` and `ZoneInsight` resource types of a multi-zone deployment.

use super::insight::BuildVersion;
use super::insight::{check_subscription, check_times, counter, timestamp};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// Spec of a `Zone` resource.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpec {
    /// Whether the zone takes part in the deployment (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

impl ZoneSpec {
    /// Whether the zone is enabled (`enabled`, default true).
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    pub(crate) fn check(&self, _path: &FieldPath, _v: &mut Validator) {}
}

/// Spec of a `ZoneInsight` resource: the KDS connection history of a zone's
/// control plane, written by the global control plane.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneInsightSpec {
    /// KDS connections of the zone, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<KdsSubscription>,
}

/// One KDS connection (`subscriptions[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsSubscription {
    /// Unique id of the connection.
    #[serde(default)]
    pub id: String,
    /// The global control-plane instance serving the connection.
    #[serde(default)]
    pub global_instance_id: String,
    /// When the zone connected.
    #[serde(with = "timestamp")]
    pub connect_time: OffsetDateTime,
    /// When the zone disconnected; `None` while connected.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub disconnect_time: Option<OffsetDateTime>,
    /// KDS counters of the connection.
    #[serde(default)]
    pub status: KdsSubscriptionStatus,
    /// Version of the zone's control plane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ZoneVersion>,
    /// Generation of the subscription, bumped on every change.
    #[serde(
        default,
        deserialize_with = "counter::deserialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub generation: Option<u32>,
}

/// `subscriptions[].status` of a ZoneInsight.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsSubscriptionStatus {
    /// When the counters last changed.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_update_time: Option<OffsetDateTime>,
    /// Counters over all resource types.
    #[serde(default)]
    pub total: KdsServiceStats,
    /// Counters per resource type (e.g. `Dataplane`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stat: BTreeMap<String, KdsServiceStats>,
}

/// KDS response counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KdsServiceStats {
    /// Responses sent to the zone.
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_sent: u64,
    /// Responses the zone acknowledged (ACK).
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_acknowledged: u64,
    /// Responses the zone rejected (NACK).
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_rejected: u64,
}

/// `subscriptions[].version` of a ZoneInsight.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneVersion {
    /// Version of the zone's kuma-cp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kuma_cp: Option<BuildVersion>,
}

impl ZoneInsightSpec {
    /// The latest subscription.
    pub fn last_subscription(&self) -> Option<&KdsSubscription> {
        self.subscriptions.last()
    }

    /// Whether the zone is connected: its latest subscription has no
    /// disconnect time.
    pub fn is_online(&self) -> bool {
        self.last_subscription()
            .is_some_and(|s| s.disconnect_time.is_none())
    }

    /// Replaces the subscription with `sub.id`, or appends `sub`.
    pub fn upsert_subscription(&mut self, sub: KdsSubscription) {
        match self.subscriptions.iter_mut().find(|s| s.id == sub.id) {
            Some(s) => *s = sub,
            None => self.subscriptions.push(sub),
        }
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        for (i, s) in self.subscriptions.iter().enumerate() {
            let p = path.field("subscriptions").index(i);
            check_subscription(&p, &s.id, &s.global_instance_id, "globalInstanceId", v);
            check_times(&p, s.connect_time, s.disconnect_time, v);
        }
    }
}

impl KdsSubscription {
    /// A new, connected subscription.
    pub fn new(id: &str, global_instance_id: &str, connect_time: OffsetDateTime) -> Self {
        Self {
            id: id.to_string(),
            global_instance_id: global_instance_id.to_string(),
            connect_time,
            disconnect_time: None,
            status: KdsSubscriptionStatus::default(),
            version: None,
            generation: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Resource;
    use time::macros::datetime;

    #[test]
    fn zone_round_trips() {
        for yaml in [
            "type: Zone\nname: zone-1\n",
            "type: Zone\nname: zone-1\nenabled: false\n",
        ] {
            let res = Resource::from_yaml(yaml).unwrap();
            res.validate().unwrap();
            assert_eq!(res.to_yaml(), yaml);
        }
        let res = Resource::from_yaml("type: Zone\nname: z\n").unwrap();
        assert!(res.spec_as::<ZoneSpec>().unwrap().is_enabled());
        let res = Resource::from_yaml("type: Zone\nname: z\nenabled: false\n").unwrap();
        assert!(!res.spec_as::<ZoneSpec>().unwrap().is_enabled());
        let e = Resource::from_yaml("type: Zone\nname: z\naddress: x\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "address");
        let e = Resource::from_yaml("type: Zone\nname: z\nenabled: maybe\n").unwrap_err();
        assert_eq!(e.violations()[0].field, "enabled");
    }

    const DOC: &str = r#"type: ZoneInsight
name: zone-1
subscriptions:
- id: 466aa63b-70e8-4435-8bee-a7146e2cdf11
  globalInstanceId: 66309679-ee95-4ea8-b17f-c715ca03bb38
  connectTime: 2020-07-28T16:08:09.743141Z
  disconnectTime: 2020-07-28T16:09:09.743141Z
  status:
    lastUpdateTime: 2020-07-28T16:08:10.510300Z
    total:
      responsesSent: 10
      responsesAcknowledged: 10
      responsesRejected: 0
    stat:
      Dataplane:
        responsesSent: 6
        responsesAcknowledged: 6
        responsesRejected: 0
      Mesh:
        responsesSent: 4
        responsesAcknowledged: 4
        responsesRejected: 0
  version:
    kumaCp:
      version: 1.0.0
      gitTag: 1.0.0
      gitCommit: 9d868cd8681c4021bb4a10bf2306ca613ba4de42
      buildDate: 2020-11-17T14:04:43Z
  generation: 2
"#;

    #[test]
    fn zone_insight_round_trips() {
        let res = Resource::from_yaml(DOC).unwrap();
        res.validate().unwrap();
        let out = res.to_yaml();
        assert_eq!(Resource::from_yaml(&out).unwrap(), res);
        let a: serde_json::Value = serde_yaml_ng::from_str(DOC).unwrap();
        let b: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
        assert_eq!(a, b, "{out}");
        let spec = res.spec_as::<ZoneInsightSpec>().unwrap();
        assert!(!spec.is_online());
        assert_eq!(
            spec.subscriptions[0].status.stat["Dataplane"].responses_sent,
            6
        );
    }

    #[test]
    fn zone_insight_counters_accept_strings() {
        let json = r#"{"type":"ZoneInsight","name":"z","subscriptions":[{"id":"1","globalInstanceId":"g","connectTime":"2021-01-01T00:00:00Z","status":{"total":{"responsesSent":"7"},"stat":{"Mesh":{"responsesRejected":"1"}}}}]}"#;
        let res = Resource::from_json(json).unwrap();
        let spec = res.spec_as::<ZoneInsightSpec>().unwrap();
        assert!(spec.is_online());
        assert_eq!(spec.subscriptions[0].status.total.responses_sent, 7);
        assert_eq!(
            spec.subscriptions[0].status.stat["Mesh"].responses_rejected,
            1
        );
    }

    #[test]
    fn zone_insight_rules_and_helpers() {
        let yaml = "type: ZoneInsight\nname: z\nsubscriptions:\n- connectTime: 2021-01-01T00:00:00Z\n  disconnectTime: 2020-01-01T00:00:00Z\n";
        let e = Resource::from_yaml(yaml).unwrap().validate().unwrap_err();
        let f: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(
            f,
            [
                "subscriptions[0].id",
                "subscriptions[0].globalInstanceId",
                "subscriptions[0].disconnectTime"
            ]
        );
        let e = Resource::from_yaml(
            "type: ZoneInsight\nname: z\nsubscriptions:\n- connectTime: 2021-01-01T00:00:00Z\n  status: {stat: {Mesh: {bogus: 1}}}\n",
        )
        .unwrap_err();
        assert_eq!(
            e.violations()[0].field,
            "subscriptions[0].status.stat.Mesh.bogus"
        );
        let mut spec = ZoneInsightSpec::default();
        let t0 = datetime!(2021-01-01 0:00 UTC);
        spec.upsert_subscription(KdsSubscription::new("a", "g", t0));
        spec.upsert_subscription(KdsSubscription::new("a", "g2", t0));
        assert_eq!(spec.subscriptions.len(), 1);
        assert_eq!(spec.subscriptions[0].global_instance_id, "g2");
        assert!(spec.is_online());
    }
}
