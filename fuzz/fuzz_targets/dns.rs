//! Fuzzes DNS request handling: parse, answer, encode, parse again.
#![no_main]

include!("../shared/dns.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_dns(data));
