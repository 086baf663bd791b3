use super::*;
use crate::resource::{DataSource, Resource};

fn parse(yaml: &str) -> Resource {
    Resource::from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn round_trip(yaml: &str) -> Resource {
    let res = parse(yaml);
    res.validate().unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let out = res.to_yaml();
    assert_eq!(Resource::from_yaml(&out).unwrap(), res, "{out}");
    let a: Value = serde_yaml_ng::from_str(yaml).unwrap();
    let b: Value = serde_yaml_ng::from_str(&out).unwrap();
    assert_eq!(a, b, "input:\n{yaml}\noutput:\n{out}");
    res
}

fn fields(yaml: &str) -> Vec<String> {
    match parse(yaml).validate() {
        Ok(()) => vec![],
        Err(e) => e.violations.into_iter().map(|v| v.field).collect(),
    }
}

fn mesh(body: &str) -> String {
    format!("type: Mesh\nname: default\n{body}")
}

const FULL: &str = r#"type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    dpCert:
      rotation:
        expiration: 1d
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
  - name: ca-2
    type: provided
    dpCert:
      rotation:
        expiration: 10h
    conf:
      cert:
        secret: provided-ca-cert
      key:
        file: /etc/kuma/ca.key
    mode: PERMISSIVE
tracing:
  defaultBackend: jaeger-collector
  backends:
  - name: jaeger-collector
    sampling: 100
    type: zipkin
    conf:
      url: http://jaeger-collector.kuma-tracing:9411/api/v2/spans
  - name: zipkin-partial
    sampling: 12.5
    type: zipkin
    conf:
      url: https://zipkin.local:9411/api/v2/spans
      traceId128bit: true
      apiVersion: httpProto
  - name: datadog
    type: datadog
    conf:
      address: 127.0.0.1
      port: 8126
logging:
  defaultBackend: file
  backends:
  - name: logstash
    format: '{"start_time": "%START_TIME%", "source": "%KUMA_SOURCE_SERVICE%"}'
    type: tcp
    conf:
      address: 127.0.0.1:5000
  - name: file
    type: file
    conf:
      path: /tmp/access.log
metrics:
  enabledBackend: prometheus-1
  backends:
  - name: prometheus-1
    type: prometheus
    conf:
      skipMTLS: false
      port: 5670
      path: /metrics
      tags:
        kuma.io/service: dataplane-metrics
networking:
  outbound:
    passthrough: false
routing:
  localityAwareLoadBalancing: true
"#;

#[test]
fn full_mesh() {
    let res = round_trip(FULL);
    let m = res.spec_as::<MeshSpec>().unwrap();
    let ca = m.enabled_ca().unwrap();
    assert_eq!(ca.name, "ca-1");
    assert_eq!(
        ca.dp_cert_expiration().unwrap().as_duration().as_secs(),
        86_400
    );
    let b = ca.builtin_config().unwrap();
    assert_eq!(b.ca_cert.unwrap().rsa_bits, Some(2048));
    assert!(ca.provided_config().is_none());
    let p = m.mtls.as_ref().unwrap().backends[1]
        .provided_config()
        .unwrap();
    assert_eq!(p.cert, Some(DataSource::Secret("provided-ca-cert".into())));
    assert_eq!(
        m.mtls.as_ref().unwrap().backends[1].mode,
        Some(MtlsMode::Permissive)
    );
    let prom = m.enabled_metrics().unwrap().prometheus_config().unwrap();
    assert_eq!(
        (prom.port_or_default(), prom.path_or_default()),
        (5670, "/metrics")
    );
    assert_eq!(prom.skip_mtls, Some(false));
    assert_eq!(
        m.logging_backend(None)
            .unwrap()
            .file_config()
            .unwrap()
            .path
            .as_deref(),
        Some("/tmp/access.log")
    );
    assert_eq!(
        m.logging_backend(Some("logstash"))
            .unwrap()
            .tcp_config()
            .unwrap()
            .address
            .as_deref(),
        Some("127.0.0.1:5000")
    );
    assert!(m.logging_backend(Some("nope")).is_none());
    let t = m.tracing_backend(None).unwrap();
    assert_eq!(t.sampling_or_default(), 100.0);
    assert!(t.zipkin_config().unwrap().url.is_some());
    let z = m.tracing_backend(Some("zipkin-partial")).unwrap();
    assert_eq!(z.sampling, Some(12.5));
    assert_eq!(z.zipkin_config().unwrap().trace_id_128bit, Some(true));
    assert_eq!(
        m.tracing_backend(Some("datadog"))
            .unwrap()
            .datadog_config()
            .unwrap()
            .port,
        Some(8126)
    );
    assert!(!m.passthrough());
    assert!(m.locality_aware_load_balancing());
    // Whole sampling values are written as integers.
    assert!(
        res.to_yaml().contains("sampling: 100\n"),
        "{}",
        res.to_yaml()
    );
}

#[test]
fn documented_builtin_and_provided_meshes() {
    round_trip(
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      caCert:\n        RSAbits: 2048\n        expiration: 10y\n",
    );
    round_trip(
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      cert:\n        secret: path-to-secret\n      key:\n        secret: path-to-secret\n",
    );
    let empty = round_trip("type: Mesh\nname: default\n");
    let m = empty.spec_as::<MeshSpec>().unwrap();
    assert!(!m.mtls_enabled() && m.enabled_metrics().is_none() && m.passthrough());
}

#[test]
fn backend_names_must_be_non_empty_and_unique() {
    let f = fields(&mesh(
        "mtls:\n  backends:\n  - name: ''\n    type: builtin\n  - name: a\n    type: builtin\n  - name: a\n    type: builtin\n",
    ));
    assert_eq!(f, ["mtls.backends[0].name", "mtls.backends[2].name"]);
    let f = fields(&mesh(
        "logging:\n  backends:\n  - name: a\n    type: file\n    conf: {path: /a}\n  - name: a\n    type: file\n    conf: {path: /b}\n",
    ));
    assert_eq!(f, ["logging.backends[1].name"]);
    let f = fields(&mesh(
        "tracing:\n  backends:\n  - name: ''\n    type: zipkin\n    conf: {url: 'http://z:9411/'}\n",
    ));
    assert_eq!(f, ["tracing.backends[0].name"]);
    let f = fields(&mesh(
        "metrics:\n  backends:\n  - name: p\n    type: prometheus\n  - name: p\n    type: prometheus\n",
    ));
    assert_eq!(f, ["metrics.backends[1].name"]);
}

#[test]
fn selected_backends_must_exist() {
    assert_eq!(
        fields(&mesh("mtls:\n  enabledBackend: ca-1\n")),
        ["mtls.enabledBackend"]
    );
    assert_eq!(
        fields(&mesh(
            "metrics:\n  enabledBackend: x\n  backends:\n  - name: p\n    type: prometheus\n"
        )),
        ["metrics.enabledBackend"]
    );
    assert_eq!(
        fields(&mesh("logging:\n  defaultBackend: x\n")),
        ["logging.defaultBackend"]
    );
    assert_eq!(
        fields(&mesh("tracing:\n  defaultBackend: x\n")),
        ["tracing.defaultBackend"]
    );
    // An empty name means "off".
    assert!(fields(&mesh("mtls:\n  enabledBackend: ''\n")).is_empty());
}

#[test]
fn unknown_backend_types_are_rejected() {
    assert_eq!(
        fields(&mesh("mtls:\n  backends:\n  - name: a\n    type: vault\n")),
        ["mtls.backends[0].type"]
    );
    assert_eq!(
        fields(&mesh("mtls:\n  backends:\n  - name: a\n")),
        ["mtls.backends[0].type"]
    );
    assert_eq!(
        fields(&mesh(
            "metrics:\n  backends:\n  - name: a\n    type: statsd\n"
        )),
        ["metrics.backends[0].type"]
    );
    assert_eq!(
        fields(&mesh(
            "logging:\n  backends:\n  - name: a\n    type: syslog\n"
        )),
        ["logging.backends[0].type"]
    );
    assert_eq!(
        fields(&mesh(
            "tracing:\n  backends:\n  - name: a\n    type: jaeger\n"
        )),
        ["tracing.backends[0].type"]
    );
}

#[test]
fn builtin_conf_rules() {
    let b = "mtls:\n  backends:\n  - name: a\n    type: builtin\n    conf:\n";
    assert_eq!(
        fields(&mesh(&format!("{b}      bogus: 1\n"))),
        ["mtls.backends[0].conf.bogus"]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}      caCert: {{bits: 1}}\n"))),
        ["mtls.backends[0].conf.caCert.bits"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}      caCert: {{expiration: forever}}\n"
        ))),
        ["mtls.backends[0].conf.caCert.expiration"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}      caCert: {{expiration: 0s, RSAbits: 512}}\n"
        ))),
        [
            "mtls.backends[0].conf.caCert.RSAbits",
            "mtls.backends[0].conf.caCert.expiration"
        ]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}      caCert: {{RSAbits: -1}}\n"))),
        ["mtls.backends[0].conf.caCert.RSAbits"]
    );
}

