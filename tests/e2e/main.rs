//! End-to-end tests of the `sluice` binary as a user runs it.

mod auth;
mod aws;
mod cli;
mod compact;
mod pipeline;
mod protocols;
mod query;
mod reliability;
mod support;
mod terraform;
