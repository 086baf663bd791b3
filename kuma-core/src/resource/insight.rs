//! The `DataplaneInsight` resource type: the xDS connection history and
//! certificate status of one Dataplane, written by the control plane.
//!
//! Times are RFC 3339 strings. Counters are `uint64` in Kuma's API, which
//! protobuf's JSON mapping writes as strings; both numbers and strings are
//! read, numbers are written.

use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Spec of a `DataplaneInsight` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneInsightSpec {
    /// xDS connections of the Dataplane, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<DiscoverySubscription>,
    /// Status of the Dataplane's mTLS certificate.
    #[serde(rename = "mTLS", default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<InsightMtls>,
}

/// One xDS connection (`subscriptions[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscription {
    /// Unique id of the connection.
    #[serde(default)]
    pub id: String,
    /// The control-plane instance serving the connection.
    #[serde(default)]
    pub control_plane_instance_id: String,
    /// When the Dataplane connected.
    #[serde(with = "timestamp")]
    pub connect_time: OffsetDateTime,
    /// When the Dataplane disconnected; `None` while connected.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub disconnect_time: Option<OffsetDateTime>,
    /// xDS counters of the connection.
    #[serde(default)]
    pub status: DiscoverySubscriptionStatus,
    /// Versions of kuma-dp and Envoy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<DataplaneVersion>,
    /// Generation of the subscription, bumped on every change.
    #[serde(
        default,
        deserialize_with = "counter::deserialize_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub generation: Option<u32>,
}

/// `subscriptions[].status`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverySubscriptionStatus {
    /// When the counters last changed.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_update_time: Option<OffsetDateTime>,
    /// Counters over all xDS types.
    #[serde(default)]
    pub total: DiscoveryServiceStats,
    /// Cluster discovery counters.
    #[serde(default)]
    pub cds: DiscoveryServiceStats,
    /// Endpoint discovery counters.
    #[serde(default)]
    pub eds: DiscoveryServiceStats,
    /// Listener discovery counters.
    #[serde(default)]
    pub lds: DiscoveryServiceStats,
    /// Route discovery counters.
    #[serde(default)]
    pub rds: DiscoveryServiceStats,
    /// The last response the Dataplane rejected, with Envoy's error
    /// (`lastNack`; our extension of Kuma's API). Kept after the problem
    /// is fixed, with `resolvedTime` set; replaced by the next NACK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<NackStatus>,
}

/// A response the Dataplane rejected (`subscriptions[].status.lastNack`).
///
/// Envoy keeps serving its last accepted config of that type; the control
/// plane does not resend the rejected version, and pushes the next change.
/// `resolvedTime` is set when a later response of the same type is
/// acknowledged: the error no longer applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NackStatus {
    /// Type URL of the rejected response, e.g.
    /// `type.googleapis.com/envoy.config.listener.v3.Listener`.
    #[serde(default)]
    pub type_url: String,
    /// Version of the rejected response.
    #[serde(default)]
    pub version: String,
    /// Envoy's error message.
    #[serde(default)]
    pub error: String,
    /// When the response was rejected.
    #[serde(with = "timestamp")]
    pub time: OffsetDateTime,
    /// When a later response of the same type was acknowledged; `None`
    /// while the rejection still stands.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub resolved_time: Option<OffsetDateTime>,
}

/// xDS response counters of one discovery service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryServiceStats {
    /// Responses sent to the Dataplane.
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_sent: u64,
    /// Responses the Dataplane acknowledged (ACK).
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_acknowledged: u64,
    /// Responses the Dataplane rejected (NACK).
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub responses_rejected: u64,
}

/// `subscriptions[].version`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneVersion {
    /// Version of kuma-dp.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kuma_dp: Option<BuildVersion>,
    /// Version of Envoy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy: Option<EnvoyVersion>,
}

/// Build information of a Kuma binary (kuma-dp, kuma-cp).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildVersion {
    /// Version, e.g. `1.0.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Git tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_tag: Option<String>,
    /// Git commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Build date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_date: Option<String>,
}

/// Version of Envoy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyVersion {
    /// Version, e.g. `1.16.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Full build string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// `mTLS` of a DataplaneInsight.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InsightMtls {
    /// When the current certificate expires.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub certificate_expiration_time: Option<OffsetDateTime>,
    /// When the certificate was last (re)generated.
    #[serde(
        default,
        with = "timestamp::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_certificate_regeneration: Option<OffsetDateTime>,
    /// How many times the certificate was generated.
    #[serde(default, deserialize_with = "counter::deserialize")]
    pub certificate_regenerations: u32,
    /// The CA backend that issued the current certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_backend: Option<String>,
    /// The CA backends whose certificates the Dataplane trusts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_backends: Vec<String>,
}

impl DataplaneInsightSpec {
    /// The latest subscription.
    pub fn last_subscription(&self) -> Option<&DiscoverySubscription> {
        self.subscriptions.last()
    }

    /// Whether the Dataplane is connected: its latest subscription has no
    /// disconnect time.
    pub fn is_online(&self) -> bool {
        self.last_subscription()
            .is_some_and(DiscoverySubscription::is_connected)
    }

