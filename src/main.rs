//! `sluice`: flags are parsed here; everything else happens in the library crates.

mod cli;
mod ingest_cmds;

fn main() -> std::process::ExitCode {
    cli::run(<cli::Cli as clap::Parser>::parse())
}
