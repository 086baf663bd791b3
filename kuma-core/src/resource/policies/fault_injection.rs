//! The `FaultInjection` resource type: delays, aborts and bandwidth limits
//! injected into HTTP traffic reaching the selected inbounds.

use super::util::{check_connection, http_status, required_percentage, required_positive};
use crate::duration::KumaDuration;
use crate::resource::{PROTOCOL_TAG, Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `FaultInjection` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionSpec {
    /// The clients whose requests get faults.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The inbounds the faults are injected at (HTTP-based protocols).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// The faults; at least one is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<FaultInjectionConf>,
}

/// The `conf` of a `FaultInjection`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionConf {
    /// Delay a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    /// Abort a share of requests with a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
    /// Limit the response bandwidth of a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bandwidth: Option<ResponseBandwidth>,
}

/// A delay fault.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// Share of requests affected, 0..=100; required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::number::option::serialize"
    )]
    pub percentage: Option<f64>,
    /// The delay; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<KumaDuration>,
}

/// An abort fault.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    /// Share of requests affected, 0..=100; required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::number::option::serialize"
    )]
    pub percentage: Option<f64>,
    /// The status returned (100..=599); required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
}

/// A response-bandwidth fault.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseBandwidth {
    /// Share of requests affected, 0..=100; required.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::number::option::serialize"
    )]
    pub percentage: Option<f64>,
    /// The limit, e.g. `50kbps`, `1mbps`, `10 gbps`; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Parses a bandwidth limit (`<digits>[ ]kbps|mbps|gbps`) into kilobits per
/// second, or `None` if it is not in that form.
pub fn parse_bandwidth_kbps(limit: &str) -> Option<u64> {
    let unit_at = limit.find(|c: char| !c.is_ascii_digit())?;
    let (digits, rest) = limit.split_at(unit_at);
    if digits.is_empty() {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let factor = match rest.strip_prefix(' ').unwrap_or(rest) {
        "kbps" => 1,
        "mbps" => 1_000,
        "gbps" => 1_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Protocols fault injection works with (it is an HTTP filter).
const HTTP_PROTOCOLS: &[&str] = &["http", "http2", "grpc"];

impl FaultInjectionSpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::Any,
            &self.destinations,
            SelectorKeys::Any,
            v,
        );
        for (i, d) in self.destinations.iter().enumerate() {
            if let Some(p) = d.match_tags.get(PROTOCOL_TAG)
                && p != "*"
                && !HTTP_PROTOCOLS.contains(&p.as_str())
            {
                v.violation(
                        &path.field("destinations").index(i).field("match").key(PROTOCOL_TAG),
                        format!(
                            "fault injection only works with HTTP-based protocols: must be one of {}, got {p:?}",
                            HTTP_PROTOCOLS.join(", ")
                        ),
                    );
            }
        }
        let cp = path.field("conf");
        let Some(conf) = &self.conf else {
            v.violation(
                &cp,
                "must be set with at least one of delay, abort or responseBandwidth",
            );
            return;
        };
        if conf.delay.is_none() && conf.abort.is_none() && conf.response_bandwidth.is_none() {
            v.violation(
                &cp,
                "must have at least one of delay, abort or responseBandwidth",
            );
        }
        if let Some(d) = &conf.delay {
            let p = cp.field("delay");
            required_percentage(&p.field("percentage"), d.percentage, v);
            required_positive(&p.field("value"), d.value.as_ref(), v);
        }
        if let Some(a) = &conf.abort {
            let p = cp.field("abort");
            required_percentage(&p.field("percentage"), a.percentage, v);
            match a.http_status {
                None => v.violation(&p.field("httpStatus"), "must be set, e.g. 503"),
                Some(s) => http_status(&p.field("httpStatus"), s, v),
            }
        }
        if let Some(b) = &conf.response_bandwidth {
            let p = cp.field("responseBandwidth");
            required_percentage(&p.field("percentage"), b.percentage, v);
            match &b.limit {
                None => v.violation(&p.field("limit"), "must be set, e.g. \"50kbps\""),
                Some(l) if parse_bandwidth_kbps(l).is_none() => v.violation(
                    &p.field("limit"),
                    format!("{l:?} is not a bandwidth: use a whole number with kbps, mbps or gbps, e.g. \"50kbps\""),
                ),
                Some(_) => {}
            }
        }
    }
}

impl Policy for FaultInjectionSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Connection {
            sources: &self.sources,
            destinations: &self.destinations,
        }
    }
}

#[cfg(test)]
mod tests;
