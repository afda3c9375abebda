"""sluice and DuckDB side by side, in one run, on one machine.

Each workload runs with both, answers are compared, and the table shows the median of several
runs and the ratio sluice / DuckDB (for times: below 1 means sluice is faster). Run through
`bench/run`, which installs DuckDB from PyPI and builds sluice in release mode.
"""

import argparse
import datetime
import glob
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import duckdb

HIVE_TYPES = (
    "{'environment': 'VARCHAR', 'organization': 'VARCHAR', 'logtype': 'VARCHAR', "
    "'year': 'BIGINT', 'month': 'BIGINT', 'day': 'BIGINT', 'hour': 'BIGINT'}"
)

# Analyst queries that DataFusion and DuckDB both speak (the data spans 2025-01-01 .. +72 h).
QUERIES = {
    "counts by type": "SELECT logtype, count(*) AS n FROM logs GROUP BY logtype ORDER BY logtype",
    "error rate by org and hour": (
        "SELECT organization, hour, count(*) AS n, sum(CASE WHEN success THEN 0 ELSE 1 END) AS failures "
        "FROM logs GROUP BY organization, hour ORDER BY organization, hour"
    ),
    "one org, one hour": (
        "SELECT record_id, logtype, server, action FROM logs WHERE organization = '1003' AND environment = 'prod' "
        "AND year = 2025 AND month = 1 AND day = 2 AND hour = 7 ORDER BY record_id"
    ),
    "time range": (
        "SELECT logtype, count(*) AS n FROM logs WHERE time >= '2025-01-02T10:00:00Z' "
        "AND time < '2025-01-02T12:30:00Z' GROUP BY logtype ORDER BY logtype"
    ),
    "text search (LIKE)": "SELECT count(*) AS n FROM logs WHERE description LIKE '%retrying%' OR caller LIKE '%transfer.ts%'",
    # The first page of a search as SQL: the newest 100 records of the last day matching a text
    # in any of the fields `GET /v1/search` looks in.
    "newest 100 matching a text, one day": (
        "SELECT record_id FROM logs WHERE time >= '2025-01-03T00:00:00Z' AND time < '2025-01-04T00:00:00Z' "
        "AND (description ILIKE '%timeout%' OR action ILIKE '%timeout%' OR caller ILIKE '%timeout%' "
        "OR detail ILIKE '%timeout%') ORDER BY time DESC, record_id LIMIT 100"
    ),
    "top callers": (
        "SELECT caller, count(*) AS n FROM logs WHERE caller IS NOT NULL GROUP BY caller ORDER BY n DESC, caller LIMIT 5"
    ),
    "transaction trace": None,  # filled in with a transaction id from the data
    "events unnest": "SELECT logtype, sum(array_length(events)) AS events FROM logs GROUP BY logtype ORDER BY logtype",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median_time(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t, out = timed(fn)
        times.append(t)
    return statistics.median(times), out


def set_aside(lake, work):
    """Moves a finished lake out of the way, to be deleted after the last run. Deleted at once, its
    ~30,000 files and folders would slow the next run: ext4 without a journal (as on these
    machines) passes over every inode freed in the last minutes when it allocates one, and that
    scan took 18% of `sluice serve`'s CPU in a profile of an ingest run right after a deletion."""
    aside = os.path.join(work, "done")
    os.makedirs(aside, exist_ok=True)
    os.rename(lake, os.path.join(aside, f"{len(os.listdir(aside))}"))


def dir_bytes(path, suffix):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(suffix))
    return total


def count_files(path, suffix):
    return sum(1 for _, _, files in os.walk(path) for f in files if f.endswith(suffix))


def normalize(rows):
    """Rows as sorted tuples of strings, floats to 6 significant digits, so both engines compare."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.6g}"
        if v is None:
            return "null"
        return str(v)

    return sorted(tuple(cell(v) for v in (r.values() if isinstance(r, dict) else r)) for r in rows)


class Serve:
    """A `sluice serve` process on a free loopback port, authentication off (a benchmark on loopback)."""

    def __init__(self, sluice, lake, *extra):
        self.proc = subprocess.Popen(
            [sluice, "serve", "--auth", "none", "--lake", lake, "--listen", "127.0.0.1:0", *extra],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "SLUICE_LOG": "warn"},
        )
        for line in self.proc.stderr:
            m = re.search(r"listening on (http://\S+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("sluice serve did not start")

    def peak_rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def metric(self, name):
        """The value of gauge `name` at `GET /metrics`."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=60) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        raise KeyError(name)

    def cpu(self):
        """`serve`'s CPU seconds so far (user, system) and its minor page faults (`/proc/PID/stat`)."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tick, int(fields[12]) / tick, int(fields[7])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)


def http_json(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"{}")


def bench_transform(args):
    """The Lambda handler on a ~6 MB Firehose event (criterion, one core), `--runs` times."""
    runs = [transform_once() for _ in range(args.runs)]
    log("    transform runs (MiB/s): " + ", ".join(f"{r:.1f}" for r in runs))
    return {
        "workload": "transform (MiB/s per core)",
        "sluice": statistics.median(runs),
        "duckdb": None,
        "goal": ">= 238 MiB/s (250 MB/s)",
        "runs": runs,
    }


def transform_once():
    """One criterion run: decoded MiB/s at the median of its samples. Built with the `lambda`
    profile (fat LTO, one codegen unit), as `scripts/build-lambda.sh` builds the Lambda."""
    out = subprocess.run(
        ["cargo", "bench", "--locked", "--profile", "lambda", "-p", "sluice-partitioner", "--bench", "transform",
         "--", "--noplot"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # The median of criterion's samples (its printed estimate is the mean, which one slow
    # stretch of a shared machine drags down): decoded bytes per iteration / median time.
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    run = glob.glob(os.path.join(target, "criterion", "firehose_handler", "*", "new"))
    if len(run) != 1 or not re.search(r"thrpt:", out):
        sys.exit(f"transform: expected one criterion result under {target}/criterion/firehose_handler, found {run}")
    with open(os.path.join(run[0], "estimates.json")) as f:
        median_ns = json.load(f)["median"]["point_estimate"]
    with open(os.path.join(run[0], "benchmark.json")) as f:
        decoded = json.load(f)["throughput"]["Bytes"]
    return decoded / (median_ns / 1e9) / 2**20


DUCKDB_INGEST = """
SET TimeZone = 'UTC';
COPY (
  SELECT r.* EXCLUDE (organizationID, logType, environment, year, month, day, hour),
         r.environment AS environment,
         trim(CAST(r.organizationID AS VARCHAR), '"') AS organization,
         r.logType AS logtype,
         COALESCE(year(TRY_CAST(r."time" AS TIMESTAMPTZ)), TRY_CAST(r.year AS INTEGER)) AS year,
         COALESCE(month(TRY_CAST(r."time" AS TIMESTAMPTZ)), TRY_CAST(r.month AS INTEGER)) AS month,
         COALESCE(day(TRY_CAST(r."time" AS TIMESTAMPTZ)), TRY_CAST(r.day AS INTEGER)) AS day,
         COALESCE(hour(TRY_CAST(r."time" AS TIMESTAMPTZ)), TRY_CAST(r.hour AS INTEGER)) AS hour
  FROM read_json('{src}', format = 'newline_delimited', sample_size = -1, union_by_name = true) r
) TO '{dst}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (environment, organization, logtype, year, month, day, hour));
"""


def publish_flags():
    """Extra flags of `sluice publish` in the ingest workload: none, so requests go uncompressed,
    as `sluice publish` sends them by default and as a publisher on the server's own machine
    would. PUBLISH_FLAGS adds some (`bench/ab.py BIN DATA gzip:PUBLISH_FLAGS=--gzip` compares)."""
    return os.environ.get("PUBLISH_FLAGS", "").split()


def sluice_ingest(args, data, lake, *flags, usage=None, rss=None):
    """Seconds for `sluice publish` of `data` to a fresh `sluice serve` until all of it is in Parquet.
    `usage`, a list, gets `serve`'s CPU and page faults (`Serve.cpu`); `rss`, a list, its peak RSS
    and its memory budget in MiB."""
    serve = Serve(args.sluice, lake, *flags)
    t, _ = timed(
        lambda: (
            subprocess.run(
                [args.sluice, "publish", "--quiet", "--to", serve.url, *publish_flags(), data],
                check=True,
                stdout=subprocess.DEVNULL,
            ),
            http_json("POST", serve.url + "/v1/flush", {}),
        )
    )
    if usage is not None:
        usage.append(serve.cpu())
    if rss is not None:
        rss.append((serve.peak_rss_mib(), serve.metric("sluice_memory_budget_bytes") / 2**20))
    serve.stop()
    return t


def files_per_partition(lake):
    files = glob.glob(f"{lake}/logs/**/*.parquet", recursive=True)
    return len(files) / max(len({os.path.dirname(f) for f in files}), 1)


def ingest_side_by_side(args, work, data, name):
    """`serve` at its defaults + `publish` of `data`, then DuckDB's `COPY … PARTITION_BY` of it,
    `--runs` times in turn. Each engine's times, the server's peak RSS and budget (the largest
    peak), and the first run's lakes (the others are set aside)."""
    times, rss = {"sluice": [], "duckdb": []}, []
    for i in range(args.runs):
        lake = os.path.join(work, f"{name}-sluice-{i}")
        times["sluice"].append(sluice_ingest(args, data, lake, rss=rss))
        dst = os.path.join(work, f"{name}-duckdb-{i}")
        t, _ = timed(lambda: duckdb.connect().execute(DUCKDB_INGEST.format(src=data, dst=dst)))
        times["duckdb"].append(t)
        if i > 0:
            set_aside(lake, work)
            set_aside(dst, work)
    lake, dst = os.path.join(work, f"{name}-sluice-0"), os.path.join(work, f"{name}-duckdb-0")
    peak, budget = max(rss)
    return times, (peak, budget), lake, dst


def ingest_rows(label, times, rss, lake):
    """The rows of an ingest at the defaults: time against DuckDB, peak RSS, files per partition."""
    peak, budget = rss
    return [
        {"workload": f"ingest{label} at the defaults (s)", "sluice": statistics.median(times["sluice"]),
         "duckdb": statistics.median(times["duckdb"]), "goal": "sluice 3x faster", "runs": times},
        {"workload": f"ingest{label}: server peak RSS (MiB)", "sluice": peak, "duckdb": None,
         "goal": f"<= {budget * 1.25:,.0f} (budget {budget:,.0f} + 25%)"},
        {"workload": f"ingest{label}: files per partition", "sluice": files_per_partition(lake), "duckdb": None,
         "goal": "<= 1.5"},
    ]


def bench_ingest(args, work, data):
    """POST every record to `sluice serve` at its defaults until all are in Parquet, against
    DuckDB's partitioned COPY."""
    times, rss, lake, dst = ingest_side_by_side(args, work, data, "ingest")
    sluice_rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{lake}/logs/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0][0]
    duck_rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{dst}/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0][0]
    assert sluice_rows == duck_rows == args.records, (sluice_rows, duck_rows, args.records)
    size_s = dir_bytes(os.path.join(lake, "logs"), ".parquet")
    size_d = dir_bytes(dst, ".parquet")
    return ingest_rows(f" {args.records:,} records", times, rss, lake) + [
        {"workload": "lake size (MiB)", "sluice": size_s / 2**20, "duckdb": size_d / 2**20, "goal": "no larger"},
    ], lake


