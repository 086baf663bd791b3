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
    round_trip(&DOC.replace(
        "    - GET\n",
        "    - GET\n    - POST\n    retryOn:\n    - retriable_status_codes\n    - gateway_error\n",
    ));
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
        decode_error_path(&DOC.replacen("maxInterval: 1s", "maxInterval: 1s\n      jitter: 1s", 1)),
        "conf.http.backOff.jitter"
    );
}
