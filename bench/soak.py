"""A load and soak test of `sluice serve` at its default settings (issue 31).

For `--minutes` (default 10), several producers send records at a fixed total rate, each as a
tenant of its own; a reader tenant runs queries, searches, traces and exports; a compaction runs
alongside; and a hostile tenant mixes in bad-line floods, oversized bodies, slow uploads,
queries that would allocate without limit and more queries than it may run at once. It prints
the acknowledgement latency of ingest (p50/p99, each minute and overall), the server's RSS over
time, what the hostile requests got, and at the end compares every acknowledged record with
the lake. Run through `bench/soak`, which builds sluice in release mode.

Exit status 1 when an acknowledged record is missing from the lake.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SECRET = "soak-secret-soak-secret-soak-secret-0123456789"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def token(sluice, org, roles):
    env = dict(os.environ, SLUICE_JWT_SECRET=SECRET)
    out = subprocess.run(
        [sluice, "token", "--org", org, "--roles", roles, "--ttl", "2h"], env=env, check=True, capture_output=True
    )
    return out.stdout.decode().strip()


def request(url, method="GET", body=None, token=None, headers=None, timeout=120):
    req = urllib.request.Request(url, data=body, method=method)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latencies = []  # (time since start, seconds)
        self.acked = set()
        self.sent = 0
        self.retries = 0
        self.failures = {}
        self.reads = {}
        self.hostile = {}
        self.rss = []  # (time since start, MiB)

    def count(self, table, key):
        with self.lock:
            table[key] = table.get(key, 0) + 1


def producer(base, tok, org, index, rate, until, start, stats, stop):
    """Sends `rate` records a second in requests of 100, each acknowledged or retried."""
    n, interval = 0, 100 / rate
    next_at = time.monotonic()
    while time.monotonic() < until and not stop.is_set():
        ids = [index * 1_000_000_000 + n + i for i in range(100)]
        n += 100
        now = time.time()
        body = "\n".join(
            json.dumps(
                {
                    "organizationID": org,
                    "environment": "soak",
                    "logType": random.choice(["web", "app", "agw"]),
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - random.random() * 3600)) + "Z",
                    "transactionId": f"tx-{org}-{i // 10}",
                    "server": f"srv{i % 7}",
                    "action": random.choice(["received request", "sent response", "retrying upstream"]),
                    "description": f"soak record {i} " + "x" * random.randint(50, 400),
                    "success": i % 13 != 0,
                    "testId": i,
                }
            )
            for i in ids
        ).encode()
        sent_at = time.monotonic()
        with stats.lock:
            stats.sent += len(ids)
        while not stop.is_set():
            status, answer = request(
                f"{base}/v1/logs", "POST", body, tok, {"Content-Type": "application/x-ndjson"}, timeout=60
            )
            if status == 200:
                with stats.lock:
                    stats.acked.update(ids)
                    stats.latencies.append((time.monotonic() - start, time.monotonic() - sent_at))
                break
            stats.count(stats.failures, status)
            with stats.lock:
                stats.retries += 1
            time.sleep(0.5)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))


def reader(base, tok, org, until, stats, stop):
    """Queries, searches, traces and exports, one after another."""
    while time.monotonic() < until and not stop.is_set():
        t0 = time.monotonic()
        kind = random.choice(["query", "search", "trace", "export"])
        if kind == "query":
            status, body = request(
                f"{base}/v1/queries",
                "POST",
                json.dumps({"sql": "SELECT logtype, count(*) AS n FROM logs GROUP BY logtype"}).encode(),
                tok,
                {"Content-Type": "application/json"},
            )
            if status == 202:
                qid = json.loads(body)["id"]
                while True:
                    status, body = request(f"{base}/v1/queries/{qid}", token=tok)
                    if status != 200 or json.loads(body)["state"] != "RUNNING":
                        break
                    time.sleep(0.1)
        elif kind == "search":
            status, _ = request(f"{base}/v1/search?q=retrying&page_size=100", token=tok)
        elif kind == "trace":
            status, _ = request(f"{base}/v1/trace/tx-{org}-{random.randint(0, 200)}", token=tok)
            status = 200 if status == 404 else status
        else:
            sql = "SELECT time, server, action, description FROM logs WHERE success = false"
            status, body = request(
                f"{base}/v1/exports", "POST", json.dumps({"sql": sql}).encode(), tok, {"Content-Type": "application/json"}
            )
            if status == 202:
                eid = json.loads(body)["id"]
                while True:
                    status, body = request(f"{base}/v1/exports/{eid}", token=tok)
                    if status != 200 or json.loads(body)["state"] != "RUNNING":
                        break
                    time.sleep(0.2)
                if status == 200 and json.loads(body)["state"] == "SUCCEEDED":
                    status, _ = request(f"{base}/v1/exports/{eid}/download", token=tok)
        stats.count(stats.reads, f"{kind} {status} ({time.monotonic() - t0:.1f} s)" if status != 200 else f"{kind} 200")
        time.sleep(1)


def slow_upload(host, port, tok, seconds):
    """An upload that sends its body a byte a second."""
    try:
        s = socket.create_connection((host, port), timeout=seconds + 30)
        s.sendall(
            (
                f"POST /v1/logs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\n"
                "Content-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n"
            ).encode()
        )
        for _ in range(seconds):
            s.sendall(b"{")
            time.sleep(1)
        s.close()
    except OSError:
        pass


def hostile(base, tok, until, stats, stop):
    """Bad-line floods, oversized bodies, slow uploads, queries that would allocate without
    limit, and more queries at once than a token may run."""
    host, port = base.removeprefix("http://").split(":")
    while time.monotonic() < until and not stop.is_set():
        kind = random.choice(["flood", "oversized", "slow", "huge query", "many queries"])
        if kind == "flood":
            status, body = request(f"{base}/v1/logs", "POST", b"x\n" * 99_000, tok, {"Content-Type": "application/x-ndjson"})
            stats.count(stats.hostile, f"bad-line flood → {status}, {len(body)} bytes answered")
        elif kind == "oversized":
            status, _ = request(f"{base}/v1/logs", "POST", b"x\n" * (8 << 20), tok, {"Content-Type": "application/x-ndjson"})
            stats.count(stats.hostile, f"16 MB of two-byte lines → {status}")
        elif kind == "slow":
            threads = [threading.Thread(target=slow_upload, args=(host, int(port), tok, 20)) for _ in range(10)]
            for t in threads:
                t.start()
            stats.count(stats.hostile, "10 slow uploads of 20 s")
            for t in threads:
                t.join()
        elif kind == "huge query":
            sql = random.choice(
                [
                    "SELECT repeat('x', 2000000000)",
                    "SELECT range(0, 1000000000000)",
                    "SELECT lpad('x', 2000000000)",
                    "SELECT count(*) FROM logs a CROSS JOIN logs b",
                ]
            )
            status, body = request(
                f"{base}/v1/queries", "POST", json.dumps({"sql": sql}).encode(), tok, {"Content-Type": "application/json"}
            )
            if status == 202:
                qid = json.loads(body)["id"]
                for _ in range(600):
                    s2, b2 = request(f"{base}/v1/queries/{qid}", token=tok)
                    if s2 != 200 or json.loads(b2)["state"] != "RUNNING":
                        break
                    time.sleep(0.5)
                else:
                    request(f"{base}/v1/queries/{qid}", "DELETE", token=tok)
                code = json.loads(b2).get("error", {}).get("code", "ok") if s2 == 200 else s2
                stats.count(stats.hostile, f"{sql[:40]} → {code}")
            else:
                stats.count(stats.hostile, f"{sql[:40]} → {status}")
        else:
            sql = json.dumps({"sql": "SELECT count(*) FROM generate_series(1, 100000000000)"}).encode()
            answers = [
                request(f"{base}/v1/queries", "POST", sql, tok, {"Content-Type": "application/json"}) for _ in range(8)
            ]
            statuses = sorted(s for s, _ in answers)
            stats.count(stats.hostile, f"8 long queries at once → {statuses}")
            time.sleep(5)
            for s, b in answers:
                if s == 202:
                    request(f"{base}/v1/queries/{json.loads(b)['id']}", "DELETE", token=tok)
        time.sleep(2)


def rss_sampler(pid, start, stats, stop):
    while not stop.is_set():
        try:
            with open(f"/proc/{pid}/status") as f:
                kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            with stats.lock:
                stats.rss.append((time.monotonic() - start, kib / 1024))
        except (OSError, StopIteration):
            return
        stop.wait(5)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--rate", type=int, default=2000, help="records a second, all producers together")
    ap.add_argument("--producers", type=int, default=4)
    ap.add_argument("--work", help="working folder (default: a temporary one, deleted after)")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="sluice-soak-")
    os.makedirs(work, exist_ok=True)
    lake = os.path.join(work, "lake")
    shutil.rmtree(lake, ignore_errors=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, SLUICE_JWT_SECRET=SECRET, SLUICE_LOG="warn")
    serve = subprocess.Popen(
        [args.sluice, "serve", "--lake", lake, "--listen", f"127.0.0.1:{port}"],
        env=env,
        stderr=open(os.path.join(work, "serve.log"), "w"),
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if request(f"{base}/healthz")[0] == 200:
            break
        time.sleep(0.1)
    orgs = [f"p{i}" for i in range(args.producers)]
    writers = [token(args.sluice, o, "logs:write") for o in orgs]
    read_tok = token(args.sluice, orgs[0], "logs:read,exports:write")
    evil = token(args.sluice, "evil", "logs:write,logs:read,exports:write")
    operator = token(args.sluice, "*", "admin")

    stats, stop = Stats(), threading.Event()
    start = time.monotonic()
    until = start + args.minutes * 60
    log(f"soak: {args.minutes} min at {args.rate} records/s from {args.producers} producers; lake {lake}")
    threads = [
        threading.Thread(target=producer, args=(base, writers[i], orgs[i], i, args.rate / args.producers, until, start, stats, stop))
        for i in range(args.producers)
    ]
    threads += [
        threading.Thread(target=reader, args=(base, read_tok, orgs[0], until, stats, stop)),
        threading.Thread(target=hostile, args=(base, evil, until, stats, stop)),
    ]
    sampler = threading.Thread(target=rss_sampler, args=(serve.pid, start, stats, stop))
    for t in threads + [sampler]:
        t.start()
    # A compaction alongside, halfway through, when each folder holds several files (it waits
    # its grace period before deleting the files it replaced).
    time.sleep(args.minutes * 30)
    compact = subprocess.run(
        [args.sluice, "compact", "--quiet", "--lake", lake, "--older-than", "0s", "--grace", "30s"],
        capture_output=True,
        text=True,
    )
    log(f"soak: compaction exit {compact.returncode}: {compact.stdout.strip()[-200:]} {compact.stderr.strip()[-300:]}")
    while time.monotonic() < until:
        time.sleep(5)
        with stats.lock:
            minute = int((time.monotonic() - start) // 60)
            lat = [l for t, l in stats.latencies if t >= minute * 60]
            rss = stats.rss[-1][1] if stats.rss else 0
            log(f"soak: {time.monotonic() - start:5.0f} s  acked {len(stats.acked):>9,}  p99 this minute {percentile(lat, 99):.3f} s  RSS {rss:.0f} MiB")
    for t in threads:
        t.join()
    stop.set()
    sampler.join()
    status, _ = request(f"{base}/v1/flush", "POST", b"", operator)
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=120)

    out = subprocess.run(
        [
            args.sluice,
            "query",
            "--lake",
            lake,
            "--format",
            "csv",
            "-c",
            "SELECT regexp_replace(attributes, '.*\"testId\":([0-9]+).*', '\\1') AS id FROM logs WHERE environment = 'soak'",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    in_lake = [int(x) for x in out.stdout.split()[1:]]
    missing = stats.acked - set(in_lake)

    print(f"\n## Soak: {args.minutes:g} minutes, {args.rate} records/s from {args.producers} producers, default settings\n")
    print("| minute | acknowledged requests | p50 (s) | p99 (s) | max (s) | RSS min–max (MiB) |")
    print("|---|---|---|---|---|---|")
    minutes = int(args.minutes + 0.999)
    for m in range(minutes):
        lat = [l for t, l in stats.latencies if m * 60 <= t < (m + 1) * 60]
        rss = [r for t, r in stats.rss if m * 60 <= t < (m + 1) * 60]
        rss_text = f"{min(rss):.0f}–{max(rss):.0f}" if rss else "–"
        print(f"| {m + 1} | {len(lat)} | {percentile(lat, 50):.3f} | {percentile(lat, 99):.3f} | {max(lat) if lat else float('nan'):.3f} | {rss_text} |")
    lat = [l for _, l in stats.latencies]
    print(f"| all | {len(lat)} | {percentile(lat, 50):.3f} | {percentile(lat, 99):.3f} | {max(lat) if lat else float('nan'):.3f} | "
          f"{min(r for _, r in stats.rss):.0f}–{max(r for _, r in stats.rss):.0f} |")
    print(f"\n- records sent {stats.sent:,}, acknowledged {len(stats.acked):,}, retried requests {stats.retries} {stats.failures}")
    print(f"- in the lake {len(in_lake):,} rows ({len(in_lake) - len(set(in_lake)):,} duplicates), "
          f"acknowledged but missing: **{len(missing)}**")
    print(f"- reads by the reader tenant: {dict(sorted(stats.reads.items()))}")
    print("- hostile requests:")
    for k, v in sorted(stats.hostile.items()):
        print(f"  - {k}: {v}×")
    print(f"- compaction alongside: exit {compact.returncode}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if missing else 0)


if __name__ == "__main__":
    main()
