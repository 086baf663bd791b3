//! Table tests of the matching rules (see `docs/architecture.md`, "Matching rules").

use super::testutil::{TestPolicy, conn, dataplane, dp_policy, gateway, name};
use super::*;
use crate::resource::{DataplaneSpec, ResourceType as T};

const SVC: &str = "kuma.io/service";

/// A table row: label, Dataplane, policies, expected selection.
type Case<'a, W> = (&'a str, DataplaneSpec, Vec<TestPolicy>, W);

fn web_dp() -> DataplaneSpec {
    dataplane(
        &[&[(SVC, "web"), ("version", "v1"), ("region", "eu")]],
        &["backend", "redis"],
    )
}

/// Checks a linear selection and the same selection through the index.
fn dp_case(label: &str, dp: &DataplaneSpec, policies: &[TestPolicy], want: Option<&str>) {
    assert_eq!(name(select_dataplane_policy(dp, policies)), want, "{label}");
    let m = match_dataplane(dp, policies);
    assert_eq!(name(m.traffic_trace), want, "{label} (index)");
}

#[test]
fn dataplane_policy_rules() {
    let tt = T::TrafficTrace;
    let web = web_dp();
    let cases: Vec<Case<'_, Option<&str>>> = vec![
        ("no policies", web.clone(), vec![], None),
        (
            "exact beats wildcard",
            web.clone(),
            vec![
                dp_policy(tt, "a-wild", &[&[(SVC, "*")]]),
                dp_policy(tt, "b-exact", &[&[(SVC, "web")]]),
            ],
            Some("b-exact"),
        ),
        (
            "more keys beat fewer, even wildcard ones",
            web.clone(),
            vec![
                dp_policy(tt, "a-one", &[&[(SVC, "web")]]),
                dp_policy(tt, "b-two", &[&[(SVC, "*"), ("version", "*")]]),
            ],
            Some("b-two"),
        ),
        (
            "best selector of a policy counts",
            web.clone(),
            vec![
                dp_policy(tt, "a", &[&[(SVC, "web")]]),
                dp_policy(
                    tt,
                    "b",
                    &[&[(SVC, "nope")], &[(SVC, "web"), ("region", "eu")]],
                ),
            ],
            Some("b"),
        ),
        (
            "equal rank: newer creation time wins",
            web.clone(),
            vec![
                dp_policy(tt, "a", &[&[(SVC, "web")]]).at(100),
                dp_policy(tt, "b", &[&[(SVC, "web")]]).at(200),
                dp_policy(tt, "c", &[&[(SVC, "web")]]),
            ],
            Some("b"),
        ),
        (
            "equal rank and time: first name wins",
            web.clone(),
            vec![
                dp_policy(tt, "zz", &[&[(SVC, "web")]]).at(100),
                dp_policy(tt, "aa", &[&[("version", "v1")]]).at(100),
                dp_policy(tt, "mm", &[&[(SVC, "web")]]).at(100),
            ],
            Some("aa"),
        ),
        (
            "`*` requires the key to be present",
            web.clone(),
            vec![dp_policy(
                tt,
                "zone",
                &[&[(SVC, "web"), ("kuma.io/zone", "*")]],
            )],
            None,
        ),
        (
            "non-matching value",
            web.clone(),
            vec![dp_policy(tt, "v2", &[&[(SVC, "web"), ("version", "v2")]])],
            None,
        ),
        (
            "gateway tags are used",
            gateway(&[(SVC, "edge"), ("zone", "z1")], &["web"]),
            vec![
                dp_policy(tt, "a", &[&[(SVC, "*")]]),
                dp_policy(tt, "b", &[&[(SVC, "edge"), ("zone", "z1")]]),
                dp_policy(tt, "c", &[&[(SVC, "web")]]),
            ],
            Some("b"),
        ),
        (
            "multiple inbounds: best over all of them",
            dataplane(&[&[(SVC, "web")], &[(SVC, "admin"), ("team", "ops")]], &[]),
            vec![
                dp_policy(tt, "a", &[&[(SVC, "web")]]),
                dp_policy(tt, "b", &[&[(SVC, "admin"), ("team", "ops")]]),
                dp_policy(tt, "c", &[&[(SVC, "web"), ("team", "ops")]]),
            ],
            Some("b"),
        ),
    ];
    for (label, dp, policies, want) in &cases {
        dp_case(label, dp, policies, *want);
    }
}

