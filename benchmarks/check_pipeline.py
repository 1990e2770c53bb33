"""Check what must hold after the whole pipeline ran at small scale (``.ci/run``,
``benchmarks/ci_pipeline.sh``): every registered method has a row, the no-op leaks, the
whole-face mask hides, the worst case is never below the naive attack, and every table
(leaderboard CSV/Markdown, paper Markdown/LaTeX) is well-formed.

    python benchmarks/check_pipeline.py OUTPUT [--dataset mema-synth] [--methods a,b,...]

Prints one line per check; exits 1 if any fails.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from benchmark.leaderboard import leaderboard_frame, load_records
from benchmark.paper import TABLES


def checks(output: Path, dataset: str, methods: list[str]) -> list[tuple[str, bool, str]]:
    frame = leaderboard_frame(load_records(output, dataset)).set_index("method")
    results = []

    def check(name: str, ok: bool, detail: str = "") -> None:
        results.append((name, bool(ok), detail))

    missing = sorted(set(methods) - set(frame.index))
    check("every method has a row", not missing, f"missing {missing}" if missing else
          f"{len(frame)} rows")
    if "identity" in frame.index:
        # relative to chance: the ci profile's 32 px recogniser is weak in absolute terms
        row = frame.loc["identity"]
        chance = row["reid_top1_identity_chance"]
        check("no-op leaks (naive identity-protocol top-1 >= 20x chance)",
              row["reid_top1_identity"] >= 20 * chance,
              f"{row['reid_top1_identity']:.3f} vs chance {chance:.4f}")
    if "mask" in frame.index:
        row = frame.loc["mask"]
        chance = row["reid_worst_chance"]
        check("whole-face mask hides (worst case <= 3x chance)",
              row["reid_worst"] <= 3 * chance, f"{row['reid_worst']:.4f} vs chance {chance:.4f}")
    below = frame.index[frame["reid_worst"] + 1e-12 < frame["reid_top1_identity"]].tolist()
    check("worst case >= naive for every row", not below, f"below: {below}" if below else "")

    csv = pd.read_csv(output / f"{dataset}.csv")
    check("leaderboard CSV: one row per method", len(csv) == len(frame), f"{len(csv)} rows")
    markdown = (output / f"{dataset}.md").read_text().splitlines()
    table = [line for line in markdown if line.startswith("|")]
    widths = {line.count("|") for line in table}
    check("leaderboard Markdown: rows of one width", len(widths) == 1 and
          len(table) >= len(frame) + 2, f"{len(table)} table lines")
    folder = output / "paper" / dataset
    for paper in TABLES:
        md, tex = folder / f"{paper.name}.md", folder / f"{paper.name}.tex"
        if not md.is_file():
            check(f"paper {paper.name}", paper.name != "table1_main", "not written (no rows)")
            continue
        lines = [line for line in md.read_text().splitlines() if line.startswith("|")]
        text = tex.read_text()
        check(f"paper {paper.name}: Markdown rows of one width, LaTeX balanced",
              len({line.count("|") for line in lines}) == 1
              and text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 1
              and r"\toprule" in text and r"\bottomrule" in text, f"{len(lines) - 2} rows")
    for suffix in (".pdf", ".png"):
        path = folder / f"frontier{suffix}"
        check(f"frontier{suffix} written", path.is_file() and path.stat().st_size > 1000)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", type=Path, help="the pipeline's leaderboard folder")
    parser.add_argument("--dataset", default="mema-synth")
    parser.add_argument("--methods", default="",
                        help="comma-separated methods that must have a row")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    results = checks(args.output, args.dataset, methods)
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""))
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
