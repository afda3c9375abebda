#!/usr/bin/env bash
# Runs each cargo-fuzz target of sluice for a while (default 180 s each), on nightly, starting
# from the committed corpus under fuzz/corpus/. Not part of CI: CI runs every committed input
# (fuzz/corpus/ and fuzz/regressions/) through the same checks on stable, as ordinary tests.
#
#   ./scripts/fuzz.sh [SECONDS] [TARGET…]     targets: record body sql_guard csv_import
#
# A crash leaves its input in fuzz/artifacts/TARGET/. Make it a regression test: copy it to
# fuzz/regressions/TARGET/ (the tests run every file there), fix the code, commit both.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${1:-180}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(record body sql_guard csv_import)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: cargo fuzz needs the nightly toolchain (rustup toolchain install nightly)" >&2
  exit 1
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

status=0
for t in "${targets[@]}"; do
  printf '\n==> fuzzing %s for %s s\n' "$t" "$seconds"
  mkdir -p "corpus/$t" "regressions/$t"
  # New inputs go to a scratch folder; the committed corpus stays small and reviewed.
  scratch="target/corpus/$t"
  mkdir -p "$scratch"
  if ! cargo +nightly fuzz run "$t" "$scratch" "corpus/$t" "regressions/$t" -- \
      -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -timeout=20; then
    echo "fuzz target $t crashed: see fuzz/artifacts/$t/" >&2
    status=1
  fi
done
exit $status