#[test]
fn dataplane_policy_types_are_separate() {
    let web = web_dp();
    let policies = vec![
        dp_policy(T::TrafficTrace, "trace", &[&[(SVC, "*")]]),
        dp_policy(T::ProxyTemplate, "tpl", &[&[(SVC, "web")]]),
    ];
    let m = match_dataplane(&web, &policies);
    assert_eq!(name(m.traffic_trace), Some("trace"));
    assert_eq!(name(m.proxy_template), Some("tpl"));
    assert_eq!(name(m.dataplane_policy(T::ProxyTemplate)), Some("tpl"));
    assert_eq!(name(m.dataplane_policy(T::Retry)), None);
}

/// Checks the per-service selection, linear and through the index.
fn outbound_case(label: &str, dp: &DataplaneSpec, policies: &[TestPolicy], want: &[(&str, &str)]) {
    let got: Vec<(&str, &str)> = select_outbound_policies(dp, policies)
        .into_iter()
        .map(|(s, p)| (s, p.name.as_str()))
        .collect();
    assert_eq!(got, want, "{label}");
    let m = match_dataplane(dp, policies);
    let got: Vec<(&str, &str)> = m
        .timeouts
        .iter()
        .map(|(s, p)| (*s, p.name.as_str()))
        .collect();
    assert_eq!(got, want, "{label} (index)");
}

