//! The `Timeout` resource type: connect, idle and request timeouts of the
//! selected outbound connections.

use super::util::{check_connection, optional_positive};
use crate::duration::KumaDuration;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `Timeout` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutSpec {
    /// The clients whose outbounds get the timeouts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// The timeouts; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TimeoutConf>,
}

/// The `conf` of a `Timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    /// Time to establish a connection (any protocol; > 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<KumaDuration>,
    /// TCP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTimeouts>,
    /// HTTP (and HTTP/2, gRPC) timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTimeouts>,
    /// gRPC timeouts (Kuma has deprecated these in favour of `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcTimeouts>,
}

/// TCP timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTimeouts {
    /// Time without data in either direction before the connection is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<KumaDuration>,
}

/// HTTP timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeouts {
    /// Time for a whole request/response (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<KumaDuration>,
    /// Time without requests before a connection is closed (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<KumaDuration>,
    /// Time without activity on a stream (`0s` disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<KumaDuration>,
    /// Maximum lifetime of a stream (`0s` disables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<KumaDuration>,
}

/// gRPC timeouts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcTimeouts {
    /// Time without activity on a stream (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<KumaDuration>,
    /// Maximum lifetime of a stream (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<KumaDuration>,
}

const EMPTY_SECTION: &str = "must set at least one timeout when present";

impl TimeoutSpec {
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
            v.violation(&cp, "must be set with at least one timeout");
            return;
        };
        if conf == &TimeoutConf::default() {
            v.violation(
                &cp,
                "must set at least one of connectTimeout, tcp, http or grpc",
            );
        }
        optional_positive(
            &cp.field("connectTimeout"),
            conf.connect_timeout.as_ref(),
            v,
        );
        if let Some(tcp) = &conf.tcp {
            let p = cp.field("tcp");
            if tcp.idle_timeout.is_none() {
                v.violation(&p, EMPTY_SECTION);
            }
            optional_positive(&p.field("idleTimeout"), tcp.idle_timeout.as_ref(), v);
        }
        if let Some(http) = &conf.http {
            let p = cp.field("http");
            if http == &HttpTimeouts::default() {
                v.violation(&p, EMPTY_SECTION);
            }
            optional_positive(&p.field("requestTimeout"), http.request_timeout.as_ref(), v);
            optional_positive(&p.field("idleTimeout"), http.idle_timeout.as_ref(), v);
        }
        if let Some(grpc) = &conf.grpc {
            let p = cp.field("grpc");
            if grpc == &GrpcTimeouts::default() {
                v.violation(&p, EMPTY_SECTION);
            }
            optional_positive(
                &p.field("streamIdleTimeout"),
                grpc.stream_idle_timeout.as_ref(),
                v,
            );
            optional_positive(
                &p.field("maxStreamDuration"),
                grpc.max_stream_duration.as_ref(),
                v,
            );
        }
    }
}

impl Policy for TimeoutSpec {
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
    use super::*;

    const DOC: &str = r#"
type: Timeout
mesh: default
name: timeout-global
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
conf:
  connectTimeout: 5s
  tcp:
    idleTimeout: 1h
  http:
    requestTimeout: 15s
    idleTimeout: 1h
    streamIdleTimeout: 30m
    maxStreamDuration: 0s
  grpc:
    streamIdleTimeout: 5m
    maxStreamDuration: 30m
"#;

    #[test]
    fn documented_example_round_trips() {
        let res = round_trip(DOC);
        let conf = res.spec_as::<TimeoutSpec>().unwrap().conf.clone().unwrap();
        assert_eq!(
            conf.tcp
                .unwrap()
                .idle_timeout
                .unwrap()
                .as_duration()
                .as_secs(),
            3600
        );
        round_trip(&DOC.replace("idleTimeout: 1h\n  http", "idleTimeout: 60m\n  http"));
    }

    #[test]
    fn conf_is_required_and_non_empty() {
        let head = DOC.split("conf:").next().unwrap();
        assert_violations(head, &["conf"]);
        assert_violations(&format!("{head}conf: {{}}\n"), &["conf"]);
        assert_violations(
            &format!("{head}conf:\n  tcp: {{}}\n  http: {{}}\n  grpc: {{}}\n"),
            &["conf.tcp", "conf.http", "conf.grpc"],
        );
    }

    #[test]
    fn durations_must_be_positive() {
        for (from, to, field) in [
            (
                "connectTimeout: 5s",
                "connectTimeout: 0s",
                "conf.connectTimeout",
            ),
            (
                "    idleTimeout: 1h\n  http",
                "    idleTimeout: 0s\n  http",
                "conf.tcp.idleTimeout",
            ),
            (
                "requestTimeout: 15s",
                "requestTimeout: 0s",
                "conf.http.requestTimeout",
            ),
            (
                "    idleTimeout: 1h\n    stream",
                "    idleTimeout: 0s\n    stream",
                "conf.http.idleTimeout",
            ),
            (
                "streamIdleTimeout: 5m",
                "streamIdleTimeout: 0s",
                "conf.grpc.streamIdleTimeout",
            ),
            (
                "maxStreamDuration: 30m",
                "maxStreamDuration: 0s",
                "conf.grpc.maxStreamDuration",
            ),
        ] {
            assert_violations(&DOC.replace(from, to), &[field]);
        }
        assert_eq!(
            decode_error_path(&DOC.replace("connectTimeout: 5s", "connectTimeout: 5 s")),
            "conf.connectTimeout"
        );
    }

    #[test]
    fn several_violations_are_reported_together() {
        let yaml = DOC
            .replace("connectTimeout: 5s", "connectTimeout: 0s")
            .replace("requestTimeout: 15s", "requestTimeout: 0s")
            .replace(
                "destinations:\n  - match:\n      kuma.io/service: '*'\n",
                "destinations:\n  - match: {}\n",
            );
        assert_violations(
            &yaml,
            &[
                "destinations[0].match",
                "conf.connectTimeout",
                "conf.http.requestTimeout",
            ],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        assert_eq!(
            decode_error_path(&DOC.replace("requestTimeout", "timeout")),
            "conf.http.timeout"
        );
        assert_eq!(
            decode_error_path(&DOC.replace("  tcp:", "  udp:")),
            "conf.udp"
        );
    }
}