PROTOCOL_RECORDS = 200_000
PROTOCOL_BATCH = 1_000


def otlp_any(v):
    """A JSON value as an OTLP AnyValue."""
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList

    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    if isinstance(v, float):
        return AnyValue(double_value=v)
    if isinstance(v, str):
        return AnyValue(string_value=v)
    if isinstance(v, list):
        return AnyValue(array_value=ArrayValue(values=[otlp_any(x) for x in v]))
    if isinstance(v, dict):
        return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=otlp_any(x)) for k, x in v.items()]))
    return AnyValue()


def otlp_request(records):
    """An ExportLogsServiceRequest of native records, as an SDK would send them: one resource
    per organization, environment and log type (its attributes name them, docs/otlp.md), the
    time in `time_unix_nano`, the description as the body, every other field an attribute."""
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import KeyValue
    from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
    from opentelemetry.proto.resource.v1.resource_pb2 import Resource

    groups = {}
    for r in records:
        key = (str(r.pop("organizationID")), r.pop("environment"), r.pop("logType"))
        t = r.pop("time", None)
        hour = [int(r.pop(k)) for k in ("year", "month", "day", "hour") if k in r]
        if isinstance(t, str):
            t = datetime.datetime.fromisoformat(t.replace("Z", "+00:00"))
            nanos = int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000
        elif isinstance(t, (int, float)):
            nanos = int(t) * 1_000_000
        else:  # the contract's rule: the start of the hour its fields name
            nanos = int(datetime.datetime(*hour, tzinfo=datetime.timezone.utc).timestamp()) * 1_000_000_000
        body = r.pop("description", None)
        attrs = [KeyValue(key=k, value=otlp_any(v)) for k, v in r.items()]
        rec = LogRecord(time_unix_nano=nanos, attributes=attrs)
        if body is not None:
            rec.body.string_value = body
        groups.setdefault(key, []).append(rec)
    req = ExportLogsServiceRequest()
    for (org, env, lt), recs in groups.items():
        res = Resource(attributes=[
            KeyValue(key="sluice.organization", value=otlp_any(org)),
            KeyValue(key="deployment.environment.name", value=otlp_any(env)),
            KeyValue(key="sluice.log_type", value=otlp_any(lt)),
        ])
        req.resource_logs.append(ResourceLogs(resource=res, scope_logs=[ScopeLogs(log_records=recs)]))
    return req.SerializeToString()


