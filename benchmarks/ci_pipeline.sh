#!/usr/bin/env bash
# The whole pipeline at small scale, as CI runs it: generate MeMa-Synth, train the evaluators,
# fit and score every registered method under every attack (profile `ci`: 32 px, few epochs,
# the methods' toy presets), write the leaderboard and the paper tables, and check what must
# hold at that scale (benchmarks/check_pipeline.py). Its own cache and output folders unless
# MEMA_BENCH_CACHE or the first argument name them; prints the time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
export MEMA_BENCH_CACHE=${MEMA_BENCH_CACHE:-$(mktemp -d -t mema-bench-ci-cache.XXXXXX)}
output=${1:-$(mktemp -d -t mema-bench-ci.XXXXXX)}
mkdir -p "$output"
methods=$(python -m benchmark.run --list-methods | awk 'NR > 1 {print $1}')
total=$SECONDS
for method in $methods; do
    start=$SECONDS
    python -m benchmark.run --method "$method" --profile ci --output "$output" --quiet \
        > "$output/$method.log" 2>&1 || { cat "$output/$method.log"; exit 1; }
    echo "pipeline: $method $((SECONDS - start)) s"
done
python -m benchmark.tables --output "$output" --paper > /dev/null
python benchmarks/check_pipeline.py "$output" --methods "$(echo $methods | tr ' ' ',')"
echo "pipeline: all methods, tables and checks in $((SECONDS - total)) s (output $output)"
