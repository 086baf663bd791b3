//! The `CircuitBreaker` resource type: connection thresholds and outlier
//! detection for the endpoints of a destination service.

use super::util::{check_connection, optional_positive};
use crate::duration::KumaDuration;
use crate::resource::{Policy, PolicyTargets, Selector, SelectorKeys};
use crate::validation::{FieldPath, Validator};
use serde::{Deserialize, Serialize};

/// Spec of a `CircuitBreaker` resource.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    /// The clients whose outbounds are protected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Selector>,
    /// The services protected (`kuma.io/service` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<Selector>,
    /// Thresholds and detectors; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<CircuitBreakerConf>,
}

/// The `conf` of a `CircuitBreaker`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConf {
    /// Time between ejection sweeps (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<KumaDuration>,
    /// Base time an endpoint stays ejected (> 0 when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<KumaDuration>,
    /// Most endpoints that may be ejected, in percent (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    /// Count local-origin (connection) errors apart from upstream errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_and_local_errors: Option<bool>,
    /// Connection and request limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    /// Outlier detectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<Detectors>,
}

/// Connection and request limits of a `CircuitBreaker`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Thresholds {
    /// Maximum connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Maximum pending requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    /// Maximum parallel requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    /// Maximum parallel retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl Thresholds {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// Outlier detectors of a `CircuitBreaker`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detectors {
    /// Consecutive errors of any kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_errors: Option<ConsecutiveErrors>,
    /// Consecutive 502/503/504 errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_errors: Option<ConsecutiveErrors>,
    /// Consecutive local-origin errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_errors: Option<ConsecutiveErrors>,
    /// Success rate below the mean by `factor` standard deviations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_deviation: Option<StandardDeviation>,
    /// Failure percentage above a threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDetector>,
}

impl Detectors {
    fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A consecutive-errors detector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsecutiveErrors {
    /// Errors in a row that eject an endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive: Option<u32>,
}

/// The success-rate (standard deviation) detector.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StandardDeviation {
    /// Requests an endpoint needs in an interval to be considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// Endpoints with enough volume needed for detection to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Ejects below mean - factor * stdev (>= 0).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::resource::number::option::serialize"
    )]
    pub factor: Option<f64>,
}

/// The failure-percentage detector.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureDetector {
    /// Requests an endpoint needs in an interval to be considered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// Endpoints with enough volume needed for detection to run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Failure percentage at or above which an endpoint is ejected (0..=100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

fn at_most_100(path: &FieldPath, n: Option<u32>, v: &mut Validator) {
    if let Some(n) = n
        && n > 100
    {
        v.violation(path, format!("must be in the range 0..=100, got {n}"));
    }
}

impl CircuitBreakerSpec {
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
        let Some(conf) = &self.conf else {
            v.violation(&cp, "must be set with thresholds or detectors");
            return;
        };
        if conf.thresholds.is_none() && conf.detectors.is_none() {
            v.violation(
                &cp,
                "must have at least one of \"thresholds\" or \"detectors\"",
            );
        }
        optional_positive(&cp.field("interval"), conf.interval.as_ref(), v);
        optional_positive(
            &cp.field("baseEjectionTime"),
            conf.base_ejection_time.as_ref(),
            v,
        );
        at_most_100(
            &cp.field("maxEjectionPercent"),
            conf.max_ejection_percent,
            v,
        );
        if conf.thresholds.as_ref().is_some_and(Thresholds::is_empty) {
            v.violation(
                &cp.field("thresholds"),
                "must set at least one limit when present",
            );
        }
        if let Some(d) = &conf.detectors {
            let dp = cp.field("detectors");
            if d.is_empty() {
                v.violation(&dp, "must configure at least one detector when present");
            }
            if let Some(sd) = &d.standard_deviation
                && let Some(f) = sd.factor
                && !(f.is_finite() && f >= 0.0)
            {
                v.violation(
                    &dp.field("standardDeviation").field("factor"),
                    format!("must be a number >= 0, got {f}"),
                );
            }
            if let Some(f) = &d.failure {
                at_most_100(&dp.field("failure").field("threshold"), f.threshold, v);
            }
        }
    }
}

