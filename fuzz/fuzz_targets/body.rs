#![no_main]
//! The fuzz target `body`: see `sluice_ingest::body::fuzz`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_ingest::body::fuzz(data));
