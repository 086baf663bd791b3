//! Replays the seed corpus of the `bootstrap` fuzz target
//! (fuzz/corpus/bootstrap) so that every test run exercises the fuzzed
//! property. `write_bootstrap_seeds` (ignored) regenerates the seeds.

include!("../../fuzz/shared/bootstrap.rs");

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/bootstrap")
}

#[test]
fn bootstrap_corpus_replays_cleanly() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        if path.is_file() {
            check_bootstrap(&std::fs::read(&path).expect("read corpus file"));
            n += 1;
        }
    }
    assert!(n >= 10, "expected a seed corpus, found {n} files");
}

/// A structured input: mode 1 and the fields joined by 0x00.
fn fields(f: &[&str]) -> Vec<u8> {
    let mut v = vec![1u8];
    v.extend_from_slice(f.join("\0").as_bytes());
    v
}

const PAYMENTS_AS_WEB: &str = r#"{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"address":"127.0.0.1","inbound":[{"port":8080,"servicePort":9000,"tags":{"kuma.io/service":"payments"}}]}}"#;

#[test]
fn the_property_holds_both_ways() {
    // The issued token for its Dataplane: served.
    assert_eq!(
        check_bootstrap(&fields(&["default", "web-1", "9901", "", "@"])),
        200
    );
    // The same token for a Dataplane claiming another service: refused.
    assert_eq!(
        check_bootstrap(&fields(&["default", "web-1", "9901", PAYMENTS_AS_WEB, "@"])),
        403
    );
    // No token: refused.
    assert_eq!(
        check_bootstrap(&fields(&["default", "web-1", "9901", "", ""])),
        401
    );
}

/// Writes the seed corpus: `cargo test -p kuma-xds --test fuzz_bootstrap --
/// --ignored write_bootstrap_seeds`.
#[test]
#[ignore]
fn write_bootstrap_seeds() {
    let raw = |s: &str| {
        let mut v = vec![0u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("raw-empty", raw("")),
        ("raw-object", raw("{}")),
        ("raw-not-json", raw("mesh=default&name=web-1")),
        (
            "raw-no-token",
            raw(r#"{"mesh":"default","name":"web-1","adminPort":9901}"#),
        ),
        (
            "raw-wrong-types",
            raw(r#"{"mesh":1,"name":["web-1"],"adminPort":-1,"deltaXds":"yes"}"#),
        ),
        (
            "raw-deep",
            raw(&format!("{}{}", "[".repeat(200), "]".repeat(200))),
        ),
        (
            "fields-valid",
            fields(&["default", "web-1", "9901", "", "@"]),
        ),
        (
            "fields-payments-as-web",
            fields(&["default", "web-1", "9901", PAYMENTS_AS_WEB, "@"]),
        ),
        (
            "fields-other-name",
            fields(&["default", "web-2", "9901", "", "@"]),
        ),
        (
            "fields-other-mesh",
            fields(&["other", "web-1", "9901", "", "@"]),
        ),
        (
            "fields-port-text",
            fields(&["default", "web-1", "abc", "", "@"]),
        ),
        (
            "fields-port-large",
            fields(&["default", "web-1", "70000", "", "@"]),
        ),
        (
            "fields-port-zero",
            fields(&["default", "web-1", "0", "", "@"]),
        ),
        (
            "fields-resource-garbage",
            fields(&["default", "web-1", "9901", "{{{:", "@"]),
        ),
        (
            "fields-resource-a-mesh",
            fields(&["default", "web-1", "9901", "type: Mesh\nname: x\n", "@"]),
        ),
        (
            "fields-forged-token",
            fields(&["default", "web-1", "9901", "", "eyJhbGciOiJub25lIn0.e30."]),
        ),
        ("fields-empty", fields(&[])),
    ];
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}