#[test]
fn outbound_policy_rules() {
    let to = T::Timeout;
    let web = web_dp();
    let any: &[(&str, &str)] = &[(SVC, "*")];
    let cases: Vec<Case<'_, Vec<(&str, &str)>>> = vec![
        ("no policies", web.clone(), vec![], vec![]),
        (
            "wildcard policy applies to every service",
            web.clone(),
            vec![conn(to, "all", &[any], &[any])],
            vec![("backend", "all"), ("redis", "all")],
        ),
        (
            "exact destination beats wildcard",
            web.clone(),
            vec![
                conn(to, "all", &[any], &[any]),
                conn(to, "zz-backend", &[any], &[&[(SVC, "backend")]]),
            ],
            vec![("backend", "zz-backend"), ("redis", "all")],
        ),
        (
            "exact source beats wildcard",
            web.clone(),
            vec![
                conn(to, "all", &[any], &[any]),
                conn(to, "zz-from-web", &[&[(SVC, "web")]], &[any]),
            ],
            vec![("backend", "zz-from-web"), ("redis", "zz-from-web")],
        ),
        (
            "score is source + destination: more source keys beat an exact destination",
            web.clone(),
            vec![
                conn(to, "a-dst", &[&[(SVC, "web")]], &[&[(SVC, "backend")]]),
                conn(
                    to,
                    "b-src",
                    &[&[(SVC, "web"), ("version", "*"), ("region", "eu")]],
                    &[any],
                ),
            ],
            vec![("backend", "b-src"), ("redis", "b-src")],
        ),
        (
            "equal score: newer creation time, then first name",
            web.clone(),
            vec![
                conn(to, "b-src", &[&[(SVC, "web")]], &[any]).at(10),
                conn(to, "c-dst", &[any], &[&[(SVC, "backend")]]).at(20),
                conn(to, "a-dst", &[any], &[&[(SVC, "redis")]]).at(10),
                conn(to, "0-dst", &[any], &[&[(SVC, "redis")]]).at(10),
            ],
            vec![("backend", "c-dst"), ("redis", "0-dst")],
        ),
        (
            "source must match",
            web.clone(),
            vec![
                conn(to, "all", &[any], &[any]),
                conn(to, "from-api", &[&[(SVC, "api")]], &[&[(SVC, "backend")]]),
                conn(
                    to,
                    "from-zone",
                    &[&[(SVC, "web"), ("kuma.io/zone", "*")]],
                    &[any],
                ),
            ],
            vec![("backend", "all"), ("redis", "all")],
        ),
        (
            "no matching destination: does not apply",
            web.clone(),
            vec![conn(to, "to-db", &[any], &[&[(SVC, "db")]])],
            vec![],
        ),
        (
            "destination tested only against the service tag",
            web.clone(),
            vec![
                conn(to, "all", &[any], &[any]),
                conn(to, "v1", &[any], &[&[(SVC, "backend"), ("version", "v1")]]),
                conn(to, "ver", &[any], &[&[(SVC, "*"), ("version", "*")]]),
            ],
            vec![("backend", "all"), ("redis", "all")],
        ),
        (
            "best destination selector of a policy counts",
            web.clone(),
            vec![
                conn(to, "a", &[any], &[any]),
                conn(to, "b", &[any], &[&[(SVC, "db")], &[(SVC, "redis")], any]),
            ],
            vec![("backend", "a"), ("redis", "b")],
        ),
        (
            "gateway tags are used for sources",
            gateway(&[(SVC, "edge")], &["backend"]),
            vec![
                conn(to, "all", &[any], &[any]),
                conn(to, "from-edge", &[&[(SVC, "edge")]], &[any]),
            ],
            vec![("backend", "from-edge")],
        ),
        (
            "multiple inbounds: best source over all of them",
            dataplane(
                &[&[(SVC, "web")], &[(SVC, "admin"), ("team", "ops")]],
                &["backend"],
            ),
            vec![
                conn(to, "a", &[&[(SVC, "web")]], &[any]),
                conn(
                    to,
                    "b",
                    &[&[(SVC, "nope")], &[(SVC, "admin"), ("team", "ops")]],
                    &[any],
                ),
            ],
            vec![("backend", "b")],
        ),
    ];
    for (label, dp, policies, want) in &cases {
        outbound_case(label, dp, policies, want);
    }
}

#[test]
fn outbound_explicit_services() {
    let web = web_dp();
    let any: &[(&str, &str)] = &[(SVC, "*")];
    let policies = vec![
        conn(T::TrafficRoute, "all", &[any], &[any]),
        conn(T::TrafficRoute, "vip", &[any], &[&[(SVC, "vip-svc")]]),
    ];
    let tag_sets = web.tag_sets();
    let got = select_outbound_policies_for_services(
        &tag_sets,
        ["vip-svc", "backend", "vip-svc"],
        &policies,
    );
    let got: Vec<_> = got.iter().map(|(s, p)| (*s, p.name.as_str())).collect();
    assert_eq!(got, [("backend", "all"), ("vip-svc", "vip")]);

    let index = PolicyIndex::new(&policies);
    let m = index.match_dataplane_with_services(&web, ["vip-svc", "other"]);
    let got: Vec<_> = m
        .traffic_routes
        .iter()
        .map(|(s, p)| (*s, p.name.as_str()))
        .collect();
    assert_eq!(got, [("other", "all"), ("vip-svc", "vip")]);
    assert_eq!(
        name(select_outbound_policy(&tag_sets, "vip-svc", &policies)),
        Some("vip")
    );
    assert_eq!(
        outbound_services(&web).collect::<Vec<_>>(),
        ["backend", "redis"]
    );
}