#[test]
fn dp_cert_expiration_must_parse() {
    let e = Resource::from_yaml(&mesh(
            "mtls:\n  backends:\n  - name: a\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1 day\n",
        ))
        .unwrap_err();
    assert_eq!(
        e.violations()[0].field,
        "mtls.backends[0].dpCert.rotation.expiration"
    );
    assert_eq!(
        fields(&mesh(
            "mtls:\n  backends:\n  - name: a\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 0s\n"
        )),
        ["mtls.backends[0].dpCert.rotation.expiration"]
    );
}

#[test]
fn provided_conf_rules() {
    let b = "mtls:\n  backends:\n  - name: a\n    type: provided\n";
    assert_eq!(
        fields(&mesh(b)),
        ["mtls.backends[0].conf.cert", "mtls.backends[0].conf.key"]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}    conf:\n      cert: {{secret: c}}\n"))),
        ["mtls.backends[0].conf.key"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    conf:\n      cert: {{inline: '%%%'}}\n      key: {{file: ''}}\n"
        ))),
        [
            "mtls.backends[0].conf.cert.inline",
            "mtls.backends[0].conf.key.file"
        ]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    conf:\n      cert: {{vault: x}}\n      key: {{file: /k}}\n"
        ))),
        ["mtls.backends[0].conf.cert"]
    );
}

