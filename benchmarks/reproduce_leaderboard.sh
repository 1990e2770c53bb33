#!/usr/bin/env bash
# Regenerate every row of leaderboards/mema-synth.{csv,md} with the CLI: one
# `python -m benchmark.run` per registered built-in method, then the frontier plot.
# Extra arguments go to every run, e.g. `--profile full --accelerator gpu --devices 1`.
# The first run generates MeMa-Synth and trains the evaluators; later runs reuse the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

methods=$(python -m benchmark.run --list-methods | awk 'NR > 1 {print $1}')
for method in $methods; do
    echo "=== $method"
    start=$SECONDS
    # --isolate: every method in the bubblewrap sandbox (refused where bubblewrap is missing)
    python -m benchmark.run --method "$method" --isolate --quiet "$@"
    echo "=== $method: $((SECONDS - start)) s"
done
python -m benchmark.tables