    /// Replaces the subscription with `sub.id`, or appends `sub`.
    pub fn upsert_subscription(&mut self, sub: DiscoverySubscription) {
        match self.subscriptions.iter_mut().find(|s| s.id == sub.id) {
            Some(s) => *s = sub,
            None => self.subscriptions.push(sub),
        }
    }

    /// Keeps only the `max` latest subscriptions.
    pub fn truncate_subscriptions(&mut self, max: usize) {
        let extra = self.subscriptions.len().saturating_sub(max);
        self.subscriptions.drain(..extra);
    }

    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        for (i, s) in self.subscriptions.iter().enumerate() {
            let p = path.field("subscriptions").index(i);
            check_subscription(
                &p,
                &s.id,
                &s.control_plane_instance_id,
                "controlPlaneInstanceId",
                v,
            );
            check_times(&p, s.connect_time, s.disconnect_time, v);
        }
    }
}

impl DiscoverySubscription {
    /// A new, connected subscription.
    pub fn new(id: &str, control_plane_instance_id: &str, connect_time: OffsetDateTime) -> Self {
        Self {
            id: id.to_string(),
            control_plane_instance_id: control_plane_instance_id.to_string(),
            connect_time,
            disconnect_time: None,
            status: DiscoverySubscriptionStatus::default(),
            version: None,
            generation: None,
        }
    }

    /// Whether the connection is still open.
    pub fn is_connected(&self) -> bool {
        self.disconnect_time.is_none()
    }
}

pub(crate) fn check_subscription(
    p: &FieldPath,
    id: &str,
    instance: &str,
    instance_field: &str,
    v: &mut Validator,
) {
    if id.is_empty() {
        v.violation(&p.field("id"), "must not be empty");
    }
    if instance.is_empty() {
        v.violation(&p.field(instance_field), "must not be empty");
    }
}

pub(crate) fn check_times(
    p: &FieldPath,
    connect: OffsetDateTime,
    disconnect: Option<OffsetDateTime>,
    v: &mut Validator,
) {
    if let Some(d) = disconnect
        && d < connect
    {
        v.violation(&p.field("disconnectTime"), "must not be before connectTime");
    }
}

/// RFC 3339 timestamps written as protobuf's JSON mapping writes them:
/// 0, 3, 6 or 9 fractional digits (read with any number of digits).
pub(crate) mod timestamp {
    use serde::{Deserialize, Deserializer, Serializer, de, ser};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    /// Formats `t` in RFC 3339 with 0, 3, 6 or 9 fractional digits.
    pub fn format(t: OffsetDateTime) -> Option<String> {
        let mut base = t.replace_nanosecond(0).ok()?.format(&Rfc3339).ok()?;
        let nanos = t.nanosecond();
        let frac = match nanos {
            0 => return Some(base),
            n if n % 1_000_000 == 0 => format!(".{:03}", n / 1_000_000),
            n if n % 1_000 == 0 => format!(".{:06}", n / 1_000),
            n => format!(".{n:09}"),
        };
        // "YYYY-MM-DDTHH:MM:SS" is 19 bytes for the years the format allows.
        base.insert_str(19, &frac);
        Some(base)
    }

    /// Serializes a timestamp.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = format(*t)
            .ok_or_else(|| ser::Error::custom("timestamp cannot be written in RFC 3339"))?;
        s.serialize_str(&text)
    }

    /// Deserializes an RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|e| de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))
    }

    /// The same for optional timestamps.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Serializes `Some(timestamp)`.
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional RFC 3339 timestamp (`null` = `None`).
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            #[derive(Deserialize)]
            struct Wrap(#[serde(deserialize_with = "super::deserialize")] OffsetDateTime);
            Ok(Option::<Wrap>::deserialize(d)?.map(|w| w.0))
        }
    }
}

/// Reading protobuf-JSON integers: numbers, or decimal strings (as
/// `uint64` is written).
pub(crate) mod counter {
    use serde::de::{self, Deserializer, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    struct CounterVisitor<T>(PhantomData<T>);

    impl<T: TryFrom<u64>> CounterVisitor<T> {
        fn convert<E: de::Error>(v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
        }
    }

    impl<T: TryFrom<u64>> Visitor<'_> for CounterVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a non-negative integer, as a number or a string")
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
            Self::convert(v)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
            let v = u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))?;
            Self::convert(v)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
            if v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 {
                Self::convert(v as u64)
            } else {
                Err(E::custom(format!("{v} is not a non-negative integer")))
            }
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            let n = v
                .parse::<u64>()
                .map_err(|_| E::custom(format!("{v:?} is not a non-negative integer")))?;
            Self::convert(n)
        }
    }

    /// Reads a counter from a number or a decimal string.
    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<u64>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(CounterVisitor(PhantomData))
    }

    /// The same for an optional counter (`null` = `None`).
    pub fn deserialize_option<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        struct OptVisitor<T>(PhantomData<T>);

        impl<'de, T: TryFrom<u64>> Visitor<'de> for OptVisitor<T> {
            type Value = Option<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer, as a number or a string, or null")
            }

            fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
                deserialize(d).map(Some)
            }
        }

        d.deserialize_option(OptVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests;
