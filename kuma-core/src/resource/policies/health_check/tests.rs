use super::super::util::testing::*;
use super::*;

const DOC: &str = r#"
type: HealthCheck
name: web-to-backend-check
mesh: default
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
conf:
  interval: 10s
  timeout: 2s
  unhealthyThreshold: 3
  healthyThreshold: 1
  initialJitter: 5s
  intervalJitter: 6s
  intervalJitterPercent: 10
  healthyPanicThreshold: 60
  failTrafficOnPanic: true
  eventLogPath: /tmp/health-check.log
  alwaysLogHealthCheckFailures: true
  noTrafficInterval: 10s
  http:
    path: /health
    requestHeadersToAdd:
    - append: false
      header:
        key: Content-Type
        value: application/json
    - header:
        key: Accept
        value: application/json
    expectedStatuses: [200, 201]
  reuseConnection: false
"#;

const TCP: &str = r#"
type: HealthCheck
name: web-to-redis-check
mesh: default
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: redis
conf:
  interval: 10s
  timeout: 2s
  unhealthyThreshold: 3
  healthyThreshold: 1
  healthyPanicThreshold: 12.5
  tcp:
    send: Zm9v
    receive:
    - YmFy
    - YmF6
"#;

#[test]
fn documented_examples_round_trip() {
    let res = round_trip(DOC);
    let conf = res
        .spec_as::<HealthCheckSpec>()
        .unwrap()
        .conf
        .as_ref()
        .unwrap();
    assert_eq!(conf.healthy_panic_threshold, Some(60.0));
    assert!(
        res.to_yaml().contains("healthyPanicThreshold: 60\n"),
        "{}",
        res.to_yaml()
    );
    let res = round_trip(TCP);
    assert!(res.to_yaml().contains("healthyPanicThreshold: 12.5\n"));
    assert!(matches!(
        res.spec.policy_targets(),
        Some(PolicyTargets::Connection { .. })
    ));
}

#[test]
fn conf_is_required() {
    assert_violations(TCP.split("conf:").next().unwrap(), &["conf"]);
}

#[test]
fn required_fields_are_reported() {
    assert_violations(
        &(TCP.split("conf:").next().unwrap().to_string() + "conf:\n  reuseConnection: true\n"),
        &[
            "conf.interval",
            "conf.timeout",
            "conf.unhealthyThreshold",
            "conf.healthyThreshold",
        ],
    );
}

#[test]
fn durations_must_be_positive() {
    assert_violations(
        &TCP.replace("interval: 10s", "interval: 0s"),
        &["conf.interval"],
    );
    assert_violations(
        &TCP.replace("timeout: 2s", "timeout: '0'"),
        &["conf.timeout"],
    );
    assert_violations(
        &DOC.replace("initialJitter: 5s", "initialJitter: 0s"),
        &["conf.initialJitter"],
    );
    assert_violations(
        &DOC.replace("intervalJitter: 6s", "intervalJitter: 0ms"),
        &["conf.intervalJitter"],
    );
    assert_violations(
        &DOC.replace("noTrafficInterval: 10s", "noTrafficInterval: 0s"),
        &["conf.noTrafficInterval"],
    );
    assert_eq!(
        decode_error_path(&TCP.replace("timeout: 2s", "timeout: 2")),
        "conf.timeout"
    );
}

#[test]
fn thresholds_must_be_positive() {
    assert_violations(
        &TCP.replace("unhealthyThreshold: 3", "unhealthyThreshold: 0"),
        &["conf.unhealthyThreshold"],
    );
    assert_violations(
        &TCP.replace("healthyThreshold: 1", "healthyThreshold: 0"),
        &["conf.healthyThreshold"],
    );
}

#[test]
fn percentages_are_ranged() {
    assert_violations(
        &DOC.replace("intervalJitterPercent: 10", "intervalJitterPercent: 101"),
        &["conf.intervalJitterPercent"],
    );
    assert_violations(
        &DOC.replace("healthyPanicThreshold: 60", "healthyPanicThreshold: 100.5"),
        &["conf.healthyPanicThreshold"],
    );
    assert_violations(
        &DOC.replace("healthyPanicThreshold: 60", "healthyPanicThreshold: -1"),
        &["conf.healthyPanicThreshold"],
    );
}

#[test]
fn tcp_and_http_are_exclusive() {
    assert_violations(&format!("{TCP}  http:\n    path: /health\n"), &["conf"]);
}

#[test]
fn tcp_payloads_are_base64() {
    assert_violations(&TCP.replace("send: Zm9v", "send: foo!"), &["conf.tcp.send"]);
    assert_violations(
        &TCP.replace("- YmF6", "- 'not base64'"),
        &["conf.tcp.receive[1]"],
    );
}

#[test]
fn http_rules() {
    assert_violations(
        &DOC.replace("path: /health", "path: ''"),
        &["conf.http.path"],
    );
    assert_violations(
        &DOC.replace("path: /health", "path: health"),
        &["conf.http.path"],
    );
    assert_violations(
        &DOC.replace("[200, 201]", "[200, 99, 600]"),
        &[
            "conf.http.expectedStatuses[1]",
            "conf.http.expectedStatuses[2]",
        ],
    );
    assert_violations(
        &DOC.replace("key: Accept", "key: ''"),
        &["conf.http.requestHeadersToAdd[1].header.key"],
    );
    assert_violations(
        &DOC.replace(
            "    - header:\n        key: Accept\n        value: application/json\n",
            "    - append: true\n",
        ),
        &["conf.http.requestHeadersToAdd[1].header"],
    );
}

#[test]
fn destinations_are_service_only() {
    assert_violations(
        &TCP.replace(
            "    kuma.io/service: redis",
            "    kuma.io/service: redis\n    version: v1",
        ),
        &[r#"destinations[0].match["version"]"#],
    );
    assert_violations(
        &TCP.replace(
            "sources:\n- match:\n    kuma.io/service: web\n",
            "sources: []\n",
        ),
        &["sources"],
    );
}

#[test]
fn several_violations_are_reported_together() {
    let yaml = DOC
        .replace("interval: 10s", "interval: 0s")
        .replace("healthyThreshold: 1", "healthyThreshold: 0")
        .replace("[200, 201]", "[700]");
    assert_violations(
        &yaml,
        &[
            "conf.interval",
            "conf.healthyThreshold",
            "conf.http.expectedStatuses[0]",
        ],
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(
        decode_error_path(&DOC.replace("reuseConnection", "reuseConnections")),
        "conf.reuseConnections"
    );
    assert_eq!(
        decode_error_path(&DOC.replace("    path: /health", "    path: /health\n    host: x")),
        "conf.http.host"
    );
    assert_eq!(
        decode_error_path(&DOC.replace(
            "        key: Accept",
            "        key: Accept\n        name: x"
        )),
        "conf.http.requestHeadersToAdd[1].header.name"
    );
}
