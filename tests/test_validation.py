"""Every anonymize/recover output is checked; a bad method writes no run record or row."""
from __future__ import annotations

import re

import pytest
import torch

from benchmark.api import DeIdMethod
from benchmark.run import main
from benchmark.validation import MethodOutputError, call_checked, check_images

REF = torch.rand(4, 3, 16, 16)


@pytest.mark.parametrize("output, problem", [
    (REF.clone().fill_(float("nan")), "NaN/Inf"),
    (REF.clone().fill_(float("inf")), "NaN/Inf"),
    (torch.rand(4, 3, 8, 8), "shape"),
    (torch.rand(4, 1, 16, 16), r"expected \[B,3,H,W\]"),
    (torch.rand(3, 3, 16, 16), "batch size 3"),
    (REF + 0.5, "values in"),
    (REF - 0.5, "values in"),
    ((REF * 255).byte(), "dtype"),
    (REF.double(), "dtype torch.float64, expected torch.float32"),
    (REF.numpy(), "ndarray"),
])
def test_bad_outputs_are_rejected_naming_method_and_problem(output, problem):
    with pytest.raises(MethodOutputError, match=rf"method 'bad': anonymize\(\) .*{problem}"):
        check_images("bad", "anonymize", output, REF)


def test_valid_output_passes_and_round_off_is_clamped():
    out = check_images("ok", "recover", (REF + 5e-5).clamp(max=1 + 5e-5), REF)
    assert out.max() <= 1 and out.shape == REF.shape


def test_exception_inside_a_plugin_is_wrapped():
    def boom(*args):
        raise ZeroDivisionError("inside the plugin")

    with pytest.raises(MethodOutputError, match=r"'p': recover\(\) raised ZeroDivisionError"):
        call_checked("p", "recover", boom, REF, reference=REF)


# -- end to end: no row when a method misbehaves ---------------------------------------------
class NaNMethod(DeIdMethod):
    def anonymize(self, batch, keys):
        return torch.full_like(batch["image"], float("nan"))


class ShrinkMethod(DeIdMethod):
    def anonymize(self, batch, keys):
        return batch["image"][:, :, ::2, ::2]


class BrightMethod(DeIdMethod):
    def anonymize(self, batch, keys):
        return batch["image"] * 2 + 0.1


class CrashMethod(DeIdMethod):
    def anonymize(self, batch, keys):
        raise RuntimeError("plugin bug")


class BadRecovery(DeIdMethod):
    reversible, key_bits = True, 4

    def anonymize(self, batch, keys):
        return batch["image"]

    def recover(self, images, keys):
        return images[:1]


@pytest.mark.parametrize("cls, problem", [
    ("NaNMethod", "NaN"), ("ShrinkMethod", "shape"), ("BrightMethod", "values in"),
    ("CrashMethod", "raised RuntimeError: plugin bug"), ("BadRecovery", r"recover\(\).*batch size"),
])
def test_bad_method_writes_no_record_or_row(cls, problem, tiny_mema, cache, tmp_path,
                                             capsys):
    out = tmp_path / "lb"
    code = main(["--method", f"{__name__}:{cls}", "--dataset", "mema", "--data-root",
                 str(tiny_mema), "--profile", "toy", "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert cls in err and re.search(problem, err), err
    assert not list(out.rglob("*.json")) and not list(out.rglob("*.csv"))
