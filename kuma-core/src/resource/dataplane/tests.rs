use super::*;
use crate::resource::Resource;

fn parse(yaml: &str) -> Resource {
    Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// Parses, validates and checks the document reads back unchanged.
fn round_trip(yaml: &str) -> Resource {
    let res = parse(yaml);
    res.validate().unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let out = res.to_yaml();
    assert_eq!(Resource::from_yaml(&out).unwrap(), res, "{out}");
    let a: serde_json::Value = serde_yaml_ng::from_str(yaml).unwrap();
    let b: serde_json::Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(a, b, "input:\n{yaml}\noutput:\n{out}");
    res
}

fn fields(yaml: &str) -> Vec<String> {
    match parse(yaml).validate() {
        Ok(()) => vec![],
        Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
    }
}

fn decode_error_field(yaml: &str) -> String {
    Resource::from_yaml(yaml).unwrap_err().violations()[0]
        .field
        .clone()
}

const HEAD: &str = "type: Dataplane\nmesh: default\nname: dp-1\n";

/// A valid Dataplane with `body` (indented under the top level) appended.
fn dp(body: &str) -> String {
    format!("{HEAD}{body}")
}

const PLAIN: &str = r#"type: Dataplane
mesh: default
name: web-01
networking:
  address: 192.168.0.1
  inbound:
  - port: 11011
    servicePort: 11012
    tags:
      kuma.io/service: backend
      kuma.io/protocol: http
      version: "2.0"
      env: production
  outbound:
  - port: 33033
    tags:
      kuma.io/service: database
  - port: 44044
    tags:
      kuma.io/service: user
"#;

#[test]
fn plain_dataplane() {
    let res = round_trip(PLAIN);
    let spec = res.spec_as::<DataplaneSpec>().unwrap();
    assert_eq!(spec.tag_sets().len(), 1);
    let inbound = &spec.networking.inbound[0];
    assert_eq!(inbound.service(), Some("backend"));
    assert_eq!(inbound.service_address_or_default(), "127.0.0.1");
    assert_eq!(inbound.service_port_or_default(), 11012);
    assert_eq!(spec.inbound_address(inbound), "192.168.0.1");
    assert!(inbound.is_ready());
    assert_eq!(spec.networking.outbound[1].service(), Some("user"));
    assert_eq!(
        spec.networking.outbound[1].address_or_default(),
        "127.0.0.1"
    );
    assert!(!spec.is_gateway() && !spec.is_ingress());
}

#[test]
fn gateway_dataplane() {
    let res = round_trip(
        r#"type: Dataplane
mesh: default
name: kong-01
networking:
  address: 10.0.0.1
  gateway:
    tags:
      kuma.io/service: kong
  outbound:
  - port: 33033
    tags:
      kuma.io/service: backend
"#,
    );
    let spec = res.spec_as::<DataplaneSpec>().unwrap();
    assert!(spec.is_gateway());
    assert_eq!(spec.tag_sets()[0][&"kuma.io/service".to_string()], "kong");
}

#[test]
fn ingress_dataplane() {
    let res = round_trip(
        r#"type: Dataplane
mesh: default
name: dp-ingress
networking:
  address: 192.168.0.1
  ingress:
    publicAddress: 10.0.0.1
    publicPort: 10001
    availableServices:
    - tags:
        kuma.io/service: backend
        version: v1
      instances: 2
      mesh: default
  inbound:
  - port: 10001
    tags:
      kuma.io/service: ingress
"#,
    );
    assert!(res.spec_as::<DataplaneSpec>().unwrap().is_ingress());
}

#[test]
fn transparent_proxying_dataplane() {
    round_trip(
        r#"type: Dataplane
mesh: default
name: demo-client-1
networking:
  address: 10.0.0.5
  advertisedAddress: 34.1.2.3
  inbound:
  - port: 20000
    servicePort: 10000
    serviceAddress: 127.0.0.1
    address: 10.0.0.5
    tags:
      kuma.io/service: demo-client
    health:
      ready: true
    serviceProbe:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      tcp: {}
  outbound:
  - address: 127.0.0.2
    port: 6379
    service: redis
  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
    directAccessServices:
    - backend
    - "*"
    redirectPortInboundV6: 15010
metrics:
  type: prometheus
  conf:
    port: 1234
    path: /non-standard-path
    skipMTLS: true
probes:
  port: 9000
  endpoints:
  - inboundPort: 10000
    inboundPath: /healthz
    path: /10000/healthz
"#,
    );
}

#[test]
fn address_rules() {
    assert_eq!(
        fields(&dp(
            "networking:\n  inbound:\n  - port: 80\n    servicePort: 8080\n    tags: {kuma.io/service: a}\n"
        )),
        ["networking.address"]
    );
    assert_eq!(
        fields(&dp(
            "networking:\n  address: 'not an address'\n  gateway: {tags: {kuma.io/service: a}}\n"
        )),
        ["networking.address"]
    );
    assert_eq!(
        fields(&dp(
            "networking:\n  address: gw.local\n  advertisedAddress: 'a b'\n  gateway: {tags: {kuma.io/service: a}}\n"
        )),
        ["networking.advertisedAddress"]
    );
}

#[test]
fn inbound_port_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 0\n    servicePort: 70000\n    tags: {kuma.io/service: a}\n",
    ));
    assert_eq!(
        f,
        [
            "networking.inbound[0].port",
            "networking.inbound[0].servicePort"
        ]
    );
}

