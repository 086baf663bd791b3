//! Cross-type checks of the resource model through the public API: every
//! non-policy type decodes, validates and reads back, and violations carry
//! readable messages.

use kuma_core::resource::{DataplaneSpec, MeshSpec, Resource, ResourceType};

fn messages(yaml: &str) -> Vec<String> {
    match Resource::from_yaml(yaml) {
        Err(e) => e.violations().iter().map(ToString::to_string).collect(),
        Ok(r) => r
            .validate()
            .err()
            .map(|e| e.violations.iter().map(ToString::to_string).collect())
            .unwrap_or_default(),
    }
}

#[test]
fn every_non_policy_type_round_trips() {
    let docs = [
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
        "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n",
        "type: ExternalService\nmesh: default\nname: es\nnetworking:\n  address: example.com:443\ntags:\n  kuma.io/service: example\n",
        "type: DataplaneInsight\nmesh: default\nname: dp-1\nsubscriptions:\n- id: a\n  controlPlaneInstanceId: cp\n  connectTime: 2021-01-01T00:00:00Z\n  status:\n    total:\n      responsesSent: 1\n      responsesAcknowledged: 1\n      responsesRejected: 0\n    cds:\n      responsesSent: 1\n      responsesAcknowledged: 1\n      responsesRejected: 0\n    eds:\n      responsesSent: 0\n      responsesAcknowledged: 0\n      responsesRejected: 0\n    lds:\n      responsesSent: 0\n      responsesAcknowledged: 0\n      responsesRejected: 0\n    rds:\n      responsesSent: 0\n      responsesAcknowledged: 0\n      responsesRejected: 0\n",
        "type: Secret\nmesh: default\nname: s\ndata: aGk=\n",
        "type: Zone\nname: zone-1\nenabled: true\n",
        "type: ZoneInsight\nname: zone-1\n",
        "type: Config\nname: c\nconfig: '{}'\n",
    ];
    let mut seen = Vec::new();
    for doc in docs {
        let res = Resource::from_yaml(doc).unwrap_or_else(|e| panic!("{e}\n{doc}"));
        res.validate().unwrap_or_else(|e| panic!("{e}\n{doc}"));
        assert_eq!(res.to_yaml(), doc);
        assert_eq!(Resource::from_json(&res.to_json()).unwrap(), res);
        seen.push(res.resource_type());
    }
    assert!(seen.contains(&ResourceType::ZoneInsight));
}

#[test]
fn messages_name_the_value_and_what_is_accepted() {
    let m = messages(
        "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 70000\n    tags:\n      kuma.io/service: web\n      kuma.io/protocol: smtp\n",
    );
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m[0].starts_with("networking.inbound[0].port: port 70000"),
        "{m:?}"
    );
    assert!(m[1].contains("\"smtp\"") && m[1].contains("http2"), "{m:?}");

    let m = messages(
        "type: Mesh\nname: m\nlogging:\n  defaultBackend: nope\n  backends:\n  - name: tcp-1\n    type: tcp\n    conf:\n      address: logstash\n      port: 5000\n",
    );
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m[0].starts_with("logging.defaultBackend: \"nope\"") && m[0].contains("tcp-1"),
        "{m:?}"
    );
    assert!(
        m[1].starts_with(
            "logging.backends[0].conf.port: invalid configuration: unknown field `port`"
        ),
        "{m:?}"
    );

    let m = messages(
        "type: Dataplane\nmesh: default\nname: dp\nnetworking:\n  inbound:\n  - port: 1\n    bogus: true\n",
    );
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("networking.inbound[0].bogus: unknown field `bogus`"),
        "{m:?}"
    );
}

#[test]
fn typed_access_through_the_public_api() {
    let res = Resource::from_yaml(
        "type: Mesh\nname: m\nmetrics:\n  enabledBackend: p\n  backends:\n  - name: p\n    type: prometheus\n",
    )
    .unwrap();
    let mesh = res.spec_as::<MeshSpec>().unwrap();
    let prom = mesh.enabled_metrics().unwrap().prometheus_config().unwrap();
    assert_eq!(prom.port_or_default(), 5670);
    assert_eq!(prom.path_or_default(), "/metrics");
    assert!(res.spec_as::<DataplaneSpec>().is_none());
}
