use super::super::util::testing::*;
use super::*;
use crate::resource::Resource;

const LEGACY: &str = r#"
type: TrafficRoute
name: route-example
mesh: default
sources:
  - match:
      kuma.io/service: backend_default_svc_80
destinations:
  - match:
      kuma.io/service: redis_default_svc_6379
conf:
  - weight: 90
    destination:
      kuma.io/service: redis_default_svc_6379
      version: '1.0'
  - weight: 10
    destination:
      kuma.io/service: redis_default_svc_6379
      version: '2.0'
"#;

const SPLIT: &str = r#"
type: TrafficRoute
name: route-example
mesh: default
sources:
  - match:
      kuma.io/service: backend_default_svc_80
destinations:
  - match:
      kuma.io/service: redis_default_svc_6379
conf:
  split:
    - weight: 90
      destination:
        kuma.io/service: redis_default_svc_6379
        version: '1.0'
    - weight: 10
      destination:
        kuma.io/service: redis_default_svc_6379
        version: '2.0'
  loadBalancer:
    roundRobin: {}
"#;

const ROUTE_ALL: &str = r#"
type: TrafficRoute
name: route-all-default
mesh: default
sources:
  - match:
      kuma.io/service: '*'
destinations:
  - match:
      kuma.io/service: '*'
conf:
  loadBalancer:
    roundRobin: {}
  destination:
    kuma.io/service: '*'
"#;

const HTTP: &str = r#"
type: TrafficRoute
name: api-split
mesh: default
sources:
  - match:
      kuma.io/service: frontend_default_svc_80
destinations:
  - match:
      kuma.io/service: backend_default_svc_80
conf:
  http:
  - match:
      method:
        exact: GET
      path:
        prefix: /api
      headers:
        x-custom-header:
          regex: ^xyz$
    modify:
      path:
        rewritePrefix: /v1/api
      host:
        value: backend.internal
      requestHeaders:
        add:
        - name: x-source
          value: frontend
          append: false
        remove:
        - name: x-debug
      responseHeaders:
        add:
        - name: x-routed
          value: 'true'
    split:
    - weight: 90
      destination:
        kuma.io/service: backend_default_svc_80
        version: '1.0'
    - weight: 10
      destination:
        kuma.io/service: backend_default_svc_80
        version: '2.0'
  - match:
      path:
        exact: /health
    modify:
      host:
        fromPath:
          pattern: ^/(.+)$
          substitution: \1.example.com
      path:
        regex:
          pattern: ^/health$
          substitution: /healthz
    destination:
      kuma.io/service: backend_default_svc_80
      version: '1.0'
  destination:
    kuma.io/service: backend_default_svc_80
  loadBalancer:
    ringHash:
      hashFunction: MURMUR_HASH_2
      minRingSize: 64
      maxRingSize: 1024
"#;

#[test]
fn documented_examples_round_trip_in_their_own_form() {
    let res = round_trip(LEGACY);
    let spec = res.spec_as::<TrafficRouteSpec>().unwrap();
    assert!(matches!(&spec.conf, Some(TrafficRouteConf::Split(s)) if s.len() == 2));
    assert!(
        res.to_yaml().contains("conf:\n- weight: 90"),
        "{}",
        res.to_yaml()
    );

    let res = round_trip(SPLIT);
    let spec = res.spec_as::<TrafficRouteSpec>().unwrap();
    assert!(matches!(&spec.conf, Some(TrafficRouteConf::Route(c))
            if c.split.len() == 2 && c.load_balancer == Some(LoadBalancer::RoundRobin(NoOptions {}))));

    round_trip(ROUTE_ALL);
    round_trip(HTTP);
    for lb in [
        "leastRequest:\n      choiceCount: 4",
        "random: {}",
        "maglev: {}",
        "leastRequest: {}",
    ] {
        round_trip(&SPLIT.replace("roundRobin: {}", lb));
    }
}

