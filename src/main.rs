//! `sluice`: flags are parsed here; everything else happens in the library crates.

mod cli;
mod compact_cmd;
mod export_cmd;
mod ingest_cmds;
mod query_cmd;
mod token_cmd;

/// glibc's allocator keeps freed memory in per-thread arenas, so the resident size of a long
/// export grows with its length; mimalloc returns it and keeps memory bounded.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // HTTPS clients (JWKS URLs, webhooks) use the TLS provider the AWS SDK brings.
    sluice_auth::install_crypto();
    cli::run(<cli::Cli as clap::Parser>::parse())
}
