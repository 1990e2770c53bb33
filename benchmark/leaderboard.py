"""Run records and the leaderboard tables generated from them (docs/architecture.md §5).

A run writes one JSON record per (dataset, method) under ``<output>/runs/<dataset>/``; the
tables ``<output>/<dataset>.csv`` and ``.md`` are always rebuilt from those records, so a
method's new run replaces its old row and keeps every other method's. Tables are generated,
never edited.
"""
from __future__ import annotations

import functools
import json
import math
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

#: score columns every leaderboard carries, in this order (issue #3)
REQUIRED_SCORES = (
    "reid_top1", "reid_top5", "reid_top1_identity", "id_similarity", "accuracy", "macro_f1",
    "sign_f1", "kappa", "dice", "recovery_psnr", "recovery_ssim", "wrongkey_reid_top1",
    "images_per_s",
)
#: further scores shown when any run has them
EXTRA_SCORES = (
    "reid_top5_identity", "recovery_id_similarity", "key_diversity", "facenet_reid_top1",
    "facenet_reid_top1_identity",
)
#: how the Markdown table labels and formats each score
_PERCENT = {"reid_top1", "reid_top5", "reid_top1_identity", "reid_top5_identity", "accuracy",
            "macro_f1", "sign_f1", "wrongkey_reid_top1", "facenet_reid_top1",
            "facenet_reid_top1_identity"}


def safe_name(name: str) -> str:
    """A file name for a method name (``module:Class`` names contain ':' and '.')."""
    return re.sub(r"[^\w.-]+", "_", name)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files: keep the user's umask
    with os.fdopen(fd, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


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


def record_path(output: Path, dataset: str, method: str) -> Path:
    return runs_dir(output, dataset) / f"{safe_name(method)}.json"


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
    for path in sorted(runs_dir(output, dataset).glob("*.json")):
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


def _row(record: dict, scores: list[str]) -> dict:
    row = {"method": record["method"], "reversible": bool(record["reversible"])}
    for name in scores:
        row[name] = (record["scores"].get(name) or {}).get("value")
    for name in scores:
        score = record["scores"].get(name) or {}
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = score.get("ci_low"), score.get("ci_high")
    row.update(peak_memory_mb=record["cost"].get("peak_memory_mb"), profile=record["profile"],
               seed=record["seed"], n_test=record["n_test"])
    return row


def leaderboard_frame(records: list[dict]) -> pd.DataFrame:
    """One row per method, required columns first, sorted by identity leakage then utility."""
    extras = [s for s in EXTRA_SCORES if any(s in r["scores"] for r in records)]
    frame = pd.DataFrame([_row(r, list(REQUIRED_SCORES) + extras) for r in records])
    if frame.empty:
        return pd.DataFrame(columns=["method", "reversible", *REQUIRED_SCORES])
    return frame.sort_values("method").reset_index(drop=True)


def _fmt(name: str, value: Any, low: Any = None, high: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if name in _PERCENT:
        text = f"{100 * value:.1f}"
        if low is not None and high is not None and not pd.isna(low):
            text += f" [{100 * low:.1f}, {100 * high:.1f}]"
        return text
    digits = 0 if name == "images_per_s" else 1 if name == "recovery_psnr" else 3
    text = f"{value:.{digits}f}"
    if low is not None and high is not None and not pd.isna(low):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def markdown_table(frame: pd.DataFrame, records: list[dict], dataset: str) -> str:
    """The leaderboard as Markdown, with the chance and clean (no-op) references beneath."""
    scores = [c for c in frame.columns if f"{c}_ci_low" in frame.columns]
    header = ["method", "reversible"] + scores
    lines = [f"# Leaderboard: {dataset}", "",
             "Scores on the test split with bootstrap 95% CIs over test images; percentages for "
             "rates, accuracy and F1. Identity leakage: naive attack with the clean-trained "
             "recogniser (lower is better); utility: clean-trained classifier/segmenter "
             "(higher is better). Generated by `python -m benchmark.run` / "
             "`python -m benchmark.tables`; do not edit.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.to_dict("records"):
        cells = [str(row["method"]), "yes" if row["reversible"] else "no"]
        cells += [_fmt(s, row[s], row[f"{s}_ci_low"], row[f"{s}_ci_high"]) for s in scores]
        lines.append("| " + " | ".join(cells) + " |")
    if records:
        ref = records[-1]
        chance = ["*chance*", ""] + [_fmt(s, ref["chance"].get(s)) for s in scores]
        clean = ["*clean (no-op)*", ""] + [
            _fmt(s, (ref["clean"].get(s) or {}).get("value")) for s in scores]
        lines += ["| " + " | ".join(chance) + " |", "| " + " | ".join(clean) + " |"]
        lines += ["", f"Dataset fingerprint `{ref['dataset_fingerprint']}`, profile "
                  f"`{ref['profile']}`, {ref['n_test']} test images. Chance = random guessing "
                  "(re-identification), impostor-pair similarity (id_similarity), majority "
                  "class (accuracy); clean = the evaluators on unaltered test images."]
    return "\n".join(lines) + "\n"


def write_leaderboard(output: Path, dataset: str) -> tuple[Path, Path]:
    """Rebuild ``<output>/<dataset>.csv`` and ``.md`` from the dataset's run records."""
    csv_path, md_path = Path(output) / f"{dataset}.csv", Path(output) / f"{dataset}.md"
    with table_lock(output, dataset):
        records = load_records(output, dataset)
        frame = leaderboard_frame(records)
        atomic_write(csv_path, frame.to_csv(index=False))
        atomic_write(md_path, markdown_table(frame, records, dataset))
    return csv_path, md_path
