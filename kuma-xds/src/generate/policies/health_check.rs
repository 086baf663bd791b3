//! HealthCheck: active health checks on the clusters of every outbound
//! service a HealthCheck was selected for (the service's cluster and its
//! subsets).
//!
//! As in Kuma: interval, timeout, thresholds, jitters, no-traffic interval
//! and connection reuse go into one `health_checks` entry; `tcp` makes a
//! TCP check whose `send`/`receive` payloads (base64 in the policy) are
//! sent to Envoy as hex text; `http` makes an HTTP check (path, expected
//! statuses as `[s, s+1)` ranges, headers to add; HTTP/2 codec for
//! http2/grpc services) when the service speaks HTTP, and a plain TCP
//! connect check otherwise, as does a conf with neither. The healthy panic
//! threshold and `failTrafficOnPanic` go into the cluster's
//! `common_lb_config`; `eventLogPath` becomes a file event sink.

use super::super::{ProxyConfig, ProxyInput};
use super::edit::{duration, service_clusters};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::CommonLbConfig;
use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::{
    LocalityConfigSpecifier, ZoneAwareLbConfig,
};
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::health_check::payload::Payload as PayloadKind;
use envoy_types::pb::envoy::config::core::v3::health_check::{
    HealthChecker, HttpHealthCheck, Payload, TcpHealthCheck,
};
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, HealthCheck, TypedExtensionConfig,
};
use envoy_types::pb::envoy::extensions::health_check::event_sinks::file::v3::HealthCheckEventFileSink;
use envoy_types::pb::envoy::r#type::v3::{CodecClientType, Int64Range, Percent};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};
use envoy_types::util::pack_any;
use kuma_core::resource::{
    HealthCheckConf, HttpHealthCheck as KumaHttp, TcpHealthCheck as KumaTcp,
};

/// Adds the selected HealthCheck of every outbound service to its clusters.
pub(super) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    for (service, policies) in input.outbound_policies {
        let Some(conf) = policies.health_check.and_then(|hc| hc.conf.as_ref()) else {
            continue;
        };
        let protocol = input.protocol(service);
        let check = health_check(conf, protocol.is_http(), protocol.is_http2());
        for cluster in service_clusters(config, service) {
            configure(cluster, conf, &check);
        }
    }
}

fn configure(cluster: &mut Cluster, conf: &HealthCheckConf, check: &HealthCheck) {
    if let Some(p) = conf.healthy_panic_threshold {
        cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default)
            .healthy_panic_threshold = Some(Percent { value: p });
    }
    if let Some(fail) = conf.fail_traffic_on_panic {
        let lb = cluster
            .common_lb_config
            .get_or_insert_with(CommonLbConfig::default);
        let spec = lb
            .locality_config_specifier
            .get_or_insert_with(|| LocalityConfigSpecifier::ZoneAwareLbConfig(Default::default()));
        // Only the zone-aware config has the flag (Kuma ignores it otherwise).
        if let LocalityConfigSpecifier::ZoneAwareLbConfig(ZoneAwareLbConfig {
            fail_traffic_on_panic,
            ..
        }) = spec
        {
            *fail_traffic_on_panic = fail;
        }
    }
    cluster.health_checks.push(check.clone());
}

