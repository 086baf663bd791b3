use super::super::util::testing::*;
use super::*;

const DOC: &str = r#"
type: FaultInjection
mesh: default
name: fi1
sources:
  - match:
      kuma.io/service: frontend
      version: '0.1'
      kuma.io/protocol: http
destinations:
  - match:
      kuma.io/service: backend
      kuma.io/protocol: http
conf:
  abort:
    httpStatus: 500
    percentage: 50
  delay:
    percentage: 50.5
    value: 5s
  responseBandwidth:
    limit: 50 mbps
    percentage: 50
"#;

#[test]
fn documented_example_round_trips() {
    let res = round_trip(DOC);
    let out = res.to_yaml();
    assert!(
        out.contains("percentage: 50\n") && out.contains("percentage: 50.5\n"),
        "{out}"
    );
    for limit in ["50kbps", "1mbps", "10gbps"] {
        round_trip(&DOC.replace("50 mbps", limit));
    }
}

#[test]
fn bandwidth_parses() {
    assert_eq!(parse_bandwidth_kbps("50kbps"), Some(50));
    assert_eq!(parse_bandwidth_kbps("50 mbps"), Some(50_000));
    assert_eq!(parse_bandwidth_kbps("10gbps"), Some(10_000_000));
    for bad in [
        "", "kbps", "50", "50 kbit", "5.5mbps", "50  mbps", "-1kbps", "50Mbps",
    ] {
        assert_eq!(parse_bandwidth_kbps(bad), None, "{bad:?}");
    }
}

#[test]
fn at_least_one_fault() {
    let head = DOC.split("conf:").next().unwrap();
    assert_violations(head, &["conf"]);
    assert_violations(&format!("{head}conf: {{}}\n"), &["conf"]);
}

#[test]
fn fault_fields_are_required() {
    let head = DOC.split("conf:").next().unwrap();
    assert_violations(
        &format!("{head}conf:\n  delay: {{}}\n  abort: {{}}\n  responseBandwidth: {{}}\n"),
        &[
            "conf.delay.percentage",
            "conf.delay.value",
            "conf.abort.percentage",
            "conf.abort.httpStatus",
            "conf.responseBandwidth.percentage",
            "conf.responseBandwidth.limit",
        ],
    );
}

#[test]
fn values_are_checked() {
    assert_violations(
        &DOC.replace("percentage: 50.5", "percentage: 100.1"),
        &["conf.delay.percentage"],
    );
    assert_violations(
        &DOC.replace("httpStatus: 500", "httpStatus: 600"),
        &["conf.abort.httpStatus"],
    );
    assert_violations(
        &DOC.replace("value: 5s", "value: 0s"),
        &["conf.delay.value"],
    );
    assert_violations(
        &DOC.replace("50 mbps", "fast"),
        &["conf.responseBandwidth.limit"],
    );
    assert_violations(
        &DOC.replace(
            "    limit: 50 mbps\n    percentage: 50",
            "    limit: 5kbps\n    percentage: -3",
        ),
        &["conf.responseBandwidth.percentage"],
    );
}

#[test]
fn destinations_must_be_http() {
    assert_violations(
        &DOC.replace(
            "      kuma.io/service: backend\n      kuma.io/protocol: http",
            "      kuma.io/service: backend\n      kuma.io/protocol: tcp",
        ),
        &[r#"destinations[0].match["kuma.io/protocol"]"#],
    );
}

#[test]
fn selectors_are_required() {
    assert_violations(
            &DOC.replace("destinations:\n  - match:\n      kuma.io/service: backend\n      kuma.io/protocol: http\n", "destinations: []\n"),
            &["destinations"],
        );
}

#[test]
fn several_violations_are_reported_together() {
    let yaml = DOC
        .replace("httpStatus: 500", "httpStatus: 42")
        .replace("value: 5s", "value: 0s")
        .replace("version: '0.1'", "version: '*'");
    assert_violations(&yaml, &["conf.delay.value", "conf.abort.httpStatus"]);
    let yaml = yaml.replace("version: '*'", "version: 'a b'");
    assert_violations(
        &yaml,
        &[
            r#"sources[0].match["version"]"#,
            "conf.delay.value",
            "conf.abort.httpStatus",
        ],
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(
        decode_error_path(&DOC.replace("httpStatus", "status")),
        "conf.abort.status"
    );
    assert_eq!(
        decode_error_path(&format!("{DOC}  rateLimit: {{}}\n")),
        "conf.rateLimit"
    );
}