def post_all(url, path, content_type, bodies, threads=4):
    """POSTs every body on `threads` keep-alive connections; fails on any answer but 200."""
    import http.client
    import threading

    host = urllib.parse.urlparse(url).netloc
    todo = list(enumerate(bodies))
    lock = threading.Lock()
    failures = []

    def worker():
        conn = http.client.HTTPConnection(host, timeout=600)
        while True:
            with lock:
                if not todo:
                    return
                _, body = todo.pop()
            conn.request("POST", path, body=body, headers={"content-type": content_type})
            r = conn.getresponse()
            answer = r.read()
            if r.status != 200:
                failures.append((r.status, answer[:200]))

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if failures:
        sys.exit(f"{path}: {len(failures)} requests failed, first: {failures[0]}")


def bench_protocols(args, work, data):
    """The same records sent as NDJSON to `/v1/logs` and as OTLP/protobuf to `/otlp/v1/logs`
    (1,000 a request, 4 connections), each into a fresh server at its defaults until all is in
    Parquet, `--runs` times in turn: what a protocol costs, in records/s and MB/s of bodies."""
    n = min(args.records, PROTOCOL_RECORDS)
    with open(data, "rb") as f:
        lines = [next(f).rstrip(b"\n") for _ in range(n)]
    batches = [lines[i:i + PROTOCOL_BATCH] for i in range(0, n, PROTOCOL_BATCH)]
    ndjson = [b"\n".join(b) + b"\n" for b in batches]
    otlp = [otlp_request([json.loads(l) for l in b]) for b in batches]
    kinds = {
        "NDJSON": ("/v1/logs", "application/x-ndjson", ndjson),
        "OTLP/protobuf": ("/otlp/v1/logs", "application/x-protobuf", otlp),
    }
    times = {k: [] for k in kinds}
    for i in range(args.runs):
        for kind, (path, ctype, bodies) in kinds.items():
            lake = os.path.join(work, f"protocol-{kind.split('/')[0].lower()}-{i}")
            serve = Serve(args.sluice, lake)
            t, _ = timed(lambda: (post_all(serve.url, path, ctype, bodies), http_json("POST", serve.url + "/v1/flush", {})))
            serve.stop()
            times[kind].append(t)
            set_aside(lake, work)
    rows = []
    for kind, (_, _, bodies) in kinds.items():
        t = statistics.median(times[kind])
        mb = sum(len(b) for b in bodies) / 1e6
        log(f"    {kind}: {n / t:,.0f} records/s, {mb / t:,.1f} MB/s of bodies ({mb:,.1f} MB), runs {times[kind]}")
        rows.append({"workload": f"ingest {n:,} records over {kind} (records/s)", "sluice": n / t, "duckdb": None,
                     "goal": "reported: a protocol's cost", "runs": times[kind]})
        rows.append({"workload": f"ingest {n:,} records over {kind} (MB/s of request bodies)", "sluice": mb / t,
                     "duckdb": None, "goal": f"{mb:,.1f} MB of bodies"})
    return rows


