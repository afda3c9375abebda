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

step "test tools from PyPI: DuckDB and moto server; python-hcl2; checkov (each in a virtualenv)"
venv_main="${SLUICE_VENV:-$cache/venv}"
"$venv_main/bin/python" -c 'import duckdb, moto.server, flask' 2>/dev/null || venv "$venv_main" 'duckdb==2.0.0' 'moto[server]==5.2.5'
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

step "the Lambda binary links no query engine and no unused AWS SDK"
deps=$(cargo tree --locked -p sluice-partitioner -e normal --prefix none --target all | sort -u)
if grep -E '^(datafusion|aws-sdk-|aws-config|parquet|arrow-array) ' <<<"$deps"; then
  echo "error: sluice-partitioner depends on the crates above; keep the Lambda lean" >&2
  exit 1
fi
echo "ok: $(wc -l <<<"$deps") crates, none of them a query engine"