#[test]
fn inbound_address_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    serviceAddress: localhost\n    address: host.local\n    tags: {kuma.io/service: a}\n",
    ));
    assert_eq!(
        f,
        [
            "networking.inbound[0].serviceAddress",
            "networking.inbound[0].address"
        ]
    );
}

#[test]
fn inbound_tag_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    servicePort: 81\n    tags: {version: '*'}\n  - port: 82\n    servicePort: 83\n    tags: {kuma.io/service: b, kuma.io/protocol: smtp}\n",
    ));
    assert_eq!(
        f,
        [
            r#"networking.inbound[0].tags["version"]"#,
            r#"networking.inbound[0].tags["kuma.io/service"]"#,
            r#"networking.inbound[1].tags["kuma.io/protocol"]"#,
        ]
    );
}

#[test]
fn inbound_must_not_forward_to_itself() {
    // Defaults: serviceAddress 127.0.0.1, servicePort = port.
    let f = fields(&dp(
        "networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n",
    ));
    assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    serviceAddress: 10.0.0.1\n    servicePort: 80\n    tags: {kuma.io/service: a}\n",
    ));
    assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    address: 127.0.0.1\n    tags: {kuma.io/service: a}\n",
    ));
    assert_eq!(f, ["networking.inbound[0].serviceAddress"]);
    // Different address, or different port, is fine.
    assert!(fields(&dp("networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n")).is_empty());
    assert!(fields(&dp("networking:\n  address: 127.0.0.1\n  inbound:\n  - port: 80\n    servicePort: 8080\n    tags: {kuma.io/service: a}\n")).is_empty());
}

#[test]
fn service_probe_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n    serviceProbe: {interval: 0s, timeout: 0s, unhealthyThreshold: 0, healthyThreshold: 0}\n",
    ));
    let p = "networking.inbound[0].serviceProbe";
    assert_eq!(
        f,
        [
            format!("{p}.interval"),
            format!("{p}.timeout"),
            format!("{p}.unhealthyThreshold"),
            format!("{p}.healthyThreshold")
        ]
    );
    assert_eq!(
        decode_error_field(&dp(
            "networking:\n  inbound:\n  - port: 80\n    serviceProbe: {interval: soon}\n"
        )),
        "networking.inbound[0].serviceProbe.interval"
    );
}

