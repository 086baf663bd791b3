//! Replays the seed corpus of the `token` fuzz target (fuzz/corpus/token) so
//! that every test run exercises the fuzzed property. `write_token_seeds`
//! (ignored) regenerates the seeds.
#![cfg(feature = "tokens")]

include!("../../fuzz/shared/token.rs");

use std::path::PathBuf;

fn corpus_dir() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/token")
}

#[test]
fn token_corpus_replays_cleanly() {
    let mut n = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        if path.is_file() {
            check_token(&std::fs::read(&path).expect("read corpus file"));
            n += 1;
        }
    }
    assert!(n >= 10, "expected a seed corpus, found {n} files");
}

#[test]
fn the_issued_token_is_accepted_and_a_forged_one_is_not() {
    let target = token_target();
    // Mode 1 with no overwrites presents the issued token itself.
    check_token(&[1]);
    let forged = format!(
        r#"{{"Name":"web-1","Mesh":"default","Tags":{{"kuma.io/service":["payments"]}},"Type":"dataplane","iat":{},"exp":99999999999,"jti":"x"}}"#,
        1_700_000_000
    );
    let mut input = vec![2u8];
    input.extend_from_slice(forged.as_bytes());
    check_token(&input);
    let result = target
        .runtime
        .block_on(target.tokens.verify(&target.token, "default", "web-1"));
    assert_eq!(result.expect("the issued token verifies"), target.claims);
}

/// Writes the seed corpus: `cargo test -p kuma-core --features tokens --test
/// fuzz_token -- --ignored write_token_seeds`.
#[test]
#[ignore]
fn write_token_seeds() {
    let target = token_target();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();
    let text = |s: &str| {
        let mut v = vec![0u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    seeds.push(("text-issued", text(&target.token)));
    seeds.push(("text-bearer", text(&format!("Bearer {}", target.token))));
    seeds.push(("text-empty", text("")));
    seeds.push(("text-dots", text("..")));
    seeds.push(("text-not-base64", text("a!b.c$d.e%f")));
    seeds.push((
        "text-alg-none",
        text("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJOYW1lIjoid2ViLTEiLCJNZXNoIjoiZGVmYXVsdCJ9."),
    ));
    seeds.push((
        "text-hs256",
        text("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJOYW1lIjoid2ViLTEiLCJNZXNoIjoiZGVmYXVsdCJ9.c2lnbmF0dXJl"),
    ));
    seeds.push(("mutate-none", vec![1]));
    seeds.push(("mutate-signature-end", vec![1, 255, b'A', 254, b'B']));
    seeds.push(("mutate-header", vec![1, 1, b'x', 2, b'y']));
    seeds.push(("mutate-claims", vec![1, 10, b'Q', 11, b'.']));
    let claims = |s: &str| {
        let mut v = vec![2u8];
        v.extend_from_slice(s.as_bytes());
        v
    };
    seeds.push((
        "claims-other-service",
        claims(r#"{"Name":"web-1","Mesh":"default","Tags":{"kuma.io/service":["payments"]},"Type":"dataplane","iat":1700000000,"exp":99999999999,"jti":"x"}"#),
    ));
    seeds.push((
        "claims-wrong-types",
        claims(r#"{"Name":7,"Mesh":["default"],"Tags":"x","Type":"ingress","iat":"a","exp":-1}"#),
    ));
    seeds.push(("claims-not-json", claims("\u{0}\u{1}not json")));
    seeds.push(("claims-empty-object", claims("{}")));
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}
