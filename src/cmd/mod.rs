//! The commands of `sluice`, one file each. A command's file uses the library crates and the
//! binary's shared parts (`runtime`, `config`, `server`), never another command's file.

pub mod compact;
pub mod demo;
pub mod export;
pub mod firehose_invoke;
pub mod generate;
pub mod import;
pub mod publish;
pub mod query;
pub mod replay;
pub mod schema;
pub mod serve;
pub mod token;
