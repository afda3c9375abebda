#![no_main]
//! The fuzz target `sql_guard`: see `sluice_query::guard::fuzz_sql_guard`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_query::guard::fuzz_sql_guard(data));
