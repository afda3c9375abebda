"""Sends logs to `sluice serve` with the OpenTelemetry Python SDK, as a service does.

    otlp.py URL TOKEN

1. The SDK's OTLP/HTTP protobuf exporter behind Python's `logging` (a warning inside a span, a
   record whose body is a map, and an info line), for a resource with no organization: the
   token's one organization applies.
2. The same SDK's encoder for a batch of two resources, one without an environment: sent as
   protobuf and as OTLP/JSON (the spec's JSON: hex trace and span ids), each answer read with the
   ExportLogsServiceResponse of `opentelemetry-proto`, to see the partial success a client gets.

Prints one JSON object with what each step saw.
"""

import json
import logging
import sys

import requests
from google.protobuf import json_format
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

url, token = sys.argv[1], sys.argv[2]
auth = {"Authorization": f"Bearer {token}"}
out = {}


def provider(attrs, exporter):
    p = LoggerProvider(resource=Resource.create(attrs))
    p.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    return p


def logger(name, p):
    log = logging.getLogger(name)
    log.setLevel(logging.INFO)
    log.propagate = False
    log.handlers = [LoggingHandler(level=logging.INFO, logger_provider=p)]
    return log


# 1. The exporter as a service configures it.
exporter = OTLPLogExporter(endpoint=f"{url}/otlp/v1/logs", headers=auth)
results = []
real_export = exporter.export
exporter.export = lambda batch: results.append(real_export(batch).name) or results[-1]
checkout = provider({"service.name": "checkout", "deployment.environment.name": "prod", "host.name": "web-1"}, exporter)
log = logger("shop.orders", checkout)
trace.set_tracer_provider(TracerProvider())
with trace.get_tracer("shop").start_as_current_span("order") as span:
    ctx = span.get_span_context()
    out["trace_id"] = format(ctx.trace_id, "032x")
    out["span_id"] = format(ctx.span_id, "016x")
    log.warning("order %s failed", "o-1", extra={"order.id": "o-1", "amount": 12.5})
log.info({"cart": {"items": 3}, "paid": True})
log.info("plain line")
checkout.force_flush()
out["exporter_results"] = results

# 2. A batch of two resources, one with no environment, encoded by the SDK.
memory = InMemoryLogRecordExporter()
good = provider({"service.name": "billing", "deployment.environment.name": "staging"}, memory)
bad = provider({"service.name": "billing"}, memory)
logger("billing.good", good).error("charged twice")
logger("billing.bad", bad).error("where am I")
batch = memory.get_finished_logs()
request = encode_logs(batch)

r = requests.post(f"{url}/otlp/v1/logs", data=request.SerializeToString(),
                  headers={**auth, "Content-Type": "application/x-protobuf"}, timeout=30)
resp = ExportLogsServiceResponse.FromString(r.content)
out["protobuf"] = {"status": r.status_code, "content_type": r.headers.get("content-type"),
                   "rejected": resp.partial_success.rejected_log_records,
                   "message": resp.partial_success.error_message}

# OTLP/JSON: protobuf's JSON mapping with the spec's exceptions (hex ids, integer enums).
doc = json_format.MessageToDict(request, use_integers_for_enums=True)
for rl in doc["resourceLogs"]:
    for sl in rl.get("scopeLogs", []):
        for lr in sl.get("logRecords", []):
            for k in ("traceId", "spanId"):
                if k in lr:
                    import base64
                    lr[k] = base64.b64decode(lr[k]).hex()
r = requests.post(f"{url}/otlp/v1/logs", data=json.dumps(doc),
                  headers={**auth, "Content-Type": "application/json"}, timeout=30)
resp = json_format.Parse(r.text, ExportLogsServiceResponse())
out["json"] = {"status": r.status_code, "content_type": r.headers.get("content-type"),
               "rejected": resp.partial_success.rejected_log_records,
               "message": resp.partial_success.error_message}

# A body that is not OTLP: an error the exporter can read (google.rpc.Status).
r = requests.post(f"{url}/otlp/v1/logs", data=b"\xff\xff not protobuf",
                  headers={**auth, "Content-Type": "application/x-protobuf"}, timeout=30)
out["garbage"] = {"status": r.status_code}
print(json.dumps(out))