impl Policy for CircuitBreakerSpec {
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
type: CircuitBreaker
mesh: default
name: circuit-breaker-example
sources:
- match:
    kuma.io/service: frontend
    version: '0.1'
destinations:
- match:
    kuma.io/service: backend
conf:
  interval: 5s
  baseEjectionTime: 30s
  maxEjectionPercent: 20
  splitExternalAndLocalErrors: false
  thresholds:
    maxConnections: 2
    maxPendingRequests: 2
    maxRequests: 2
    maxRetries: 2
  detectors:
    totalErrors:
      consecutive: 20
    gatewayErrors:
      consecutive: 10
    localErrors:
      consecutive: 7
    standardDeviation:
      requestVolume: 10
      minimumHosts: 5
      factor: 1.9
    failure:
      requestVolume: 10
      minimumHosts: 5
      threshold: 85
"#;

    #[test]
    fn documented_example_round_trips() {
        round_trip(DOC);
        let res = round_trip(&DOC.replace("factor: 1.9", "factor: 2"));
        assert!(res.to_yaml().contains("factor: 2\n"), "{}", res.to_yaml());
    }

    #[test]
    fn conf_needs_thresholds_or_detectors() {
        let head = DOC.split("conf:").next().unwrap();
        assert_violations(head, &["conf"]);
        assert_violations(&format!("{head}conf:\n  interval: 5s\n"), &["conf"]);
        assert_violations(
            &format!("{head}conf:\n  thresholds: {{}}\n"),
            &["conf.thresholds"],
        );
        assert_violations(
            &format!("{head}conf:\n  detectors: {{}}\n"),
            &["conf.detectors"],
        );
    }

    #[test]
    fn durations_must_be_positive() {
        assert_violations(
            &DOC.replace("interval: 5s", "interval: 0s"),
            &["conf.interval"],
        );
        assert_violations(
            &DOC.replace("baseEjectionTime: 30s", "baseEjectionTime: 0ms"),
            &["conf.baseEjectionTime"],
        );
    }

    #[test]
    fn percentages_are_ranged() {
        assert_violations(
            &DOC.replace("maxEjectionPercent: 20", "maxEjectionPercent: 101"),
            &["conf.maxEjectionPercent"],
        );
        assert_violations(
            &DOC.replace("threshold: 85", "threshold: 150"),
            &["conf.detectors.failure.threshold"],
        );
        assert_violations(
            &DOC.replace("factor: 1.9", "factor: -1"),
            &["conf.detectors.standardDeviation.factor"],
        );
    }

    #[test]
    fn destinations_are_service_only() {
        assert_violations(
            &DOC.replace(
                "    kuma.io/service: backend",
                "    kuma.io/service: backend\n    version: v2",
            ),
            &[r#"destinations[0].match["version"]"#],
        );
    }

    #[test]
    fn several_violations_are_reported_together() {
        let yaml = DOC
            .replace("interval: 5s", "interval: 0s")
            .replace("maxEjectionPercent: 20", "maxEjectionPercent: 200")
            .replace("threshold: 85", "threshold: 101")
            .replace(
                "destinations:\n- match:\n    kuma.io/service: backend\n",
                "destinations: []\n",
            );
        assert_violations(
            &yaml,
            &[
                "destinations",
                "conf.interval",
                "conf.maxEjectionPercent",
                "conf.detectors.failure.threshold",
            ],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_path() {
        assert_eq!(
            decode_error_path(&DOC.replace("maxRetries", "maxRetry")),
            "conf.thresholds.maxRetry"
        );
        assert_eq!(
            decode_error_path(&DOC.replace("consecutive: 7", "consecutive: 7\n      percent: 3")),
            "conf.detectors.localErrors.percent"
        );
        assert_eq!(
            decode_error_path(&DOC.replace("maxEjectionPercent: 20", "maxEjectionPercent: 20.5")),
            "conf.maxEjectionPercent"
        );
    }
}