#[test]
fn mode_must_be_known() {
    let e = Resource::from_yaml(&mesh(
        "mtls:\n  backends:\n  - name: a\n    type: builtin\n    mode: LAX\n",
    ))
    .unwrap_err();
    assert_eq!(e.violations()[0].field, "mtls.backends[0].mode");
}

#[test]
fn prometheus_conf_rules() {
    let b = "metrics:\n  backends:\n  - name: p\n    type: prometheus\n    conf:\n";
    assert_eq!(
        fields(&mesh(&format!(
            "{b}      port: 0\n      path: metrics\n      tags: {{'bad key': v}}\n"
        ))),
        [
            "metrics.backends[0].conf.port",
            "metrics.backends[0].conf.path",
            r#"metrics.backends[0].conf.tags["bad key"]"#
        ]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}      port: 70000\n"))),
        ["metrics.backends[0].conf.port"]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}      skipMtls: true\n"))),
        ["metrics.backends[0].conf.skipMtls"]
    );
}

#[test]
fn logging_conf_rules() {
    let b = "logging:\n  backends:\n  - name: l\n";
    assert_eq!(
        fields(&mesh(&format!("{b}    type: file\n"))),
        ["logging.backends[0].conf.path"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    type: file\n    conf: {{path: ''}}\n"
        ))),
        ["logging.backends[0].conf.path"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    type: file\n    conf: {{file: /a}}\n"
        ))),
        ["logging.backends[0].conf.file"]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}    type: tcp\n"))),
        ["logging.backends[0].conf.address"]
    );
    for bad in ["logstash", "logstash:0", "a b:5000"] {
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: tcp\n    conf: {{address: '{bad}'}}\n"
            ))),
            ["logging.backends[0].conf.address"],
            "{bad}"
        );
    }
}

