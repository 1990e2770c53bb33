"""End to end: `benchmark.run` on the tiny generated dataset with toy evaluators."""
from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from benchmark.scores import declared
from benchmark.run import TrainingView, main
from benchmark.tables import main as tables_main

HEADLINE = [name for name, spec in declared().items() if spec.headline]
REQUIRED_COLUMNS = ["method", "reversible", *HEADLINE] + [
    f"{s}_ci_{end}" for s in HEADLINE for end in ("low", "high")]


@pytest.fixture(scope="module")
def board(tiny_mema, cache, tmp_path_factory):
    """Two methods run into one leaderboard folder."""
    out = tmp_path_factory.mktemp("leaderboards")
    for method in ("identity", "mask"):
        args = ["--method", method, "--dataset", "mema", "--data-root", str(tiny_mema),
                "--profile", "toy", "--output", str(out), "--quiet"]
        assert main(args) == 0
    return out


def test_run_writes_record_tables_and_grid(board, capsys):
    record = json.loads((board / "runs" / "mema" / "identity.json").read_text())
    for key in ("scores", "chance", "clean", "dataset_fingerprint", "seed", "profile",
                "versions", "git_revision", "method_config", "phase_seconds", "per_sign_f1"):
        assert key in record
    assert record["reid_top1_chance"] == record["chance"]["reid_top1"]
    assert "reid_top1_identity_chance" in record
    assert set(record["phase_seconds"]) >= {"data", "evaluators", "fit", "evaluation"}
    assert record["scores"]["reid_top1"]["value"] == pytest.approx(1.0)  # the no-op leaks all
    assert record["scores"]["kappa"]["value"] == pytest.approx(1.0)
    for name, score in record["scores"].items():
        if score["ci_low"] is not None:
            assert score["ci_low"] <= score["value"] + 1e-9 <= score["ci_high"] + 2e-9, name
    assert (board / "runs" / "mema" / "identity.png").stat().st_size > 1000
    frame = pd.read_csv(board / "mema.csv")
    assert set(REQUIRED_COLUMNS) <= set(frame.columns)
    assert frame["recovery_psnr"].isna().all()  # nothing reversible here: empty cells
    md = (board / "mema.md").read_text()
    assert "| identity |" in md and "*clean (no-op)*" in md and "*chance*" in md


def test_rerunning_another_method_keeps_the_first_row(board, tiny_mema):
    frame = pd.read_csv(board / "mema.csv")
    assert sorted(frame["method"]) == ["identity", "mask"]
    mask = frame.set_index("method").loc["mask"]
    assert mask["reid_top1"] < 1.0  # the whole face is gone
    # re-running a method replaces its own row, nothing else
    assert main(["--method", "mask", "--dataset", "mema", "--data-root", str(tiny_mema),
                 "--profile", "toy", "--output", str(board), "--quiet", "--seed", "1"]) == 0
    again = pd.read_csv(board / "mema.csv").set_index("method")
    assert sorted(again.index) == ["identity", "mask"] and again.loc["mask", "seed"] == 1


def test_tables_rebuild_from_records_alone(board, capsys):
    before = pd.read_csv(board / "mema.csv")
    (board / "mema.csv").unlink()
    (board / "mema.md").unlink()
    assert tables_main(["--output", str(board)]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(board / "mema.csv"), before)
    assert (board / "mema.md").is_file()
    assert (board / "mema_frontier.png").stat().st_size > 1000


def test_reversible_method_gets_recovery_scores(tiny_mema, cache, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(os.path.join(os.path.dirname(__file__), "..", "examples",
                                                 "mema_bench_example_plugin")))
    out = tmp_path / "lb"
    assert main(["--method", "mema_bench_example_plugin.methods:KeyedScramble", "--dataset",
                 "mema", "--data-root", str(tiny_mema), "--profile", "toy", "--output",
                 str(out), "--quiet"]) == 0
    row = pd.read_csv(out / "mema.csv").iloc[0]
    assert row["reversible"]
    assert row["recovery_psnr"] == pytest.approx(100.0)  # exact recovery, capped
    assert row["recovery_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert 0 <= row["wrongkey_reid_top1"] <= 1 and row["key_diversity"] >= 0
    png = list((out / "runs" / "mema").glob("*.png"))
    assert len(png) == 1


def test_cached_method_is_not_fitted_twice(tiny_mema, cache, tmp_path):
    args = ["--method", "ksame_select", "--dataset", "mema", "--data-root", str(tiny_mema),
            "--profile", "toy", "--output", str(tmp_path), "--quiet"]
    assert main(args) == 0
    cached = list((cache / "methods" / "ksame_select").glob("*.pt"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert main(args) == 0
    assert cached[0].stat().st_mtime_ns == stamp


def test_fit_sees_only_train_and_val(tiny_mema):
    from data import MeMaDataModule

    view = TrainingView(MeMaDataModule(tiny_mema, image_size=32, batch_size=8))
    view.setup()
    assert len(view.dataset("train")) and next(iter(view.val_dataloader()))["image"].shape[0]
    with pytest.raises(PermissionError):
        view.dataset("test")
    with pytest.raises(PermissionError):
        view.test_dataloader()
    assert not hasattr(view, "root")  # no way back to the files on disk


def test_missing_data_root_is_a_clear_error(capsys):
    with pytest.raises(SystemExit, match="--data-root"):
        main(["--method", "identity", "--dataset", "mema"])


def test_clean_outputs_are_cached_and_not_recomputed(tiny_mema, tmp_path, monkeypatch):
    """The first run caches the evaluators' clean-test outputs; a second run embeds only its
    de-identified images (one identity pass), and recomputes when the cache is gone."""
    from benchmark.evaluators import IdentityRecognizer

    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMA_BENCH_CACHE", str(cache))
    embedded = []
    original = IdentityRecognizer.embed
    monkeypatch.setattr(IdentityRecognizer, "embed",
                        lambda self, images: embedded.append(len(images)) or original(self, images))
    args = ["--method", "blur", "--dataset", "mema", "--data-root", str(tiny_mema),
            "--profile", "toy", "--output", str(tmp_path / "lb"), "--quiet", "--attacks", "naive"]
    assert main(args) == 0
    record = json.loads((tmp_path / "lb" / "runs" / "mema" / "blur.json").read_text())
    n_test, first_clean = record["n_test"], record["clean"]
    assert sum(embedded) == 2 * n_test  # de-identified and clean
    files = list(cache.glob("evaluators/*/*/clean-outputs/*.pt"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns

    embedded.clear()
    assert main(args) == 0
    # nothing embedded: clean outputs and the naive attack's result came from the caches
    assert sum(embedded) == 0
    assert files[0].stat().st_mtime_ns == stamp
    record = json.loads((tmp_path / "lb" / "runs" / "mema" / "blur.json").read_text())
    assert record["clean"] == first_clean

    files[0].unlink()
    embedded.clear()
    assert main(args) == 0
    assert sum(embedded) == n_test  # the clean outputs again; the attack is still cached
    assert files[0].is_file()
