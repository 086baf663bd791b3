//! Tests of the configuration loader.

use super::env::{env_for_key, env_name};
use super::keys::{ENV_KEYS, EnvKey};
use super::*;
use ipnet::Ipv4Net;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Writes `text` to a fresh file under the temp directory.
fn temp_file(text: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kuma-cp-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("config-{n}.yaml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_yaml(text: &str) -> Result<KumaCpConfig, ConfigError> {
    load(Some(&temp_file(text)), &[])
}

fn load_env(vars: &[(&str, &str)]) -> Result<KumaCpConfig, ConfigError> {
    load(None, &env(vars))
}

fn err_yaml(text: &str) -> (String, PathBuf) {
    let path = temp_file(text);
    let err = load(Some(&path), &[]).unwrap_err().to_string();
    (err, path)
}

fn err_env(vars: &[(&str, &str)]) -> String {
    load_env(vars).unwrap_err().to_string()
}

/// Builds `a: {b: {c: value}}` from `a.b.c`.
fn nested_yaml(key: &str, value: serde_yaml_ng::Value) -> String {
    let mut value = value;
    for part in key.rsplit('.') {
        let mut map = serde_yaml_ng::Mapping::new();
        map.insert(part.into(), value);
        value = serde_yaml_ng::Value::Mapping(map);
    }
    serde_yaml_ng::to_string(&value).unwrap()
}

/// Every leaf key of a YAML mapping, dotted.
fn leaf_keys(value: &serde_yaml_ng::Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        serde_yaml_ng::Value::Mapping(map) => {
            for (k, v) in map {
                let k = k.as_str().unwrap();
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                leaf_keys(v, &key, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn defaults_match_design() {
    let c = load(None, &[]).unwrap();
    assert_eq!(c, KumaCpConfig::default());
    assert_eq!(c.mode, Mode::Standalone);
    assert_eq!(c.store.store_type, StoreType::Local);
    assert_eq!(c.store.local.path, "kuma-cp-data");
    assert_eq!(c.store.postgres.host, "127.0.0.1");
    assert_eq!(c.store.postgres.port, 15432);
    assert_eq!(c.store.postgres.user, "kuma");
    assert_eq!(c.store.postgres.password, "kuma");
    assert_eq!(c.store.postgres.db_name, "kuma");
    assert_eq!(c.general.advertised_hostname, "localhost");
    assert_eq!(c.monitoring_assignment_server.grpc_port, 5676);
    assert_eq!(c.sds_server.grpc_port, 5677);
    assert_eq!(c.xds_server.grpc_port, 5678);
    assert_eq!(c.admin_server.local.port, 5679);
    assert_eq!(c.xds_server.diagnostics_port, 5680);
    assert_eq!(c.api_server.port, 5681);
    assert!(!c.api_server.read_only);
    assert_eq!(c.bootstrap_server.port, 5682);
    assert_eq!(c.bootstrap_server.params.xds_host, None);
    assert_eq!(c.bootstrap_server.params.xds_port, 5678);
    assert_eq!(c.dp_server.auth.auth_type, DpAuthType::DpToken);
    assert_eq!(c.multizone.global.kds.grpc_port, 5685);
    assert_eq!(c.multizone.remote.zone, "");
    assert_eq!(c.multizone.remote.global_address, "");
    assert_eq!(c.dns_server.domain, "mesh");
    assert_eq!(c.dns_server.port, 5653);
    assert_eq!(c.dns_server.cidr, "240.0.0.0/4".parse::<Ipv4Net>().unwrap());
    assert!(!c.defaults.skip_mesh_creation);
    assert!(
        c.runtime
            .kubernetes
            .sidecar_traffic
            .exclude_inbound_ports
            .is_empty()
    );
    assert!(
        c.runtime
            .kubernetes
            .sidecar_traffic
            .exclude_outbound_ports
            .is_empty()
    );
    assert_eq!(
        c.runtime.universal.dataplane_cleanup_age,
        std::time::Duration::from_secs(30)
    );
    assert!(c.ignored_env.is_empty());
}

#[test]
fn file_overrides_defaults() {
    let c = load_yaml(
        "mode: global\n\
         store:\n  type: postgres\n  postgres:\n    host: db\n    dbName: k\n\
         xdsServer:\n  grpcPort: 6000\n\
         apiServer:\n  readOnly: true\n\
         bootstrapServer:\n  params:\n    xdsHost: cp.example\n\
         dnsServer:\n  CIDR: 10.1.2.3/8\n\
         runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInboundPorts: [8080, \"9090\"]\n      excludeOutboundPorts: \"53, 443\"\n",
    )
    .unwrap();
    assert_eq!(c.mode, Mode::Global);
    assert_eq!(c.store.store_type, StoreType::Postgres);
    assert_eq!(c.store.postgres.host, "db");
    assert_eq!(c.store.postgres.db_name, "k");
    assert_eq!(c.store.postgres.port, 15432, "untouched keys keep defaults");
    assert_eq!(c.xds_server.grpc_port, 6000);
    assert_eq!(c.xds_server.diagnostics_port, 5680);
    assert!(c.api_server.read_only);
    assert_eq!(
        c.bootstrap_server.params.xds_host.as_deref(),
        Some("cp.example")
    );
    assert_eq!(
        c.dns_server.cidr.to_string(),
        "10.0.0.0/8",
        "host bits cleared"
    );
    assert_eq!(
        c.runtime.kubernetes.sidecar_traffic.exclude_inbound_ports,
        vec![8080, 9090]
    );
    assert_eq!(
        c.runtime.kubernetes.sidecar_traffic.exclude_outbound_ports,
        vec![53, 443]
    );
}

#[test]
fn empty_file_and_null_sections_mean_defaults() {
    assert_eq!(load_yaml("").unwrap(), KumaCpConfig::default());
    assert_eq!(
        load_yaml("# only a comment\n").unwrap(),
        KumaCpConfig::default()
    );
    assert_eq!(
        load_yaml("xdsServer:\nstore:\n  postgres: ~\n").unwrap(),
        KumaCpConfig::default()
    );
}

#[test]
fn env_overrides_file() {
    let path = temp_file("xdsServer:\n  grpcPort: 6000\n  diagnosticsPort: 6001\nmode: global\n");
    let c = load(
        Some(&path),
        &env(&[
            ("KUMA_XDS_SERVER_GRPC_PORT", "7000"),
            ("KUMA_MODE", "standalone"),
        ]),
    )
    .unwrap();
    assert_eq!(c.xds_server.grpc_port, 7000);
    assert_eq!(c.xds_server.diagnostics_port, 6001);
    assert_eq!(c.mode, Mode::Standalone);
}

#[test]
fn last_occurrence_of_an_env_var_wins() {
    let c = load_env(&[("KUMA_API_SERVER_PORT", "1"), ("KUMA_API_SERVER_PORT", "2")]).unwrap();
    assert_eq!(c.api_server.port, 2);
}

#[test]
fn table_has_exactly_the_design_env_names() {
    let mut names: Vec<String> = ENV_KEYS.iter().map(EnvKey::env).collect();
    names.sort_unstable();
    let mut expected = vec![
        "KUMA_MODE",
        "KUMA_STORE_TYPE",
        "KUMA_STORE_LOCAL_PATH",
        "KUMA_STORE_POSTGRES_HOST",
        "KUMA_STORE_POSTGRES_PORT",
        "KUMA_STORE_POSTGRES_USER",
        "KUMA_STORE_POSTGRES_PASSWORD",
        "KUMA_STORE_POSTGRES_DB_NAME",
        "KUMA_STORE_POSTGRES_TLS_MODE",
        "KUMA_STORE_POSTGRES_TLS_CA_PATH",
        "KUMA_STORE_POSTGRES_TLS_CERT_PATH",
        "KUMA_STORE_POSTGRES_TLS_KEY_PATH",
        "KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS",
        "KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT",
        "KUMA_GENERAL_ADVERTISED_HOSTNAME",
        "KUMA_GENERAL_TLS_CERT_FILE",
        "KUMA_GENERAL_TLS_KEY_FILE",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
        "KUMA_SDS_SERVER_GRPC_PORT",
        "KUMA_XDS_SERVER_GRPC_PORT",
        "KUMA_ADMIN_SERVER_LOCAL_PORT",
        "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
        "KUMA_API_SERVER_PORT",
        "KUMA_API_SERVER_READ_ONLY",
        "KUMA_API_SERVER_AUTH_ALLOW_FROM_LOCALHOST",
        "KUMA_LIMITS_HTTP_MAX_CONNECTIONS",
        "KUMA_LIMITS_HTTP_HEADER_READ_TIMEOUT",
        "KUMA_LIMITS_HTTP_REQUEST_TIMEOUT",
        "KUMA_LIMITS_HTTP_MAX_BODY_BYTES",
        "KUMA_LIMITS_GRPC_MAX_CONCURRENT_STREAMS",
        "KUMA_LIMITS_GRPC_MAX_MESSAGE_BYTES",
        "KUMA_LIMITS_GRPC_FIRST_REQUEST_TIMEOUT",
        "KUMA_BOOTSTRAP_SERVER_PORT",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT",
        "KUMA_DP_SERVER_AUTH_TYPE",
        "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
        "KUMA_MULTIZONE_REMOTE_ZONE",
        "KUMA_MULTIZONE_REMOTE_GLOBAL_ADDRESS",
        "KUMA_DNS_SERVER_DOMAIN",
        "KUMA_DNS_SERVER_PORT",
        "KUMA_DNS_SERVER_CIDR",
        "KUMA_DEFAULTS_SKIP_MESH_CREATION",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
        "KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    let mut keys: Vec<&str> = ENV_KEYS.iter().map(|k| k.key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        ENV_KEYS.len(),
        "a key appears twice in the table"
    );
}

#[test]
fn table_covers_every_yaml_key() {
    let yaml: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&KumaCpConfig::default().to_yaml()).unwrap();
    let mut leaves = Vec::new();
    leaf_keys(&yaml, "", &mut leaves);
    let mut table: Vec<String> = ENV_KEYS.iter().map(|k| k.key.to_string()).collect();
    leaves.sort();
    table.sort();
    assert_eq!(leaves, table);
}

#[test]
fn every_env_var_of_the_table_takes_effect_like_its_file_key() {
    let default = KumaCpConfig::default();
    for entry in ENV_KEYS {
        let var = entry.env();
        let from_env = load_env(&[(&var, entry.example)]).unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_ne!(from_env, default, "{var} changed nothing");
        assert_eq!((entry.get)(&from_env), entry.example, "{var}");
        assert_ne!(
            (entry.get)(&default),
            entry.example,
            "{var}: example is the default"
        );
        // Exactly this key changed: applying the example to the defaults
        // by hand gives the same configuration.
        let mut by_hand = default.clone();
        (entry.apply)(&mut by_hand, entry.example).unwrap();
        assert_eq!(from_env, by_hand, "{var}");

        // The same value through the file, under the table's key.
        let yaml = nested_yaml(
            entry.key,
            serde_yaml_ng::Value::String(entry.example.into()),
        );
        let from_file = load_yaml(&yaml).unwrap_or_else(|e| panic!("{}: {e}", entry.key));
        assert_eq!(from_file, from_env, "{} vs {var}", entry.key);
    }
}

#[test]
fn bad_env_values_name_key_and_variable() {
    assert_eq!(
        err_env(&[("KUMA_MODE", "foo")]),
        r#"invalid configuration: mode (KUMA_MODE): unknown mode "foo", expected one of standalone, global, remote (zone)"#
    );
    assert_eq!(
        err_env(&[("KUMA_XDS_SERVER_GRPC_PORT", "70000")]),
        r#"invalid configuration: xdsServer.grpcPort (KUMA_XDS_SERVER_GRPC_PORT): "70000" is not a port (0..=65535)"#
    );
    assert_eq!(
        err_env(&[("KUMA_API_SERVER_PORT", "-1")]),
        r#"invalid configuration: apiServer.port (KUMA_API_SERVER_PORT): "-1" is not a port (0..=65535)"#
    );
    assert_eq!(
        err_env(&[("KUMA_DNS_SERVER_CIDR", "300.0.0.0/4")]),
        r#"invalid configuration: dnsServer.CIDR (KUMA_DNS_SERVER_CIDR): "300.0.0.0/4" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#
    );
    assert_eq!(
        err_env(&[("KUMA_DNS_SERVER_CIDR", "fd00::/8")]),
        r#"invalid configuration: dnsServer.CIDR (KUMA_DNS_SERVER_CIDR): "fd00::/8" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#
    );
    assert_eq!(
        err_env(&[("KUMA_STORE_TYPE", "etcd")]),
        r#"invalid configuration: store.type (KUMA_STORE_TYPE): unknown store type "etcd", expected one of memory, local, postgres"#
    );
    assert_eq!(
        err_env(&[("KUMA_DP_SERVER_AUTH_TYPE", "jwt")]),
        r#"invalid configuration: dpServer.auth.type (KUMA_DP_SERVER_AUTH_TYPE): unknown dataplane authentication type "jwt", expected one of dpToken, none"#
    );
    assert_eq!(
        err_env(&[("KUMA_API_SERVER_READ_ONLY", "yes")]),
        r#"invalid configuration: apiServer.readOnly (KUMA_API_SERVER_READ_ONLY): "yes" is not a boolean (true, false, 1, 0)"#
    );
    assert_eq!(
        err_env(&[(
            "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
            "80,x"
        )]),
        r#"invalid configuration: runtime.kubernetes.sidecarTraffic.excludeInboundPorts (KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS): "x" is not a port (1..=65535)"#
    );
}

#[test]
fn bad_file_values_name_key_and_file() {
    let (err, path) = err_yaml("xdsServer:\n  grpcPort: 70000\n");
    assert_eq!(
        err,
        format!(
            r#"invalid configuration: xdsServer.grpcPort (in {}): "70000" is not a port (0..=65535)"#,
            path.display()
        )
    );
    let (err, path) = err_yaml("dnsServer:\n  CIDR: 300.0.0.0/4\n");
    assert_eq!(
        err,
        format!(
            r#"invalid configuration: dnsServer.CIDR (in {}): "300.0.0.0/4" is not an IPv4 CIDR (e.g. 240.0.0.0/4)"#,
            path.display()
        )
    );
    let (err, path) = err_yaml("mode: foo\n");
    assert_eq!(
        err,
        format!(
            r#"invalid configuration: mode (in {}): unknown mode "foo", expected one of standalone, global, remote (zone)"#,
            path.display()
        )
    );
    let (err, path) = err_yaml("dpServer:\n  auth:\n    type: token\n");
    assert_eq!(
        err,
        format!(
            r#"invalid configuration: dpServer.auth.type (in {}): unknown dataplane authentication type "token", expected one of dpToken, none"#,
            path.display()
        )
    );
    let (err, _) = err_yaml("store:\n  type: etcd\n");
    assert!(
        err.starts_with("invalid configuration: store.type (in "),
        "{err}"
    );
    let (err, _) = err_yaml("apiServer:\n  port:\n");
    assert!(
        err.starts_with("invalid configuration: apiServer.port (in "),
        "{err}"
    );
    assert!(
        err.ends_with("no value given (remove the key to keep the default)"),
        "{err}"
    );
    let (err, _) = err_yaml("apiServer:\n  port: [1, 2]\n");
    assert!(
        err.starts_with("invalid configuration: apiServer.port (in "),
        "{err}"
    );
    let (err, _) = err_yaml(
        "runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeOutboundPorts: [53, 0]\n",
    );
    assert!(
        err.starts_with(
            "invalid configuration: runtime.kubernetes.sidecarTraffic.excludeOutboundPorts"
        ),
        "{err}"
    );
    assert!(err.ends_with(r#""0" is not a port (1..=65535)"#), "{err}");
    let (err, _) = err_yaml("xdsServer: 5678\n");
    assert!(
        err.starts_with("invalid configuration: xdsServer (in "),
        "{err}"
    );
}

#[test]
fn unknown_file_keys_are_rejected_with_their_dotted_path() {
    for (yaml, key) in [
        ("xdsServer:\n  grpcPrt: 1\n", "xdsServer.grpcPrt"),
        ("xdsServers:\n  grpcPort: 1\n", "xdsServers"),
        (
            "runtime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInbound: []\n",
            "runtime.kubernetes.sidecarTraffic.excludeInbound",
        ),
        ("dnsServer:\n  cidr: 10.0.0.0/8\n", "dnsServer.cidr"),
        (
            "store:\n  postgres:\n    db_name: x\n",
            "store.postgres.db_name",
        ),
        ("ignoredEnv: []\n", "ignoredEnv"),
    ] {
        let (err, path) = err_yaml(yaml);
        assert_eq!(
            err,
            format!(
                "invalid configuration: unknown key {key:?} in {}",
                path.display()
            )
        );
    }
}

#[test]
fn unreadable_or_non_yaml_files_are_reported() {
    let missing = std::env::temp_dir().join("kuma-cp-config-test-does-not-exist.yaml");
    let err = load(Some(&missing), &[]).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "invalid configuration: cannot read {}: ",
            missing.display()
        )),
        "{msg}"
    );
    assert!(!msg.contains('\n'));

    let (err, path) = err_yaml("xdsServer:\n  grpcPort: [1\n");
    assert!(
        err.starts_with(&format!(
            "invalid configuration: {} is not a valid YAML configuration: ",
            path.display()
        )),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");

    let (err, path) = err_yaml("- a\n- b\n");
    assert_eq!(
        err,
        format!(
            "invalid configuration: {} is not a valid YAML configuration: the top level must be a mapping of configuration keys",
            path.display()
        )
    );
}

#[test]
fn semantic_checks_name_the_key() {
    assert_eq!(
        err_env(&[("KUMA_MODE", "remote")]),
        "invalid configuration: multizone.remote.zone: must be set when mode is remote (set it in the file or with KUMA_MULTIZONE_REMOTE_ZONE)"
    );
    assert_eq!(
        err_env(&[("KUMA_DNS_SERVER_DOMAIN", "")]),
        "invalid configuration: dnsServer.domain: must not be empty (set it in the file or with KUMA_DNS_SERVER_DOMAIN)"
    );
    let (err, _) = err_yaml("general:\n  advertisedHostname: \"\"\n");
    assert_eq!(
        err,
        "invalid configuration: general.advertisedHostname: must not be empty (set it in the file or with KUMA_GENERAL_ADVERTISED_HOSTNAME)"
    );
}

#[test]
fn dp_server_auth_type_accepts_dp_token_and_none_in_any_case() {
    assert_eq!(
        load_env(&[("KUMA_DP_SERVER_AUTH_TYPE", "NONE")])
            .unwrap()
            .dp_server
            .auth
            .auth_type,
        DpAuthType::None
    );
    let c = load_yaml("dpServer:\n  auth:\n    type: dptoken\n").unwrap();
    assert_eq!(c.dp_server.auth.auth_type, DpAuthType::DpToken);
    let c = load_yaml("dpServer:\n  auth:\n    type: none\n").unwrap();
    assert!(c.to_yaml().contains("dpServer:\n  auth:\n    type: none"));
}

#[test]
fn zone_is_an_alias_of_remote() {
    let c = load_env(&[("KUMA_MODE", "zone"), ("KUMA_MULTIZONE_REMOTE_ZONE", "z1")]).unwrap();
    assert_eq!(c.mode, Mode::Remote);
    assert_eq!(c.mode.to_string(), "remote");
    let c = load_yaml(
        "mode: zone\nmultizone:\n  remote:\n    zone: z1\n    globalAddress: grpcs://g:5685\n",
    )
    .unwrap();
    assert_eq!(c.mode, Mode::Remote);
    assert_eq!(c.multizone.remote.global_address, "grpcs://g:5685");
    assert_eq!("GLOBAL".parse::<Mode>(), Ok(Mode::Global));
    assert_eq!(Mode::Standalone.to_string(), "standalone");
    assert_eq!(Mode::Global.to_string(), "global");
}

#[test]
fn port_zero_means_ephemeral_and_is_accepted() {
    let c = load_env(&[
        ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
        ("KUMA_DNS_SERVER_PORT", "0"),
    ])
    .unwrap();
    assert_eq!(c.xds_server.grpc_port, 0);
    assert_eq!(c.dns_server.port, 0);
    let c = load_yaml("apiServer:\n  port: 0\nadminServer:\n  local:\n    port: 0\n").unwrap();
    assert_eq!(c.api_server.port, 0);
    assert_eq!(c.admin_server.local.port, 0);
}

#[test]
fn booleans_from_env_accept_true_false_1_0() {
    for (text, want) in [
        ("true", true),
        ("TRUE", true),
        ("1", true),
        ("false", false),
        ("0", false),
    ] {
        let c = load_env(&[("KUMA_DEFAULTS_SKIP_MESH_CREATION", text)]).unwrap();
        assert_eq!(c.defaults.skip_mesh_creation, want, "{text}");
    }
}

#[test]
fn empty_list_and_host_from_env() {
    let c = load(
        Some(&temp_file("bootstrapServer:\n  params:\n    xdsHost: h\nruntime:\n  kubernetes:\n    sidecarTraffic:\n      excludeInboundPorts: [1]\n")),
        &env(&[
            ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", ""),
            ("KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS", ""),
        ]),
    )
    .unwrap();
    assert_eq!(c.bootstrap_server.params.xds_host, None);
    assert!(
        c.runtime
            .kubernetes
            .sidecar_traffic
            .exclude_inbound_ports
            .is_empty()
    );
}

#[test]
fn unknown_kuma_env_vars_are_ignored_and_listed() {
    let c = load_env(&[
        ("KUMA_REPORTS_ENABLED", "false"),
        ("PATH", "/bin"),
        ("KUMA_API_SERVER_PORT", "1234"),
        ("KUMA_REPORTS_ENABLED", "true"),
        ("KUMA_GENERAL_WORK_DIR", "/x"),
        ("kuma_mode", "global"),
        ("KUMA_LOG_LEVEL", "debug"),
    ])
    .unwrap();
    assert_eq!(c.api_server.port, 1234);
    assert_eq!(c.mode, Mode::Standalone, "env names are case-sensitive");
    assert_eq!(
        c.ignored_env,
        vec!["KUMA_GENERAL_WORK_DIR", "KUMA_REPORTS_ENABLED"]
    );
}

#[test]
fn effective_yaml_masks_the_password_and_reloads_to_an_equal_config() {
    let c = load(
        Some(&temp_file(
            "store:\n  type: postgres\n  postgres:\n    password: hunter2\n",
        )),
        &env(&[
            ("KUMA_MODE", "zone"),
            ("KUMA_MULTIZONE_REMOTE_ZONE", "z"),
            ("KUMA_DNS_SERVER_CIDR", "10.10.0.0/16"),
            ("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "xds"),
            (
                "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
                "53,443",
            ),
            ("KUMA_API_SERVER_READ_ONLY", "1"),
            ("KUMA_XDS_SERVER_GRPC_PORT", "0"),
        ]),
    )
    .unwrap();
    let yaml = c.to_yaml();
    assert!(!yaml.contains("hunter2"), "{yaml}");
    assert!(
        yaml.contains("password: '*****'") || yaml.contains("password: \"*****\""),
        "{yaml}"
    );
    assert!(yaml.contains("CIDR: 10.10.0.0/16"), "{yaml}");
    assert!(yaml.contains("mode: remote"), "{yaml}");
    assert!(yaml.contains("dbName: kuma"), "{yaml}");
    assert!(!format!("{c:?}").contains("hunter2"));

    let mut reloaded = load_yaml(&yaml).unwrap();
    assert_eq!(reloaded.store.postgres.password, MASKED_SECRET);
    reloaded.store.postgres.password = "hunter2".to_owned();
    assert_eq!(reloaded, c);

    let default = KumaCpConfig::default();
    let mut reloaded = load_yaml(&default.to_yaml()).unwrap();
    reloaded.store.postgres.password = default.store.postgres.password.clone();
    assert_eq!(reloaded, default);
}

#[test]
fn default_effective_yaml_layout() {
    let yaml = KumaCpConfig::default().to_yaml();
    for line in [
        "mode: standalone",
        "  type: local",
        "  local:\n    path: kuma-cp-data",
        "    host: 127.0.0.1",
        "    port: 15432",
        "  advertisedHostname: localhost",
        "monitoringAssignmentServer:\n  grpcPort: 5676",
        "sdsServer:\n  grpcPort: 5677",
        "xdsServer:\n  grpcPort: 5678\n  diagnosticsPort: 5680",
        "adminServer:\n  local:\n    port: 5679",
        "apiServer:\n  port: 5681\n  readOnly: false",
        "bootstrapServer:\n  port: 5682\n  params:\n    xdsHost: null\n    xdsPort: 5678",
        "dpServer:\n  auth:\n    type: dpToken",
        "    kds:\n      grpcPort: 5685",
        "dnsServer:\n  domain: mesh\n  port: 5653\n  CIDR: 240.0.0.0/4",
        "  skipMeshCreation: false",
        "      excludeInboundPorts: []",
        "  universal:\n    dataplaneCleanupAge: 30s",
    ] {
        assert!(yaml.contains(line), "missing {line:?} in\n{yaml}");
    }
}

/// The key and variable pairs of the hand-written table the names are now
/// derived from: every variable accepted then is accepted now.
const OLD_TABLE: &[(&str, &str)] = &[
    ("mode", "KUMA_MODE"),
    ("store.type", "KUMA_STORE_TYPE"),
    ("store.local.path", "KUMA_STORE_LOCAL_PATH"),
    ("store.postgres.host", "KUMA_STORE_POSTGRES_HOST"),
    ("store.postgres.port", "KUMA_STORE_POSTGRES_PORT"),
    ("store.postgres.user", "KUMA_STORE_POSTGRES_USER"),
    ("store.postgres.password", "KUMA_STORE_POSTGRES_PASSWORD"),
    ("store.postgres.dbName", "KUMA_STORE_POSTGRES_DB_NAME"),
    (
        "general.advertisedHostname",
        "KUMA_GENERAL_ADVERTISED_HOSTNAME",
    ),
    ("general.tlsCertFile", "KUMA_GENERAL_TLS_CERT_FILE"),
    ("general.tlsKeyFile", "KUMA_GENERAL_TLS_KEY_FILE"),
    (
        "monitoringAssignmentServer.grpcPort",
        "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT",
    ),
    ("sdsServer.grpcPort", "KUMA_SDS_SERVER_GRPC_PORT"),
    ("xdsServer.grpcPort", "KUMA_XDS_SERVER_GRPC_PORT"),
    ("adminServer.local.port", "KUMA_ADMIN_SERVER_LOCAL_PORT"),
    (
        "xdsServer.diagnosticsPort",
        "KUMA_XDS_SERVER_DIAGNOSTICS_PORT",
    ),
    ("apiServer.port", "KUMA_API_SERVER_PORT"),
    ("apiServer.readOnly", "KUMA_API_SERVER_READ_ONLY"),
    ("bootstrapServer.port", "KUMA_BOOTSTRAP_SERVER_PORT"),
    (
        "bootstrapServer.params.xdsHost",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST",
    ),
    (
        "bootstrapServer.params.xdsPort",
        "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT",
    ),
    ("dpServer.auth.type", "KUMA_DP_SERVER_AUTH_TYPE"),
    (
        "multizone.global.kds.grpcPort",
        "KUMA_MULTIZONE_GLOBAL_KDS_GRPC_PORT",
    ),
    ("multizone.remote.zone", "KUMA_MULTIZONE_REMOTE_ZONE"),
    (
        "multizone.remote.globalAddress",
        "KUMA_MULTIZONE_REMOTE_GLOBAL_ADDRESS",
    ),
    ("dnsServer.domain", "KUMA_DNS_SERVER_DOMAIN"),
    ("dnsServer.port", "KUMA_DNS_SERVER_PORT"),
    ("dnsServer.CIDR", "KUMA_DNS_SERVER_CIDR"),
    (
        "defaults.skipMeshCreation",
        "KUMA_DEFAULTS_SKIP_MESH_CREATION",
    ),
    (
        "runtime.kubernetes.sidecarTraffic.excludeInboundPorts",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_INBOUND_PORTS",
    ),
    (
        "runtime.kubernetes.sidecarTraffic.excludeOutboundPorts",
        "KUMA_RUNTIME_KUBERNETES_SIDECAR_TRAFFIC_EXCLUDE_OUTBOUND_PORTS",
    ),
    (
        "runtime.universal.dataplaneCleanupAge",
        "KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE",
    ),
];

#[test]
fn derived_env_names_match_the_old_table() {
    for &(key, var) in OLD_TABLE {
        assert_eq!(env_name(key), var, "{key}");
        assert_eq!(env_for_key(key).as_deref(), Some(var), "{key}");
        let entry = ENV_KEYS.iter().find(|k| k.key == key);
        assert_eq!(entry.map(EnvKey::env).as_deref(), Some(var), "{key}");
        // And the variable still sets the key.
        let entry = entry.unwrap();
        let c = load_env(&[(var, entry.example)]).unwrap_or_else(|e| panic!("{var}: {e}"));
        assert_eq!((entry.get)(&c), entry.example, "{var}");
    }
    // Keys added since (store.postgres.tls.*, ...) have derived names only.
    let now: Vec<&str> = ENV_KEYS.iter().map(|k| k.key).collect();
    for &(key, _) in OLD_TABLE {
        assert!(now.contains(&key), "{key} is gone from the table");
    }
    assert_eq!(env_for_key("ignoredEnv"), None);
}

#[test]
fn env_names_split_camel_case_words_and_acronyms() {
    assert_eq!(env_name("mode"), "KUMA_MODE");
    assert_eq!(
        env_name("store.postgres.dbName"),
        "KUMA_STORE_POSTGRES_DB_NAME"
    );
    assert_eq!(env_name("dnsServer.CIDR"), "KUMA_DNS_SERVER_CIDR");
    assert_eq!(env_name("a.CIDRRange"), "KUMA_A_CIDR_RANGE");
    assert_eq!(env_name("a.ipv4Cidr"), "KUMA_A_IPV4_CIDR");
}

#[test]
fn dataplane_cleanup_age_takes_go_durations_from_file_and_env() {
    use std::time::Duration;
    let age = |c: KumaCpConfig| c.runtime.universal.dataplane_cleanup_age;
    for (text, want) in [
        ("30s", Duration::from_secs(30)),
        ("1m30s", Duration::from_secs(90)),
        ("72h", Duration::from_secs(72 * 3600)),
        ("1.5s", Duration::from_millis(1500)),
        ("250ms", Duration::from_millis(250)),
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        ("30", Duration::from_secs(30)),
    ] {
        let from_env = load_env(&[("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE", text)])
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(age(from_env), want, "{text}");
        let from_file = load_yaml(&format!(
            "runtime:\n  universal:\n    dataplaneCleanupAge: {text}\n"
        ))
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(age(from_file), want, "{text}");
    }
    for bad in ["-5s", "5 s", "s", "1d", "1.2.3s", ""] {
        let e = err_env(&[("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE", bad)]);
        assert!(
            e.contains("runtime.universal.dataplaneCleanupAge")
                && e.contains("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE")
                && e.contains("is not a duration"),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn local_store_path_comes_from_the_file_or_the_env_and_must_not_be_empty() {
    let c = load_yaml("store:\n  type: local\n  local:\n    path: /srv/kuma\n").unwrap();
    assert_eq!(c.store.store_type, StoreType::Local);
    assert_eq!(c.store.local.path, "/srv/kuma");
    let c = load_env(&[
        ("KUMA_STORE_LOCAL_PATH", "state"),
        ("KUMA_STORE_TYPE", "LOCAL"),
    ])
    .unwrap();
    assert_eq!(c.store.local.path, "state");
    assert_eq!(c.store.store_type, StoreType::Local);
    assert_eq!(
        err_env(&[("KUMA_STORE_LOCAL_PATH", " ")]),
        "invalid configuration: store.local.path: must not be empty when store.type is local (set it in the file or with KUMA_STORE_LOCAL_PATH)"
    );
    // The memory store does not need it.
    let c = load_env(&[("KUMA_STORE_LOCAL_PATH", ""), ("KUMA_STORE_TYPE", "memory")]).unwrap();
    assert_eq!(c.store.store_type, StoreType::Memory);
}

#[test]
fn postgres_tls_pool_and_timeout_keys_parse_like_kuma() {
    let c = load_yaml(
        "store:\n  type: postgres\n  postgres:\n    maxOpenConnections: 7\n    connectionTimeout: 3\n    tls:\n      mode: verifyCa\n      caPath: /ca.pem\n",
    )
    .unwrap();
    assert_eq!(c.store.postgres.max_open_connections, 7);
    assert_eq!(
        c.store.postgres.connection_timeout,
        std::time::Duration::from_secs(3)
    );
    assert_eq!(c.store.postgres.tls.mode, TlsMode::VerifyCa);
    let store = c.store.postgres.to_store_config();
    assert_eq!(
        store.tls.ca_path.as_deref(),
        Some(std::path::Path::new("/ca.pem"))
    );
    assert_eq!(store.max_open_connections, 7);

    let c = load_env(&[("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "1500ms")]).unwrap();
    assert_eq!(
        c.store.postgres.connection_timeout,
        std::time::Duration::from_millis(1500)
    );
    assert_eq!(
        err_env(&[("KUMA_STORE_POSTGRES_TLS_MODE", "require")]),
        r#"invalid configuration: store.postgres.tls.mode (KUMA_STORE_POSTGRES_TLS_MODE): unknown TLS mode "require", expected one of disable, verifyNone, verifyCa, verifyFull"#
    );
    let e = err_env(&[
        ("KUMA_STORE_TYPE", "postgres"),
        ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "0"),
    ]);
    assert!(
        e.contains("store.postgres.connectionTimeout")
            && e.contains("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT")
            && e.contains("above zero"),
        "{e}"
    );
}
