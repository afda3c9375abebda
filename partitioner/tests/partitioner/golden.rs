//! Golden tests: each fixture event in `sample-data/firehose/` gives exactly the committed
//! response. Regenerate with `SLUICE_BLESS=1 cargo test -p sluice-partitioner` and review the diff.

use std::{collections::BTreeMap, fs};

use aws_lambda_events::event::firehose::KinesisFirehoseEvent;
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use sluice_partitioner::{FirehoseResponse, Partitioner, TransformResult};
use sluice_schemas::{Context, ReasonCode, record_id};

use crate::sample_data;

fn check_fixture(name: &str) -> (KinesisFirehoseEvent, FirehoseResponse) {
    let dir = sample_data().join("firehose");
    let event_text = fs::read(dir.join(format!("{name}.json"))).expect("fixture event");
    let got = Partitioner::default().handle_json(&event_text).expect("valid event") + "\n";
    let expected_path = dir.join(format!("{name}.expected.json"));
    if std::env::var_os("SLUICE_BLESS").is_some() {
        fs::write(&expected_path, &got).expect("bless");
    }
    let expected = fs::read_to_string(&expected_path).expect("expected response (run with SLUICE_BLESS=1 to create)");
    assert_eq!(got, expected, "{name}: response differs from {}", expected_path.display());
    let event: KinesisFirehoseEvent = serde_json::from_slice(&event_text).expect("event");
    let response: FirehoseResponse = serde_json::from_str(&got).expect("response parses back");
    // Every recordId exactly once, in order.
    let ids_in: Vec<_> = event.records.iter().map(|r| r.record_id.clone().unwrap_or_default()).collect();
    let ids_out: Vec<_> = response.records.iter().map(|r| r.record_id.clone()).collect();
    assert_eq!(ids_in, ids_out);
    (event, response)
}

#[test]
fn plain_event() {
    let (_, resp) = check_fixture("plain");
    assert!(resp.records.iter().all(|r| r.result == TransformResult::Ok));
    let types: Vec<String> =
        resp.records.iter().map(|r| r.metadata.as_ref().expect("metadata").partition_keys.logtype.clone()).collect();
    for t in ["web", "app", "agw", "hub", "connector", "container"] {
        assert!(types.iter().any(|x| x == t), "{t} missing");
    }
}

#[test]
fn sns_enveloped_event_gives_the_same_rows_as_plain() {
    let (_, plain) = check_fixture("plain");
    let (_, sns) = check_fixture("sns");
    assert_eq!(sns.records.len(), 6);
    for (p, s) in plain.records.iter().zip(&sns.records) {
        assert_eq!(s.result, TransformResult::Ok);
        assert_eq!(p.metadata, s.metadata);
        assert_eq!(p.data, s.data, "same record id and arrival, so the same line");
    }
}

#[test]
fn mixed_event_fails_only_the_bad_records_with_their_original_bytes() {
    let (event, resp) = check_fixture("mixed");
    let mut results: BTreeMap<&str, usize> = BTreeMap::new();
    for (r_in, r_out) in event.records.iter().zip(&resp.records) {
        *results
            .entry(match r_out.result {
                TransformResult::Ok => "ok",
                TransformResult::Dropped => "dropped",
                TransformResult::ProcessingFailed => "failed",
            })
            .or_default() += 1;
        match r_out.result {
            TransformResult::Ok => {
                let line = BASE64.decode(&r_out.data).expect("base64");
                assert_eq!(line.last(), Some(&b'\n'));
                serde_json::from_slice::<serde_json::Value>(&line).expect("a JSON line");
            }
            _ => {
                assert_eq!(BASE64.decode(&r_out.data).expect("base64"), r_in.data.0, "original bytes");
                assert!(r_out.metadata.is_none());
            }
        }
    }
    assert_eq!(results, BTreeMap::from([("dropped", 1), ("failed", 8), ("ok", 9)]));
}

