//! Envoy resources written as YAML or JSON (proto3 JSON mapping, as in
//! Kuma's ProxyTemplate) turned into `envoy-types` messages, and proto
//! merges of `google.protobuf.Any` values.
//!
//! `envoy-types` has no serde support, so the conversion goes through
//! `prost-reflect`: the text is parsed into a `serde_json::Value`, read as
//! a `DynamicMessage` of the wanted type (camelCase or snake_case field
//! names, well-known types such as `Duration` (`5s`) and `Any` (`@type`)
//! as in protobuf's JSON mapping; unknown fields are errors), encoded, and
//! decoded again as the `envoy-types` message.
//!
//! The descriptors are `kuma-xds/descriptors/envoy.bin`: the
//! `FileDescriptorSet` the `envoy-types` crate generated its types from
//! (it ships it but does not export it), checked in and refreshed with
//! `scripts/update-envoy-descriptors` after an `envoy-types` bump, so a
//! build needs neither protoc nor a build script that digs in the cargo
//! registry. It is compiled in and decoded once, on first use.

use crate::ProxyTemplateError as Error;
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DescriptorError, DescriptorPool, DynamicMessage, MessageDescriptor};
use std::sync::LazyLock;

/// The Envoy descriptor set (see the module doc).
static DESCRIPTORS: &[u8] = include_bytes!("../../../descriptors/envoy.bin");

static POOL: LazyLock<Result<DescriptorPool, DescriptorError>> =
    LazyLock::new(|| DescriptorPool::decode(DESCRIPTORS));

fn pool() -> Result<&'static DescriptorPool, Error> {
    POOL.as_ref().map_err(Error::Descriptors)
}

/// The descriptor of the message `full_name` (e.g.
/// `envoy.config.cluster.v3.Cluster`).
fn descriptor(full_name: &str) -> Result<MessageDescriptor, Error> {
    pool()?
        .get_message_by_name(full_name)
        .ok_or_else(|| Error::UnknownMessageType(full_name.to_string()))
}

/// The message name of a type URL (`type.googleapis.com/<name>`).
fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map_or(type_url, |(_, name)| name)
}

/// Parses YAML or JSON text into a JSON value.
fn parse_value(text: &str) -> Result<serde_json::Value, Error> {
    serde_yaml_ng::from_str(text).map_err(Error::Syntax)
}

/// Reads a JSON value as a message of `desc` and encodes it.
fn encode_json(desc: MessageDescriptor, value: serde_json::Value) -> Result<Vec<u8>, Error> {
    let message = desc.full_name().to_string();
    DynamicMessage::deserialize(desc, value)
        .map(|m| m.encode_to_vec())
        .map_err(|source| Error::InvalidMessage { message, source })
}

/// Decodes protobuf bytes as a `T`.
pub(crate) fn decode<T: Message + Name + Default>(bytes: &[u8]) -> Result<T, Error> {
    T::decode(bytes).map_err(|source| Error::Decode {
        message: T::full_name(),
        source,
    })
}

/// Parses YAML or JSON text as a `T`. An `@type` is allowed if it names
/// `T`.
pub(crate) fn parse<T: Message + Name + Default>(text: &str) -> Result<T, Error> {
    let mut value = parse_value(text)?;
    if let serde_json::Value::Object(map) = &mut value
        && let Some(t) = map.remove("@type")
    {
        let t = t.as_str().unwrap_or_default();
        if type_name(t) != T::full_name() {
            return Err(Error::WrongType {
                found: t.to_string(),
                expected: T::type_url(),
            });
        }
    }
    let bytes = encode_json(descriptor(&T::full_name())?, value)?;
    decode(&bytes)
}

/// Parses YAML or JSON text with an `@type` into an `Any`.
pub(crate) fn parse_any(text: &str) -> Result<Any, Error> {
    let value = parse_value(text)?;
    let bytes = encode_json(descriptor("google.protobuf.Any")?, value)?;
    decode(&bytes)
}

/// Proto-merges `src` into `dst` (fields set in `src` replace scalars,
/// merge into messages and append to lists); both must hold the same type.
pub(crate) fn merge_any(dst: &mut Any, src: &Any) -> Result<(), Error> {
    if dst.type_url != src.type_url {
        return Err(Error::MergeMismatch {
            from: type_name(&src.type_url).to_string(),
            into: type_name(&dst.type_url).to_string(),
        });
    }
    let name = type_name(&dst.type_url);
    let desc = descriptor(name)?;
    let decode_error = |source| Error::Decode {
        message: name.to_string(),
        source,
    };
    let mut msg = DynamicMessage::decode(desc, dst.value.as_slice()).map_err(decode_error)?;
    msg.merge(src.value.as_slice()).map_err(decode_error)?;
    dst.value = msg.encode_to_vec();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::cluster::v3::cluster::{
        ClusterDiscoveryType, DiscoveryType,
    };
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use envoy_types::util::pack_any;

    #[test]
    fn yaml_and_json_with_either_field_naming() {
        let c: Cluster = parse(
            "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: a\nconnectTimeout: 1.5s\ntype: STATIC\n",
        )
        .unwrap();
        assert_eq!(c.name, "a");
        assert_eq!(c.connect_timeout.unwrap().nanos, 500_000_000);
        assert_eq!(
            c.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
        );
        let c: Cluster = parse(r#"{"name": "b", "connect_timeout": "2s"}"#).unwrap();
        assert_eq!(c.connect_timeout.unwrap().seconds, 2);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = parse::<Cluster>("name: a\nconectTimeout: 1s\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("conectTimeout"), "{e}");
        let e =
            parse::<Cluster>("'@type': type.googleapis.com/envoy.config.listener.v3.Listener\n")
                .unwrap_err()
                .to_string();
        assert!(e.contains("is not"), "{e}");
        assert!(parse::<Cluster>("name: [a").is_err());
    }

    #[test]
    fn any_with_type_and_merge() {
        let any = parse_any(
            "'@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\nstatPrefix: x\nidleTimeout: 10s\n",
        )
        .unwrap();
        let mut dst = pack_any(TcpProxy {
            stat_prefix: "old".into(),
            ..Default::default()
        });
        merge_any(&mut dst, &any).unwrap();
        let merged = TcpProxy::decode(dst.value.as_slice()).unwrap();
        assert_eq!(merged.stat_prefix, "x");
        assert_eq!(merged.idle_timeout.unwrap().seconds, 10);
        let other = pack_any(Cluster::default());
        assert!(merge_any(&mut dst, &other).is_err());
    }
}