#[test]
fn tracing_conf_rules() {
    let b = "tracing:\n  backends:\n  - name: t\n";
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    sampling: 100.5\n    type: zipkin\n    conf: {{url: 'http://z:9411'}}\n"
        ))),
        ["tracing.backends[0].sampling"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    sampling: -1\n    type: zipkin\n    conf: {{url: 'http://z:9411'}}\n"
        ))),
        ["tracing.backends[0].sampling"]
    );
    assert_eq!(
        fields(&mesh(&format!("{b}    type: zipkin\n"))),
        ["tracing.backends[0].conf.url"]
    );
    for bad in ["ftp://z:9411/", "http://z/api", "z:9411", "http://:9411/"] {
        assert_eq!(
            fields(&mesh(&format!(
                "{b}    type: zipkin\n    conf: {{url: '{bad}'}}\n"
            ))),
            ["tracing.backends[0].conf.url"],
            "{bad}"
        );
    }
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    type: zipkin\n    conf: {{url: 'http://z:9411/', apiVersion: grpc}}\n"
        ))),
        ["tracing.backends[0].conf.apiVersion"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    type: zipkin\n    conf: {{url: 'http://z:9411/', traceId128Bit: true}}\n"
        ))),
        ["tracing.backends[0].conf.traceId128Bit"]
    );
    assert_eq!(
        fields(&mesh(&format!(
            "{b}    type: datadog\n    conf: {{port: 0}}\n"
        ))),
        [
            "tracing.backends[0].conf.address",
            "tracing.backends[0].conf.port"
        ]
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    for (body, path) in [
        ("bogus: 1\n", "bogus"),
        ("mtls: {bogus: 1}\n", "mtls.bogus"),
        (
            "mtls:\n  backends:\n  - name: a\n    bogus: 1\n",
            "mtls.backends[0].bogus",
        ),
        (
            "mtls:\n  backends:\n  - dpCert: {rotation: {bogus: 1}}\n",
            "mtls.backends[0].dpCert.rotation.bogus",
        ),
        (
            "tracing:\n  backends:\n  - bogus: 1\n",
            "tracing.backends[0].bogus",
        ),
        ("logging: {bogus: 1}\n", "logging.bogus"),
        (
            "metrics:\n  backends:\n  - bogus: 1\n",
            "metrics.backends[0].bogus",
        ),
        (
            "networking: {outbound: {bogus: 1}}\n",
            "networking.outbound.bogus",
        ),
        ("routing: {bogus: 1}\n", "routing.bogus"),
    ] {
        let e = Resource::from_yaml(&mesh(body)).unwrap_err();
        assert_eq!(e.violations()[0].field, path, "{body}");
    }
}

#[test]
fn every_problem_is_reported() {
    let f = fields(&mesh(
        "mtls:\n  enabledBackend: x\n  backends:\n  - name: a\n    type: vault\nlogging:\n  backends:\n  - name: l\n    type: file\nmetrics:\n  backends:\n  - name: m\n    type: prometheus\n    conf: {port: 0}\n",
    ));
    assert_eq!(
        f,
        [
            "mtls.enabledBackend",
            "mtls.backends[0].type",
            "logging.backends[0].conf.path",
            "metrics.backends[0].conf.port"
        ]
    );
}
