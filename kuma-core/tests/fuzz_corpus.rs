//! Replays the seed corpus of the `resource` fuzz target (fuzz/corpus/resource)
//! so that every test run exercises the fuzzed property.

include!("../../fuzz/shared/resource.rs");

#[test]
fn resource_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/resource");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        if path.is_file() {
            check_resource(&std::fs::read(&path).expect("read corpus file"));
            n += 1;
        }
    }
    assert!(
        n >= 10,
        "expected a seed corpus, found {n} files in {}",
        dir.display()
    );
}
