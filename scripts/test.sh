#!/usr/bin/env bash
# Runs every test of sluice, as CI does. On a fresh machine it installs what the tests need.
#
#   ./scripts/test.sh
#
# Set CARGO_TARGET_DIR to share a build directory between clones.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "test tools: DuckDB (from PyPI) in a virtualenv"
venv="${SLUICE_VENV:-$HOME/.cache/sluice/venv}"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'duckdb==2.0.0'
fi
export SLUICE_PYTHON="$venv/bin/python"
"$SLUICE_PYTHON" -c 'import duckdb; print("duckdb", duckdb.__version__)'

step "formatting"
cargo fmt --all -- --check

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
