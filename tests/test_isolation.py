"""The guarantees of docs/plugins.md §5, each shown by a plugin that tries to break it
(tests/plugins/hostile_plugins.py): the method runs in its own worker process, sandboxed with
bubblewrap under --isolate; caches load without running code; a crash, exit or hang of the
method is an error naming it and writes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from benchmark.run import main
from benchmark.sandbox import bwrap_available
from benchmark.storage import CorruptCacheError
from benchmark.validation import MethodOutputError
from benchmark.worker import MethodClient, WorkerError

PLUGINS = Path(__file__).parent / "plugins"
HOSTILE = "hostile_plugins"
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here")


@pytest.fixture(autouse=True)
def _plugins_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))


def _run(tiny_mema, output, cls, *extra):
    return main(["--method", f"{HOSTILE}:{cls}", "--dataset", "mema", "--data-root",
                 str(tiny_mema), "--profile", "toy", "--output", str(output), "--quiet", *extra])


def _client(cls, tmp_path, **kwargs) -> MethodClient:
    return MethodClient(cls, f"{HOSTILE}:{cls}", {"seed": 0}, work_dir=tmp_path / "work",
                        **kwargs)


def _batch(n=2, size=8):
    return {"image": torch.rand(n, 3, size, size), "landmarks": torch.rand(n, 5, 2),
            "index": torch.arange(n)}


def test_sabotage_of_the_evaluators_is_impossible(tiny_mema, cache, tmp_path, capsys):
    """The plugin returns the originals and scrambles every network it finds in its memory:
    the evaluators are not in its process, so the no-op still leaks every identity."""
    assert _run(tiny_mema, tmp_path, "Sabotage", "--no-isolate") == 0
    record = json.loads((tmp_path / "runs" / "mema" / f"{HOSTILE}_Sabotage" / "seed-0.json").read_text())
    assert record["scores"]["reid_top1"]["value"] == pytest.approx(1.0)
    assert record["scores"]["kappa"]["value"] == pytest.approx(1.0)
    assert record["isolation"] == "process"
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["method_process"]["cpu_seconds"] > 0  # the method's own cost, measured apart
    for key in ("dataset_root", "evaluator_dir", "method_cache"):  # no machine paths
        assert not Path(record[key]).is_absolute() and str(tiny_mema) not in record[key]
    err = capsys.readouterr().err
    for phase in ("data…", "evaluators…", "fit…", "evaluation…", "writing…"):
        assert f"s] {phase}" in err  # one line per phase, with the time elapsed


@needs_bwrap
def test_fit_cannot_read_the_data_root_under_isolate(tiny_mema, cache, tmp_path, monkeypatch,
                                                     capsys):
    monkeypatch.setenv("HOSTILE_TARGET", str(tiny_mema / "metadata.csv"))
    assert _run(tiny_mema, tmp_path / "lb", "SnoopInFit", "--isolate") == 2
    err = capsys.readouterr().err
    assert "SnoopInFit" in err and "fit() raised FileNotFoundError" in err
    assert not (tmp_path / "lb" / "runs").exists()  # nothing written


@needs_bwrap
def test_anonymize_cannot_read_the_cache_under_isolate(tiny_mema, cache, tmp_path,
                                                       monkeypatch, capsys):
    assert list(cache.rglob("*.pt"))  # evaluator checkpoints are there to be stolen
    monkeypatch.setenv("HOSTILE_TARGET", str(cache))
    assert _run(tiny_mema, tmp_path, "SnoopInAnonymize", "--isolate") == 2
    assert "anonymize() raised FileNotFoundError: no checkpoint visible" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def _plant_pickle(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Payload()}, path)


def test_planted_pickles_run_nothing(tiny_mema, cache, tmp_path, capsys):
    """A pickle planted in each cache location: never executed; the evaluator and
    fitted-method checkpoints are refused naming the file and the flag that rebuilds them,
    the clean-output cache is rebuilt with a warning."""
    from benchmark import method_cache
    from benchmark.evaluation import clean_outputs

    marker = tmp_path / "pwned"
    fitted = tmp_path / "methods" / "x" / "fp-key.pt"
    _plant_pickle(fitted, marker)
    with pytest.raises(CorruptCacheError, match=f"{fitted}.*--refit-method"):
        method_cache.load_fitted_state(fitted)
    clean = tmp_path / "clean-outputs" / "fp.pt"
    _plant_pickle(clean, marker)
    assert "clean_dice" in clean_outputs([], None, lesion_masks={}, device=torch.device("cpu"),
                                         cache=clean, progress=False)
    classifier = next(cache.glob("evaluators/*/*/classifier.pt"))
    saved = classifier.read_bytes()
    _plant_pickle(classifier, marker)
    try:
        assert _run(tiny_mema, tmp_path / "lb", "Keyed") == 2
    finally:
        classifier.write_bytes(saved)
    err = capsys.readouterr().err
    cause = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(cause) == 1 and "Traceback" not in err  # one line, naming file and flag
    assert f"cannot read {classifier} (not tensors and plain values" in cause[0]
    assert cause[0].endswith("rerun with --retrain-evaluators to rebuild it")
    assert not marker.exists()


def test_worker_is_a_drop_in_method(tiny_mema, tmp_path):
    """Fit on the training view, attributes, many calls, recover; then a clean shutdown."""
    from data import MeMaDataModule
    from benchmark.training_view import training_payload

    datamodule = MeMaDataModule(tiny_mema, image_size=16, batch_size=8)
    datamodule.setup()
    with _client("Keyed", tmp_path) as method:
        assert (method.reversible, method.key_bits, method.config()) == (True, 4, {"shift": 0.25})
        state = method.fit_state(training_payload(datamodule))
        assert state["splits"] == ["train", "val"] and state["mean"].dim() == 0
        method.load_state_dict(state)
        method.to("cpu")
        keys = torch.randint(0, 2, (2, 4)).float()
        for _ in range(3):
            batch = _batch()
            out = method.anonymize(batch, keys)
            torch.testing.assert_close(method.recover(out, keys), batch["image"])
    assert method._process.returncode == 0
    assert method.usage["cpu_seconds"] > 0 and method.usage["peak_memory_mb"] > 0


def test_sys_exit_in_a_plugin_is_an_error_naming_it(tmp_path):
    with _client("Exits", tmp_path) as method:
        with pytest.raises(MethodOutputError, match="'Exits': anonymize.. raised SystemExit"):
            method.anonymize(_batch(), None)
        assert method._process.poll() is None  # the worker still serves


def test_a_dying_or_hanging_worker_is_an_error_naming_the_method(tmp_path):
    with _client("Dies", tmp_path) as method:
        with pytest.raises(WorkerError, match="'Dies'.*ended.*during anonymize"):
            method.anonymize(_batch(), None)
    with _client("Hangs", tmp_path, timeout=2) as method:
        method.config()
        with pytest.raises(WorkerError, match="'Hangs'.*did not answer within 2 s"):
            method.anonymize(_batch(), None)
        assert method._process.poll() is not None  # stopped, not left behind


def test_a_method_that_cannot_be_built_fails_every_call_at_once(tmp_path):
    """The worker builds the method as soon as it starts (its answer is read later): the
    failure is reported on first use, and again, without waiting, on every later call."""
    with _client("BrokenInit", tmp_path, timeout=30) as method:
        for _ in range(2):
            with pytest.raises(MethodOutputError, match="'BrokenInit': open.. raised "
                                                        "RuntimeError: no weights here"):
                method.anonymize(_batch(), None)
        assert method.close() == 0  # the worker still answers and stops politely
