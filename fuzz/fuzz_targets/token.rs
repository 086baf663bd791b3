//! Fuzzes dataplane token verification: arbitrary text, the issued token with
//! bytes overwritten, and forged claims between a real header and signature.
#![no_main]

include!("../shared/token.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check_token(data));
