"""Tables under a file lock: concurrent runs keep every row; a malformed record is skipped
with a warning naming it; tables keep the user's umask."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from benchmark.leaderboard import record_path, write_leaderboard, write_record


def _record(method: str) -> dict:
    score = {"value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
    return {"method": method, "reversible": False, "scores": {"reid_top1": score},
            "chance": {"reid_top1": 0.1}, "clean": {}, "cost": {"peak_memory_mb": 1.0},
            "profile": "toy", "seed": 0, "n_test": 10, "dataset_fingerprint": "fp"}


def _publish(output, method: str) -> None:
    """What a run does at its end: write its record, then rebuild the table."""
    write_record(record_path(output, "mema", method), _record(method))
    write_leaderboard(output, "mema")


def test_50_concurrent_runs_keep_every_row(tmp_path):
    methods = [f"method_{i:02d}" for i in range(50)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda m: _publish(tmp_path, m), methods))
    assert sorted(pd.read_csv(tmp_path / "mema.csv")["method"]) == methods


def test_a_malformed_record_is_skipped_with_a_warning(tmp_path):
    _publish(tmp_path, "good")
    broken = record_path(tmp_path, "mema", "broken")
    partial = record_path(tmp_path, "mema", "partial")
    for path in (broken, partial):
        path.parent.mkdir(parents=True)
    broken.write_text('{"method": "broken", ')
    partial.write_text('{"method": "partial"}')
    with pytest.warns(UserWarning) as warned:
        write_leaderboard(tmp_path, "mema")
    messages = " ".join(str(w.message) for w in warned)
    assert str(broken) in messages and str(partial) in messages and "missing" in messages
    assert list(pd.read_csv(tmp_path / "mema.csv")["method"]) == ["good"]


def test_tables_keep_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        _publish(tmp_path, "good")
    finally:
        os.umask(old)
    assert (tmp_path / "mema.csv").stat().st_mode & 0o777 == 0o644
    assert record_path(tmp_path, "mema", "good").stat().st_mode & 0o777 == 0o644


def test_each_row_has_a_record_naming_its_seed_records(tmp_path):
    """``runs/<dataset>/<method>.json`` is the row (seeds combined) and names its sources; a
    row whose seed records are gone loses its row record too."""
    for seed, value in ((0, 0.4), (1, 0.6)):
        record = dict(_record("blur"), seed=seed, git_revision=f"rev{seed}")
        record["scores"] = {"reid_top1": {"value": value, "ci_low": value, "ci_high": value}}
        write_record(record_path(tmp_path, "mema", "blur", seed), record)
    _publish(tmp_path, "mask")
    row = json.loads((tmp_path / "runs" / "mema" / "blur.json").read_text())
    assert row["seeds"] == [0, 1] and row["seed_records"] == ["blur/seed-0.json", "blur/seed-1.json"]
    assert row["git_revisions"] == ["rev0", "rev1"] and "git_revision" not in row
    assert row["scores"]["reid_top1"]["value"] == pytest.approx(0.5)
    assert row["scores"]["reid_top1"]["per_seed"] == [0.4, 0.6]
    for seed in (0, 1):
        record_path(tmp_path, "mema", "blur", seed).unlink()
    write_leaderboard(tmp_path, "mema")
    assert sorted(p.name for p in (tmp_path / "runs" / "mema").glob("*.json")) == ["mask.json"]
