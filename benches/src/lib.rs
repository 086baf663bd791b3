//! Criterion benchmarks of the control plane, the `xds-load` tool, and the
//! fixtures they share.
//!
//! Run the benchmarks with `cargo bench -p kuma-benches`.
//!
//! ```
//! let _ = kuma_benches::core::resource::ResourceType::ALL.len();
//! ```

pub use kuma_core as core;

/// What the reconciler derives from a mesh's Dataplanes, for benches that
/// generate proxies without it.
pub mod derived {
    use kuma_core::resource::{DataplaneSpec, Resource, SERVICE_TAG};
    use kuma_xds::generate::{Endpoint, Protocol};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    /// Instances per service.
    pub type Endpoints = BTreeMap<String, Vec<Endpoint>>;

    /// The instances of every service (one per inbound carrying it) and the
    /// protocol each service speaks.
    pub fn endpoints_and_protocols(
        dataplanes: &[Arc<Resource>],
    ) -> (Endpoints, BTreeMap<String, Protocol>) {
        let mut endpoints = Endpoints::new();
        for spec in dataplanes
            .iter()
            .filter_map(|d| d.spec_as::<DataplaneSpec>())
        {
            for inbound in &spec.networking.inbound {
                let Some(service) = inbound.tags.get(SERVICE_TAG) else {
                    continue;
                };
                endpoints
                    .entry(service.clone())
                    .or_default()
                    .push(Endpoint {
                        address: spec.networking.address.clone(),
                        port: inbound.port,
                        tags: inbound.tags.clone(),
                    });
            }
        }
        let protocols = endpoints
            .iter()
            .map(|(s, eps)| (s.clone(), Protocol::common(eps.iter().map(|e| &e.tags))))
            .collect();
        (endpoints, protocols)
    }
}

pub mod fixture {
    //! A large HTTP mesh: `services` services x `instances` instances, each
    //! Dataplane with one HTTP inbound (its service, `version: v1|v2`) and
    //! `outbounds` outbounds (to the next services), plus a few policies of
    //! every kind the generator applies. Every resource is YAML as the
    //! HTTP API accepts it.

    /// The mesh every fixture resource lives in.
    pub const MESH: &str = "default";

