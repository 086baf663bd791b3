use super::super::super::network_filter::HCM;
use super::super::super::{DataplanePolicies, OutboundPolicies, Protocol, build};
use super::*;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use kuma_core::resource::{DataplaneSpec, MeshSpec, TrafficLogSpec};
use prost::Message;
use std::collections::BTreeMap;

use super::super::edit::testing::spec;

const DP: &str = "type: Dataplane\nmesh: m\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 8080\n    servicePort: 9000\n    tags:\n      kuma.io/service: web\n  outbound:\n  - port: 10001\n    tags:\n      kuma.io/service: backend\n  - port: 10002\n    tags:\n      kuma.io/service: redis\n  - port: 10003\n    tags:\n      kuma.io/service: other\n";

const MESH: &str = "type: Mesh\nname: m\nlogging:\n  defaultBackend: file\n  backends:\n  - name: file\n    type: file\n    conf:\n      path: /tmp/access.log\n  - name: logstash\n    type: tcp\n    format: '%KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %START_TIME%'\n    conf:\n      address: logstash.local:5000\n";

const LOG: &str = "type: TrafficLog\nmesh: m\nname: l\nsources:\n- match:\n    kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n";

fn run(mesh: &MeshSpec, backend_log: &TrafficLogSpec, redis_log: &TrafficLogSpec) -> ProxyConfig {
    let dp: DataplaneSpec = spec(DP);
    let policies = BTreeMap::from([
        (
            "backend".to_string(),
            OutboundPolicies {
                traffic_log: Some(backend_log),
                ..Default::default()
            },
        ),
        (
            "redis".to_string(),
            OutboundPolicies {
                traffic_log: Some(redis_log),
                ..Default::default()
            },
        ),
    ]);
    let protocols = BTreeMap::from([("backend".to_string(), Protocol::Http)]);
    let vips = BTreeMap::new();
    let input = ProxyInput {
        mesh: "m",
        name: "web-1",
        dataplane: &dp,
        mesh_spec: Some(mesh),
        outbound_policies: &policies,
        inbound_policies: &[],
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

fn logs_of(config: &ProxyConfig, listener: &str) -> Vec<AccessLog> {
    let l = config
        .listeners
        .iter()
        .find(|l| l.name == listener)
        .unwrap();
    let f = &l.filter_chains[0].filters[0];
    let Some(FilterConfig::TypedConfig(any)) = &f.config_type else {
        panic!("no typed config");
    };
    if f.name == HCM {
        HttpConnectionManager::decode(any.value.as_slice())
            .unwrap()
            .access_log
    } else {
        TcpProxy::decode(any.value.as_slice()).unwrap().access_log
    }
}

#[test]
fn file_on_http_and_fluentd_on_tcp() {
    let mesh: MeshSpec = spec(MESH);
    let default: TrafficLogSpec = spec(LOG);
    let tcp: TrafficLogSpec = spec(&format!("{LOG}conf:\n  backend: logstash\n"));
    let config = run(&mesh, &default, &tcp);

    let http = logs_of(&config, "outbound:127.0.0.1:10001");
    assert_eq!(http.len(), 1);
    assert_eq!(http[0].name, "envoy.access_loggers.file");
    let Some(AccessLogConfig::TypedConfig(any)) = &http[0].config_type else {
        panic!()
    };
    let file = FileAccessLog::decode(any.value.as_slice()).unwrap();
    assert_eq!(file.path, "/tmp/access.log");
    let Some(AccessLogFormat::LogFormat(f)) = file.access_log_format else {
        panic!()
    };
    let Some(Format::TextFormatSource(DataSource {
        specifier: Some(Specifier::InlineString(text)),
        ..
    })) = f.format
    else {
        panic!()
    };
    assert!(
        text.starts_with("[%START_TIME%] m \"%REQ(:METHOD)%"),
        "{text}"
    );
    assert!(
        text.ends_with("\"web\" \"backend\" \"10.0.0.1\" \"%UPSTREAM_HOST%\"\n"),
        "{text}"
    );

    let tcp_logs = logs_of(&config, "outbound:127.0.0.1:10002");
    assert_eq!(tcp_logs.len(), 1);
    assert_eq!(tcp_logs[0].name, "envoy.access_loggers.fluentd");
    let Some(AccessLogConfig::TypedConfig(any)) = &tcp_logs[0].config_type else {
        panic!()
    };
    let fl = FluentdAccessLogConfig::decode(any.value.as_slice()).unwrap();
    assert_eq!(fl.cluster, "access_log:logstash");
    let msg = &fl.record.unwrap().fields["message"];
    assert_eq!(
        msg.kind,
        Some(Kind::StringValue("web->redis %START_TIME%\n".into()))
    );
    assert!(
        config
            .clusters
            .iter()
            .any(|c| c.name == "access_log:logstash")
    );

    // No TrafficLog for `other`: no access log.
    assert!(logs_of(&config, "outbound:127.0.0.1:10003").is_empty());
    // Inbounds are not logged.
    assert!(logs_of(&config, "inbound:10.0.0.1:8080").is_empty());
}

#[test]
fn no_backend_no_log() {
    let mut mesh: MeshSpec = spec(MESH);
    let missing: TrafficLogSpec = spec(&format!("{LOG}conf:\n  backend: nope\n"));
    let default: TrafficLogSpec = spec(LOG);
    let config = run(&mesh, &missing, &missing);
    assert!(logs_of(&config, "outbound:127.0.0.1:10001").is_empty());
    assert!(logs_of(&config, "outbound:127.0.0.1:10002").is_empty());
    // No default backend: a TrafficLog without one logs nothing.
    if let Some(l) = mesh.logging.as_mut() {
        l.default_backend = None;
    }
    let config = run(&mesh, &default, &default);
    assert!(logs_of(&config, "outbound:127.0.0.1:10001").is_empty());
    assert!(
        !config
            .clusters
            .iter()
            .any(|c| c.name.starts_with("access_log:"))
    );
}

/// Kuma's rendering: each placeholder replaced in turn.
fn replaced(format: &str, vars: &Vars<'_>) -> String {
    let mut out = format
        .replace("%KUMA_MESH%", vars.mesh)
        .replace("%KUMA_SOURCE_SERVICE%", vars.source)
        .replace("%KUMA_DESTINATION_SERVICE%", vars.destination)
        .replace("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", vars.address)
        .replace("%KUMA_SOURCE_ADDRESS%", vars.address);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

#[test]
fn one_pass_rendering_is_replacing_in_turn() {
    let vars = Vars {
        mesh: "m",
        source: "web",
        destination: "redis",
        address: "10.0.0.1",
    };
    for format in [
        DEFAULT_HTTP_FORMAT,
        DEFAULT_TCP_FORMAT,
        "",
        "%",
        "%KUMA_",
        "%KUMA_MESH",
        "%%KUMA_MESH%%",
        "%KUMA_FOO%KUMA_MESH%",
        "%KUMA_SOURCE_ADDRESS%-%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\n",
        "é%KUMA_DESTINATION_SERVICE%ü%KUMA_SOURCE_SERVICE%",
    ] {
        assert_eq!(
            render_format(format, &vars),
            replaced(format, &vars),
            "{format}"
        );
    }
}

#[test]
fn placeholders_sharing_a_percent_sign_are_read_left_to_right() {
    let vars = Vars {
        mesh: "m",
        source: "web",
        destination: "redis",
        address: "10.0.0.1",
    };
    assert_eq!(
        render_format("%KUMA_MESH%KUMA_SOURCE_SERVICE%", &vars),
        "mKUMA_SOURCE_SERVICE%\n"
    );
}

#[test]
fn tcp_default_format() {
    let vars = Vars {
        mesh: "m",
        source: "web",
        destination: "redis",
        address: "10.0.0.1",
    };
    assert_eq!(
        render_format(DEFAULT_TCP_FORMAT, &vars),
        "[%START_TIME%] %RESPONSE_FLAGS% m 10.0.0.1(web)->%UPSTREAM_HOST%(redis) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n"
    );
}
