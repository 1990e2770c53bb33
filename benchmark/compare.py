"""Compare a regenerated leaderboard with the committed one (``benchmarks/reproduce_leaderboard.sh
--check``):

    python -m benchmark.compare leaderboards /tmp/reproduced [--dataset mema-synth]

A score reproduces when the regenerated row's value lies within the committed row's spread:
two standard deviations over seeds where the row has several seeds, else its bootstrap 95%
interval (the test-image noise of one seed); cost scores (speed) are machine-dependent and
reported but never fail. Prints one line per differing score and exits 1 if any differs.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import pandas as pd

from benchmark.leaderboard import leaderboard_frame, load_records
from benchmark.scores import COST, declared, is_defined

#: scores that depend on the machine, not on the method
MACHINE_DEPENDENT = {spec.name for spec in COST.scores}


def tolerance(row: pd.Series, name: str) -> float:
    """How far a regenerated value may fall from the committed row's value."""
    std = row.get(f"{name}_std")
    if is_defined(std) and row.get("n_seeds", 1) > 1:
        return 2.0 * float(std)
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if is_defined(low) and is_defined(high):
        return max(float(row[name]) - float(low), float(high) - float(row[name]))
    return 0.0


def compare(committed: pd.DataFrame, regenerated: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, score) of the committed table: both values, the tolerance and
    whether the regenerated value is within it (missing rows or scores are differences)."""
    new = regenerated.set_index("method")
    rows = []
    for _, old in committed.iterrows():
        for name in declared():
            if name not in committed or not is_defined(old[name]):
                continue
            value = new[name].get(old["method"]) if name in new else None
            value = None if value is None or not is_defined(value) else float(value)
            allowed = tolerance(old, name)
            within = (value is not None
                      and abs(value - float(old[name])) <= allowed + 1e-9 * max(1.0, abs(value)))
            rows.append({"method": old["method"], "score": name,
                         "committed": float(old[name]), "regenerated": value,
                         "tolerance": allowed, "within": within,
                         "machine_dependent": name in MACHINE_DEPENDENT})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.compare",
        description="Compare a regenerated leaderboard (its run records) with the committed "
                    "one: every score within two seed standard deviations, or within the "
                    "bootstrap CI for single-seed rows. Exit 1 if any score differs.")
    parser.add_argument("committed", type=Path, help="leaderboard folder holding runs/")
    parser.add_argument("regenerated", type=Path, help="leaderboard folder of the rerun")
    parser.add_argument("--dataset", default="mema-synth")
    args = parser.parse_args(argv)
    frames = []
    for folder in (args.committed, args.regenerated):
        records = load_records(folder, args.dataset)
        if not records:
            parser.error(f"no run records under {folder / 'runs' / args.dataset}")
        frames.append(leaderboard_frame(records))
    result = compare(*frames)
    failing = result[~result["within"] & ~result["machine_dependent"]]
    for row in result[~result["within"]].itertuples():
        note = " (machine-dependent, not a failure)" if row.machine_dependent else ""
        shown = "missing" if row.regenerated is None or math.isnan(row.regenerated) \
            else f"{row.regenerated:.4g}"
        print(f"{row.method:<28} {row.score:<34} committed {row.committed:.4g}  "
              f"regenerated {shown}  tolerance {row.tolerance:.3g}{note}")
    print(f"{len(result) - len(failing)}/{len(result)} scores reproduce "
          f"({result['method'].nunique()} rows)")
    return 1 if len(failing) else 0


if __name__ == "__main__":
    raise SystemExit(main())