fn health_check(conf: &HealthCheckConf, http_service: bool, http2: bool) -> HealthCheck {
    let checker = match (&conf.tcp, &conf.http) {
        (Some(tcp), _) => tcp_check(tcp),
        (None, Some(http)) if http_service => http_check(http, http2),
        _ => HealthChecker::TcpHealthCheck(TcpHealthCheck::default()),
    };
    HealthCheck {
        interval: conf.interval.as_ref().map(duration),
        timeout: conf.timeout.as_ref().map(duration),
        unhealthy_threshold: conf.unhealthy_threshold.map(|value| UInt32Value { value }),
        healthy_threshold: conf.healthy_threshold.map(|value| UInt32Value { value }),
        initial_jitter: conf.initial_jitter.as_ref().map(duration),
        interval_jitter: conf.interval_jitter.as_ref().map(duration),
        interval_jitter_percent: conf.interval_jitter_percent.unwrap_or(0),
        no_traffic_interval: conf.no_traffic_interval.as_ref().map(duration),
        reuse_connection: conf.reuse_connection.map(|value| BoolValue { value }),
        always_log_health_check_failures: conf.always_log_health_check_failures.unwrap_or(false),
        event_logger: conf
            .event_log_path
            .iter()
            .map(|path| TypedExtensionConfig {
                name: "envoy.health_check.event_sink.file".into(),
                typed_config: Some(pack_any(HealthCheckEventFileSink {
                    event_log_path: path.clone(),
                })),
            })
            .collect(),
        health_checker: Some(checker),
        ..Default::default()
    }
}

/// A payload written base64 in the policy, as hex text (Kuma's encoding).
fn payload(base64: &str) -> Payload {
    let bytes = decode_base64(base64).unwrap_or_default();
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Payload {
        payload: Some(PayloadKind::Text(text)),
    }
}

fn tcp_check(tcp: &KumaTcp) -> HealthChecker {
    HealthChecker::TcpHealthCheck(TcpHealthCheck {
        send: tcp.send.as_deref().map(payload),
        receive: tcp.receive.iter().map(|r| payload(r)).collect(),
        ..Default::default()
    })
}

fn http_check(http: &KumaHttp, http2: bool) -> HealthChecker {
    let codec = if http2 {
        CodecClientType::Http2
    } else {
        CodecClientType::Http1
    };
    HealthChecker::HttpHealthCheck(HttpHealthCheck {
        path: http.path.clone(),
        request_headers_to_add: http
            .request_headers_to_add
            .iter()
            .filter_map(|h| {
                let header = h.header.as_ref()?;
                // Envoy appends unless told otherwise, as Kuma's unset `append`.
                let action = if h.append == Some(false) {
                    HeaderAppendAction::OverwriteIfExistsOrAdd
                } else {
                    HeaderAppendAction::AppendIfExistsOrAdd
                };
                Some(HeaderValueOption {
                    header: Some(HeaderValue {
                        key: header.key.clone(),
                        value: header.value.clone(),
                        ..Default::default()
                    }),
                    append_action: action as i32,
                    ..Default::default()
                })
            })
            .collect(),
        expected_statuses: http
            .expected_statuses
            .iter()
            .map(|&s| Int64Range {
                start: i64::from(s),
                end: i64::from(s) + 1,
            })
            .collect(),
        codec_client_type: codec as i32,
        ..Default::default()
    })
}

