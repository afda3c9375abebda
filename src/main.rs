//! `sluice`: flags are parsed here; everything else happens in the library crates.

mod cli;
mod compact_cmd;
mod export_cmd;
mod ingest_cmds;
mod query_cmd;
mod token_cmd;

/// glibc's allocator keeps freed memory in per-thread arenas, so the resident size of a long
/// export grows with its length; mimalloc returns it and keeps memory bounded. It also takes
/// `malloc` from the C code linked in (feature `override`): zstd allocates a compressor and a
/// decompressor of ~200 KB for every Parquet column chunk read or written, and glibc served
/// each from fresh pages (a quarter of an export's time over small files went to page faults).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // HTTPS clients (JWKS URLs, webhooks) use the TLS provider the AWS SDK brings.
    sluice_auth::install_crypto();
    cli::run(<cli::Cli as clap::Parser>::parse())
}
