use super::*;
use crate::resource::Resource;
use time::macros::datetime;

const DOC: &str = r#"type: DataplaneInsight
mesh: default
name: backend-1
subscriptions:
- id: 426fe0d8-f667-11e9-b081-acde48001122
  controlPlaneInstanceId: 06070748-f667-11e9-b081-acde48001122
  connectTime: 2019-10-24T14:04:56.820350Z
  disconnectTime: 2019-10-24T14:05:56.820350Z
  status:
    lastUpdateTime: 2019-10-24T14:04:57.832482Z
    total:
      responsesSent: 3
      responsesAcknowledged: 3
      responsesRejected: 0
    cds:
      responsesSent: 1
      responsesAcknowledged: 1
      responsesRejected: 0
    eds:
      responsesSent: 1
      responsesAcknowledged: 1
      responsesRejected: 0
    lds:
      responsesSent: 1
      responsesAcknowledged: 1
      responsesRejected: 0
    rds:
      responsesSent: 0
      responsesAcknowledged: 0
      responsesRejected: 0
  version:
    kumaDp:
      version: 1.0.0
      gitTag: 1.0.0
      gitCommit: 9d868cd8681c4021bb4a10bf2306ca613ba4de42
      buildDate: 2020-11-17T14:04:43Z
    envoy:
      version: 1.16.0
      build: hash/1.16.0/RELEASE
  generation: 3
- id: 5a1ab3c4-f667-11e9-b081-acde48001122
  controlPlaneInstanceId: 06070748-f667-11e9-b081-acde48001122
  connectTime: 2019-10-24T14:06:00Z
  status:
    total:
      responsesSent: 1
      responsesAcknowledged: 0
      responsesRejected: 1
    cds:
      responsesSent: 0
      responsesAcknowledged: 0
      responsesRejected: 0
    eds:
      responsesSent: 0
      responsesAcknowledged: 0
      responsesRejected: 0
    lds:
      responsesSent: 1
      responsesAcknowledged: 0
      responsesRejected: 1
    rds:
      responsesSent: 0
      responsesAcknowledged: 0
      responsesRejected: 0
mTLS:
  certificateExpirationTime: 2019-10-25T14:04:56Z
  lastCertificateRegeneration: 2019-10-24T14:04:56Z
  certificateRegenerations: 1
  issuedBackend: ca-1
  supportedBackends:
  - ca-1
"#;

#[test]
fn parses_validates_and_round_trips() {
    let res = Resource::from_yaml(DOC).unwrap();
    res.validate().unwrap();
    let out = res.to_yaml();
    assert_eq!(Resource::from_yaml(&out).unwrap(), res);
    let a: serde_json::Value = serde_yaml_ng::from_str(DOC).unwrap();
    let b: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(a, b, "{out}");
    let spec = res.spec_as::<DataplaneInsightSpec>().unwrap();
    assert!(spec.is_online());
    assert_eq!(
        spec.last_subscription()
            .unwrap()
            .status
            .lds
            .responses_rejected,
        1
    );
    assert_eq!(
        spec.subscriptions[0].connect_time,
        datetime!(2019-10-24 14:04:56.820350 UTC)
    );
    assert_eq!(spec.mtls.as_ref().unwrap().certificate_regenerations, 1);
}

#[test]
fn last_nack_round_trips() {
    let json = r#"{"type":"DataplaneInsight","mesh":"default","name":"dp","subscriptions":[{"id":"1","controlPlaneInstanceId":"cp","connectTime":"2021-01-01T00:00:00Z","status":{"lds":{"responsesSent":2,"responsesAcknowledged":1,"responsesRejected":1},"lastNack":{"typeUrl":"type.googleapis.com/envoy.config.listener.v3.Listener","version":"v2","error":"duplicate listener","time":"2021-01-01T00:00:01Z","resolvedTime":"2021-01-01T00:00:02Z"}}}]}"#;
    let res = Resource::from_json(json).unwrap();
    res.validate().unwrap();
    let spec = res.spec_as::<DataplaneInsightSpec>().unwrap();
    let nack = spec.subscriptions[0].status.last_nack.as_ref().unwrap();
    assert_eq!(nack.error, "duplicate listener");
    assert_eq!(nack.resolved_time, Some(datetime!(2021-01-01 00:00:02 UTC)));
    let out = res.to_json_value();
    assert_eq!(
        out.pointer("/subscriptions/0/status/lastNack/version"),
        Some(&serde_json::json!("v2"))
    );
    assert_eq!(Resource::from_json(&out.to_string()).unwrap(), res);
}

