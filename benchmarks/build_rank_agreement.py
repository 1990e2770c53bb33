"""Is a built set a usable benchmark? The classic baselines should rank the same on it as on its
source: Spearman rank correlation of disease accuracy and of naive re-identification (top-1),
target >= 0.8 for both.

    python benchmarks/build_rank_agreement.py --source SRC --built BUILT --output SCRATCH \\
        [--source-records leaderboards/runs/mema-synth] [--methods identity blur ...] [--profile quick]

Runs ``python -m benchmark.run --dataset mema --data-root ROOT --method M --output
SCRATCH/<source|built>`` for each method and root (skipping runs whose record exists), then
prints both rankings and the correlations. ``--output`` must be a scratch folder, never
``leaderboards/``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from benchmark.leaderboard import record_path

CLASSIC = ["identity", "blur", "blur_keep_eyes", "pixelate", "pixelate_keep_eyes", "mask", "mask_keep_eyes"]
SCORES = {"accuracy": "disease accuracy", "reid_top1": "naive re-identification top-1"}


def scores_on(root: Path, output: Path, methods: list[str], profile: str,
              records: Path | None = None) -> pd.DataFrame:
    """Accuracy and naive re-id per method, from ``records/<method>.json`` when given (existing
    run records on the same data, read only), else from runs written under ``output``."""
    rows = {}
    for method in methods:
        path = records / f"{method}.json" if records else record_path(output, "mema", method)
        if not path.is_file() and records:
            raise SystemExit(f"no run record {path}")
        if not path.is_file():
            print(f"[rank] {method} on {root} ...", flush=True)
            subprocess.run([sys.executable, "-m", "benchmark.run", "--dataset", "mema", "--data-root",
                            str(root), "--method", method, "--output", str(output), "--profile", profile,
                            "--quiet"], check=True)
        scores = json.loads(path.read_text())["scores"]
        rows[method] = {name: scores[name]["value"] for name in SCORES}
    return pd.DataFrame.from_dict(rows, orient="index")


def spearman(a: pd.Series, b: pd.Series) -> float:
    """Pearson correlation of the ranks (ties share their mean rank)."""
    return float(a.rank().corr(b.rank()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--built", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True, help="scratch folder for run records")
    parser.add_argument("--source-records", type=Path, help="read the source's scores from these "
                        "run records instead of running (e.g. leaderboards/runs/mema-synth when the "
                        "source is the default MeMa-Synth and the records carry its fingerprint)")
    parser.add_argument("--methods", nargs="+", default=CLASSIC)
    parser.add_argument("--profile", default="quick")
    args = parser.parse_args()
    if args.output.resolve().name == "leaderboards":
        parser.error("--output must be a scratch folder, not leaderboards/")
    source = scores_on(args.source, args.output / "source", args.methods, args.profile, args.source_records)
    built = scores_on(args.built, args.output / "built", args.methods, args.profile)
    table = source.join(built, lsuffix="_source", rsuffix="_built")
    print(table.round(4).to_string())
    for name, words in SCORES.items():
        rho = spearman(source[name], built[name])
        if rho != rho:  # NaN: every method scored the same on one side
            print(f"Spearman {words}: undefined (all methods tie on one set; target >= 0.8: missed)")
        else:
            print(f"Spearman {words}: {rho:.3f} (target >= 0.8: {'hit' if rho >= 0.8 else 'missed'})")


if __name__ == "__main__":
    main()
