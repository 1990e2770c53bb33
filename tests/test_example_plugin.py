"""The example third-party plugin works both ways a stranger would use it: installed (its own
setup.cfg entry point) and named as module:Class."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmark.registry import list_methods, load_method

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "mema_bench_example_plugin"


def _batch(n=3, size=32):
    from data.regions import CANONICAL_LANDMARKS

    return {"image": torch.rand(n, 3, size, size), "landmarks": CANONICAL_LANDMARKS.repeat(n, 1, 1),
            "index": torch.arange(n)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """pip-install the example (offline, no deps) into a temp target folder."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source)  # build artefacts stay out of the repository
    target = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return target


def _forget_plugin_modules(monkeypatch):
    """Another test may have imported the plugin from the source tree: import it afresh."""
    for name in [m for m in sys.modules if m.startswith("mema_bench_example_plugin")]:
        monkeypatch.delitem(sys.modules, name)


def test_installed_plugin_is_found_by_entry_point(installed, monkeypatch):
    _forget_plugin_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(installed))
    infos = {i.name: i for i in list_methods()}
    assert infos["example_scramble"].reversible is True and infos["example_scramble"].error is None
    assert infos["example_noise"].reversible is False
    method = load_method("example_noise", seed=1)
    assert method.name == "example_noise"
    assert Path(sys.modules[type(method).__module__].__file__).is_relative_to(installed)


def test_plugin_loads_as_module_colon_class(monkeypatch):
    _forget_plugin_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    method = load_method("mema_bench_example_plugin.methods:KeyedScramble")
    batch = _batch()
    keys = torch.randint(0, 2, (3, method.key_bits)).float()
    hidden = method.anonymize(batch, keys)
    assert not torch.allclose(hidden, batch["image"])
    torch.testing.assert_close(method.recover(hidden, keys), batch["image"])
    wrong = 1 - keys
    assert not torch.allclose(method.recover(hidden, wrong), batch["image"])


def test_noise_keeps_the_eyes_and_is_reproducible(monkeypatch):
    _forget_plugin_modules(monkeypatch)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from data.regions import periocular_mask

    method = load_method("mema_bench_example_plugin.methods:FaceNoise", seed=2)
    batch = _batch()
    out = method.anonymize(batch, None)
    torch.testing.assert_close(out, method.anonymize(batch, None))
    eyes = periocular_mask(batch["landmarks"], (32, 32)).bool().expand_as(out)
    torch.testing.assert_close(out[eyes], batch["image"][eyes])
    assert not torch.allclose(out, batch["image"])