#[test]
fn outbound_types_are_separate() {
    let web = web_dp();
    let any: &[(&str, &str)] = &[(SVC, "*")];
    let types = PolicyKind::OUTBOUND_TYPES;
    let policies: Vec<TestPolicy> = types
        .iter()
        .map(|t| conn(*t, t.name(), &[any], &[any]))
        .collect();
    let m = match_dataplane(&web, &policies);
    for t in types {
        let map = m.outbound_policies(t).map(|m| {
            m.iter()
                .map(|(s, p)| (*s, p.name.as_str()))
                .collect::<Vec<_>>()
        });
        assert_eq!(
            map,
            Some(vec![("backend", t.name()), ("redis", t.name())]),
            "{t}"
        );
    }
    assert!(m.outbound_policies(T::TrafficPermission).is_none());
}

/// Checks the per-inbound selection, linear and through the index.
fn inbound_case(label: &str, dp: &DataplaneSpec, policies: &[TestPolicy], want: &[Option<&str>]) {
    let got: Vec<Option<&str>> = select_inbound_policies(dp, policies)
        .into_iter()
        .map(name)
        .collect();
    assert_eq!(got, want, "{label}");
    let m = match_dataplane(dp, policies);
    let got: Vec<Option<&str>> = m.traffic_permissions.iter().map(|p| name(*p)).collect();
    assert_eq!(got, want, "{label} (index)");
}

#[test]
fn inbound_policy_rules() {
    let tp = T::TrafficPermission;
    let any: &[(&str, &str)] = &[(SVC, "*")];
    let two = dataplane(
        &[&[(SVC, "web"), ("version", "v1")], &[(SVC, "admin")]],
        &["backend"],
    );
    let cases: Vec<Case<'_, Vec<Option<&str>>>> = vec![
        ("no policies", two.clone(), vec![], vec![None, None]),
        (
            "allow-all applies to every inbound",
            two.clone(),
            vec![conn(tp, "allow-all", &[any], &[any])],
            vec![Some("allow-all"), Some("allow-all")],
        ),
        (
            "each inbound picks its best destination rank",
            two.clone(),
            vec![
                conn(tp, "allow-all", &[any], &[any]),
                conn(tp, "web", &[any], &[&[(SVC, "web")]]),
                conn(tp, "web-v1", &[any], &[&[(SVC, "web"), ("version", "v1")]]),
                conn(tp, "web-v2", &[any], &[&[(SVC, "web"), ("version", "v2")]]),
            ],
            vec![Some("web-v1"), Some("allow-all")],
        ),
        (
            "sources take no part in the selection",
            two.clone(),
            vec![
                conn(tp, "allow-all", &[any], &[any]),
                conn(
                    tp,
                    "only-frontend",
                    &[&[(SVC, "frontend")]],
                    &[&[(SVC, "admin")]],
                ),
            ],
            vec![Some("allow-all"), Some("only-frontend")],
        ),
        (
            "`*` requires the key to be present",
            two.clone(),
            vec![conn(
                tp,
                "v-any",
                &[any],
                &[&[(SVC, "*"), ("version", "*")]],
            )],
            vec![Some("v-any"), None],
        ),
        (
            "equal rank: newer, then first name",
            two.clone(),
            vec![
                conn(tp, "b", &[any], &[&[(SVC, "web")]]).at(5),
                conn(tp, "a", &[any], &[&[(SVC, "web")]]).at(1),
                conn(tp, "d", &[any], &[&[(SVC, "admin")]]),
                conn(tp, "c", &[any], &[&[(SVC, "admin")]]),
            ],
            vec![Some("b"), Some("c")],
        ),
        (
            "gateway: no inbounds",
            gateway(&[(SVC, "edge")], &[]),
            vec![conn(tp, "allow-all", &[any], &[any])],
            vec![],
        ),
    ];
    for (label, dp, policies, want) in &cases {
        inbound_case(label, dp, policies, want);
    }
    let t = crate::matching::testutil::tags(&[(SVC, "web")]);
    let ps = [conn(tp, "x", &[any], &[&[(SVC, "web")]])];
    assert_eq!(name(select_inbound_policy(&t, &ps)), Some("x"));
}

