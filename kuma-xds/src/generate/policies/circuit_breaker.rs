//! CircuitBreaker: connection/request thresholds and outlier detection on
//! the clusters of every outbound service a CircuitBreaker was selected for
//! (the service's cluster and its subsets).
//!
//! Mapped as Kuma maps it:
//! - `thresholds` -> one `circuit_breakers.thresholds` entry (priority
//!   DEFAULT) with the limits given (Envoy's defaults for the others);
//! - `outlier_detection` is set whenever a CircuitBreaker applies, with
//!   `interval`, `baseEjectionTime`, `maxEjectionPercent`; each detector
//!   given is enforced at 100 %, each one missing at 0 %:
//!   `totalErrors` -> `consecutive_5xx`, `gatewayErrors` ->
//!   `consecutive_gateway_failure`, `localErrors` ->
//!   `consecutive_local_origin_failure`, `standardDeviation` ->
//!   `success_rate_*` (factor × 1000), `failure` -> `failure_percentage_*`.
//! - `split_external_local_origin_errors` is `splitExternalAndLocalErrors`;
//!   when that is unset it is on exactly when `localErrors` is given
//!   (Envoy only counts local-origin errors apart when it is on).

use super::super::{ProxyConfig, ProxyInput};
use super::edit::{duration, service_clusters};
use envoy_types::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
use envoy_types::pb::envoy::config::cluster::v3::{CircuitBreakers, OutlierDetection};
use envoy_types::pb::envoy::config::core::v3::RoutingPriority;
use envoy_types::pb::google::protobuf::UInt32Value;
use kuma_core::resource::CircuitBreakerConf;

/// Adds the selected CircuitBreaker of every outbound service to its
/// clusters.
pub(super) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    for (service, policies) in input.outbound_policies {
        let Some(conf) = policies.circuit_breaker.and_then(|cb| cb.conf.as_ref()) else {
            continue;
        };
        let breakers = circuit_breakers(conf);
        let outlier = outlier_detection(conf);
        for cluster in service_clusters(config, service) {
            if breakers.is_some() {
                cluster.circuit_breakers = breakers.clone();
            }
            cluster.outlier_detection = Some(outlier.clone());
        }
    }
}

fn u32v(value: Option<u32>) -> Option<UInt32Value> {
    value.map(|value| UInt32Value { value })
}

fn enforcing(on: bool) -> Option<UInt32Value> {
    Some(UInt32Value {
        value: if on { 100 } else { 0 },
    })
}

