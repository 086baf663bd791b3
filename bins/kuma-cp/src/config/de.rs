//! The serde glue of the file: every value goes through the same parser as
//! the environment's (see `keys`), and the enums (de)serialize by name.

use std::fmt;

use ipnet::Ipv4Net;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::keys::{
    parse_bool, parse_cidr, parse_count, parse_duration, parse_listed_port, parse_opt_string,
    parse_port, parse_port_list, parse_tls_mode, show_duration,
};
use super::mask;
use super::model::{DpAuthType, Mode, StoreType, TlsMode};

/// Any YAML scalar, as the text the environment would carry.
struct ScalarVisitor;

impl Visitor<'_> for ScalarVisitor {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a single value (string, number or boolean)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A scalar's text; `None` for `null` / an empty value.
fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    d.deserialize_any(ScalarVisitor)
}

/// A scalar that must be present, run through `parse`.
fn required<'de, D, T>(d: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    match scalar(d)? {
        Some(text) => parse(&text).map_err(de::Error::custom),
        None => Err(de::Error::custom(
            "no value given (remove the key to keep the default)",
        )),
    }
}

/// A section (nested mapping); `null` or an empty value means its defaults.
pub(super) fn de_section<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

pub(super) fn de_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(scalar(d)?.unwrap_or_default())
}

pub(super) fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match scalar(d)? {
        Some(text) => parse_opt_string(&text).map_err(de::Error::custom),
        None => Ok(None),
    }
}

pub(super) fn de_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    required(d, parse_port)
}

pub(super) fn de_count<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    required(d, parse_count)
}

pub(super) fn de_tls_mode<'de, D: Deserializer<'de>>(d: D) -> Result<TlsMode, D::Error> {
    required(d, parse_tls_mode)
}

pub(super) fn de_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    required(d, parse_bool)
}

pub(super) fn de_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<std::time::Duration, D::Error> {
    required(d, parse_duration)
}

pub(super) fn ser_duration<S: Serializer>(
    value: &std::time::Duration,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&show_duration(*value))
}

pub(super) fn de_cidr<'de, D: Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
    required(d, parse_cidr)
}

/// A list of ports: a YAML sequence, a comma-separated string, or `null`.
pub(super) fn de_port_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u16>, D::Error> {
    struct PortListVisitor;

    impl<'de> Visitor<'de> for PortListVisitor {
        type Value = Vec<u16>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of ports or a comma-separated string of ports")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut ports = Vec::new();
            while let Some(Scalar(item)) = seq.next_element::<Scalar>()? {
                let text = item.unwrap_or_default();
                ports.push(parse_listed_port(&text).map_err(de::Error::custom)?);
            }
            Ok(ports)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            parse_port_list(v).map_err(de::Error::custom)
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            parse_port_list(&v.to_string()).map_err(de::Error::custom)
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            parse_port_list(&v.to_string()).map_err(de::Error::custom)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
    }

    d.deserialize_any(PortListVisitor)
}

/// A scalar inside a sequence.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        scalar(d).map(Scalar)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<Mode>)
    }
}

impl Serialize for StoreType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StoreType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<StoreType>)
    }
}

impl Serialize for DpAuthType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DpAuthType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        required(d, str::parse::<DpAuthType>)
    }
}

pub(super) fn ser_display<T: fmt::Display, S: Serializer>(
    value: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

pub(super) fn ser_masked<S: Serializer>(value: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mask(value))
}