#[test]
fn outbound_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  outbound:\n  - port: 1000\n    tags: {kuma.io/service: ok}\n  - port: 1001\n    service: legacy\n  - port: 0\n    address: localhost\n    tags: {version: v1}\n  - port: 1003\n    service: 'bad name'\n  - port: 1004\n    tags: {kuma.io/service: x, kuma.io/protocol: ftp}\n",
    ));
    assert_eq!(
        f,
        [
            "networking.outbound[2].port",
            "networking.outbound[2].address",
            r#"networking.outbound[2].tags["kuma.io/service"]"#,
            "networking.outbound[3].service",
            r#"networking.outbound[4].tags["kuma.io/protocol"]"#,
        ]
    );
}

#[test]
fn gateway_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  gateway:\n    tags: {version: v1}\n",
    ));
    assert_eq!(f, [r#"networking.gateway.tags["kuma.io/service"]"#]);
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  gateway:\n    tags: {kuma.io/service: 'a*'}\n",
    ));
    assert_eq!(f, [r#"networking.gateway.tags["kuma.io/service"]"#]);
}

#[test]
fn inbounds_xor_gateway() {
    assert_eq!(
        fields(&dp("networking:\n  address: 10.0.0.1\n")),
        ["networking"]
    );
    assert_eq!(
        fields(&dp(
            "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  gateway:\n    tags: {kuma.io/service: gw}\n"
        )),
        ["networking"]
    );
}

#[test]
fn ingress_rules() {
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  ingress: {publicAddress: 1.1.1.1}\n  gateway: {tags: {kuma.io/service: gw}}\n  outbound:\n  - port: 1000\n    tags: {kuma.io/service: x}\n",
    ));
    assert_eq!(
        f,
        [
            "networking",
            "networking",
            "networking",
            "networking.ingress.publicPort"
        ]
    );
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  ingress:\n    publicPort: 0\n    availableServices:\n    - tags: {version: v1}\n      mesh: Bad\n  inbound:\n  - port: 10001\n    servicePort: 1\n    serviceAddress: 1.1.1.1\n    address: 10.0.0.1\n    tags: {kuma.io/service: ingress, kuma.io/protocol: http}\n",
    ));
    assert_eq!(
        f,
        [
            "networking.ingress.publicAddress",
            "networking.ingress.publicPort",
            r#"networking.ingress.availableServices[0].tags["kuma.io/service"]"#,
            "networking.ingress.availableServices[0].mesh",
            "networking.inbound[0].servicePort",
            "networking.inbound[0].serviceAddress",
            "networking.inbound[0].address",
            r#"networking.inbound[0].tags["kuma.io/protocol"]"#,
        ]
    );
    let f = fields(&dp(
        "networking:\n  address: 10.0.0.1\n  ingress: {publicAddress: 'x y', publicPort: 99999}\n  inbound:\n  - port: 1\n    tags: {kuma.io/service: i}\n  - port: 2\n    tags: {kuma.io/service: i}\n",
    ));
    assert_eq!(
        f,
        [
            "networking",
            "networking.ingress.publicAddress",
            "networking.ingress.publicPort"
        ]
    );
}

#[test]
fn transparent_proxying_rules() {
    let base = "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n  transparentProxying:\n";
    let tp = "networking.transparentProxying";
    assert_eq!(
        fields(&dp(&format!(
            "{base}    redirectPortInbound: 0\n    redirectPortOutbound: 70000\n    redirectPortInboundV6: 0\n"
        ))),
        [
            format!("{tp}.redirectPortInbound"),
            format!("{tp}.redirectPortOutbound"),
            format!("{tp}.redirectPortInboundV6")
        ]
    );
    assert_eq!(
        fields(&dp(&format!(
            "{base}    directAccessServices: ['', 'a b']\n"
        ))),
        [
            format!("{tp}.redirectPortInbound"),
            format!("{tp}.redirectPortOutbound"),
            format!("{tp}.directAccessServices[0]"),
            format!("{tp}.directAccessServices[1]")
        ]
    );
    assert_eq!(
        fields(&dp(&format!(
            "{base}    redirectPortInbound: 15001\n    redirectPortOutbound: 15001\n"
        ))),
        [format!("{tp}.redirectPortOutbound")]
    );
}

