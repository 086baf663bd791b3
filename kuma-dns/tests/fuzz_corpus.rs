//! Replays the seed corpus of the `dns` fuzz target (fuzz/corpus/dns) so
//! that every test run exercises the fuzzed property.

include!("../../fuzz/shared/dns.rs");

#[test]
fn dns_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/dns");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        if path.is_file() {
            check_dns(&std::fs::read(&path).expect("read corpus file"));
            n += 1;
        }
    }
    assert!(
        n >= 20,
        "expected a seed corpus, found {n} files in {}",
        dir.display()
    );
}
