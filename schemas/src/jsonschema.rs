//! A JSON Schema (draft 2020-12) for producers: what a record must look like to be accepted.

use serde_json::{Value, json};

use crate::{
    partition::MAX_PARTITION_VALUE_LEN,
    registry::{ExtraType, LogType, Registry},
};

const PARTITION_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9._-]*$";

fn time_schema(description: &str) -> Value {
    json!({
        "description": description,
        "oneOf": [
            {"type": "string", "format": "date-time"},
            {"type": "integer", "description": "epoch milliseconds"}
        ]
    })
}

fn hour_part(description: &str) -> Value {
    json!({"description": description, "type": ["string", "integer"], "pattern": "^[0-9]{1,4}$"})
}

fn extra_schema(ty: ExtraType, description: &str) -> Value {
    let mut v = match ty {
        ExtraType::String => json!({"type": ["string", "number"]}),
        ExtraType::Bigint => json!({"type": ["integer", "string"]}),
        ExtraType::Double => json!({"type": ["number", "string"]}),
        ExtraType::Boolean => json!({"type": "boolean"}),
        ExtraType::Timestamp => time_schema(description),
        ExtraType::Json => json!({}),
    };
    v["description"] = json!(description);
    v
}

fn event_schema() -> Value {
    let s = json!({"type": ["string", "null"]});
    json!({
        "type": "object",
        "description": "One step of the request on one server; other fields are kept in the event's `attributes`.",
        "properties": {
            "action": s, "description": s, "caller": s, "server": s, "transactionId": s, "type": s,
            "detail": {"description": "any JSON"},
            "success": {"type": ["boolean", "null"]},
            "time": time_schema("When the event happened")
        }
    })
}

fn log_type_branch(lt: &LogType) -> Value {
    let props: serde_json::Map<String, Value> =
        lt.columns.iter().map(|c| (c.field.clone(), extra_schema(c.ty, &c.description))).collect();
    json!({
        "if": {"properties": {"logType": {"const": lt.name}}, "required": ["logType"]},
        "then": {"properties": props}
    })
}

/// The JSON Schema of records, for every log type or for one.
pub fn json_schema(registry: &Registry, only: Option<&LogType>) -> Value {
    let part = |d: &str| {
        json!({"type": "string", "description": d, "minLength": 1,
               "maxLength": MAX_PARTITION_VALUE_LEN, "pattern": PARTITION_PATTERN})
    };
    let names: Vec<&str> = match only {
        Some(lt) => vec![lt.name.as_str()],
        None => registry.names(),
    };
    let branches: Vec<Value> = match only {
        Some(lt) => vec![log_type_branch(lt)],
        None => registry.log_types().map(log_type_branch).collect(),
    };
    let s = json!({"type": ["string", "null"]});
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": only.map_or("sluice log record".to_owned(), |lt| format!("sluice `{}` log record", lt.name)),
        "description": "One log record. Fields not listed are kept verbatim in `attributes`; no field is dropped.",
        "type": "object",
        "required": ["organizationID", "environment", "logType"],
        "properties": {
            "organizationID": {
                "description": "Organization id; becomes the `organization` partition.",
                "oneOf": [part("organization id"), {"type": "integer"}]
            },
            "environment": part("Environment; becomes the `environment` partition."),
            "logType": {"type": "string", "enum": names, "description": "A registered log type."},
            "time": time_schema("When it happened. Required unless year, month, day and hour are all given."),
            "year": hour_part("UTC year of the hour partition"),
            "month": hour_part("month of the hour partition"),
            "day": hour_part("day of the hour partition"),
            "hour": hour_part("hour (0-23) of the hour partition"),
            "transactionId": s, "server": s, "action": s, "type": s, "description": s, "caller": s,
            "success": {"type": ["boolean", "null"]},
            "detail": {"description": "any JSON; stored as JSON text"},
            "events": {"type": ["array", "null"], "items": event_schema()}
        },
        "anyOf": [
            {"required": ["time"]},
            {"required": ["year", "month", "day", "hour"]}
        ],
        "allOf": branches
    })
}
