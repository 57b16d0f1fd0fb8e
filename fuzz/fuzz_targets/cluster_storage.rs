#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| session_server::fuzzing::cluster_storage(data));
