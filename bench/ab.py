#!/usr/bin/env python3
"""A/B of the ingest workload: two or more sluice builds or settings, interleaved, with DuckDB's
partitioned COPY in the same run, so that the ratios of a noisy machine can be compared.

    bench/ab.py SLUICE DATA.ndjson [NAME:KEY=VALUE,…]…

SLUICE is the baseline binary ("base"); each NAME:… adds a variant: BIN=path runs another binary,
any other KEY=VALUE is set in the environment of its `sluice serve` (e.g.
SLUICE_CONFIG=flushes.toml, MIMALLOC_PURGE_DELAY=1000); PUBLISH_FLAGS adds flags to `sluice publish`
(`gzip:PUBLISH_FLAGS=--gzip`). Each cycle runs every variant once and then DuckDB once; it prints
each run (with `serve`'s CPU time and page faults), then per variant the median, its ratio to
DuckDB's median, the lake size and the median CPU time of `serve`. CYCLES=N
sets the cycles (default 3); NODUCK=1 leaves DuckDB out (ratios to 1 s). Run it with the
benchmark's virtualenv (`~/.cache/sluice/venv-bench/bin/python`), after `bench/run` has installed
DuckDB there.
"""

import os
import shutil
import statistics
import sys
import tempfile
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
import duckdb  # noqa: E402

# bench.py's ingest workload runs `serve` at its defaults; SERVE_FLAGS=… adds flags to every variant.
SERVE_FLAGS = tuple(os.environ.get("SERVE_FLAGS", "").split())


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    base, data = sys.argv[1], sys.argv[2]
    variants = {"base": {}}
    for arg in sys.argv[3:]:
        name, _, settings = arg.partition(":")
        variants[name] = dict(kv.split("=", 1) for kv in settings.split(",") if kv)
    work = tempfile.mkdtemp(prefix="sluice-ab-")
    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    sizes, duck = {}, []
    try:
        for cycle in range(int(os.environ.get("CYCLES", "3"))):
            for name, settings in variants.items():
                saved = dict(os.environ)
                os.environ.update({k: v for k, v in settings.items() if k != "BIN"})
                args = types.SimpleNamespace(sluice=settings.get("BIN", base), runs=1)
                lake = os.path.join(work, name)
                usage = []
                try:
                    t = bench.sluice_ingest(args, data, lake, *SERVE_FLAGS, usage=usage)
                finally:
                    os.environ.clear()
                    os.environ.update(saved)
                sizes[name] = bench.dir_bytes(os.path.join(lake, "logs"), ".parquet")
                bench.set_aside(lake, work)
                times[name].append(t)
                user, system, faults = usage[0]
                cpu[name].append(user + system)
                print(
                    f"{cycle} {name} {t:.2f} s, lake {sizes[name] / 2**20:.1f} MiB; serve: {user:.1f} s user, "
                    f"{system:.1f} s system, {faults} page faults",
                    flush=True,
                )
            if os.environ.get("NODUCK"):
                continue
            dst = os.path.join(work, "duckdb")
            t, _ = bench.timed(lambda: duckdb.connect().execute(bench.DUCKDB_INGEST.format(src=data, dst=dst)))
            sizes["duckdb"] = bench.dir_bytes(dst, ".parquet")
            bench.set_aside(dst, work)
            duck.append(t)
            print(f"{cycle} duckdb {t:.2f} s, lake {sizes['duckdb'] / 2**20:.1f} MiB", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    d = statistics.median(duck) if duck else 1.0
    for name, ts in [*times.items(), *([("duckdb", duck)] if duck else [])]:
        m = statistics.median(ts)
        line = f"{name}: median {m:.2f} s, ratio {m / d:.3f}, lake {sizes[name] / 2**20:.1f} MiB, runs {[round(x, 2) for x in ts]}"
        if cpu.get(name):
            line += f"; serve CPU median {statistics.median(cpu[name]):.1f} s"
        print(line)


if __name__ == "__main__":
    main()
