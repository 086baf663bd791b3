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
mod tests {
    use super::super::util::testing::*;

    const DOC: &str = r#"
type: Retry
name: retry-all-default
mesh: default
sources:
- match:
    kuma.io/service: '*'
destinations:
- match:
    kuma.io/service: '*'
conf:
  http:
    numRetries: 5
    perTryTimeout: 200ms
    backOff:
      baseInterval: 20ms
      maxInterval: 1s
    retriableStatusCodes:
    - 500
    - 504
    retriableMethods:
    - GET
  grpc:
    numRetries: 5
    perTryTimeout: 200ms
    backOff:
      baseInterval: 20ms
      maxInterval: 1s
    retryOn:
    - cancelled
    - deadline_exceeded
    - internal
    - resource_exhausted
    - unavailable
  tcp:
    maxConnectAttempts: 5
"#;

    fn head() -> &'static str {
        DOC.split("conf:").next().unwrap()
    }

    #[test]
    fn documented_example_round_trips() {
        round_trip(DOC);
        round_trip(&DOC.replace("    - GET\n", "    - GET\n    - POST\n    retryOn:\n    - retriable_status_codes\n    - gateway_error\n"));
        round_trip(&format!(
            "{}conf:\n  tcp:\n    maxConnectAttempts: 3\n",
            head()
        ));
    }

    #[test]
    fn conf_needs_a_protocol() {
        assert_violations(head(), &["conf"]);
        assert_violations(&format!("{}conf: {{}}\n", head()), &["conf"]);
        assert_violations(
            &format!("{}conf:\n  http: {{}}\n  grpc: {{}}\n  tcp: {{}}\n", head()),
            &["conf.http", "conf.tcp.maxConnectAttempts", "conf.grpc"],
        );
    }

    #[test]
    fn counts_and_durations_must_be_positive() {
        assert_violations(
            &DOC.replacen("numRetries: 5", "numRetries: 0", 1).replacen(
                "perTryTimeout: 200ms",
                "perTryTimeout: 0s",
                1,
            ),
            &["conf.http.numRetries", "conf.http.perTryTimeout"],
        );
        assert_violations(
            &DOC.replace("maxConnectAttempts: 5", "maxConnectAttempts: 0"),
            &["conf.tcp.maxConnectAttempts"],
        );
        let grpc_zero = DOC.replace(
            "  grpc:\n    numRetries: 5\n    perTryTimeout: 200ms",
            "  grpc:\n    numRetries: 0\n    perTryTimeout: 0s",
        );
        assert_violations(
            &grpc_zero,
            &["conf.grpc.numRetries", "conf.grpc.perTryTimeout"],
        );
    }

    #[test]
    fn back_off_rules() {
        assert_violations(
            &DOC.replacen("      baseInterval: 20ms\n", "", 1),
            &["conf.http.backOff.baseInterval"],
        );
        assert_violations(
            &DOC.replacen("baseInterval: 20ms", "baseInterval: 0s", 1),
            &["conf.http.backOff.baseInterval"],
        );
        assert_violations(
            &DOC.replacen("maxInterval: 1s", "maxInterval: 10ms", 1),
            &["conf.http.backOff.maxInterval"],
        );
        let grpc = DOC.rfind("maxInterval: 1s").unwrap();
        let mut yaml = DOC.to_string();
        yaml.replace_range(grpc..grpc + "maxInterval: 1s".len(), "maxInterval: 0s");
        assert_violations(&yaml, &["conf.grpc.backOff.maxInterval"]);
    }

    #[test]
    fn http_lists_are_checked() {
        assert_violations(
            &DOC.replace("- 504", "- 604"),
            &["conf.http.retriableStatusCodes[1]"],
        );
        assert_violations(
            &DOC.replace("    - GET\n", "    - GET\n    - get\n    - GET\n"),
            &[
                "conf.http.retriableMethods[1]",
                "conf.http.retriableMethods[2]",
            ],
        );
        assert_violations(
            &DOC.replace("    - GET\n", "    - GET\n    retryOn:\n    - 5xx\n"),
            &["conf.http.retryOn[0]"],
        );
        let no_codes = DOC
            .replace("    retriableStatusCodes:\n    - 500\n    - 504\n", "")
            .replace(
                "    - GET\n",
                "    - GET\n    retryOn:\n    - reset\n    - retriable_status_codes\n",
            );
        assert_violations(&no_codes, &["conf.http.retryOn[1]"]);
    }

    #[test]
    fn grpc_retry_on_is_checked() {
        assert_violations(
            &DOC.replace("- internal", "- not_found"),
            &["conf.grpc.retryOn[2]"],
        );
        assert_violations(
            &DOC.replace("- internal", "- cancelled"),
            &["conf.grpc.retryOn[2]"],
        );
    }

    #[test]
    fn selectors_are_required() {
        assert_violations(
            &DOC.replace(
                "sources:\n- match:\n    kuma.io/service: '*'\n",
                "sources: []\n",
            ),
            &["sources"],
        );
    }

    #[test]
    fn several_violations_are_reported_together() {
        let yaml = DOC
            .replace("- 504", "- 42")
            .replace("maxConnectAttempts: 5", "maxConnectAttempts: 0")
            .replace("- internal", "- boom");
        assert_violations(
            &yaml,
            &[
                "conf.http.retriableStatusCodes[1]",
                "conf.tcp.maxConnectAttempts",
                "conf.grpc.retryOn[2]",
            ],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        assert_eq!(
            decode_error_path(&DOC.replace("maxConnectAttempts", "attempts")),
            "conf.tcp.attempts"
        );
        assert_eq!(
            decode_error_path(&DOC.replacen(
                "maxInterval: 1s",
                "maxInterval: 1s\n      jitter: 1s",
                1
            )),
            "conf.http.backOff.jitter"
        );
    }
}
