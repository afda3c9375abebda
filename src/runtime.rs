//! What every command of the binary shares: the async runtime, logging, the log-type registry,
//! the transform's settings, progress bars, and the flags of the Athena engine.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use sluice_partitioner::Partitioner;
use sluice_query::athena::{Athena, AthenaConfig};
use sluice_schemas::{Contract, Limits, Registry};

/// The async runtime of a command.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    // Deep query plans recurse while they run: give worker threads room.
    tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(8 << 20)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Logs to standard error, filtered by `SLUICE_LOG` (default `default`).
pub fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).try_init().ok();
}

/// The log types: the built-in ones, and those of `dir` when given.
pub fn registry(dir: Option<&PathBuf>) -> Result<Registry> {
    Ok(match dir {
        Some(d) => Registry::with_dir(d)?,
        None => Registry::builtin(),
    })
}

/// The transform over `registry`, with how far past arrival a record's time may be.
pub fn partitioner(registry: Registry, max_future: Option<chrono::Duration>) -> Partitioner {
    let mut limits = Limits::default();
    if let Some(f) = max_future {
        limits.max_future = f;
    }
    Partitioner::new(Contract { registry, limits })
}

/// A progress bar of `len` bytes (a spinner when unknown), hidden when `quiet`.
pub fn bar(len: Option<u64>, quiet: bool, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(&format!(
                "{{spinner}} {what} [{{bar:30}}] {{bytes}}/{{total_bytes}} {{msg}} ({{eta}})"
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template(&format!("{{spinner}} {what} {{bytes}} {{msg}}"))
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

/// A spinner showing `template` (with `{msg}`, `{pos}`, `{prefix}`), hidden when `quiet`.
pub fn spinner(quiet: bool, template: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    ProgressBar::new_spinner()
        .with_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner()))
}

/// The bytes of `file`, or of standard input for `-`.
pub fn read_input(file: &Path) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        io::stdin().read_to_end(&mut buf)?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// MiB, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The engines SQL runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineKind {
    /// DataFusion in this process, over the lake at --lake.
    Datafusion,
    /// Athena, over the Glue table of an AWS deployment.
    Athena,
}

/// Flags of the Athena engine.
#[derive(Debug, Clone, Args)]
pub struct AthenaArgs {
    /// Athena workgroup (the stack's `athena_workgroup` output).
    #[arg(long, env = "SLUICE_ATHENA_WORKGROUP", default_value = "sluice", value_name = "W")]
    pub workgroup: String,
    /// Glue database holding `logs` (the stack's `glue_database` output).
    #[arg(long, env = "SLUICE_ATHENA_DATABASE", default_value = "sluice", value_name = "D")]
    pub database: String,
    /// Result location (s3://bucket/prefix/) for workgroups that do not enforce their own.
    #[arg(long, env = "SLUICE_ATHENA_OUTPUT", value_name = "S3_URL")]
    pub output_location: Option<String>,
}

impl AthenaArgs {
    /// The engine these flags describe.
    pub async fn engine(&self) -> Athena {
        Athena::new(AthenaConfig {
            workgroup: self.workgroup.clone(),
            database: self.database.clone(),
            output_location: self.output_location.clone(),
            ..AthenaConfig::default()
        })
        .await
    }
}

/// The default memory budget of `serve`, `import` and `replay`, MiB: an eighth of the memory this
/// process may use (its cgroup's limit when it has one, else the machine's), between 256 MiB and
/// 4 GiB; 512 MiB where that cannot be read. The budget decides how large the files of a burst
/// into many partitions are, and so how many there are (docs/ingest.md).
pub fn default_memory_budget_mib() -> u64 {
    budget_mib(memory_limit())
}

/// The default budget for `memory` bytes (unknown: `None`).
fn budget_mib(memory: Option<u64>) -> u64 {
    memory.map_or(512, |bytes| (bytes >> 20) / 8).clamp(256, 4096)
}

/// The memory this process may use: the machine's, or its cgroup's limit when lower (Linux).
fn memory_limit() -> Option<u64> {
    let total = mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)?;
    Some(cgroup_limit().map_or(total, |limit| limit.min(total)))
}

/// `MemTotal` of `/proc/meminfo`, bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let kib = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim();
    kib.parse::<u64>().ok()?.checked_mul(1024)
}

/// The memory limit of this process's cgroup: v2 (`memory.max`) or v1 (`memory.limit_in_bytes`),
/// of its own cgroup or of the root a container sees, the lowest that is set; `None` when
/// unlimited or unreadable.
fn cgroup_limit() -> Option<u64> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own = |prefix: &str| {
        cgroups.lines().find_map(|l| l.strip_prefix(prefix).map(|p| p.trim().to_owned())).unwrap_or_default()
    };
    let (v2, v1) =
        (own("0::"), cgroups.lines().find_map(|l| l.split_once(":memory:")).map(|(_, p)| p.trim().to_owned()));
    [
        format!("/sys/fs/cgroup{v2}/memory.max"),
        "/sys/fs/cgroup/memory.max".to_owned(),
        format!("/sys/fs/cgroup/memory{}/memory.limit_in_bytes", v1.unwrap_or_default()),
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_owned(),
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(f).ok()?.trim().parse::<u64>().ok())
    .min()
}

/// The JSON body of an answer of sluice's API, or an error with the API's code and message.
pub async fn api_json(r: reqwest::Response) -> Result<serde_json::Value> {
    let status = r.status();
    let text = r.text().await?;
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"error": {"message": text}}));
    if !status.is_success() {
        let e = &v["error"];
        anyhow::bail!(
            "{status}: {} ({})",
            e["message"].as_str().unwrap_or_default(),
            e["code"].as_str().unwrap_or("error")
        );
    }
    Ok(v)
}

/// Reads an API's server-sent events (`event:` and `data:` lines of JSON), telling `on_event`
/// each data; the data of the `complete` event, or `None` when the stream ends before it.
pub async fn follow_events(
    mut r: reqwest::Response,
    mut on_event: impl FnMut(&serde_json::Value),
) -> Result<Option<serde_json::Value>> {
    let (mut buf, mut event) = (String::new(), String::new());
    while let Some(chunk) = r.chunk().await? {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(nl) = buf.find('\n') {
            let line = buf[..nl].trim_end_matches('\r').to_owned();
            buf.drain(..=nl);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(data) = line.strip_prefix("data:") {
                let s: serde_json::Value =
                    serde_json::from_str(data.trim()).context("a malformed server-sent event")?;
                on_event(&s);
                if event == "complete" {
                    return Ok(Some(s));
                }
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machines_memory_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24683116 kB\nMemFree:        16000000 kB\n";
        assert_eq!(mem_total(meminfo), Some(24_683_116 * 1024));
        assert_eq!(mem_total("MemFree: 1 kB\n"), None);
        assert_eq!(mem_total("MemTotal: lots\n"), None);
    }

    #[test]
    fn the_default_budget_is_an_eighth_of_the_memory_within_its_bounds() {
        let gib = 1u64 << 30;
        assert_eq!(budget_mib(Some(24 * gib)), 3072);
        assert_eq!(budget_mib(Some(gib)), 256, "at least 256 MiB");
        assert_eq!(budget_mib(Some(256 * gib)), 4096, "at most 4 GiB");
        assert_eq!(budget_mib(None), 512, "unreadable: the former default");
    }
}
