use super::super::super::network_filter::HCM;
use super::super::super::{DataplanePolicies, InboundPolicies, Protocol, build};
use super::*;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use kuma_core::resource::DataplaneSpec;
use prost::Message;
use std::collections::BTreeMap;

use super::super::edit::testing::spec;

const DP: &str = "type: Dataplane\nmesh: m\nname: backend-1\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 8081\n    tags:\n      kuma.io/service: backend\n      kuma.io/protocol: http\n  - port: 9090\n    servicePort: 9091\n    tags:\n      kuma.io/service: db\n";

const FI: &str = "type: FaultInjection\nmesh: m\nname: fi\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\nconf:\n  abort:\n    httpStatus: 418\n    percentage: 50\n  delay:\n    percentage: 12.5\n    value: 1500ms\n  responseBandwidth:\n    limit: 2mbps\n    percentage: 100\n";

fn hcm_filters(config: &ProxyConfig, listener: &str) -> Option<Vec<HttpFilter>> {
    let l = config.listeners.iter().find(|l| l.name == listener)?;
    let f = &l.filter_chains[0].filters[0];
    let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
        return None;
    };
    (f.name == HCM)
        .then(|| HttpConnectionManager::decode(any.value.as_slice()).unwrap())
        .map(|h| h.http_filters)
}

fn run(fi: &FaultInjectionSpec) -> ProxyConfig {
    let dp: DataplaneSpec = spec(DP);
    let policies = BTreeMap::new();
    let protocols = BTreeMap::from([("backend".to_string(), Protocol::Http)]);
    let vips = BTreeMap::new();
    let inbound = [
        InboundPolicies {
            fault_injection: Some(fi),
            ..Default::default()
        },
        InboundPolicies {
            fault_injection: Some(fi),
            ..Default::default()
        },
    ];
    let input = ProxyInput {
        mesh: "m",
        name: "backend-1",
        dataplane: &dp,
        mesh_spec: None,
        outbound_policies: &policies,
        inbound_policies: &inbound,
        dataplane_policies: DataplanePolicies::default(),
        protocols: &protocols,
        vips: &vips,
        sds_token: None,
    };
    let (mut config, _) = build(&input);
    apply(&mut config, &input);
    config.pack();
    config
}

#[test]
fn fault_filter_before_router_on_http_inbound_only() {
    let fi: FaultInjectionSpec = spec(FI);
    let config = run(&fi);
    let filters = hcm_filters(&config, "inbound:10.0.0.2:8080").unwrap();
    let names: Vec<&str> = filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [FAULT_FILTER, ROUTER]);
    let Some(HttpFilterConfig::TypedConfig(any)) = &filters[0].config_type else {
        panic!("no typed config");
    };
    let fault = HttpFault::decode(any.value.as_slice()).unwrap();
    assert!(fault.headers.is_empty());
    let abort = fault.abort.unwrap();
    assert_eq!(abort.error_type, Some(ErrorType::HttpStatus(418)));
    assert_eq!(abort.percentage, Some(percentage(50.0)));
    let delay = fault.delay.unwrap();
    assert_eq!(
        delay.fault_delay_secifier,
        Some(FaultDelaySecifier::FixedDelay(PbDuration {
            seconds: 1,
            nanos: 500_000_000
        }))
    );
    assert_eq!(
        delay.percentage,
        Some(FractionalPercent {
            numerator: 125_000,
            denominator: DenominatorType::Million as i32
        })
    );
    let rl = fault.response_rate_limit.unwrap();
    assert_eq!(
        rl.limit_type,
        Some(LimitType::FixedLimit(FixedLimit { limit_kbps: 2000 }))
    );
    // The TCP inbound is untouched.
    assert!(hcm_filters(&config, "inbound:10.0.0.2:9090").is_none());
    let tcp = config
        .listeners
        .iter()
        .find(|l| l.name == "inbound:10.0.0.2:9090")
        .unwrap();
    assert_eq!(
        tcp.filter_chains[0].filters[0].name,
        "envoy.filters.network.tcp_proxy"
    );
}

#[test]
fn specific_sources_match_the_tags_header() {
    let fi: FaultInjectionSpec = spec(&FI.replace(
            "sources:\n- match:\n    kuma.io/service: '*'\n",
            "sources:\n- match:\n    kuma.io/service: frontend\n    version: '*'\n- match:\n    kuma.io/service: '*'\n- match:\n    kuma.io/service: '*'\n",
        ));
    let config = run(&fi);
    let filters = hcm_filters(&config, "inbound:10.0.0.2:8080").unwrap();
    // frontend, one match-all (the duplicate dropped), router.
    assert_eq!(filters.len(), 3);
    let Some(HttpFilterConfig::TypedConfig(any)) = &filters[0].config_type else {
        panic!("no typed config");
    };
    let fault = HttpFault::decode(any.value.as_slice()).unwrap();
    assert_eq!(fault.headers.len(), 1);
    assert_eq!(fault.headers[0].name, TAGS_HEADER);
}

#[test]
fn kuma_tags_regex_and_percentages() {
    let tags: Tags = [
        ("kuma.io/service".to_string(), "web.v1".to_string()),
        ("zone".to_string(), "*".to_string()),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        tags_regex(&tags),
        r".*&kuma\.io/service=[^&]*web\.v1[,&].*&zone=.*"
    );
    assert_eq!(
        percentage(100.0),
        FractionalPercent {
            numerator: 100,
            denominator: DenominatorType::Hundred as i32
        }
    );
    assert_eq!(percentage(0.5).numerator, 5_000);
}

#[test]
fn no_policy_no_filter() {
    let fi: FaultInjectionSpec = spec(FI);
    let conf_less = FaultInjectionSpec {
        conf: None,
        ..fi.clone()
    };
    assert!(fault_filters(&conf_less).is_empty());
    let config = run(&conf_less);
    let filters = hcm_filters(&config, "inbound:10.0.0.2:8080").unwrap();
    assert_eq!(filters.len(), 1);
}
