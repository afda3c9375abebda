#!/usr/bin/env bash
# Builds the Firehose transform Lambda for the provided.al2023 runtime and zips it:
#
#   ./scripts/build-lambda.sh [TARGET]      # default: x86_64-unknown-linux-gnu
#
# writes target/lambda/sluice-partitioner.zip (a `bootstrap` binary). For arm64 Lambdas pass
# aarch64-unknown-linux-gnu or aarch64-unknown-linux-musl (rustup target add …) and set the
# stack's lambda_architecture = "arm64". A glibc build must not need a glibc newer than
# Amazon Linux 2023's 2.34; the script checks, and a musl target avoids the question.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:-x86_64-unknown-linux-gnu}"
cargo build --locked --profile lambda -p sluice-partitioner --features lambda --target "$target"
bin="${CARGO_TARGET_DIR:-target}/$target/lambda/sluice-partitioner"
if [[ "$target" == *-gnu ]]; then
  newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
  if [[ "$(printf '%s\n2.34\n' "$newest" | sort -V | tail -1)" != "2.34" ]]; then
    echo "error: $bin needs glibc $newest; Amazon Linux 2023 has 2.34: build for a musl target instead" >&2
    exit 1
  fi
fi
out=target/lambda
mkdir -p "$out"
work=$(mktemp -d)
cp "$bin" "$work/bootstrap"
rm -f "$out/sluice-partitioner.zip"
(cd "$work" && zip -q -9 "$OLDPWD/$out/sluice-partitioner.zip" bootstrap)
rm -rf "$work"
echo "wrote $out/sluice-partitioner.zip ($(du -h "$out/sluice-partitioner.zip" | cut -f1)); deploy it with terraform/ (see README, Deploy to AWS)"
