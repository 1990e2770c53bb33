"""Run records and the leaderboard tables generated from them (docs/architecture.md §5).

A run writes one JSON record per (dataset, method, seed) under
``<output>/runs/<dataset>/<method>/seed-<N>.json``; the tables ``<output>/<dataset>.csv`` and ``.md`` (and a record per row,
``<output>/runs/<dataset>/<method>.json``) are always rebuilt from those records, so a
method's new run replaces its old row and keeps every other method's. Tables are generated,
never edited.
"""
from __future__ import annotations

import functools
import json
import math
import statistics
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from benchmark.scores import is_defined, declared, family_of
from data.files import atomic_write

#: columns of the Markdown table that are not scores
_TEXT_COLUMNS = ("method", "reversible", "seeds", "worst attack")


def safe_name(name: str) -> str:
    """A file name for a method name (``module:Class`` names contain ':' and '.')."""
    return re.sub(r"[^\w.-]+", "_", name)


def table_lock(output: Path, dataset: str) -> FileLock:
    """The lock every rebuild of ``dataset``'s tables holds, so concurrent runs never write
    a table that misses a record another run has just written."""
    folder = runs_dir(output, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    return _lock(str((folder / ".tables.lock").resolve()))


@functools.lru_cache(maxsize=None)
def _lock(path: str) -> FileLock:
    # one instance per file: FileLock is re-entrant per instance, and a second instance in
    # the same thread would wait for the first forever
    return FileLock(path)


def runs_dir(output: Path, dataset: str) -> Path:
    return Path(output) / "runs" / dataset


def record_path(output: Path, dataset: str, method: str, seed: int = 0) -> Path:
    """``<output>/runs/<dataset>/<method>/seed-<seed>.json``: one record per seed, so a
    row can carry the spread over seeds; the qualitative grid is the ``.png`` beside it."""
    return runs_dir(output, dataset) / safe_name(method) / f"seed-{seed}.json"


def _finite(value: Any) -> Any:
    """JSON has no NaN: undefined scores are stored as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_record(path: Path, record: dict) -> None:
    atomic_write(path, json.dumps(_finite(record), indent=1, sort_keys=False) + "\n")


#: what every run record holds (a record without them is malformed and skipped)
RECORD_KEYS = ("method", "reversible", "scores", "chance", "clean", "cost", "profile", "seed",
               "n_test")


def load_records(output: Path, dataset: str) -> list[dict]:
    """The dataset's run records; a malformed one is reported by name and skipped, so it
    never costs a finished run its row."""
    records = []
    for path in sorted(runs_dir(output, dataset).glob("*/seed-*.json")):
        try:
            record = json.loads(path.read_text())
            missing = [k for k in RECORD_KEYS if k not in record]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
        except (OSError, ValueError, TypeError) as err:
            warnings.warn(f"skipping malformed run record {path}: {err}", stacklevel=2)
            continue
        records.append(record)
    return records


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _combine(scores: list[dict]) -> dict:
    """One score over seeds: the mean, the sample standard deviation (None for one seed), the
    per-seed values, and the per-seed bootstrap bounds averaged (the typical interval of one
    seed's test images)."""
    per_seed = [s.get("value") for s in scores]
    defined = [v for v in per_seed if is_defined(v)]
    if not defined:
        return {"value": None, "ci_low": None, "ci_high": None, "std": None,
                "per_seed": per_seed}
    bounds = {}
    for key in ("ci_low", "ci_high"):
        found = [s[key] for s in scores if is_defined(s.get(key))]
        bounds[key] = _mean(found) if len(found) == len(defined) else None
    return {"value": _mean(defined), **bounds,
            "std": statistics.stdev(defined) if len(defined) > 1 else None,
            "per_seed": per_seed}


def combine_seeds(records: list[dict]) -> list[dict]:
    """One record per method (a row), its scores and clean references combined over the
    method's seeds (:func:`_combine`); everything else comes from the lowest seed's record,
    and ``seeds`` lists the seeds behind the row."""
    by_method: dict[str, list[dict]] = {}
    for record in records:
        by_method.setdefault(record["method"], []).append(record)
    combined = []
    for group in by_method.values():
        group = sorted(group, key=lambda r: r["seed"])
        row = dict(group[0], seeds=[r["seed"] for r in group])
        for part in ("scores", "clean"):
            names = dict.fromkeys(n for r in group for n in r.get(part, {}))
            row[part] = {n: _combine([r.get(part, {}).get(n) or {} for r in group])
                         for n in names}
        combined.append(row)
    return combined


def reference(records: list[dict]) -> dict:
    """The clean (no-op) and chance references of a dataset's rows, and its attribute floor:
    each run seed has evaluators of its own, so the clean figures are averaged over the seeds
    (one record per seed; chance does not depend on the seed)."""
    by_seed: dict[int, dict] = {}
    for record in records:
        by_seed.setdefault(record["seed"], record)
    return combine_seeds([dict(r, method="reference") for r in by_seed.values()])[0]


def _row(record: dict, scores: list[str]) -> dict:
    """A CSV row of a combined record: each score's mean, bootstrap bounds, spread over
    seeds, per-seed values (``;``-joined) and chance level."""
    row = {"method": record["method"], "family": record.get("family", record["method"]),
           "reversible": bool(record["reversible"]),
           "worst attack": family_of(record.get("reid_worst_of") or ""),
           "n_seeds": len(record["seeds"]), "seeds": ";".join(map(str, record["seeds"]))}
    for name in scores:
        row[name] = (record["scores"].get(name) or {}).get("value")
    for name in scores:
        score = record["scores"].get(name) or {}
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = score.get("ci_low"), score.get("ci_high")
        row[f"{name}_std"] = score.get("std")
        row[f"{name}_per_seed"] = ";".join(
            "" if v is None else repr(v) for v in score.get("per_seed", []))
    for name in scores:
        row[f"{name}_chance"] = record.get("chance", {}).get(name)
    row.update(peak_memory_mb=record["cost"].get("peak_memory_mb"), profile=record["profile"],
               n_test=record["n_test"])
    return row


def score_columns(records: list[dict]) -> list[str]:
    """CSV score columns, in declaration order: every headline score, and every other
    declared score some record has; undeclared scores of old records come last."""
    specs = declared()
    present = {name for r in records for name in r["scores"]}
    columns = [n for n, spec in specs.items() if spec.headline or n in present]
    return columns + sorted(present - set(specs))


def leaderboard_frame(records: list[dict]) -> pd.DataFrame:
    """One row per method (sweep points are rows of their own) over all its seeds, sorted by
    name; ``records`` are per-seed run records."""
    records = combine_seeds(records)
    columns = score_columns(records)
    frame = pd.DataFrame([_row(r, columns) for r in records])
    if frame.empty:
        return pd.DataFrame(columns=["method", "family", "reversible", *columns])
    return frame.sort_values("method").reset_index(drop=True)


def markdown_table(frame: pd.DataFrame, records: list[dict], dataset: str) -> str:
    """The compact leaderboard (headline scores) as Markdown, with the chance, attribute-floor
    and clean (no-op) references beneath; the CSV has every attack's columns."""
    specs = declared()
    scores = [n for n, spec in specs.items() if spec.headline and n in frame.columns]
    header = list(_TEXT_COLUMNS) + scores
    lines = [f"# Leaderboard: {dataset}", "",
             "Scores on the test split with bootstrap 95% CIs resampled by identity "
             "(one seed), or mean ± standard deviation over the row's seeds (`seeds` says how "
             "many; the CSV has every seed's value); "
             "percentages for rates, accuracy and F1. Privacy: `reid_worst` is the highest "
             "identity-protocol top-1 re-identification over all attacks "
             "(docs/threat_model.md; `worst attack` names it), `reid_top1_identity` the naive "
             "attack alone (lower is better); the CSV has every attack's columns. Utility: "
             "clean-trained classifier/segmenter (higher is better); naturalness: KID x1000 "
             "(lower is better). Generated by `python -m benchmark.run` / "
             "`python -m benchmark.tables`; do not edit.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [str(row["method"]), "yes" if row["reversible"] else "no",
                 str(row["n_seeds"]), row.get("worst attack") or "–"]
        cells += [specs[s].cell(row) for s in scores]
        lines.append("| " + " | ".join(cells) + " |")
    if records:
        ref = reference(records)
        floor = (ref["scores"].get("attribute_floor_top1_identity") or {}).get("value")
        references = {
            "*chance*": {s: ref["chance"].get(s) for s in scores},
            "*attribute floor*": {s: floor for s in scores if s.startswith("reid_")},
            "*clean (no-op)*": {s: (ref["clean"].get(s) or {}).get("value") for s in scores},
        }
        for label, values in references.items():
            cells = [label, "", "", ""] + [specs[s].format(values.get(s)) for s in scores]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", f"Dataset fingerprint `{ref['dataset_fingerprint']}`, profile "
                  f"`{ref['profile']}`, {ref['n_test']} test images. Chance = random guessing "
                  "(re-identification), majority class (accuracy); attribute floor = "
                  "re-identification from the kept diagnosis, age and sex alone; clean = the "
                  "evaluators on unaltered test images."]
    return "\n".join(lines) + "\n"


def row_record_path(output: Path, dataset: str, method: str) -> Path:
    """``<output>/runs/<dataset>/<method>.json``: the record of a table row, beside the folder
    of the seed records it combines."""
    return runs_dir(output, dataset) / f"{safe_name(method)}.json"


def write_row_records(output: Path, dataset: str, records: list[dict]) -> None:
    """One record per row (:func:`combine_seeds`: what the CSV row shows), naming the seed
    records and commits behind it; a row record without seed records left is removed."""
    written = set()
    for row in combine_seeds(records):
        folder = safe_name(row["method"])
        row = dict(row, seed_records=[f"{folder}/seed-{s}.json" for s in row["seeds"]],
                   git_revisions=sorted({r.get("git_revision") for r in records
                                         if r["method"] == row["method"]} - {None}))
        for per_seed in ("git_revision", "created", "phase_seconds", "qualitative"):
            row.pop(per_seed, None)
        path = row_record_path(output, dataset, row["method"])
        write_record(path, row)
        written.add(path)
    for path in runs_dir(output, dataset).glob("*.json"):
        if path not in written:
            path.unlink()


def write_leaderboard(output: Path, dataset: str) -> tuple[Path, Path]:
    """Rebuild ``<output>/<dataset>.csv`` and ``.md``, and the row records, from the dataset's
    run records."""
    csv_path, md_path = Path(output) / f"{dataset}.csv", Path(output) / f"{dataset}.md"
    with table_lock(output, dataset):
        records = load_records(output, dataset)
        frame = leaderboard_frame(records)
        write_row_records(output, dataset, records)
        atomic_write(csv_path, frame.to_csv(index=False))
        atomic_write(md_path, markdown_table(frame, records, dataset))
    return csv_path, md_path