/// `ingested_at` is the record's `approximateArrivalTimestamp` to the millisecond, and the event
/// parsed by `aws_lambda_events` names the same records with the same bytes.
#[test]
fn ingested_at_is_the_arrival_to_the_millisecond() {
    let (event, resp) = check_fixture("plain");
    let text = fs::read(sample_data().join("firehose/plain.json")).expect("fixture event");
    let raw: serde_json::Value = serde_json::from_slice(&text).expect("json");
    let ours: sluice_partitioner::FirehoseEvent = serde_json::from_slice(&text).expect("event");
    for ((r_in, r_ours), (r_raw, r_out)) in event
        .records
        .iter()
        .zip(&ours.records)
        .zip(raw["records"].as_array().expect("records").iter().zip(&resp.records))
    {
        assert_eq!(r_ours.data, r_in.data.0);
        let millis = r_raw["approximateArrivalTimestamp"].as_i64().expect("integer millis");
        assert_eq!(r_ours.approximate_arrival_timestamp, millis);
        let line: serde_json::Value =
            serde_json::from_slice(&BASE64.decode(&r_out.data).expect("base64")).expect("line");
        let ingested =
            chrono::DateTime::parse_from_rfc3339(line["ingested_at"].as_str().expect("ingested_at")).expect("RFC 3339");
        assert_eq!(ingested.timestamp_millis(), millis, "{}", r_out.record_id);
    }
}

#[test]
fn arrival_timestamps_may_be_fractions_or_strings_and_data_must_be_base64() {
    let event = |ts: &str, data: &str| {
        format!(
            r#"{{"invocationId":"i","records":[{{"recordId":"r","approximateArrivalTimestamp":{ts},"data":"{data}"}}]}}"#
        )
    };
    for (ts, want) in [
        ("1735776000123", 1_735_776_000_123),
        ("1735776000123.6", 1_735_776_000_124),
        (r#""1735776000123""#, 1_735_776_000_123),
    ] {
        let e: sluice_partitioner::FirehoseEvent = serde_json::from_str(&event(ts, "e30=")).expect(ts);
        assert_eq!(e.records[0].approximate_arrival_timestamp, want, "{ts}");
        assert_eq!(e.records[0].data, b"{}");
    }
    let err =
        serde_json::from_str::<sluice_partitioner::FirehoseEvent>(&event("1", "not base64!")).expect_err("bad data");
    assert!(err.to_string().contains("not base64"), "{err}");
    // Only canonical base64, as Firehose writes it: padded, no stray bits.
    for data in ["e30", "e31="] {
        assert!(serde_json::from_str::<sluice_partitioner::FirehoseEvent>(&event("1", data)).is_err(), "{data}");
    }
    assert!(serde_json::from_str::<sluice_partitioner::FirehoseEvent>(&event("true", "e30=")).is_err());
}

#[test]
fn every_reason_code_of_the_committed_bad_records() {
    let text = fs::read(sample_data().join("bad-records.ndjson")).expect("bad records");
    let p = Partitioner::default();
    let ctx = Context { record_id: record_id("x"), arrival_micros: 1_735_776_000_000_000 };
    let mut codes: Vec<ReasonCode> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| match p.transform(l, &ctx) {
            sluice_partitioner::Outcome::ProcessingFailed(e) => e.code,
            other => panic!("{} was not rejected: {other:?}", String::from_utf8_lossy(&l[..l.len().min(200)])),
        })
        .collect();
    codes.sort();
    codes.dedup();
    assert_eq!(codes, ReasonCode::CONTRACT.to_vec());
}

#[test]
fn generated_bad_records_are_rejected_with_the_code_they_were_made_for() {
    let mut g = sluice_sample_data::Generator::new(sluice_sample_data::Options {
        records: 300,
        bad_fraction: 0.3,
        ..Default::default()
    });
    let p = Partitioner::default();
    let ctx = Context { record_id: record_id("x"), arrival_micros: 1_735_776_000_000_000 };
    let mut buf = Vec::new();
    while let Some(kind) = {
        buf.clear();
        g.write_record(&mut buf)
    } {
        let line = &buf[..buf.len() - 1];
        match (kind, p.transform(line, &ctx)) {
            (sluice_sample_data::Kind::Good, sluice_partitioner::Outcome::Ok { .. }) => {}
            (sluice_sample_data::Kind::Bad(want), sluice_partitioner::Outcome::ProcessingFailed(e)) => {
                assert_eq!(e.code.as_str(), want)
            }
            (k, o) => panic!("{k:?} gave {o:?} for {}", String::from_utf8_lossy(&line[..line.len().min(300)])),
        }
    }
}

#[test]
fn the_committed_sample_is_all_good() {
    let text = fs::read(sample_data().join("records.ndjson")).expect("sample");
    let p = Partitioner::default();
    let ctx = Context { record_id: record_id("x"), arrival_micros: 1_735_776_000_000_000 + 86_400_000_000 };
    let n = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .inspect(|l| assert!(matches!(p.transform(l, &ctx), sluice_partitioner::Outcome::Ok { .. })))
        .count();
    assert!(n >= 2000, "{n}");
}
