#![no_main]
//! The fuzz target `csv_import`: see `sluice_ingest::import::fuzz_csv`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_ingest::import::fuzz_csv(data));
