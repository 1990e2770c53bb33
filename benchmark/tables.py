"""Rebuild the leaderboard tables and the privacy-utility frontier from run records alone.

    python -m benchmark.tables [--output leaderboards]

For every ``<output>/runs/<dataset>/`` it writes ``<output>/<dataset>.csv``, ``.md`` and
``<dataset>_frontier.png`` (identity-protocol re-identification against disease accuracy,
one point per method, with the chance and clean references).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.leaderboard import load_records, table_lock, write_leaderboard
from benchmark.qualitative import save_frontier


def write_frontier(output: Path, dataset: str) -> Path | None:
    records = load_records(output, dataset)
    if not records:
        return None
    # identity protocol where identities have several images, else the pair protocol
    leak = ("reid_top1_identity" if all("reid_top1_identity" in r["scores"] for r in records)
            else "reid_top1")
    points = [{"method": r["method"], "reversible": r["reversible"],
               "accuracy": r["scores"]["accuracy"]["value"], leak: r["scores"][leak]["value"]}
              for r in records]
    ref = records[-1]
    path = Path(output) / f"{dataset}_frontier.png"
    save_frontier(points, path, leak=leak, chance=ref["chance"].get(leak),
                  clean_leak=(ref["clean"].get(leak) or {}).get("value"),
                  clean_accuracy=(ref["clean"].get("accuracy") or {}).get("value"),
                  title=f"privacy-utility frontier: {dataset} ({ref['profile']} profile)")
    return path


def rebuild(output: Path, datasets: list[str] | None = None) -> list[Path]:
    """Rewrite every table and frontier plot under ``output``; returns the files written."""
    runs = Path(output) / "runs"
    if datasets is None:
        datasets = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    written = []
    for dataset in datasets:
        with table_lock(output, dataset):  # the plot and the tables from one set of records
            written += list(write_leaderboard(output, dataset))
            frontier = write_frontier(output, dataset)
        if frontier:
            written.append(frontier)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.tables",
        description="Rebuild leaderboard CSV/Markdown tables and privacy-utility frontier "
                    "plots from the run records under OUTPUT/runs/<dataset>/*.json.")
    parser.add_argument("--output", type=Path, default=Path("leaderboards"),
                        help="leaderboard folder holding runs/ (default: ./leaderboards)")
    parser.add_argument("--dataset", action="append",
                        help="only this dataset (repeatable; default: every dataset found)")
    args = parser.parse_args(argv)
    written = rebuild(args.output, args.dataset)
    if not written:
        parser.error(f"no run records under {args.output / 'runs'}")
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
