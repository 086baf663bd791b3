//! Retry: request retries on the outbound listeners of every service a
//! Retry was selected for; connection attempts for TCP services.
//!
//! As in Kuma, the retry policy goes on the virtual host of the outbound
//! route configuration (so it covers every route of it):
//! - http/http2 services use `conf.http`: `retry_on` is the list of
//!   `retryOn` conditions (`all_5xx` -> `5xx`, `_` -> `-`) or Kuma's default
//!   `gateway-error,connect-failure,refused-stream`; `retriableStatusCodes`
//!   become `retriable_status_codes` and add `retriable-status-codes` to
//!   `retry_on`; `retriableMethods` become `:method` exact matches in
//!   `retriable_request_headers`; `numRetries`, `perTryTimeout` and
//!   `backOff` map one to one;
//! - grpc services use `conf.grpc` the same way, with Kuma's default
//!   `cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable`;
//! - tcp services get `conf.tcp.maxConnectAttempts` as the tcp_proxy's
//!   `max_connect_attempts`.
//!
//! A protocol whose section is missing from the policy is left alone.

use super::super::{Protocol, ProxyConfig, ProxyInput};
use super::edit::{duration, edit_outbound_routes, edit_tcp_proxies};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::retry_policy::RetryBackOff;
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, RetryPolicy};
use envoy_types::pb::envoy::r#type::matcher::v3::StringMatcher;
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::google::protobuf::UInt32Value;
use kuma_core::resource::{BackOff, GrpcRetry, HttpRetry, RetryConf};

/// Kuma's HTTP `retry_on` when the policy names no condition.
pub const HTTP_RETRY_ON_DEFAULT: &str = "gateway-error,connect-failure,refused-stream";
/// Kuma's gRPC `retry_on` when the policy names no condition.
pub const GRPC_RETRY_ON_DEFAULT: &str =
    "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable";
const RETRIABLE_STATUS_CODES: &str = "retriable-status-codes";

/// Applies the selected Retry of every outbound service to its outbound
/// listeners.
pub(super) fn apply(config: &mut ProxyConfig, input: &ProxyInput<'_>) {
    for (service, policies) in input.outbound_policies {
        let Some(conf) = policies.retry.and_then(|r| r.conf.as_ref()) else {
            continue;
        };
        apply_one(config, service, input.protocol(service), conf);
    }
}

fn apply_one(config: &mut ProxyConfig, service: &str, protocol: Protocol, conf: &RetryConf) {
    let policy = match protocol {
        Protocol::Tcp => {
            if let Some(attempts) = conf.tcp.as_ref().and_then(|t| t.max_connect_attempts) {
                edit_tcp_proxies(config, service, |p| {
                    p.max_connect_attempts = Some(UInt32Value { value: attempts });
                });
            }
            return;
        }
        Protocol::Http | Protocol::Http2 => conf.http.as_ref().map(http_policy),
        Protocol::Grpc => conf.grpc.as_ref().map(grpc_policy),
    };
    let Some(policy) = policy else { return };
    edit_outbound_routes(config, service, |routes| {
        for vh in &mut routes.virtual_hosts {
            vh.retry_policy = Some(policy.clone());
        }
    });
}

fn back_off(b: &BackOff) -> RetryBackOff {
    RetryBackOff {
        base_interval: b.base_interval.as_ref().map(duration),
        max_interval: b.max_interval.as_ref().map(duration),
    }
}

