//! Fuzzes resource decoding, validation and encoding (YAML and JSON).
#![no_main]

include!("../shared/resource.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_resource(data));
