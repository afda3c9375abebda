"""Sends documents to `sluice serve` with the official Elasticsearch Python client, as a
shipper's bulk output does.

    es.py URL TOKEN

`Elasticsearch(URL + "/es", api_key=TOKEN)`: `info()` (the handshake and product check), then
`helpers.bulk` of documents in the shape Filebeat and Logstash send (`@timestamp`, `message`),
some of which the contract rejects. Prints one JSON object with what the client saw.
"""

import json
import sys

from elasticsearch import Elasticsearch, helpers

url, token = sys.argv[1], sys.argv[2]
es = Elasticsearch(url + "/es", api_key=token)
out = {"version": es.info()["version"]["number"], "license": es.license.get()["license"]["status"]}

docs = [
    # The index names the log type; the token's one organization applies.
    {"_index": "app", "_id": "d1", "_source": {"@timestamp": "2026-12-01T10:00:00Z", "message": "hello from filebeat",
                                                "environment": "prod", "userId": "u-1", "host": {"name": "web-1"}}},
    {"_index": "app", "_op_type": "create", "_source": {"@timestamp": "2026-12-01T10:00:01.250Z", "message": "second",
                                                          "environment": "prod", "statusCode": 200}},
    # No environment: missing_field.
    {"_index": "app", "_id": "d3", "_source": {"@timestamp": "2026-12-01T10:00:02Z", "message": "no environment"}},
    # Another organization than the token's: forbidden_organization.
    {"_index": "app", "_id": "d4", "_source": {"@timestamp": "2026-12-01T10:00:03Z", "message": "not mine",
                                                "environment": "prod", "organizationID": "globex"}},
    # Not a registered log type and none named: missing_field.
    {"_index": "filebeat-9.1.0", "_id": "d5", "_source": {"@timestamp": "2026-12-01T10:00:04Z", "environment": "prod"}},
]
ok, errors = helpers.bulk(es, docs, raise_on_error=False)
out["bulk_ok"] = ok
out["bulk_errors"] = errors

# Field mapping through query parameters: the environment from `fields.env`.
r = es.perform_request("POST", "/_bulk", params={"environment_field": "fields.env", "log_type": "web"},
                       headers={"content-type": "application/x-ndjson", "accept": "application/json"},
                       body=[{"index": {}}, {"@timestamp": "2026-12-01T11:00:00Z", "message": "mapped", "fields": {"env": "dev"}}])
out["mapped"] = {"errors": r.body["errors"], "status": r.body["items"][0]["index"]["status"]}
print(json.dumps(out))