fn retry_on(names: &[String], default: &str) -> String {
    if names.is_empty() {
        return default.to_string();
    }
    names
        .iter()
        .map(|n| match n.as_str() {
            "all_5xx" => "5xx".to_string(),
            other => other.replace('_', "-"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn http_policy(conf: &HttpRetry) -> RetryPolicy {
    let mut on = retry_on(&conf.retry_on, HTTP_RETRY_ON_DEFAULT);
    if !conf.retriable_status_codes.is_empty()
        && !on.split(',').any(|c| c == RETRIABLE_STATUS_CODES)
    {
        on.push(',');
        on.push_str(RETRIABLE_STATUS_CODES);
    }
    RetryPolicy {
        retry_on: on,
        num_retries: conf.num_retries.map(|value| UInt32Value { value }),
        per_try_timeout: conf.per_try_timeout.as_ref().map(duration),
        retry_back_off: conf.back_off.as_ref().map(back_off),
        retriable_status_codes: conf.retriable_status_codes.clone(),
        retriable_request_headers: conf
            .retriable_methods
            .iter()
            .map(|m| HeaderMatcher {
                name: ":method".into(),
                header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(m.clone())),
                    ..Default::default()
                })),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn grpc_policy(conf: &GrpcRetry) -> RetryPolicy {
    RetryPolicy {
        retry_on: retry_on(&conf.retry_on, GRPC_RETRY_ON_DEFAULT),
        num_retries: conf.num_retries.map(|value| UInt32Value { value }),
        per_try_timeout: conf.per_try_timeout.as_ref().map(duration),
        retry_back_off: conf.back_off.as_ref().map(back_off),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::OutboundPolicies;
    use super::super::edit::testing::{OUTBOUNDS, config_for, filter};
    use super::*;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use kuma_core::resource::{Resource, RetrySpec};

    fn applied(protocol: Protocol, conf: &str) -> ProxyConfig {
        let yaml = format!(
            "type: Retry\nmesh: m\nname: r\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: backend\nconf:\n{conf}"
        );
        let res = Resource::from_yaml(&yaml).unwrap();
        let spec = res.spec_as::<RetrySpec>().unwrap();
        let policies = OutboundPolicies {
            retry: Some(spec),
            ..Default::default()
        };
        config_for(protocol, policies, apply)
    }

    fn policies(config: &ProxyConfig) -> Vec<Option<RetryPolicy>> {
        OUTBOUNDS
            .iter()
            .map(|l| {
                let hcm: HttpConnectionManager = filter(config, l);
                let Some(RouteSpecifier::RouteConfig(rc)) = hcm.route_specifier else {
                    panic!()
                };
                rc.virtual_hosts[0].retry_policy.clone()
            })
            .collect()
    }

    const ALL: &str = "  http:\n    numRetries: 5\n    perTryTimeout: 200ms\n    backOff:\n      baseInterval: 20ms\n      maxInterval: 1s\n    retriableStatusCodes: [500, 504]\n    retriableMethods: [GET, POST]\n  grpc:\n    numRetries: 3\n    retryOn: [cancelled, deadline_exceeded]\n  tcp:\n    maxConnectAttempts: 7\n";

    #[test]
    fn http_policy_on_every_outbound_listener() {
        let config = applied(Protocol::Http, ALL);
        for p in policies(&config) {
            let p = p.unwrap();
            assert_eq!(
                p.retry_on,
                "gateway-error,connect-failure,refused-stream,retriable-status-codes"
            );
            assert_eq!(p.num_retries, Some(UInt32Value { value: 5 }));
            assert_eq!(p.per_try_timeout.unwrap().nanos, 200_000_000);
            let b = p.retry_back_off.unwrap();
            assert_eq!(b.base_interval.unwrap().nanos, 20_000_000);
            assert_eq!(b.max_interval.unwrap().seconds, 1);
            assert_eq!(p.retriable_status_codes, [500, 504]);
            let methods: Vec<_> = p
                .retriable_request_headers
                .iter()
                .map(|h| (h.name.as_str(), h.header_match_specifier.clone()))
                .collect();
            assert_eq!(methods.len(), 2);
            assert_eq!(methods[1].0, ":method");
            assert!(matches!(
                &methods[1].1,
                Some(HeaderMatchSpecifier::StringMatch(StringMatcher {
                    match_pattern: Some(MatchPattern::Exact(m)), ..
                })) if m == "POST"
            ));
        }
    }

    #[test]
    fn retry_on_names_map_to_envoy() {
        let config = applied(
            Protocol::Http2,
            "  http:\n    retryOn: [all_5xx, gateway_error, retriable_status_codes]\n    retriableStatusCodes: [503]\n",
        );
        for p in policies(&config) {
            assert_eq!(
                p.unwrap().retry_on,
                "5xx,gateway-error,retriable-status-codes"
            );
        }
    }

    #[test]
    fn grpc_uses_the_grpc_section() {
        let config = applied(Protocol::Grpc, ALL);
        for p in policies(&config) {
            let p = p.unwrap();
            assert_eq!(p.retry_on, "cancelled,deadline-exceeded");
            assert_eq!(p.num_retries, Some(UInt32Value { value: 3 }));
        }
        let config = applied(Protocol::Grpc, "  grpc:\n    numRetries: 3\n");
        assert_eq!(
            policies(&config)[0].as_ref().unwrap().retry_on,
            GRPC_RETRY_ON_DEFAULT
        );
        // No grpc section: nothing.
        let config = applied(Protocol::Grpc, "  http:\n    numRetries: 3\n");
        assert_eq!(policies(&config), [None, None]);
    }

    #[test]
    fn tcp_gets_connect_attempts() {
        let config = applied(Protocol::Tcp, ALL);
        for l in OUTBOUNDS {
            let p: TcpProxy = filter(&config, l);
            assert_eq!(p.max_connect_attempts, Some(UInt32Value { value: 7 }));
        }
    }
}
