// Shared by the `resource` fuzz target and the corpus replay test in
// kuma-core/tests/fuzz_corpus.rs (both `include!` this file).
//
// Property: arbitrary bytes never panic the decoder or the validator, and any
// document that decodes is written back (YAML and JSON) to a document that
// decodes to the same resource.

/// Feeds `data` to resource decoding (YAML and JSON), validation and encoding.
pub fn check_resource(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for decoded in [
        kuma_core::resource::Resource::from_yaml(text),
        kuma_core::resource::Resource::from_json(text),
    ] {
        let Ok(resource) = decoded else { continue };
        let _ = resource.validate();
        let yaml = resource.to_yaml();
        let again = kuma_core::resource::Resource::from_yaml(&yaml)
            .unwrap_or_else(|e| panic!("re-decoding our own YAML failed: {e}\n{yaml}"));
        assert_eq!(again, resource, "YAML round trip changed the resource\n{yaml}");
        let json = resource.to_json();
        let again = kuma_core::resource::Resource::from_json(&json)
            .unwrap_or_else(|e| panic!("re-decoding our own JSON failed: {e}\n{json}"));
        assert_eq!(again, resource, "JSON round trip changed the resource\n{json}");
    }
}
