//! Fuzzes the bootstrap server's request handling: raw bodies, and
//! structured requests with real and forged tokens and Dataplanes.
#![no_main]

include!("../shared/bootstrap.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    check_bootstrap(data);
});