#[test]
fn targets_are_sources_and_destinations() {
    let res = round_trip(SPLIT);
    let PolicyTargets::Connection {
        sources,
        destinations,
    } = res.spec.policy_targets().unwrap()
    else {
        panic!("not a connection policy");
    };
    assert_eq!(sources[0], Selector::service("backend_default_svc_80"));
    assert_eq!(destinations[0], Selector::service("redis_default_svc_6379"));
}

#[test]
fn conf_is_required() {
    let yaml = LEGACY.split("conf:").next().unwrap();
    assert_violations(yaml, &["conf"]);
    assert_violations(&format!("{yaml}conf: []\n"), &["conf"]);
    assert_violations(&format!("{yaml}conf: {{}}\n"), &["conf"]);
}

#[test]
fn destinations_are_service_only_and_selectors_required() {
    assert_violations(
            &LEGACY.replace(
                "destinations:\n  - match:\n      kuma.io/service: redis_default_svc_6379\n",
                "destinations:\n  - match:\n      kuma.io/service: redis_default_svc_6379\n      version: '1'\n",
            ),
            &[r#"destinations[0].match["version"]"#],
        );
    assert_violations(
        &LEGACY.replace(
            "  - match:\n      kuma.io/service: backend_default_svc_80\n",
            "  []\n",
        ),
        &["sources"],
    );
}

#[test]
fn split_weights_must_not_all_be_zero() {
    assert_violations(
        &LEGACY
            .replace("weight: 90", "weight: 0")
            .replace("weight: 10", "weight: 0"),
        &["conf"],
    );
    assert_violations(
        &SPLIT
            .replace("weight: 90", "weight: 0")
            .replace("weight: 10", "weight: 0"),
        &["conf.split"],
    );
    // A zero weight next to a positive one is fine.
    assert_violations(&SPLIT.replace("weight: 10", "weight: 0"), &[]);
}

#[test]
fn split_weight_is_required() {
    assert_violations(
        &SPLIT.replace("- weight: 10\n      ", "- "),
        &["conf.split[1].weight"],
    );
    assert_violations(
        &LEGACY.replace("- weight: 90\n    ", "- "),
        &["conf[0].weight"],
    );
}

#[test]
fn split_destination_needs_service_and_valid_tags() {
    assert_violations(
        &SPLIT.replace(
            "        kuma.io/service: redis_default_svc_6379\n        version: '2.0'",
            "        version: 'two point oh'",
        ),
        &[
            r#"conf.split[1].destination["version"]"#,
            r#"conf.split[1].destination["kuma.io/service"]"#,
        ],
    );
    assert_violations(
        &LEGACY.replace("      version: '1.0'", "      bad key: x"),
        &[r#"conf[0].destination["bad key"]"#],
    );
    assert_violations(
        &ROUTE_ALL.replace(
            "  destination:\n    kuma.io/service: '*'",
            "  destination:\n    version: v1",
        ),
        &[r#"conf.destination["kuma.io/service"]"#],
    );
}

#[test]
fn split_and_destination_are_exclusive() {
    assert_violations(
        &format!("{SPLIT}  destination:\n    kuma.io/service: redis\n"),
        &["conf"],
    );
    assert_violations(
        &ROUTE_ALL.replace("  destination:\n    kuma.io/service: '*'\n", ""),
        &["conf"],
    );
}

#[test]
fn load_balancer_rules() {
    assert_violations(
        &SPLIT.replace("roundRobin: {}", "leastRequest:\n      choiceCount: 1"),
        &["conf.loadBalancer.leastRequest.choiceCount"],
    );
    assert_violations(
        &HTTP.replace("MURMUR_HASH_2", "SHA1"),
        &["conf.loadBalancer.ringHash.hashFunction"],
    );
    assert_violations(
        &HTTP.replace("minRingSize: 64", "minRingSize: 4096"),
        &["conf.loadBalancer.ringHash.minRingSize"],
    );
    assert_eq!(
        decode_error_path(&SPLIT.replace("roundRobin: {}", "roundRobin: {x: 1}")),
        "conf.loadBalancer.roundRobin.x"
    );
    assert_eq!(
        decode_error_path(&SPLIT.replace("roundRobin: {}", "leastRequest: {choices: 2}")),
        "conf.loadBalancer.leastRequest.choices"
    );
}

#[test]
fn http_route_rules() {
    assert_violations(
        &HTTP.replace("      path:\n        exact: /health\n", "      {}\n"),
        &["conf.http[1].match"],
    );
    assert_violations(
        &HTTP.replace(
            "  - match:\n      path:\n        exact: /health\n    modify:",
            "  - modify:",
        ),
        &["conf.http[1].match"],
    );
    assert_violations(
        &HTTP.replace(
            "      headers:\n        x-custom-header:\n          regex: ^xyz$\n",
            "      headers: {}\n",
        ),
        &["conf.http[0].match.headers"],
    );
    assert_violations(
        &HTTP.replace("prefix: /api", "prefix: ''"),
        &["conf.http[0].match.path.prefix"],
    );
    assert_violations(
        &HTTP.replace("regex: ^xyz$", "regex: ''"),
        &[r#"conf.http[0].match.headers["x-custom-header"].regex"#],
    );
    assert_violations(
        &HTTP.replace("prefix: /api", "exact: /api"),
        &["conf.http[0].modify.path.rewritePrefix"],
    );
    assert_violations(
        &HTTP.replace("rewritePrefix: /v1/api", "rewritePrefix: ''"),
        &["conf.http[0].modify.path.rewritePrefix"],
    );
    assert_violations(
        &HTTP.replace("value: backend.internal", "value: ''"),
        &["conf.http[0].modify.host.value"],
    );
    assert_violations(
        &HTTP.replace("substitution: \\1.example.com", "substitution: ''"),
        &["conf.http[1].modify.host.fromPath.substitution"],
    );
    assert_violations(
        &HTTP.replace("pattern: ^/health$", "pattern: ''"),
        &["conf.http[1].modify.path.regex.pattern"],
    );
    assert_violations(
        &HTTP
            .replace("name: x-source", "name: ':authority'")
            .replace("name: x-debug", "name: Host"),
        &[
            "conf.http[0].modify.requestHeaders.add[0].name",
            "conf.http[0].modify.requestHeaders.remove[0].name",
        ],
    );
    assert_violations(
        &HTTP.replace("value: 'true'", "value: ''"),
        &["conf.http[0].modify.responseHeaders.add[0].value"],
    );
    assert_violations(
            &HTTP.replace("    destination:\n      kuma.io/service: backend_default_svc_80\n      version: '1.0'\n", ""),
            &["conf.http[1]"],
        );
}

#[test]
fn several_violations_are_reported_together() {
    let yaml = SPLIT
        .replace(
            "kuma.io/service: backend_default_svc_80",
            "kuma.io/service: 'a b'",
        )
        .replace("- weight: 10\n      ", "- ")
        .replace("roundRobin: {}", "leastRequest: {choiceCount: 0}");
    assert_violations(
        &yaml,
        &[
            r#"sources[0].match["kuma.io/service"]"#,
            "conf.split[1].weight",
            "conf.loadBalancer.leastRequest.choiceCount",
        ],
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(decode_error_path(&format!("{SPLIT}  foo: 1\n")), "conf.foo");
    assert_eq!(
        decode_error_path(&LEGACY.replace("- weight: 10", "- weight: 10\n    wieght: 3")),
        "conf[1].wieght"
    );
    assert_eq!(
        decode_error_path(&format!("{LEGACY}selectors: []\n")),
        "selectors"
    );
    assert_eq!(
        decode_error_path(&HTTP.replace("exact: GET", "suffix: GET")),
        "conf.http[0].match.method"
    );
    assert!(
        Resource::from_yaml(&LEGACY.replace("conf:\n  - weight", "conf: 5\nx:\n  - weight"))
            .is_err()
    );
}
