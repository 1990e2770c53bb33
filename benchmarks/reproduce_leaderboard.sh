#!/usr/bin/env bash
# Regenerate every leaderboard row with the CLI, from a clean tree only (a row names the commit
# that made it), each method isolated in its sandboxed worker.
#
#   benchmarks/reproduce_leaderboard.sh                 # write leaderboards/ (commit the result)
#   benchmarks/reproduce_leaderboard.sh --check         # rerun the committed rows' methods and
#                                                       # seeds into a scratch folder, compare
#
# SEEDS (default 0,1,2) are the seeds of every method; METHODS (default: every registered
# method) narrows the list. Extra arguments go to every run, e.g. `--profile full
# --accelerator gpu`. The first run generates MeMa-Synth and trains the evaluators of a seed;
# later runs reuse the cache. Prints the time of each run and of the whole.
set -euo pipefail
cd "$(dirname "$0")/.."

check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "refusing: the tree has uncommitted changes; leaderboard rows come from clean commits" >&2
    exit 2
fi

output=leaderboards
methods=${METHODS:-$(python -m benchmark.run --list-methods | awk 'NR > 1 {print $1}')}
if [ "$check" = 1 ]; then
    output=$(mktemp -d -t mema-bench-reproduce.XXXXXX)
    # exactly the committed rows (sweep points aside): their methods and seeds
    methods=$(python - <<'EOF'
import json, pathlib
for path in sorted(pathlib.Path("leaderboards/runs/mema-synth").glob("*/seed-*.json")):
    record = json.loads(path.read_text())
    if not record.get("sweep"):
        print(record["method"])
EOF
    )
    methods=$(echo "$methods" | sort -u)
fi

total=$SECONDS
for method in $methods; do
    seeds=${SEEDS:-0,1,2}
    if [ "$check" = 1 ]; then
        seeds=$(python - "$method" <<'EOF'
import json, pathlib, sys
runs = pathlib.Path("leaderboards/runs/mema-synth")
print(",".join(str(json.loads(p.read_text())["seed"]) for p in sorted(runs.glob("*/seed-*.json"))
               if json.loads(p.read_text())["method"] == sys.argv[1]))
EOF
        )
    fi
    echo "=== $method (seeds $seeds)"
    start=$SECONDS
    # --isolate: every method in the bubblewrap sandbox (refused where bubblewrap is missing)
    python -m benchmark.run --method "$method" --seeds "$seeds" --isolate --quiet \
        --output "$output" "$@"
    echo "=== $method: $((SECONDS - start)) s"
done
python -m benchmark.tables --output "$output" --paper
echo "=== all rows regenerated in $((SECONDS - total)) s"
if [ "$check" = 1 ]; then
    python -m benchmark.compare leaderboards "$output"
fi
