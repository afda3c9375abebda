#!/usr/bin/env bash
# Runs every test of sluice, as CI does. On a fresh machine it installs what the tests need.
#
#   ./scripts/test.sh
#
# Set CARGO_TARGET_DIR to share a build directory between clones.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# A virtualenv at $1 holding the PyPI packages $2…, made or completed when a package is missing.
venv() {
  local dir="$1"; shift
  if ! "$dir/bin/python" -c "import sys; sys.exit(0)" 2>/dev/null; then python3 -m venv "$dir"; fi
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
}
cache="$HOME/.cache/sluice"

step "test tools from PyPI: DuckDB, moto server, the OpenTelemetry SDK and the Elasticsearch client; python-hcl2; checkov (each in a virtualenv)"
venv_main="${SLUICE_VENV:-$cache/venv}"
"$venv_main/bin/python" -c 'import duckdb, moto.server, flask, elasticsearch, opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null || venv "$venv_main" 'duckdb==2.0.0' 'moto[server]==5.2.5' 'opentelemetry-sdk==1.45.2' 'opentelemetry-exporter-otlp-proto-http==1.45.2' 'elasticsearch==9.5.1'
export SLUICE_PYTHON="$venv_main/bin/python"
"$SLUICE_PYTHON" -c 'import duckdb, moto; print("duckdb", duckdb.__version__, "· moto", moto.__version__)'
"$cache/venv-hcl2/bin/python" -c 'import hcl2' 2>/dev/null || venv "$cache/venv-hcl2" 'python-hcl2==8.1.4'
export SLUICE_HCL_PYTHON="$cache/venv-hcl2/bin/python"
"$cache/venv-checkov/bin/checkov" --version >/dev/null 2>&1 || venv "$cache/venv-checkov" 'checkov==3.3.30'

step "terraform: checkov (every failed check is a failure; every skip carries its reason in the code)"
report=$("$cache/venv-checkov/bin/checkov" -d terraform --framework terraform --skip-download --quiet -o json || true)
python3 - "$report" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
r = r[0] if isinstance(r, list) else r
summary, results = r["summary"], r["results"]
for c in results.get("failed_checks", []):
    print(f"FAILED {c['check_id']} {c['resource']} {c['file_path']}: {c['check_name']}")
unexplained = [c for c in results.get("skipped_checks", []) if not (c["check_result"].get("suppress_comment") or "").strip()]
for c in unexplained:
    print(f"SKIPPED WITHOUT A REASON {c['check_id']} {c['resource']}")
print(f"checkov {summary['checkov_version']}: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped with reasons, {summary['parsing_errors']} parsing errors")
sys.exit(1 if summary["failed"] or summary["parsing_errors"] or unexplained or not summary["passed"] else 0)
PY

step "formatting"
cargo fmt --all -- --check
for f in bench/bench.py bench/ab.py bench/soak.py; do python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])" "$f"; done

step "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests (unit, integration, end-to-end; benchmarks run once as tests)"
cargo test --workspace --all-targets --locked

step "doc tests"
cargo test --workspace --doc --locked

step "layers: no module circles, no command importing another (scripts/check-layers.py)"
python3 scripts/check-layers.py

step "layers: the crates' own edges point down (DESIGN.md §7, ARCHITECTURE.md) and no others"
declare -A allowed=(
  [sluice-schemas]="" [sluice-aws]="" [sluice-sample-data]=""
  [sluice-partitioner]="sluice-schemas"
  [sluice-producer]="sluice-schemas sluice-aws"
  [sluice-auth]="sluice-schemas"
  [sluice-lake]="sluice-schemas sluice-aws"
  [sluice-ingest]="sluice-schemas sluice-partitioner sluice-auth sluice-lake"
  [sluice-query]="sluice-schemas sluice-aws sluice-auth sluice-lake"
)
for crate in "${!allowed[@]}"; do
  for dep in $(cargo tree --locked -p "$crate" -e normal,build --depth 1 --prefix none --target all \
      | awk -v self="$crate" '$1 ~ /^sluice-/ && $1 != self {print $1}' | sort -u); do
    if [[ " ${allowed[$crate]} " != *" $dep "* ]]; then
      echo "error: $crate depends on $dep, an edge ARCHITECTURE.md does not draw" >&2
      exit 1
    fi
  done
done
echo "ok: ${#allowed[@]} crates, every edge drawn"

# Fails when the tree of $1 holds a crate matching the regular expression $2; $3 says why.
forbid() {
  local deps
  deps=$(cargo tree --locked -p "$1" -e normal,build --prefix none --target all | awk '{print $1}' | sort -u)
  if grep -E "^($2)\$" <<<"$deps"; then
    echo "error: $1 depends on the crates above; $3" >&2
    exit 1
  fi
  echo "ok: $1 has $(wc -l <<<"$deps") crates, none of ($2)"
}
forbid sluice-partitioner 'datafusion.*|aws-sdk-.*|aws-config|parquet|arrow-array' "keep the Lambda lean"
forbid sluice-producer 'datafusion.*|parquet|arrow-array|sluice-lake|sluice-ingest|sluice-query' \
  "a service that only publishes compiles no Parquet writer, write-ahead log or query engine"
forbid sluice-lake 'datafusion.*|sluice-ingest|sluice-query' "the lake stands below both engines"
forbid sluice-ingest 'datafusion.*|sluice-query' "ingest never depends on the query engine"
forbid sluice-query 'sluice-ingest' "query never depends on ingest"
