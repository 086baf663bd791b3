//! Fuzzes the xDS servers' request handling: a sequence of requests on one
//! SotW ADS, delta ADS or SDS stream to a real in-process control plane.
#![no_main]

include!("../shared/xds.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_xds(data));
