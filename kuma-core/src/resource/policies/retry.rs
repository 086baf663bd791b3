//! The `Retry` resource type: retries of failed HTTP and gRPC requests and
//! of failed TCP connection attempts on the selected outbounds.

use super::util::{check_connection, http_status, optional_nonzero, optional_positive};
use crate::duration::KumaDuration;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `Retry` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySpec {
    /// The clients whose outbounds retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// The retry settings; required, with at least one of http/tcp/grpc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<RetryConf>,
}

/// The `conf` of a `Retry`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConf {
    /// HTTP request retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpRetry>,
    /// TCP connection retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpRetry>,
    /// gRPC request retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcRetry>,
}

/// Exponential back-off between retries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOff {
    /// First interval; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<KumaDuration>,
    /// Largest interval (> 0 and not below `baseInterval` when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<KumaDuration>,
}

/// HTTP retries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Retries allowed (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// Timeout of each attempt (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<KumaDuration>,
    /// Back-off between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    /// Response statuses that are retried (100..=599).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u32>,
    /// Request methods that may be retried (uppercase, e.g. `GET`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_methods: Vec<String>,
    /// Envoy retry conditions (see [`HTTP_RETRY_ON`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

/// TCP retries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRetry {
    /// Connection attempts before giving up; required, > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_attempts: Option<u32>,
}

/// gRPC retries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcRetry {
    /// Retries allowed (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// Timeout of each attempt (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<KumaDuration>,
    /// Back-off between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    /// gRPC statuses that are retried (see [`GRPC_RETRY_ON`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

/// HTTP methods `retriableMethods` may name.
pub const HTTP_METHODS: &[&str] = &[
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// Conditions `http.retryOn` may name.
pub const HTTP_RETRY_ON: &[&str] = &[
    "all_5xx",
    "gateway_error",
    "reset",
    "connect_failure",
    "envoy_ratelimited",
    "retriable_4xx",
    "refused_stream",
    "retriable_status_codes",
    "retriable_headers",
    "http3_post_connect_failure",
];

/// Statuses `grpc.retryOn` may name.
pub const GRPC_RETRY_ON: &[&str] = &[
    "cancelled",
    "deadline_exceeded",
    "internal",
    "resource_exhausted",
    "unavailable",
];

fn check_back_off(path: &FieldPath, b: Option<&BackOff>, v: &mut Validator) {
    let Some(b) = b else { return };
    let base = path.field("baseInterval");
    match &b.base_interval {
        None => v.violation(&base, "must be set, e.g. \"25ms\""),
        Some(d) => optional_positive(&base, Some(d), v),
    }
    let max = path.field("maxInterval");
    optional_positive(&max, b.max_interval.as_ref(), v);
    if let (Some(lo), Some(hi)) = (&b.base_interval, &b.max_interval)
        && !hi.as_duration().is_zero()
        && hi.as_duration() < lo.as_duration()
    {
        v.violation(
            &max,
            format!("must not be shorter than baseInterval ({hi} < {lo})"),
        );
    }
}

fn check_names(path: &FieldPath, names: &[String], known: &[&str], what: &str, v: &mut Validator) {
    for (i, name) in names.iter().enumerate() {
        let p = path.index(i);
        if !known.contains(&name.as_str()) {
            v.violation(
                &p,
                format!(
                    "unknown {what} {name:?}: must be one of {}",
                    known.join(", ")
                ),
            );
        } else if names[..i].contains(name) {
            v.violation(&p, format!("{name:?} is listed more than once"));
        }
    }
}

impl RetrySpec {
    pub(crate) fn check(&self, path: &FieldPath, v: &mut Validator) {
        check_connection(
            path,
            &self.sources,
            SelectorKeys::Any,
            &self.destinations,
            SelectorKeys::Any,
            v,
        );
        let cp = path.field("conf");
        let Some(conf) = &self.conf else {
            v.violation(&cp, "must be set with at least one of http, tcp or grpc");
            return;
        };
        if conf.http.is_none() && conf.tcp.is_none() && conf.grpc.is_none() {
            v.violation(&cp, "must have at least one of http, tcp or grpc");
        }
        if let Some(http) = &conf.http {
            let p = cp.field("http");
            if http == &HttpRetry::default() {
                v.violation(&p, "must set at least one option when present");
            }
            optional_nonzero(&p.field("numRetries"), http.num_retries, v);
            optional_positive(&p.field("perTryTimeout"), http.per_try_timeout.as_ref(), v);
            check_back_off(&p.field("backOff"), http.back_off.as_ref(), v);
            for (i, code) in http.retriable_status_codes.iter().enumerate() {
                http_status(&p.field("retriableStatusCodes").index(i), *code, v);
            }
            check_names(
                &p.field("retriableMethods"),
                &http.retriable_methods,
                HTTP_METHODS,
                "HTTP method",
                v,
            );
            check_names(
                &p.field("retryOn"),
                &http.retry_on,
                HTTP_RETRY_ON,
                "retry condition",
                v,
            );
            if http.retriable_status_codes.is_empty()
                && let Some(i) = http
                    .retry_on
                    .iter()
                    .position(|r| r == "retriable_status_codes")
            {
                v.violation(
                    &p.field("retryOn").index(i),
                    "retriable_status_codes needs retriableStatusCodes to be set",
                );
            }
        }
        if let Some(tcp) = &conf.tcp {
            let p = cp.field("tcp").field("maxConnectAttempts");
            match tcp.max_connect_attempts {
                None => v.violation(&p, "must be set to a number greater than 0"),
                Some(0) => v.violation(&p, "must be greater than 0"),
                Some(_) => {}
            }
        }
        if let Some(grpc) = &conf.grpc {
            let p = cp.field("grpc");
            if grpc == &GrpcRetry::default() {
                v.violation(&p, "must set at least one option when present");
            }
            optional_nonzero(&p.field("numRetries"), grpc.num_retries, v);
            optional_positive(&p.field("perTryTimeout"), grpc.per_try_timeout.as_ref(), v);
            check_back_off(&p.field("backOff"), grpc.back_off.as_ref(), v);
            check_names(
                &p.field("retryOn"),
                &grpc.retry_on,
                GRPC_RETRY_ON,
                "gRPC status",
                v,
            );
        }
    }
}

impl Policy for RetrySpec {
    fn targets(&self) -> PolicyTargets<'_> {
        PolicyTargets::Connection {
            sources: &self.sources,
            destinations: &self.destinations,
        }
    }
}

#[cfg(test)]
mod tests;
