//! `sluice`: flags are parsed here; everything else happens in the library crates.

mod cli;
mod cmd;
mod config;
mod runtime;
mod server;

/// glibc's allocator keeps freed memory in per-thread arenas, so the resident size of a long
/// export grows with its length; mimalloc returns it and keeps memory bounded. It also takes
/// `malloc` from the C code linked in (feature `override`): zstd allocates a compressor and a
/// decompressor of ~200 KB for every Parquet column chunk read or written, and glibc served
/// each from fresh pages (a quarter of an export's time over small files went to page faults).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for this process, as `MIMALLOC_ALLOW_THP=0` would do. mimalloc asks
/// for huge pages on its memory and hands freed parts of it back to the kernel after a delay (its
/// purge); every fault on such a part then has the kernel zero a whole 2 MiB page. Over the
/// ingest benchmark that was 15,000–22,000 faults, 30–44 GiB zeroed for a process peaking at
/// 2.1 GiB, 20% of `serve`'s CPU; with 4 KiB pages `serve` used 27 s of CPU instead of 35 s
/// (README, "Performance"). A failure (a kernel without the call) leaves them on.
#[cfg(all(feature = "mimalloc", target_os = "linux"))]
fn no_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

#[cfg(not(all(feature = "mimalloc", target_os = "linux")))]
fn no_huge_pages() {}

fn main() -> std::process::ExitCode {
    no_huge_pages();
    // HTTPS clients (JWKS URLs, webhooks) use the TLS provider the AWS SDK brings.
    sluice_auth::install_crypto();
    cli::run(<cli::Cli as clap::Parser>::parse())
}