#[test]
fn mixed_types_and_non_policies() {
    let web = web_dp();
    let any: &[(&str, &str)] = &[(SVC, "*")];
    let policies = vec![
        conn(T::TrafficPermission, "tp", &[any], &[any]),
        conn(T::FaultInjection, "fi", &[any], &[&[(SVC, "web")]]),
        conn(T::TrafficRoute, "tr", &[any], &[any]),
        dp_policy(T::TrafficTrace, "tt", &[any]),
        // Not policies: ignored.
        conn(T::Mesh, "mesh", &[any], &[any]),
        dp_policy(T::Dataplane, "dp", &[any]),
    ];
    let index = PolicyIndex::new(&policies);
    assert_eq!(index.len(), 4);
    assert!(!index.is_empty());
    let m = index.match_dataplane(&web);
    assert_eq!(name(m.traffic_permissions[0]), Some("tp"));
    assert_eq!(name(m.fault_injections[0]), Some("fi"));
    assert_eq!(
        m.inbound_policies(T::FaultInjection).map(<[_]>::len),
        Some(1)
    );
    assert_eq!(m.traffic_routes.len(), 2);
    assert_eq!(name(m.traffic_trace), Some("tt"));
    assert_eq!(m.proxy_template, None);
    assert!(m.health_checks.is_empty());
    assert_eq!(m.clone(), m);
    assert_eq!(MatchedPolicies::<TestPolicy>::default().traffic_trace, None);
}

/// The same rules through real resources decoded from YAML.
mod yaml {
    use super::super::*;
    use crate::resource::{DataplaneSpec, Resource};
    use std::sync::Arc;

    fn res(yaml: &str) -> Arc<Resource> {
        let r = Resource::from_yaml(yaml).expect("decodes");
        r.validate().expect("valid");
        Arc::new(r)
    }

    fn permission(name: &str, created: &str, src: &str, dst: &str) -> Arc<Resource> {
        res(&format!(
            "type: TrafficPermission\nmesh: default\nname: {name}\ncreationTime: '{created}'\n\
             sources: [{{match: {{kuma.io/service: '{src}'}}}}]\n\
             destinations: [{{match: {dst}}}]\n"
        ))
    }

    fn route(name: &str, created: &str, src: &str, dst: &str) -> Arc<Resource> {
        res(&format!(
            "type: TrafficRoute\nmesh: default\nname: {name}\ncreationTime: '{created}'\n\
             sources: [{{match: {src}}}]\n\
             destinations: [{{match: {{kuma.io/service: '{dst}'}}}}]\n\
             conf: {{destination: {{kuma.io/service: '*'}}}}\n"
        ))
    }

    fn health_check(name: &str, src: &str, dst: &str) -> Arc<Resource> {
        res(&format!(
            "type: HealthCheck\nmesh: default\nname: {name}\n\
             sources: [{{match: {src}}}]\n\
             destinations: [{{match: {{kuma.io/service: '{dst}'}}}}]\n\
             conf: {{interval: 10s, timeout: 2s, unhealthyThreshold: 3, healthyThreshold: 1}}\n"
        ))
    }

    const T1: &str = "2024-01-01T00:00:00Z";
    const T2: &str = "2024-06-01T00:00:00Z";

    fn dp() -> Arc<Resource> {
        res(r#"
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, version: v1, kuma.io/protocol: http}
  - port: 9090
    tags: {kuma.io/service: web-admin}
  outbound:
  - port: 10001
    tags: {kuma.io/service: backend}
  - port: 10002
    tags: {kuma.io/service: redis}
  - port: 10003
    tags: {kuma.io/service: db}
"#)
    }

