//! Encoding alone, without the server: transforms an NDJSON file, groups its rows by partition
//! and encodes one Parquet file a partition in memory, as the writer settings of `encode.rs`
//! make them. Prints the time of encoding (each file's fastest of `ROUNDS`, summed, so that a
//! noisy machine's slow stretches drop out) and the size of the files. For tuning those settings
//! against the lake-size goal of `bench/bench.py`.
//!
//! `cargo run --release -p sluice-lake --example encode -- FILE [ROUNDS]` (default 3 rounds).
//! Records share an `ingested_at` 4,000 at a time, as a request's do.

use std::{collections::HashMap, sync::Arc, time::Instant};

use sluice_lake::encode::encode_parquet;
use sluice_partitioner::{Outcome, Partitioner};
use sluice_schemas::{Context, Contract, PackedRow, record_id_at};

/// The server's allocator: encoding's cost depends on it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORDS_PER_REQUEST: usize = 4000;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: encode FILE [ROUNDS]");
    let rounds: usize = args.next().map_or(3, |n| n.parse().expect("ROUNDS is a number"));
    let data = std::fs::read(&path).expect("readable file");
    let partitioner = Partitioner::new(Contract::default());
    let mut parts: HashMap<String, Vec<PackedRow>> = HashMap::new();
    let started = Instant::now();
    for (i, line) in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let ctx = Context {
            record_id: record_id_at(&path, i as u64),
            arrival_micros: 1_764_547_200_000_000 + (i / RECORDS_PER_REQUEST) as i64 * 50_000,
        };
        if let Outcome::Ok { partition, row } = partitioner.transform(line, &ctx) {
            parts.entry(partition.path()).or_default().push(row);
        }
    }
    let transform = started.elapsed();
    let registry = &partitioner.contract().registry;
    let schema = Arc::new(registry.lake_arrow_schema());
    let mut parts: Vec<_> = parts.into_iter().collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut fastest = vec![f64::MAX; parts.len()];
    let mut bytes = 0;
    for round in 0..rounds {
        for ((_, rows), best) in parts.iter().zip(&mut fastest) {
            let t = Instant::now();
            let n = encode_parquet(registry, &schema, rows).expect("encodes").len();
            *best = best.min(t.elapsed().as_secs_f64());
            if round == 0 {
                bytes += n;
            }
        }
    }
    println!(
        "{} rows in {} files: transform {:.2} s, encode {:.3} s, {:.2} MiB",
        parts.iter().map(|p| p.1.len()).sum::<usize>(),
        parts.len(),
        transform.as_secs_f64(),
        fastest.iter().sum::<f64>(),
        bytes as f64 / f64::from(1 << 20)
    );
}
