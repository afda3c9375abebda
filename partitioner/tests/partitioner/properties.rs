//! Properties of the handler over arbitrary input.

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use proptest::prelude::*;
use sluice_partitioner::{Partitioner, TransformResult};

fn event(datas: &[Vec<u8>]) -> Vec<u8> {
    let records: Vec<serde_json::Value> = datas
        .iter()
        .enumerate()
        .map(|(i, d)| serde_json::json!({"recordId": format!("r{i}"), "approximateArrivalTimestamp": 1_735_776_000_000u64, "data": BASE64.encode(d)}))
        .collect();
    serde_json::to_vec(&serde_json::json!({"invocationId": "x", "records": records})).expect("json")
}

fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "\\PC{0,64}".prop_map(String::into_bytes),
        (
            "[a-z0-9./ -]{0,10}",
            "[A-Za-z0-9._ -]{0,10}",
            prop_oneof![Just("web".to_owned()), "[a-z]{1,8}"],
            prop_oneof![Just("\"2025-01-01T10:00:00Z\"".to_owned()), "-?[0-9]{1,14}", "\"[0-9T:.Z-]{0,24}\""],
        )
            .prop_map(|(org, env, lt, time)| {
                format!(r#"{{"organizationID":"{org}","environment":"{env}","logType":"{lt}","time":{time}}}"#)
                    .into_bytes()
            }),
    ]
}

proptest! {
    /// Every recordId comes back exactly once, in order; results are the three strings; a
    /// non-Ok record carries its original bytes; an Ok record carries partition keys.
    #[test]
    fn every_record_exactly_once(datas in proptest::collection::vec(record(), 0..20)) {
        let response = Partitioner::default().handle_json(&event(&datas)).expect("valid event");
        let v: serde_json::Value = serde_json::from_str(&response).expect("json");
        let out = v["records"].as_array().expect("records");
        prop_assert_eq!(out.len(), datas.len());
        for (i, (o, d)) in out.iter().zip(&datas).enumerate() {
            let id = format!("r{i}");
            prop_assert_eq!(o["recordId"].as_str(), Some(id.as_str()));
            let result: TransformResult = serde_json::from_value(o["result"].clone()).expect("result string");
            let data = BASE64.decode(o["data"].as_str().expect("data")).expect("base64");
            match result {
                TransformResult::Ok => prop_assert!(o["metadata"]["partitionKeys"]["logtype"].is_string()),
                _ => prop_assert_eq!(&data, d),
            }
        }
    }
}