    /// The shape of the mesh.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Shape {
        /// Number of services.
        pub services: usize,
        /// Instances (Dataplanes) per service.
        pub instances: usize,
        /// Outbounds per Dataplane.
        pub outbounds: usize,
    }

    impl Shape {
        /// 1,000 services x 10 instances, 20 outbounds each.
        pub const LARGE: Shape = Shape {
            services: 1_000,
            instances: 10,
            outbounds: 20,
        };

        /// How many Dataplanes.
        pub fn dataplanes(&self) -> usize {
            self.services * self.instances
        }

        /// The name of service `i` (modulo the number of services).
        pub fn service(&self, i: usize) -> String {
            format!("svc-{}", i % self.services)
        }

        /// The name of Dataplane `n` (instance `n % instances` of service
        /// `n / instances`).
        pub fn dataplane_name(&self, n: usize) -> String {
            format!(
                "{}-{}",
                self.service(n / self.instances),
                n % self.instances
            )
        }

        /// Dataplane `n` as YAML, its inbound on `port`.
        pub fn dataplane_yaml(&self, n: usize, port: u32) -> String {
            let service = n / self.instances;
            let instance = n % self.instances;
            let mut y = format!(
                "type: Dataplane\nmesh: {MESH}\nname: {}\nnetworking:\n  \
                 address: 10.{}.{}.{}\n  inbound:\n  - port: {port}\n    servicePort: 9000\n    \
                 tags:\n      kuma.io/service: {}\n      kuma.io/protocol: http\n      \
                 version: v{}\n  outbound:\n",
                self.dataplane_name(n),
                (n >> 16) & 0xff,
                (n >> 8) & 0xff,
                n & 0xff,
                self.service(service),
                instance % 2 + 1,
            );
            for o in 0..self.outbounds {
                y.push_str(&format!(
                    "  - port: {}\n    tags:\n      kuma.io/service: {}\n",
                    10_001 + o,
                    self.service(service + 1 + o)
                ));
            }
            y
        }
    }

    /// The Mesh, with a file and a TCP logging backend and a zipkin
    /// tracing backend.
    pub fn mesh_yaml() -> String {
        format!(
            "type: Mesh\nname: {MESH}\nlogging:\n  defaultBackend: file\n  backends:\n  \
             - name: file\n    type: file\n    conf:\n      path: /dev/null\n  \
             - name: logstash\n    type: tcp\n    conf:\n      address: 127.0.0.1:5000\n\
             tracing:\n  defaultBackend: zipkin\n  backends:\n  - name: zipkin\n    \
             type: zipkin\n    sampling: 10\n    conf:\n      url: http://127.0.0.1:9411/api/v2/spans\n"
        )
    }

    fn policy(kind: &str, name: &str, src: &str, dst: &str, conf: &str) -> String {
        format!(
            "type: {kind}\nmesh: {MESH}\nname: {name}\n\
             sources:\n- match:\n    kuma.io/service: '{src}'\n\
             destinations:\n- match:\n    kuma.io/service: '{dst}'\n{conf}"
        )
    }

    /// A mesh-wide (`*` -> `*`) Timeout with `connect_timeout` as its
    /// connect timeout (e.g. `2s`): the policy change of the benchmarks.
    pub fn timeout_all_yaml(connect_timeout: &str) -> String {
        policy(
            "Timeout",
            "timeout-all",
            "*",
            "*",
            &format!(
                "conf:\n  connectTimeout: {connect_timeout}\n  tcp:\n    idleTimeout: 1h\n  \
                 http:\n    requestTimeout: 15s\n    idleTimeout: 30m\n"
            ),
        )
    }

    /// A few policies of every kind: mesh-wide ones (`*` -> `*`, which every
    /// proxy gets) and ones for a few services.
    pub fn policies_yaml() -> Vec<String> {
        let mut out = vec![
            policy(
                "TrafficRoute",
                "route-all",
                "*",
                "*",
                "conf:\n  loadBalancer:\n    roundRobin: {}\n  destination:\n    kuma.io/service: '*'\n",
            ),
            policy("TrafficPermission", "allow-all", "*", "*", ""),
            policy("TrafficPermission", "allow-svc-1", "svc-0", "svc-1", ""),
            policy(
                "HealthCheck",
                "hc-all",
                "*",
                "*",
                "conf:\n  interval: 10s\n  timeout: 2s\n  unhealthyThreshold: 3\n  healthyThreshold: 1\n",
            ),
            policy(
                "HealthCheck",
                "hc-http-svc-2",
                "*",
                "svc-2",
                "conf:\n  interval: 5s\n  timeout: 1s\n  unhealthyThreshold: 2\n  healthyThreshold: 2\n  http:\n    path: /health\n    expectedStatuses: [200]\n",
            ),
            policy(
                "CircuitBreaker",
                "cb-all",
                "*",
                "*",
                "conf:\n  interval: 5s\n  baseEjectionTime: 30s\n  maxEjectionPercent: 20\n  \
                 thresholds:\n    maxConnections: 1024\n    maxPendingRequests: 1024\n  \
                 detectors:\n    totalErrors:\n      consecutive: 20\n",
            ),
            policy(
                "CircuitBreaker",
                "cb-svc-3",
                "*",
                "svc-3",
                "conf:\n  thresholds:\n    maxConnections: 2\n",
            ),
            policy(
                "Retry",
                "retry-all",
                "*",
                "*",
                "conf:\n  http:\n    numRetries: 5\n    perTryTimeout: 200ms\n    \
                 backOff:\n      baseInterval: 20ms\n      maxInterval: 1s\n  \
                 tcp:\n    maxConnectAttempts: 5\n",
            ),
            policy(
                "Retry",
                "retry-svc-4",
                "*",
                "svc-4",
                "conf:\n  http:\n    numRetries: 2\n",
            ),
            timeout_all_yaml("2s"),
            policy(
                "Timeout",
                "timeout-svc-5",
                "*",
                "svc-5",
                "conf:\n  connectTimeout: 3s\n  http:\n    requestTimeout: 500ms\n",
            ),
            policy("TrafficLog", "log-all", "*", "*", ""),
            policy(
                "TrafficLog",
                "log-svc-6",
                "*",
                "svc-6",
                "conf:\n  backend: logstash\n",
            ),
            policy(
                "FaultInjection",
                "fi-svc-7",
                "*",
                "svc-7",
                "conf:\n  delay:\n    percentage: 10\n    value: 5s\n",
            ),
            policy(
                "FaultInjection",
                "fi-svc-8",
                "*",
                "svc-8",
                "conf:\n  abort:\n    httpStatus: 503\n    percentage: 1\n",
            ),
            format!(
                "type: TrafficTrace\nmesh: {MESH}\nname: trace-all\n\
                 selectors:\n- match:\n    kuma.io/service: '*'\n"
            ),
        ];
        out.push(policy(
            "TrafficRoute",
            "split-svc-9",
            "*",
            "svc-9",
            "conf:\n  split:\n  - weight: 90\n    destination:\n      kuma.io/service: svc-9\n      version: v1\n  \
             - weight: 10\n    destination:\n      kuma.io/service: svc-9\n      version: v2\n",
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::*;
    use kuma_core::resource::Resource;

    #[test]
    fn fixtures_parse() {
        let shape = Shape {
            services: 20,
            instances: 2,
            outbounds: 3,
        };
        Resource::from_yaml(&mesh_yaml()).unwrap();
        for n in 0..shape.dataplanes() {
            Resource::from_yaml(&shape.dataplane_yaml(n, 8080)).unwrap();
        }
        for p in policies_yaml() {
            Resource::from_yaml(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }
}