fn circuit_breakers(conf: &CircuitBreakerConf) -> Option<CircuitBreakers> {
    let t = conf.thresholds.as_ref()?;
    Some(CircuitBreakers {
        thresholds: vec![Thresholds {
            priority: RoutingPriority::Default as i32,
            max_connections: u32v(t.max_connections),
            max_pending_requests: u32v(t.max_pending_requests),
            max_requests: u32v(t.max_requests),
            max_retries: u32v(t.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn outlier_detection(conf: &CircuitBreakerConf) -> OutlierDetection {
    let d = conf.detectors.clone().unwrap_or_default();
    let mut od = OutlierDetection {
        interval: conf.interval.as_ref().map(duration),
        base_ejection_time: conf.base_ejection_time.as_ref().map(duration),
        max_ejection_percent: u32v(conf.max_ejection_percent),
        split_external_local_origin_errors: conf
            .split_external_and_local_errors
            .unwrap_or(d.local_errors.is_some()),
        enforcing_consecutive_5xx: enforcing(d.total_errors.is_some()),
        enforcing_consecutive_gateway_failure: enforcing(d.gateway_errors.is_some()),
        enforcing_consecutive_local_origin_failure: enforcing(d.local_errors.is_some()),
        enforcing_success_rate: enforcing(d.standard_deviation.is_some()),
        enforcing_failure_percentage: enforcing(d.failure.is_some()),
        ..Default::default()
    };
    if let Some(total) = &d.total_errors {
        od.consecutive_5xx = u32v(total.consecutive);
    }
    if let Some(gateway) = &d.gateway_errors {
        od.consecutive_gateway_failure = u32v(gateway.consecutive);
    }
    if let Some(local) = &d.local_errors {
        od.consecutive_local_origin_failure = u32v(local.consecutive);
    }
    if let Some(sd) = &d.standard_deviation {
        od.success_rate_request_volume = u32v(sd.request_volume);
        od.success_rate_minimum_hosts = u32v(sd.minimum_hosts);
        od.success_rate_stdev_factor = sd.factor.map(|f| UInt32Value {
            // Validated finite and >= 0; `as` saturates.
            value: (f * 1000.0) as u32,
        });
        od.enforcing_local_origin_success_rate = enforcing(true);
    }
    if let Some(failure) = &d.failure {
        od.failure_percentage_request_volume = u32v(failure.request_volume);
        od.failure_percentage_minimum_hosts = u32v(failure.minimum_hosts);
        od.failure_percentage_threshold = u32v(failure.threshold);
        od.enforcing_failure_percentage_local_origin = enforcing(true);
    }
    od
}

#[cfg(test)]
mod tests {
    use super::super::super::{OutboundPolicies, Protocol};
    use super::super::edit::testing::{cluster, config_for};
    use super::*;
    use envoy_types::pb::google::protobuf::Duration;
    use kuma_core::resource::{CircuitBreakerSpec, Resource};

    fn applied(conf: &str) -> ProxyConfig {
        let yaml = format!(
            "type: CircuitBreaker\nmesh: m\nname: cb\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n{conf}"
        );
        let res = Resource::from_yaml(&yaml).unwrap();
        let spec = res.spec_as::<CircuitBreakerSpec>().unwrap();
        let policies = OutboundPolicies {
            circuit_breaker: Some(spec),
            ..Default::default()
        };
        config_for(Protocol::Http, policies, apply)
    }

    fn v(value: u32) -> Option<UInt32Value> {
        Some(UInt32Value { value })
    }

    #[test]
    fn thresholds_and_every_detector() {
        let config = applied(
            "  interval: 5s\n  baseEjectionTime: 30s\n  maxEjectionPercent: 20\n  thresholds:\n    maxConnections: 2\n    maxPendingRequests: 3\n    maxRequests: 4\n    maxRetries: 5\n  detectors:\n    totalErrors:\n      consecutive: 10\n    gatewayErrors:\n      consecutive: 11\n    localErrors:\n      consecutive: 12\n    standardDeviation:\n      requestVolume: 13\n      minimumHosts: 14\n      factor: 1.9\n    failure:\n      requestVolume: 15\n      minimumHosts: 16\n      threshold: 85\n",
        );
        for name in ["backend", "backend;version=v1"] {
            let c = cluster(&config, name);
            let t = &c.circuit_breakers.as_ref().unwrap().thresholds;
            assert_eq!(t.len(), 1);
            assert_eq!(t[0].max_connections, v(2));
            assert_eq!(t[0].max_pending_requests, v(3));
            assert_eq!(t[0].max_requests, v(4));
            assert_eq!(t[0].max_retries, v(5));
            let od = c.outlier_detection.as_ref().unwrap();
            assert_eq!(
                od.interval,
                Some(Duration {
                    seconds: 5,
                    nanos: 0
                })
            );
            assert_eq!(od.base_ejection_time.unwrap().seconds, 30);
            assert_eq!(od.max_ejection_percent, v(20));
            assert_eq!(od.consecutive_5xx, v(10));
            assert_eq!(od.enforcing_consecutive_5xx, v(100));
            assert_eq!(od.consecutive_gateway_failure, v(11));
            assert_eq!(od.enforcing_consecutive_gateway_failure, v(100));
            assert_eq!(od.consecutive_local_origin_failure, v(12));
            assert_eq!(od.enforcing_consecutive_local_origin_failure, v(100));
            assert!(od.split_external_local_origin_errors);
            assert_eq!(od.success_rate_request_volume, v(13));
            assert_eq!(od.success_rate_minimum_hosts, v(14));
            assert_eq!(od.success_rate_stdev_factor, v(1900));
            assert_eq!(od.enforcing_success_rate, v(100));
            assert_eq!(od.failure_percentage_request_volume, v(15));
            assert_eq!(od.failure_percentage_minimum_hosts, v(16));
            assert_eq!(od.failure_percentage_threshold, v(85));
            assert_eq!(od.enforcing_failure_percentage, v(100));
        }
        let local = cluster(&config, "localhost:9000");
        assert!(local.outlier_detection.is_none() && local.circuit_breakers.is_none());
    }

    #[test]
    fn missing_detectors_are_not_enforced() {
        let config = applied("  thresholds:\n    maxConnections: 2\n");
        let od = cluster(&config, "backend")
            .outlier_detection
            .clone()
            .unwrap();
        assert_eq!(od.enforcing_consecutive_5xx, v(0));
        assert_eq!(od.enforcing_consecutive_gateway_failure, v(0));
        assert_eq!(od.enforcing_consecutive_local_origin_failure, v(0));
        assert_eq!(od.enforcing_success_rate, v(0));
        assert_eq!(od.enforcing_failure_percentage, v(0));
        assert!(!od.split_external_local_origin_errors);

        let config = applied("  detectors:\n    gatewayErrors: {}\n");
        let c = cluster(&config, "backend");
        assert!(c.circuit_breakers.is_none());
        let od = c.outlier_detection.as_ref().unwrap();
        assert_eq!(od.consecutive_gateway_failure, None);
        assert_eq!(od.enforcing_consecutive_gateway_failure, v(100));
    }
}