#[test]
fn metrics_and_probes_rules() {
    let base = "networking:\n  address: 10.0.0.1\n  inbound:\n  - port: 80\n    tags: {kuma.io/service: a}\n";
    assert_eq!(
        fields(&dp(&format!("{base}metrics:\n  type: statsd\n"))),
        ["metrics.type"]
    );
    assert_eq!(
        fields(&dp(&format!(
            "{base}metrics:\n  type: prometheus\n  conf: {{port: 0, bogus: 1}}\n"
        ))),
        ["metrics.conf.bogus"]
    );
    assert_eq!(
        fields(&dp(&format!(
            "{base}metrics:\n  type: prometheus\n  conf: {{port: 0}}\n"
        ))),
        ["metrics.conf.port"]
    );
    assert_eq!(
        fields(&dp(&format!(
            "{base}probes:\n  port: 0\n  endpoints:\n  - inboundPort: 70000\n    inboundPath: healthz\n    path: ''\n"
        ))),
        [
            "probes.port",
            "probes.endpoints[0].inboundPort",
            "probes.endpoints[0].inboundPath",
            "probes.endpoints[0].path"
        ]
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    for (body, path) in [
        (
            "networking:\n  inbound:\n  - port: 80\n    bogus: 1\n",
            "networking.inbound[0].bogus",
        ),
        (
            "networking:\n  outbound:\n  - port: 80\n    bogus: 1\n",
            "networking.outbound[0].bogus",
        ),
        ("networking:\n  bogus: 1\n", "networking.bogus"),
        (
            "networking:\n  gateway: {bogus: 1}\n",
            "networking.gateway.bogus",
        ),
        (
            "networking:\n  ingress: {bogus: 1}\n",
            "networking.ingress.bogus",
        ),
        (
            "networking:\n  transparentProxying: {bogus: 1}\n",
            "networking.transparentProxying.bogus",
        ),
        (
            "networking:\n  inbound:\n  - health: {bogus: 1}\n",
            "networking.inbound[0].health.bogus",
        ),
        ("probes: {bogus: 1}\n", "probes.bogus"),
        ("bogus: 1\n", "bogus"),
    ] {
        assert_eq!(decode_error_field(&dp(body)), path, "{body}");
    }
}

#[test]
fn every_problem_is_reported() {
    let yaml = dp(r#"networking:
  inbound:
  - port: 0
    tags:
      version: v1
  - port: 8080
    servicePort: 8080
    serviceAddress: 127.0.0.1
    address: 127.0.0.1
    tags:
      kuma.io/service: web
      kuma.io/protocol: smtp
  outbound:
  - port: 70000
    tags:
      kuma.io/service: db
  - port: 1234
  gateway:
    tags:
      kuma.io/service: gw
"#);
    let f = fields(&yaml);
    assert_eq!(
        f,
        [
            "networking.address",
            "networking",
            "networking.inbound[0].port",
            r#"networking.inbound[0].tags["kuma.io/service"]"#,
            r#"networking.inbound[1].tags["kuma.io/protocol"]"#,
            "networking.inbound[1].serviceAddress",
            "networking.outbound[0].port",
            r#"networking.outbound[1].tags["kuma.io/service"]"#,
        ]
    );
}

#[test]
fn host_port() {
    let check = |s: &str| {
        let mut v = Validator::new();
        check_host_port(&FieldPath::from("a"), s, &mut v);
        v.is_ok()
    };
    assert!(check("example.com:443"));
    assert!(check("10.0.0.1:5000"));
    assert!(check("[::1]:5000"));
    for bad in [
        "example.com",
        "example.com:0",
        ":80",
        "a b:80",
        "::1:80",
        "host:x",
        "host:70000",
    ] {
        assert!(!check(bad), "{bad}");
    }
    assert!(is_hostname("kuma-cp.kuma-system.svc"));
    assert!(!is_hostname("-a.b"));
}