def bench_import(args, work, data, duckdb_seconds):
    """`sluice import` of the same file into a fresh lake at its default settings, against the
    DuckDB `COPY … PARTITION_BY` times of the ingest workload (the same file, the same run)."""
    times = []
    for i in range(args.runs):
        lake = os.path.join(work, f"import-sluice-{i}")
        t, _ = timed(
            lambda: subprocess.run(
                [args.sluice, "import", "--quiet", "--lake", lake, data],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        times.append(t)
        if i > 0:
            set_aside(lake, work)
    lake = os.path.join(work, "import-sluice-0")
    rows = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{lake}/logs/**/*.parquet', hive_partitioning = true)"
    ).fetchall()[0][0]
    assert rows == args.records, (rows, args.records)
    per_partition = files_per_partition(lake)
    set_aside(lake, work)
    return [
        {"workload": f"import {args.records:,} records, defaults (s)", "sluice": statistics.median(times),
         "duckdb": duckdb_seconds, "goal": "sluice 3x faster", "runs": {"sluice": times}},
        {"workload": "import: files per partition", "sluice": per_partition, "duckdb": None, "goal": "<= 1.5"},
    ]


def bench_queries(args, lake, label="", only=None):
    """`sluice query` (a process per query, startup included) against DuckDB in process."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        f"CREATE VIEW logs AS SELECT * FROM read_parquet('{lake}/logs/**/*.parquet', hive_partitioning = true, "
        f"hive_types = {HIVE_TYPES})"
    )
    tx = con.execute("SELECT transaction_id FROM logs WHERE transaction_id IS NOT NULL LIMIT 1").fetchone()[0]
    queries = dict(QUERIES)
    queries["transaction trace"] = (
        f"SELECT logtype, record_id, action FROM logs WHERE transaction_id = '{tx}' ORDER BY time, record_id"
    )
    rows, ratios = [], []
    for name, sql in queries.items():
        if only and name not in only:
            continue

        def run_sluice():
            out = subprocess.run(
                [args.sluice, "query", "--quiet", "--format", "json", "--lake", lake, "-c", sql],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return json.loads(out)

        def run_duckdb():
            c = duckdb.connect()
            c.execute("SET TimeZone = 'UTC'")
            c.execute(
                f"CREATE VIEW logs AS SELECT * FROM read_parquet('{lake}/logs/**/*.parquet', "
                f"hive_partitioning = true, hive_types = {HIVE_TYPES})"
            )
            r = c.execute(sql)
            cols = [d[0] for d in r.description]
            return [dict(zip(cols, row)) for row in r.fetchall()]

        s, s_out = median_time(run_sluice, args.runs)
        d, d_out = median_time(run_duckdb, args.runs)
        same = normalize(s_out) == normalize(d_out)
        ratios.append(s / d)
        goal = {
            "one org, one hour": ">= 10x faster",
            "transaction trace": ">= 10x faster",
            "newest 100 matching a text, one day": ">= 5x faster",
            "text search (LIKE)": "<= 0.5",
        }.get(name)
        rows.append({"workload": f"query{label}: {name} (s)", "sluice": s, "duckdb": d, "same_answer": same, "goal": goal})
    if only:
        return rows
    rows.append(
        {
            "workload": f"queries{label}: geometric mean of ratios",
            "sluice": statistics.geometric_mean(ratios),
            "duckdb": 1.0,
            "goal": "<= 1.0",
        }
    )
    return rows


def bench_many_files(args, work):
    """Issue 33's shape: the same number of records over 12 organizations, so 20,736 partitions
    (more than 20,000), ingested by `serve` at its defaults against DuckDB's `COPY … PARTITION_BY`
    of the same file, `--runs` times in turn: time, the server's peak RSS against its budget, files
    per partition. Then the needle lookups over that lake: one organization and hour, one
    transaction and the newest page of a day (`sluice query`, cold), and the API's trace and first
    search page."""
    data = os.path.join(work, "records-12-orgs.ndjson")
    subprocess.run(
        [args.sluice, "generate", "--records", str(args.records), "--orgs", "12", "--hours", "72", "-o", data],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    times, rss, lake, dst = ingest_side_by_side(args, work, data, "many")
    set_aside(dst, work)
    files = count_files(os.path.join(lake, "logs"), ".parquet")
    label = f" ({files:,} files)"
    rows = ingest_rows(label, times, rss, lake)
    rows.append({"workload": f"lake size{label} (MiB)", "sluice": dir_bytes(os.path.join(lake, "logs"), ".parquet") / 2**20,
                 "duckdb": None})
    rows += bench_queries(
        args, lake, label, only={"one org, one hour", "transaction trace", "newest 100 matching a text, one day"}
    )
    rows += bench_api(args, lake, label)
    set_aside(lake, work)
    os.remove(data)
    return rows


def bench_api(args, lake, label=""):
    """What a support engineer waits for on a running server (`serve --query-only`): one
    transaction's records (`GET /v1/trace/{id}`) and the first page of 100 records matching a
    text in the newest 24 hours of the data (`GET /v1/search`), each the median of five calls
    after one. Issue 33's goals: under 100 ms and under 300 ms."""
    glob_ = f"{lake}/logs/**/*.parquet"
    txid, newest = duckdb.sql(
        f"SELECT any_value(transaction_id), epoch(max(time)) FROM read_parquet('{glob_}', hive_partitioning = true)"
    ).fetchall()[0]
    to = datetime.datetime.fromtimestamp(newest, tz=datetime.timezone.utc) + datetime.timedelta(seconds=1)
    frm = to - datetime.timedelta(hours=24)
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    serve = Serve(args.sluice, lake, "--query-only")
    try:
        def median_call(path):
            times = []
            for _ in range(6):
                t, _ = timed(lambda: urllib.request.urlopen(serve.url + path, timeout=600).read())
                times.append(t)
            return statistics.median(times[1:])

        trace = median_call(f"/v1/trace/{urllib.parse.quote(txid)}")
        search = median_call(f"/v1/search?q=timeout&from={iso(frm)}&to={iso(to)}&page_size=100")
    finally:
        serve.stop()
    return [
        {"workload": f"API{label}: GET /v1/trace/{{id}} (s)", "sluice": trace, "duckdb": None, "goal": "< 0.1 s"},
        {"workload": f"API{label}: GET /v1/search, first 100 of a day (s)", "sluice": search, "duckdb": None,
         "goal": "< 0.3 s"},
    ]


def bench_export(args, work, lake, label=""):
    """A CSV export of every row through the export API, against DuckDB's COPY TO csv."""
    serve = Serve(args.sluice, lake, "--query-only", "--query-rate", "0")
    times = []
    for _ in range(args.runs):

        def run():
            s = http_json("POST", serve.url + "/v1/exports", {"sql": "SELECT * FROM logs", "protect_formulas": False})
            while s.get("state") in (None, "RUNNING"):
                time.sleep(0.05)
                s = http_json("GET", f"{serve.url}/v1/exports/{s['id']}")
            assert s["state"] == "SUCCEEDED", s
            with urllib.request.urlopen(serve.url + s["download_url"], timeout=600) as r:
                with open(os.path.join(work, "export.csv"), "wb") as f:
                    shutil.copyfileobj(r, f, 1 << 20)
            return s["rows"]

        t, n = timed(run)
        times.append(t)
    rss = serve.peak_rss_mib()
    serve.stop()
    size = os.path.getsize(os.path.join(work, "export.csv"))
    dst = os.path.join(work, "duck.csv")
    d, _ = median_time(
        lambda: duckdb.connect().execute(
            f"COPY (SELECT * FROM read_parquet('{lake}/logs/**/*.parquet', hive_partitioning = true)) TO '{dst}' (HEADER)"
        ),
        args.runs,
    )
    s = statistics.median(times)
    return [
        {"workload": f"export{label} {n:,} rows to CSV (MiB/s)", "sluice": size / 2**20 / s,
         "duckdb": os.path.getsize(dst) / 2**20 / d, "goal": ">= DuckDB"},
        {"workload": f"export{label}: server peak RSS (MiB)", "sluice": rss, "duckdb": None, "goal": "<= 300"},
    ]


def bench_compact(args, lake):
    """`sluice compact` over the ingested lake (every hour of the generated data is closed)."""
    files, size = count_files(os.path.join(lake, "logs"), ".parquet"), dir_bytes(os.path.join(lake, "logs"), ".parquet")
    t, _ = timed(
        lambda: subprocess.run(
            [args.sluice, "compact", "--quiet", "--lake", lake, "--older-than", "0s", "--grace", "0s"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    )
    files_after = count_files(os.path.join(lake, "logs"), ".parquet")
    size_after = dir_bytes(os.path.join(lake, "logs"), ".parquet")
    return [
        {"workload": "compact: time (s)", "sluice": t, "duckdb": None},
        {"workload": "compact: lake files before / after", "sluice": files, "duckdb": None, "after": files_after},
        {"workload": "compact: lake size before / after (MiB)", "sluice": size / 2**20, "duckdb": None,
         "after": size_after / 2**20},
    ]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sluice", required=True)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--out", default="bench/results/latest.json")
    p.add_argument("--skip-transform", action="store_true")
    p.add_argument("--only", choices=["protocols"], help="run this workload alone (and print its rows)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="sluice-bench-")
    try:
        data = os.path.join(work, "records.ndjson")
        log(f"==> generating {args.records:,} records (72 hours, 8 organizations)")
        subprocess.run(
            [args.sluice, "generate", "--records", str(args.records), "--orgs", "8", "--hours", "72", "-o", data],
            check=True,
            stderr=subprocess.DEVNULL,
        )
        rows = []
        if args.only == "protocols":
            log("==> the same records over NDJSON and OTLP/protobuf")
            for r in bench_protocols(args, work, data):
                print(f"| {r['workload']} | {r['sluice']:,.1f} | {r.get('goal') or ''} |")
            return
        if not args.skip_transform:
            log("==> transform")
            rows.append(bench_transform(args))
        log("==> ingest")
        ingested, lake = bench_ingest(args, work, data)
        rows += ingested
        log("==> the same records over NDJSON and OTLP/protobuf")
        rows += bench_protocols(args, work, data)
        log("==> import (backfill) at the defaults")
        rows += bench_import(args, work, data, ingested[0]["duckdb"])
        log("==> queries")
        rows += bench_queries(args, lake)
        log("==> export")
        rows += bench_export(args, work, lake)
        log("==> trace and search on a running server")
        rows += bench_api(args, lake)
        log("==> 20,736 partitions: ingest at the defaults, needle lookups")
        rows += bench_many_files(args, work)
        log("==> compact, then queries and export again")
        rows += bench_compact(args, lake)
        rows += bench_queries(args, lake, " (compacted)")
        rows += bench_export(args, work, lake, " (compacted)")
        rows += bench_api(args, lake, " (compacted)")
        machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"
        print(f"\nsluice vs DuckDB {duckdb.__version__} — {args.records:,} records, median of {args.runs} runs, {machine}\n")
        print(f"| workload | sluice | DuckDB | sluice / DuckDB | goal | same answer |")
        print("|---|---:|---:|---:|---|---|")
        for r in rows:
            s, d = r["sluice"], r["duckdb"]
            ratio = f"{s / d:.2f}" if d else ""
            fmt = lambda v: "" if v is None else f"{v:,.2f}"
            if "after" in r:
                s = None
                ratio = f"{r['sluice']:,.1f} → {r['after']:,.1f}"
            same = {True: "yes", False: "NO"}.get(r.get("same_answer"), "")
            print(f"| {r['workload']} | {fmt(s)} | {fmt(d)} | {ratio} | {r.get('goal') or ''} | {same} |")
        with open(args.out, "w") as f:
            json.dump({"records": args.records, "runs": args.runs, "machine": machine,
                       "duckdb": duckdb.__version__, "publish_flags": publish_flags(), "results": rows}, f, indent=2)
        log(f"\nwrote {args.out}")
        if any(r.get("same_answer") is False for r in rows):
            log("some answers differ between sluice and DuckDB")
            sys.exit(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