/// Standard base64 (padding optional); `None` if `text` is not base64.
/// Policies are validated on the way in, so this does not fail in practice.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let digits = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::super::{OutboundPolicies, Protocol};
    use super::super::edit::testing::{cluster, config_for};
    use super::*;
    use kuma_core::resource::{HealthCheckSpec, Resource};

    fn spec(conf: &str) -> HealthCheckSpec {
        let yaml = format!(
            "type: HealthCheck\nmesh: m\nname: hc\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n{conf}"
        );
        Resource::from_yaml(&yaml)
            .unwrap()
            .spec_as::<HealthCheckSpec>()
            .unwrap()
            .clone()
    }

    const BASE: &str =
        "  interval: 10s\n  timeout: 2s\n  unhealthyThreshold: 3\n  healthyThreshold: 1\n";

    fn applied(spec: &HealthCheckSpec, protocol: Protocol) -> crate::generate::ProxyConfig {
        let policies = OutboundPolicies {
            health_check: Some(spec),
            ..Default::default()
        };
        config_for(protocol, policies, apply)
    }

    #[test]
    fn base64() {
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(decode_base64("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(decode_base64("Zm9vYmE=").unwrap(), b"fooba");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("Zm9v!").is_none());
    }

    #[test]
    fn http_check_on_every_cluster_of_an_http_service() {
        let s = spec(&format!(
            "{BASE}  initialJitter: 5s\n  intervalJitterPercent: 10\n  healthyPanicThreshold: 12.5\n  failTrafficOnPanic: true\n  eventLogPath: /tmp/hc.log\n  reuseConnection: false\n  http:\n    path: /health\n    expectedStatuses: [200, 204]\n    requestHeadersToAdd:\n    - append: false\n      header:\n        key: x-a\n        value: b\n"
        ));
        let config = applied(&s, Protocol::Http);
        let c = cluster(&config, "backend");
        assert_eq!(c.health_checks.len(), 1);
        let hc = &c.health_checks[0];
        assert_eq!(hc.interval.unwrap().seconds, 10);
        assert_eq!(hc.timeout.unwrap().seconds, 2);
        assert_eq!(hc.unhealthy_threshold.unwrap().value, 3);
        assert_eq!(hc.healthy_threshold.unwrap().value, 1);
        assert_eq!(hc.initial_jitter.unwrap().seconds, 5);
        assert_eq!(hc.interval_jitter_percent, 10);
        assert_eq!(hc.reuse_connection, Some(BoolValue { value: false }));
        assert_eq!(hc.event_logger.len(), 1);
        let Some(HealthChecker::HttpHealthCheck(http)) = &hc.health_checker else {
            panic!("{hc:?}");
        };
        assert_eq!(http.path, "/health");
        assert_eq!(
            http.expected_statuses,
            [
                Int64Range {
                    start: 200,
                    end: 201
                },
                Int64Range {
                    start: 204,
                    end: 205
                }
            ]
        );
        assert_eq!(http.codec_client_type, CodecClientType::Http1 as i32);
        assert_eq!(
            http.request_headers_to_add[0].append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        let lb = c.common_lb_config.as_ref().unwrap();
        assert_eq!(lb.healthy_panic_threshold, Some(Percent { value: 12.5 }));
        assert!(matches!(
            lb.locality_config_specifier,
            Some(LocalityConfigSpecifier::ZoneAwareLbConfig(
                ZoneAwareLbConfig {
                    fail_traffic_on_panic: true,
                    ..
                }
            ))
        ));
        // Other clusters are untouched.
        assert!(cluster(&config, "localhost:9000").health_checks.is_empty());
    }

    #[test]
    fn http_check_of_a_tcp_service_is_a_connect_check() {
        let s = spec(&format!("{BASE}  http:\n    path: /health\n"));
        let config = applied(&s, Protocol::Tcp);
        let hc = &cluster(&config, "backend").health_checks[0];
        assert_eq!(
            hc.health_checker,
            Some(HealthChecker::TcpHealthCheck(TcpHealthCheck::default()))
        );
        let config = applied(&s, Protocol::Grpc);
        let Some(HealthChecker::HttpHealthCheck(http)) =
            &cluster(&config, "backend").health_checks[0].health_checker
        else {
            panic!()
        };
        assert_eq!(http.codec_client_type, CodecClientType::Http2 as i32);
    }

    #[test]
    fn tcp_payloads_are_hex() {
        let s = spec(&format!(
            "{BASE}  tcp:\n    send: Zm9v\n    receive: [YmFy]\n"
        ));
        let config = applied(&s, Protocol::Tcp);
        let c = cluster(&config, "backend");
        let Some(HealthChecker::TcpHealthCheck(tcp)) = &c.health_checks[0].health_checker else {
            panic!()
        };
        assert_eq!(
            tcp.send.as_ref().unwrap().payload,
            Some(PayloadKind::Text("666f6f".into()))
        );
        assert_eq!(
            tcp.receive[0].payload,
            Some(PayloadKind::Text("626172".into()))
        );
        assert!(c.common_lb_config.is_none());
    }
}