    fn names<'a>(m: &OutboundPolicyMap<'a, Arc<Resource>>) -> Vec<(&'a str, String)> {
        m.iter().map(|(s, p)| (*s, p.meta.name.clone())).collect()
    }

    #[test]
    fn mesh_from_yaml() {
        let dp = dp();
        let Some(spec) = dp.spec_as::<DataplaneSpec>() else {
            panic!("not a dataplane")
        };
        let policies = vec![
            permission("allow-all-default", T1, "*", "{kuma.io/service: '*'}"),
            permission(
                "web-v1",
                T1,
                "frontend",
                "{kuma.io/service: web, version: v1}",
            ),
            permission(
                "web-any",
                T2,
                "frontend",
                "{kuma.io/service: web, version: '*'}",
            ),
            permission("admin-b", T2, "ops", "{kuma.io/service: web-admin}"),
            permission("admin-a", T2, "ops", "{kuma.io/service: web-admin}"),
            route("route-all-default", T1, "{kuma.io/service: '*'}", "*"),
            route("web-backend-old", T1, "{kuma.io/service: web}", "backend"),
            route("web-backend-new", T2, "{kuma.io/service: web}", "backend"),
            route("any-redis", T2, "{kuma.io/service: '*'}", "redis"),
            route("web-v1-any", T1, "{kuma.io/service: web, version: v1}", "*"),
            route(
                "from-zone",
                T2,
                "{kuma.io/service: web, kuma.io/zone: '*'}",
                "db",
            ),
            health_check("hc-all", "{kuma.io/service: '*'}", "*"),
            health_check("hc-other", "{kuma.io/service: api}", "db"),
            dp.clone(), // not a policy: ignored
        ];
        let m = match_dataplane(spec, &policies);
        // Inbound: exact beats wildcard; then newer; then first name.
        let inbound: Vec<Option<&str>> = m
            .traffic_permissions
            .iter()
            .map(|p| p.map(|p| p.meta.name.as_str()))
            .collect();
        assert_eq!(inbound, [Some("web-v1"), Some("admin-a")]);
        // Outbound: source + destination; web-v1-any (2 exact + 1 wildcard)
        // beats web-backend-* (1 + 1 exact); `*`-key zone source never
        // matches.
        assert_eq!(
            names(&m.traffic_routes),
            [
                ("backend", "web-v1-any".to_string()),
                ("db", "web-v1-any".to_string()),
                ("redis", "web-v1-any".to_string()),
            ]
        );
        assert_eq!(
            names(&m.health_checks),
            [
                ("backend", "hc-all".to_string()),
                ("db", "hc-all".to_string()),
                ("redis", "hc-all".to_string()),
            ]
        );

        // Without the most specific source, destinations and times decide.
        let fewer: Vec<_> = policies
            .iter()
            .filter(|p| p.meta.name != "web-v1-any")
            .cloned()
            .collect();
        let m = PolicyIndex::new(&fewer).match_dataplane(spec);
        assert_eq!(
            names(&m.traffic_routes),
            [
                ("backend", "web-backend-new".to_string()),
                ("db", "route-all-default".to_string()),
                ("redis", "any-redis".to_string()),
            ]
        );
        // Results are the caller's Arcs.
        let Some(chosen) = m.traffic_routes.get("backend") else {
            panic!("no route")
        };
        assert!(fewer.iter().any(|p| Arc::ptr_eq(p, chosen)));
    }
}

/// Every policy type through real resources.
mod yaml_all_types {
    use super::super::*;
    use crate::resource::{DataplaneSpec, Resource, ResourceType};

