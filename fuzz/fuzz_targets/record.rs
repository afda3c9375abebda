#![no_main]
//! The fuzz target `record`: see `sluice_schemas::fuzz::record`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_schemas::fuzz::record(data));
