use super::super::util::testing::*;
use super::*;

const DOC: &str = r#"
type: ProxyTemplate
mesh: default
name: custom-template-1
selectors:
  - match:
      kuma.io/service: backend
conf:
  imports:
    - default-proxy
  resources:
    - name: localhost:9901
      version: v1
      resource: |
        '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster
        connectTimeout: 5s
        name: localhost:9901
        loadAssignment:
          clusterName: localhost:9901
          endpoints:
          - lbEndpoints:
            - endpoint:
                address:
                  socketAddress:
                    address: 127.0.0.1
                    portValue: 9901
        type: STATIC
  modifications:
    - cluster:
        operation: patch
        match:
          name: test-cluster
          origin: outbound
        value: |
          connectTimeout: 5s
    - listener:
        operation: add
        value: |
          name: test-listener
          address:
            socketAddress:
              address: 192.168.0.1
              portValue: 8080
    - networkFilter:
        operation: addFirst
        match:
          listenerName: inbound:127.0.0.1:80
          origin: inbound
        value: |
          name: envoy.filters.network.local_ratelimit
          typedConfig:
            '@type': type.googleapis.com/envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit
            statPrefix: rate_limit
    - httpFilter:
        operation: addBefore
        match:
          name: envoy.filters.http.router
          origin: inbound
        value: |
          name: envoy.filters.http.gzip
    - virtualHost:
        operation: add
        match:
          routeConfigurationName: outbound:backend
        value: |
          name: backend
          domains:
          - backend.com
          routes:
          - match:
              prefix: /
            route:
              cluster: backend
    - cluster:
        operation: remove
        match:
          name: old-cluster
    - httpFilter:
        operation: remove
        match:
          name: envoy.filters.http.gzip
"#;

#[test]
fn documented_example_round_trips() {
    let res = round_trip(DOC);
    let spec = res.spec_as::<ProxyTemplateSpec>().unwrap();
    let conf = spec.conf.as_ref().unwrap();
    assert_eq!(conf.modifications.len(), 7);
    assert!(
        matches!(&conf.modifications[3], Modification::HttpFilter(f) if f.operation == Operation::AddBefore)
    );
    assert!(matches!(spec.targets(), PolicyTargets::Selectors(s) if s.len() == 1));
    round_trip(
        "type: ProxyTemplate\nmesh: default\nname: t\nselectors:\n- match:\n    kuma.io/service: '*'\n\
             conf:\n  imports:\n  - default-proxy\n",
    );
}

#[test]
fn selectors_are_required() {
    assert_violations(
        &DOC.replace(
            "selectors:\n  - match:\n      kuma.io/service: backend\n",
            "selectors: []\n",
        ),
        &["selectors"],
    );
}

#[test]
fn imports_must_be_known() {
    assert_violations(
        &DOC.replace("- default-proxy", "- fancy-proxy"),
        &["conf.imports[0]"],
    );
}

#[test]
fn resources_need_name_and_valid_text() {
    assert_violations(
        &DOC.replace("- name: localhost:9901", "- name: ''"),
        &["conf.resources[0].name"],
    );
    assert_violations(
        &DOC.replace(
            "        '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n",
            "",
        ),
        &["conf.resources[0].resource"],
    );
    assert_violations(
        &DOC.replace(
            "        connectTimeout: 5s\n        name: localhost",
            "        connectTimeout: [5s\n        name: localhost",
        ),
        &["conf.resources[0].resource"],
    );
    let start = DOC.find("      resource: |").unwrap();
    let end = DOC.find("  modifications:").unwrap();
    let mut yaml = DOC.to_string();
    yaml.replace_range(start..end, "      resource: ''\n");
    assert_violations(&yaml, &["conf.resources[0].resource"]);
    yaml = DOC.to_string();
    yaml.replace_range(start..end, "      resource: just text\n");
    assert_violations(&yaml, &["conf.resources[0].resource"]);
}

#[test]
fn operations_must_be_known() {
    assert_violations(
        &DOC.replace("operation: patch", "operation: replace"),
        &["conf.modifications[0].cluster.operation"],
    );
    assert_violations(
        &DOC.replace("operation: addFirst", "operation: add"),
        &["conf.modifications[2].networkFilter.operation"],
    );
    assert_violations(
        &DOC.replace(
            "    - listener:\n        operation: add",
            "    - listener:\n        operation: addFirst",
        ),
        &["conf.modifications[1].listener.operation"],
    );
}

#[test]
fn add_and_patch_need_a_parseable_value() {
    assert_violations(
        &DOC.replace("        value: |\n          connectTimeout: 5s\n", ""),
        &["conf.modifications[0].cluster.value"],
    );
    assert_violations(
        &DOC.replace(
            "          name: envoy.filters.http.gzip\n    - virtualHost",
            "          name: [gzip\n    - virtualHost",
        ),
        &["conf.modifications[3].httpFilter.value"],
    );
    assert_violations(
            &DOC.replace("          name: test-listener\n", "          - test-listener\n")
                .replace("          address:\n            socketAddress:\n              address: 192.168.0.1\n              portValue: 8080\n", ""),
            &["conf.modifications[1].listener.value"],
        );
}

#[test]
fn match_rules() {
    assert_violations(
        &DOC.replace(
            "    - listener:\n        operation: add\n",
            "    - listener:\n        operation: add\n        match:\n          name: x\n",
        ),
        &["conf.modifications[1].listener.match"],
    );
    assert_violations(
        &DOC.replace(
            "          routeConfigurationName: outbound:backend",
            "          routeConfigurationName: outbound:backend\n          name: backend",
        ),
        &["conf.modifications[4].virtualHost.match.name"],
    );
    assert_violations(
        &DOC.replace("          name: envoy.filters.http.router\n", ""),
        &["conf.modifications[3].httpFilter.match.name"],
    );
    assert_violations(
        &DOC.replace("operation: addFirst", "operation: patch"),
        &["conf.modifications[2].networkFilter.match.name"],
    );
}

#[test]
fn several_violations_are_reported_together() {
    let yaml = DOC
        .replace("- default-proxy", "- nope")
        .replace("operation: patch", "operation: merge")
        .replace("          name: envoy.filters.http.router\n", "");
    assert_violations(
        &yaml,
        &[
            "conf.imports[0]",
            "conf.modifications[0].cluster.operation",
            "conf.modifications[3].httpFilter.match.name",
        ],
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(
        decode_error_path(&DOC.replace("origin: outbound", "origin: outbound\n          tags: {}")),
        "conf.modifications[0].cluster.match.tags"
    );
    assert_eq!(
        decode_error_path(&DOC.replace(
            "- cluster:\n        operation: remove",
            "- route:\n        operation: remove"
        )),
        "conf.modifications[5]"
    );
    assert_eq!(
        decode_error_path(&DOC.replace("      version: v1", "      kind: v1")),
        "conf.resources[0].kind"
    );
}