    /// A minimal valid `conf` per type (`None`: the type has no conf).
    fn conf(ty: ResourceType) -> Option<&'static str> {
        Some(match ty {
            ResourceType::TrafficTrace => "{backend: jaeger}",
            ResourceType::ProxyTemplate => "{imports: [default-proxy]}",
            ResourceType::TrafficRoute => "{destination: {kuma.io/service: '*'}}",
            ResourceType::HealthCheck => {
                "{interval: 10s, timeout: 2s, unhealthyThreshold: 3, healthyThreshold: 1}"
            }
            ResourceType::CircuitBreaker => {
                "{interval: 5s, baseEjectionTime: 30s, detectors: {totalErrors: {consecutive: 20}}}"
            }
            ResourceType::TrafficLog => "{backend: file}",
            ResourceType::Retry => "{http: {numRetries: 5}}",
            ResourceType::Timeout => "{connectTimeout: 5s}",
            ResourceType::FaultInjection => "{abort: {httpStatus: 500, percentage: 50}}",
            _ => return None,
        })
    }

    /// A policy of `ty` named `name`; `from` is the source (or selector)
    /// match, `to` the destination match.
    fn policy(ty: ResourceType, name: &str, from: &str, to: &str) -> Resource {
        let mut y = format!("type: {ty}\nmesh: default\nname: {name}\n");
        match PolicyKind::of(ty) {
            Some(PolicyKind::Dataplane) => y += &format!("selectors: [{{match: {from}}}]\n"),
            _ => y += &format!("sources: [{{match: {from}}}]\ndestinations: [{{match: {to}}}]\n"),
        }
        if let Some(c) = conf(ty) {
            y += &format!("conf: {c}\n");
        }
        let r = Resource::from_yaml(&y).unwrap_or_else(|e| panic!("{y}: {e}"));
        r.validate().unwrap_or_else(|e| panic!("{y}: {e}"));
        r
    }

    #[test]
    fn every_type_selects_its_most_specific_policy() {
        let dp = Resource::from_yaml(
            "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
             inbound:\n  - port: 8080\n    tags: {kuma.io/service: web, kuma.io/protocol: http}\n  \
             outbound:\n  - port: 10001\n    tags: {kuma.io/service: backend}\n  \
             - port: 10002\n    tags: {kuma.io/service: redis}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let Some(spec) = dp.spec_as::<DataplaneSpec>() else {
            panic!("not a dataplane")
        };
        let any = "{kuma.io/service: '*'}";
        let mut policies = Vec::new();
        for ty in ResourceType::ALL.iter().copied() {
            let Some(kind) = PolicyKind::of(ty) else {
                continue;
            };
            policies.push(policy(ty, "a-all", any, any));
            match kind {
                PolicyKind::Dataplane => {
                    policies.push(policy(ty, "z-web", "{kuma.io/service: web}", any));
                }
                PolicyKind::Outbound => {
                    policies.push(policy(ty, "z-backend", any, "{kuma.io/service: backend}"));
                    // Does not apply: its source selects another service.
                    policies.push(policy(
                        ty,
                        "z-from-api",
                        "{kuma.io/service: api}",
                        "{kuma.io/service: redis}",
                    ));
                }
                PolicyKind::Inbound => {
                    let web = if ty == ResourceType::FaultInjection {
                        "{kuma.io/service: web, kuma.io/protocol: http}"
                    } else {
                        "{kuma.io/service: web}"
                    };
                    let src = if ty == ResourceType::FaultInjection {
                        "{kuma.io/service: '*', kuma.io/protocol: http}"
                    } else {
                        any
                    };
                    policies.push(policy(ty, "z-web", src, web));
                }
            }
        }
        let m = match_dataplane(spec, &policies);
        let name = |p: Option<&Resource>| p.map(|p| p.meta.name.clone());
        for ty in PolicyKind::DATAPLANE_TYPES {
            assert_eq!(
                name(m.dataplane_policy(ty)).as_deref(),
                Some("z-web"),
                "{ty}"
            );
        }
        for ty in PolicyKind::OUTBOUND_TYPES {
            let got: Vec<(&str, String)> = m
                .outbound_policies(ty)
                .into_iter()
                .flatten()
                .map(|(s, p)| (*s, p.meta.name.clone()))
                .collect();
            assert_eq!(
                got,
                [
                    ("backend", "z-backend".to_string()),
                    ("redis", "a-all".to_string())
                ],
                "{ty}"
            );
        }
        for ty in PolicyKind::INBOUND_TYPES {
            let got: Vec<Option<String>> = m
                .inbound_policies(ty)
                .into_iter()
                .flatten()
                .map(|p| name(*p))
                .collect();
            assert_eq!(got, [Some("z-web".to_string())], "{ty}");
        }
    }
}
