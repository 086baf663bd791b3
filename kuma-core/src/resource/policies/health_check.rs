//! The `HealthCheck` resource type: active health checking of the endpoints
//! of a destination service.

use super::util::{check_connection, optional_positive, percentage, required_positive};
use crate::duration::KumaDuration;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Spec of a `HealthCheck` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckSpec {
    /// The clients whose outbounds are checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services checked (`kuma.io/service` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// How to check; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<HealthCheckConf>,
}

/// The `conf` of a `HealthCheck`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckConf {
    /// Time between checks; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<KumaDuration>,
    /// Time to wait for a check's answer; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<KumaDuration>,
    /// Failed checks before an endpoint is unhealthy; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks before an endpoint is healthy again; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// Random delay before the first check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_jitter: Option<KumaDuration>,
    /// Random delay added to each interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter: Option<KumaDuration>,
    /// Random delay added to each interval, as a percentage of it (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter_percent: Option<u32>,
    /// Percentage of healthy endpoints below which Envoy ignores health (0..=100).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::number::option::serialize"
    )]
    pub healthy_panic_threshold: Option<f64>,
    /// Fail all traffic when in panic mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_traffic_on_panic: Option<bool>,
    /// File to log health-check events to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_path: Option<String>,
    /// Log every failed check, not only the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_log_health_check_failures: Option<bool>,
    /// Interval used for endpoints that get no traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_traffic_interval: Option<KumaDuration>,
    /// A TCP check (exclusive with `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    /// An HTTP check (exclusive with `tcp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    /// Reuse the connection between checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_connection: Option<bool>,
}

/// A TCP health check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheck {
    /// Base64 payload to send; none means a connect-only check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Base64 payloads expected back (fuzzy matched, in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receive: Vec<String>,
}

/// An HTTP health check.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheck {
    /// Path requested; required.
    #[serde(default)]
    pub path: String,
    /// Headers added to each check request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    /// Statuses counted as healthy (100..=599); Envoy's default is `[200]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u32>,
}

/// A header to add to a check request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueOption {
    /// Append to an existing value instead of replacing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
    /// The header; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderValue>,
}

/// A header name and value.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValue {
    /// Header name; required.
    #[serde(default)]
    pub key: String,
    /// Header value.
    #[serde(default)]
    pub value: String,
}

impl HealthCheckSpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::Any,
            &self.destinations,
            SelectorKeys::ServiceOnly,
            v,
        );
        let cp = path.field("conf");
        match &self.conf {
            None => v.violation(
                &cp,
                "must be set with at least interval, timeout and thresholds",
            ),
            Some(c) => c.check(&cp, v),
        }
    }
}

fn required_threshold(path: &FieldPath, n: Option<u32>, v: &mut Validator) {
    match n {
        None => v.violation(path, "must be set to a number greater than 0"),
        Some(0) => v.violation(path, "must be greater than 0"),
        Some(_) => {}
    }
}

fn check_base64(path: &FieldPath, text: &str, v: &mut Validator) {
    if base64::engine::general_purpose::STANDARD
        .decode(text)
        .is_err()
    {
        v.violation(
            path,
            format!("{text:?} is not valid base64: payloads are written base64-encoded"),
        );
    }
}

impl HealthCheckConf {
    fn check(&self, path: &FieldPath, v: &mut Validator) {
        required_positive(&path.field("interval"), self.interval.as_ref(), v);
        required_positive(&path.field("timeout"), self.timeout.as_ref(), v);
        required_threshold(
            &path.field("unhealthyThreshold"),
            self.unhealthy_threshold,
            v,
        );
        required_threshold(&path.field("healthyThreshold"), self.healthy_threshold, v);
        optional_positive(
            &path.field("initialJitter"),
            self.initial_jitter.as_ref(),
            v,
        );
        optional_positive(
            &path.field("intervalJitter"),
            self.interval_jitter.as_ref(),
            v,
        );
        if let Some(p) = self.interval_jitter_percent
            && p > 100
        {
            v.violation(
                &path.field("intervalJitterPercent"),
                format!("must be in the range 0..=100, got {p}"),
            );
        }
        if let Some(p) = self.healthy_panic_threshold {
            percentage(&path.field("healthyPanicThreshold"), p, v);
        }
        optional_positive(
            &path.field("noTrafficInterval"),
            self.no_traffic_interval.as_ref(),
            v,
        );
        if self.tcp.is_some() && self.http.is_some() {
            v.violation(
                path,
                "\"tcp\" and \"http\" cannot both be set: pick one kind of check",
            );
        }
        if let Some(tcp) = &self.tcp {
            let tp = path.field("tcp");
            if let Some(send) = &tcp.send {
                check_base64(&tp.field("send"), send, v);
            }
            for (i, r) in tcp.receive.iter().enumerate() {
                check_base64(&tp.field("receive").index(i), r, v);
            }
        }
        if let Some(http) = &self.http {
            let hp = path.field("http");
            if http.path.is_empty() {
                v.violation(&hp.field("path"), "must be set, e.g. \"/health\"");
            } else if !http.path.starts_with('/') {
                v.violation(
                    &hp.field("path"),
                    format!("{:?} must start with '/'", http.path),
                );
            }
            for (i, h) in http.request_headers_to_add.iter().enumerate() {
                let p = hp.field("requestHeadersToAdd").index(i).field("header");
                match &h.header {
                    None => v.violation(&p, "must be set with a key and a value"),
                    Some(h) if h.key.is_empty() => {
                        v.violation(&p.field("key"), "must not be empty")
                    }
                    Some(_) => {}
                }
            }
            for (i, s) in http.expected_statuses.iter().enumerate() {
                super::util::http_status(&hp.field("expectedStatuses").index(i), *s, v);
            }
        }
    }
}

impl Policy for HealthCheckSpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Connection {
            sources: &self.sources,
            destinations: &self.destinations,
        }
    }
}

#[cfg(test)]
mod tests;
