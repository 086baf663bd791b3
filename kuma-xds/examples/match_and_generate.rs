//! A policy matched and a proxy's Envoy configuration generated, without
//! any server, store or runtime: the library as a pure function.
//!
//! `cargo run -p kuma-xds --example match_and_generate`
//!
//! The web proxy calls `backend`. Two Timeouts could apply to that call;
//! the matcher picks the more specific one (Kuma's ranking rules, see
//! docs/architecture.md, "Matching rules"), and the generated outbound
//! cluster carries its connect timeout.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use kuma_core::matching::PolicyIndex;
use kuma_core::resource::{DataplaneSpec, MeshSpec, Resource};
use kuma_xds::generate::{MeshView, generate_proxy};
use kuma_xds::resource::{Snapshot, XdsType};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mesh = Resource::from_yaml("type: Mesh\nname: default\n")?;
    let web = Resource::from_yaml(
        "type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 9000
    tags: {kuma.io/service: web, kuma.io/protocol: http}
  outbound:
  - port: 10001
    tags: {kuma.io/service: backend}
",
    )?;
    let policies: Vec<Arc<Resource>> = [
        // Applies to every call in the mesh.
        "type: Timeout\nmesh: default\nname: everyone\nsources:\n- match: {kuma.io/service: '*'}\n\
         destinations:\n- match: {kuma.io/service: '*'}\nconf:\n  connectTimeout: 10s\n",
        // Applies to web -> backend only: the better rank wins.
        "type: Timeout\nmesh: default\nname: web-to-backend\nsources:\n- match: {kuma.io/service: web}\n\
         destinations:\n- match: {kuma.io/service: backend}\nconf:\n  connectTimeout: 2s\n",
    ]
    .into_iter()
    .map(|yaml| Resource::from_yaml(yaml).map(Arc::new))
    .collect::<Result<_, _>>()?;

    // Matching: which policy applies to which of web-1's calls.
    let spec = web.spec_as::<DataplaneSpec>().ok_or("not a Dataplane")?;
    let index = PolicyIndex::new(&policies);
    let matched = index.match_dataplane(spec);
    let timeout = matched
        .timeouts
        .get("backend")
        .ok_or("no Timeout matched")?;
    println!("web -> backend: Timeout {}", timeout.meta.name);
    assert_eq!(timeout.meta.name, "web-to-backend");

    // Generation: the proxy's listeners and clusters, encoded once.
    let view = MeshView {
        name: "default",
        spec: mesh.spec_as::<MeshSpec>(),
        protocols: &BTreeMap::new(),
        vips: &BTreeMap::new(),
    };
    let out = generate_proxy(&index, &view, "web-1", spec, None, None);
    let snapshot = Snapshot::new(out.resources);
    for ty in [XdsType::Listener, XdsType::Cluster] {
        println!("{} version {}:", ty.short(), snapshot.version(ty));
        for r in snapshot.resources(ty).values() {
            println!("  {} ({} bytes)", r.name, r.body.len());
        }
    }

    let backend = snapshot
        .resources(XdsType::Cluster)
        .get("backend")
        .ok_or("no backend cluster")?;
    let cluster = Cluster::decode(backend.body.to_bytes())?;
    let connect_timeout = cluster.connect_timeout.ok_or("no connect timeout")?;
    println!(
        "cluster backend: connect timeout {}s",
        connect_timeout.seconds
    );
    assert_eq!(connect_timeout.seconds, 2);
    Ok(())
}