#[test]
fn counters_read_strings_and_write_numbers() {
    let json = r#"{"type":"DataplaneInsight","mesh":"default","name":"dp","subscriptions":[{"id":"1","controlPlaneInstanceId":"cp","connectTime":"2021-01-01T00:00:00Z","status":{"total":{"responsesSent":"18446744073709551615","responsesAcknowledged":"2","responsesRejected":0}},"generation":"4"}]}"#;
    let res = Resource::from_json(json).unwrap();
    let spec = res.spec_as::<DataplaneInsightSpec>().unwrap();
    let total = spec.subscriptions[0].status.total;
    assert_eq!(total.responses_sent, u64::MAX);
    assert_eq!(total.responses_acknowledged, 2);
    assert_eq!(spec.subscriptions[0].generation, Some(4));
    let out = res.to_json_value();
    assert_eq!(
        out["subscriptions"][0]["status"]["total"]["responsesSent"],
        serde_json::json!(u64::MAX)
    );
    assert_eq!(Resource::from_json(&res.to_json()).unwrap(), res);
    for bad in [r#""-1""#, "-1", r#""x""#, "1.5"] {
        let json = json.replace(r#""2""#, bad);
        let e = Resource::from_json(&json).unwrap_err();
        assert_eq!(
            e.violations()[0].field,
            "subscriptions[0].status.total.responsesAcknowledged",
            "{bad}"
        );
    }
}

#[test]
fn timestamps_are_written_like_protobuf_json() {
    let f = |t| timestamp::format(t).unwrap();
    assert_eq!(f(datetime!(2021-01-01 0:00 UTC)), "2021-01-01T00:00:00Z");
    assert_eq!(
        f(datetime!(2021-01-01 0:00:00.5 UTC)),
        "2021-01-01T00:00:00.500Z"
    );
    assert_eq!(
        f(datetime!(2021-01-01 0:00:00.82035 UTC)),
        "2021-01-01T00:00:00.820350Z"
    );
    assert_eq!(
        f(datetime!(2021-01-01 0:00:00.000000001 +2)),
        "2021-01-01T00:00:00.000000001+02:00"
    );
}

#[test]
fn helpers() {
    let t0 = datetime!(2021-01-01 0:00 UTC);
    let mut spec = DataplaneInsightSpec::default();
    assert!(!spec.is_online());
    spec.upsert_subscription(DiscoverySubscription::new("a", "cp", t0));
    assert!(spec.is_online());
    let mut closed = DiscoverySubscription::new("a", "cp", t0);
    closed.disconnect_time = Some(t0);
    spec.upsert_subscription(closed);
    assert_eq!(spec.subscriptions.len(), 1);
    assert!(!spec.is_online());
    spec.upsert_subscription(DiscoverySubscription::new("b", "cp", t0));
    spec.upsert_subscription(DiscoverySubscription::new("c", "cp", t0));
    spec.truncate_subscriptions(2);
    let ids: Vec<_> = spec.subscriptions.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["b", "c"]);
}

#[test]
fn validation_rules() {
    let yaml = "type: DataplaneInsight\nmesh: default\nname: dp\nsubscriptions:\n- connectTime: 2021-01-01T00:00:00Z\n  disconnectTime: 2020-01-01T00:00:00Z\n";
    let e = Resource::from_yaml(yaml).unwrap().validate().unwrap_err();
    let f: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(
        f,
        [
            "subscriptions[0].id",
            "subscriptions[0].controlPlaneInstanceId",
            "subscriptions[0].disconnectTime"
        ]
    );
}

#[test]
fn bad_shapes_are_rejected_with_their_path() {
    let head = "type: DataplaneInsight\nmesh: default\nname: dp\n";
    for (body, path) in [
        ("subscriptions:\n- id: a\n", "subscriptions[0]"),
        (
            "subscriptions:\n- connectTime: yesterday\n",
            "subscriptions[0].connectTime",
        ),
        (
            "subscriptions:\n- connectTime: 2021-01-01T00:00:00Z\n  bogus: 1\n",
            "subscriptions[0].bogus",
        ),
        ("mTLS: {bogus: 1}\n", "mTLS.bogus"),
        ("mtls: {}\n", "mtls"),
    ] {
        let e = Resource::from_yaml(&format!("{head}{body}")).unwrap_err();
        assert_eq!(e.violations()[0].field, path, "{body}");
    }
}
