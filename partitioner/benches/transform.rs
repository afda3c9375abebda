//! The Lambda handler on an event of about 6 MB (Lambda's payload limit), reported in bytes of
//! decoded record data per second. The handler is single-threaded, so this is MB/s per core.
//! Measured as the Lambda binary runs it: the event parsed from JSON into a `FirehoseEvent`,
//! answered by `respond`, the response serialized by `serde_json::to_vec` (what `lambda_runtime`
//! does with the handler's result), with the Lambda binary's allocator (mimalloc) and its build
//! profile (`lambda`: fat LTO, one codegen unit; the default `bench` profile works too, ~9% slower).
//!
//! `cargo bench -p sluice-partitioner --bench transform --profile lambda`

use std::hint::black_box;

/// The Lambda binary's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_partitioner::{FirehoseEvent, Partitioner};

/// Builds a Firehose event of at most `limit` bytes of JSON from generated records.
fn event(limit: usize) -> (Vec<u8>, u64) {
    let mut g = sluice_sample_data::Generator::new(sluice_sample_data::Options {
        records: u64::MAX,
        seed: 42,
        orgs: 8,
        hours: 72,
        bad_fraction: 0.0,
        ..Default::default()
    });
    let mut records = Vec::new();
    let mut size = 200;
    let mut decoded = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        g.write_record(&mut buf);
        let data = BASE64.encode(&buf[..buf.len() - 1]);
        let entry = serde_json::json!({
            "recordId": format!("4954698668313554428650745793632162567570019247115678{:04}", records.len()),
            "approximateArrivalTimestamp": 1_735_776_000_000u64 + 3 * 86_400_000,
            "data": data,
        });
        size += data.len() + 120;
        if size > limit {
            break;
        }
        decoded += (buf.len() - 1) as u64;
        records.push(entry);
    }
    let ev = serde_json::json!({
        "invocationId": "bench",
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/sluice-logs",
        "region": "us-east-1",
        "records": records,
    });
    (serde_json::to_vec(&ev).expect("json"), decoded)
}

fn bench(c: &mut Criterion) {
    let (ev, decoded) = event(6 * 1000 * 1000);
    let p = Partitioner::default();
    let mut group = c.benchmark_group("firehose_handler");
    group.throughput(Throughput::Bytes(decoded));
    group.sample_size(20);
    group.bench_function(format!("event_{:.1}MB", ev.len() as f64 / 1e6), |b| {
        b.iter(|| {
            let event: FirehoseEvent = serde_json::from_slice(black_box(&ev)).expect("event");
            serde_json::to_vec(&p.respond(&event)).expect("response")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
