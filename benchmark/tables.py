"""Rebuild the leaderboard tables and the privacy-utility frontier from run records alone.

    python -m benchmark.tables [--output leaderboards]

For every ``<output>/runs/<dataset>/`` it writes ``<output>/<dataset>.csv``, ``.md`` and
``<dataset>_frontier.png`` (identity-protocol re-identification against disease accuracy:
the naive attack and the worst attack side by side, one point per method, sweeps drawn as
curves per method family, with the chance and clean references).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.leaderboard import (combine_seeds, load_records, reference, table_lock,
                                   write_leaderboard)
from benchmark.qualitative import save_frontier
from benchmark.scores import frontier_axes


def write_frontier(output: Path, dataset: str, path: Path | None = None) -> Path | None:
    """Draw the frontier of a dataset's rows (seeds combined) to ``path`` (PNG or PDF by its
    suffix; default ``<output>/<dataset>_frontier.png``)."""
    per_seed = load_records(output, dataset)
    if not per_seed:
        return None
    records = combine_seeds(per_seed)
    axes = [(name, label) for name, label in frontier_axes()
            if any(name in r["scores"] for r in records)]
    if not axes:
        return None
    points = []
    for r in records:
        sweep = r.get("sweep") or {}
        point = {"method": r["method"], "family": r.get("family", r["method"]),
                 "reversible": r["reversible"], "accuracy": r["scores"]["accuracy"]["value"],
                 "sweep": next(iter(sweep.values()), None)}
        point.update({name: (r["scores"].get(name) or {}).get("value") for name, _ in axes})
        points.append(point)
    ref = reference(per_seed)
    path = Path(path) if path is not None else Path(output) / f"{dataset}_frontier.png"
    save_frontier(points, path, axes=axes, chance=ref["chance"].get(axes[0][0]),
                  clean={name: (ref["clean"].get(name) or {}).get("value") for name, _ in axes},
                  clean_accuracy=(ref["clean"].get("accuracy") or {}).get("value"),
                  title=f"privacy-utility frontier: {dataset} ({ref['profile']} profile)")
    return path


def rebuild(output: Path, datasets: list[str] | None = None, paper: bool = False
            ) -> list[Path]:
    """Rewrite every table and frontier plot under ``output`` (and the paper's tables under
    ``output/paper/`` with ``paper``); returns the files written."""
    runs = Path(output) / "runs"
    if datasets is None:
        datasets = sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    written = []
    for dataset in datasets:
        with table_lock(output, dataset):  # the plot and the tables from one set of records
            written += list(write_leaderboard(output, dataset))
            frontier = write_frontier(output, dataset)
            if paper:
                from benchmark.paper import write_paper_tables

                written += write_paper_tables(output, dataset)
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
    parser.add_argument("--paper", action="store_true",
                        help="also write the paper's tables (main comparison, MedSem-DeID "
                        "ablation, reversibility) in Markdown and LaTeX and the frontier as "
                        "PDF/PNG under OUTPUT/paper/<dataset>/")
    parser.add_argument("--readme", type=Path, metavar="FILE",
                        help="also rewrite the results table between FILE's "
                        "'<!-- results:<dataset> -->' and '<!-- /results -->' markers "
                        "(worst case first; e.g. README.md)")
    args = parser.parse_args(argv)
    if args.readme and not args.readme.is_file():
        parser.error(f"--readme: {args.readme} is not a file")
    written = rebuild(args.output, args.dataset, paper=args.paper)
    if not written:
        parser.error(f"no run records under {args.output / 'runs'}")
    if args.readme:
        from benchmark.paper import update_readme

        datasets = args.dataset or sorted(p.name for p in (args.output / "runs").iterdir())
        written += [args.readme for d in datasets if update_readme(args.readme, args.output, d)]
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
