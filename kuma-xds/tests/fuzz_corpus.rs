//! Replays the seed corpus of the `xds` fuzz target (fuzz/corpus/xds) so
//! that every test run exercises the fuzzed property against the real ADS
//! and SDS servers. `write_xds_seeds` (ignored) regenerates the seeds.

include!("../../fuzz/shared/xds.rs");

use envoy_types::pb::envoy::config::core::v3::Node as SeedNode;
use std::collections::HashMap;
use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/xds")
}

#[test]
fn xds_corpus_replays_cleanly() {
    let mut n = 0;
    let mut entries: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory exists")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for path in entries {
        eprintln!("replaying {}", path.display());
        check_xds(&std::fs::read(&path).expect("read corpus file"));
        n += 1;
    }
    assert!(n >= 10, "expected a seed corpus, found {n} files");
}

fn node(id: &str) -> Option<SeedNode> {
    Some(SeedNode {
        id: id.into(),
        ..SeedNode::default()
    })
}

fn sotw(node_id: Option<&str>, type_url: &str, nonce: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node_id.and_then(node),
        type_url: type_url.into(),
        response_nonce: nonce.into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        ..DiscoveryRequest::default()
    }
}

fn delta(
    node_id: Option<&str>,
    nonce: &str,
    sub: &[&str],
    unsub: &[&str],
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node_id.and_then(node),
        type_url: XDS_CLUSTER_TYPE.into(),
        response_nonce: nonce.into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        ..DeltaDiscoveryRequest::default()
    }
}

fn nack(mut r: DiscoveryRequest, message: String) -> DiscoveryRequest {
    r.error_detail = Some(envoy_types::pb::google::rpc::Status {
        code: 3,
        message,
        details: vec![],
    });
    r
}

/// Writes the seed corpus: `cargo test -p kuma-xds --test fuzz_corpus --
/// --ignored write_xds_seeds`.
#[test]
#[ignore]
fn write_xds_seeds() {
    const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    let web = Some("default.web-1");
    let mut seeds: Vec<(&str, Vec<u8>)> = vec![
        (
            "sotw-cds-ack-lds-eds",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[
                    sotw(web, XDS_CLUSTER_TYPE, "", &[]),
                    sotw(None, XDS_CLUSTER_TYPE, "1", &[]),
                    sotw(None, LDS, "", &[]),
                    sotw(None, EDS, "", &["backend"]),
                    sotw(None, EDS, "3", &["backend", "web", "nope"]),
                ],
            ),
        ),
        (
            "sotw-nack-long-detail",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[
                    sotw(web, XDS_CLUSTER_TYPE, "", &[]),
                    nack(sotw(None, XDS_CLUSTER_TYPE, "1", &[]), "x".repeat(30_000)),
                    nack(sotw(None, XDS_CLUSTER_TYPE, "1", &[]), "again".into()),
                ],
            ),
        ),
        (
            "sotw-unknown-types",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[
                    sotw(web, "type.googleapis.com/not.a.Type", "", &[]),
                    sotw(None, "", "", &[]),
                    sotw(None, SECRET, "", &["identity_cert"]),
                ],
            ),
        ),
        (
            "sotw-stale-and-foreign-nonces",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[
                    sotw(web, XDS_CLUSTER_TYPE, "999", &[]),
                    sotw(None, XDS_CLUSTER_TYPE, "abc", &[]),
                    sotw(None, LDS, "1", &[]),
                    sotw(None, XDS_CLUSTER_TYPE, "", &[]),
                ],
            ),
        ),
        (
            "sotw-bad-node-ids",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[sotw(Some("nodot"), XDS_CLUSTER_TYPE, "", &[])],
            ),
        ),
        (
            "sotw-no-node-filled",
            encode_xds_input(XdsStream::Sotw, 1, &[sotw(None, LDS, "", &[])]),
        ),
        (
            "sotw-no-node",
            encode_xds_input(XdsStream::Sotw, 0, &[sotw(None, LDS, "", &[])]),
        ),
        (
            "sotw-unknown-dataplane-and-mesh",
            encode_xds_input(
                XdsStream::Sotw,
                0,
                &[
                    sotw(Some("other.x"), XDS_CLUSTER_TYPE, "", &[]),
                    sotw(Some("default.unknown"), XDS_CLUSTER_TYPE, "", &[]),
                ],
            ),
        ),
        (
            "delta-subscribe-ack-unsubscribe",
            encode_xds_input(
                XdsStream::Delta,
                0,
                &[
                    delta(web, "", &["*"], &[]),
                    delta(None, "1", &[], &[]),
                    delta(None, "", &[], &["*"]),
                    delta(None, "", &["backend", "web", "localhost:8080"], &[]),
                ],
            ),
        ),
        (
            "delta-many-names-and-versions",
            encode_xds_input(
                XdsStream::Delta,
                0,
                &[{
                    let names: Vec<String> = (0..500).map(|i| format!("svc-{i}")).collect();
                    let mut r = delta(web, "", &[], &[]);
                    r.resource_names_subscribe = names.clone();
                    r.initial_resource_versions = names
                        .into_iter()
                        .map(|n| (n, "v1".to_string()))
                        .collect::<HashMap<_, _>>();
                    r
                }],
            ),
        ),
        (
            "delta-nack-no-node",
            encode_xds_input(
                XdsStream::Delta,
                1,
                &[
                    delta(None, "", &["*"], &[]),
                    DeltaDiscoveryRequest {
                        response_nonce: "1".into(),
                        type_url: XDS_CLUSTER_TYPE.into(),
                        error_detail: Some(envoy_types::pb::google::rpc::Status {
                            code: 3,
                            message: "rejected".into(),
                            details: vec![],
                        }),
                        ..DeltaDiscoveryRequest::default()
                    },
                ],
            ),
        ),
        (
            "sds-secrets-ack",
            encode_xds_input(
                XdsStream::Sds,
                0,
                &[
                    sotw(web, SECRET, "", &["identity_cert", "mesh_ca", "unknown"]),
                    sotw(None, SECRET, "1", &["identity_cert", "mesh_ca"]),
                    sotw(None, SECRET, "7", &[]),
                ],
            ),
        ),
        (
            "sds-no-node-and-foreign",
            encode_xds_input(
                XdsStream::Sds,
                0,
                &[
                    sotw(None, SECRET, "", &["identity_cert"]),
                    sotw(Some("default.backend-1"), SECRET, "", &["identity_cert"]),
                ],
            ),
        ),
    ];
    seeds.push(("empty", Vec::new()));
    // Frames that are not protobuf: left out by the decoder.
    seeds.push((
        "garbage-frames",
        vec![0, 1, 5, 0, 0xff, 0xfe, 0x01, 0x80, 0x80, 3, 0, 1, 2],
    ));
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}
