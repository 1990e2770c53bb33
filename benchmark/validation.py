"""Check what a method returns before any score is computed (docs/architecture.md §3).

A bad output stops the run with :class:`MethodOutputError`, naming the method, the call and the
problem, so that a broken plugin can never put a row on the leaderboard.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

#: tolerance on the [0,1] range, for float round-off in a method's last operation
RANGE_TOLERANCE = 1e-4


class MethodOutputError(RuntimeError):
    """A method returned an invalid image batch or raised inside ``anonymize``/``recover``."""


def check_images(method: str, call: str, output: Any, reference: Tensor) -> Tensor:
    """Return ``output`` clamped to [0,1] if it is a valid image batch shaped like ``reference``."""

    def fail(problem: str) -> MethodOutputError:
        return MethodOutputError(f"method {method!r}: {call}() {problem}")

    if not isinstance(output, Tensor):
        raise fail(f"returned {type(output).__name__}, expected a torch.Tensor")
    if output.dtype != reference.dtype:
        # float64 (or half) would crash the evaluators later, far from the method's name
        raise fail(f"returned dtype {output.dtype}, expected {reference.dtype} like its input")
    if output.dim() != 4 or output.shape[1] != 3:
        raise fail(f"returned shape {tuple(output.shape)}, expected [B,3,H,W]")
    if output.shape[0] != reference.shape[0]:
        raise fail(f"returned batch size {output.shape[0]}, expected {reference.shape[0]}")
    if output.shape != reference.shape:
        raise fail(f"returned shape {tuple(output.shape)}, expected {tuple(reference.shape)}")
    finite = torch.isfinite(output)
    if not bool(finite.all()):
        raise fail(f"returned {int((~finite).sum())} NaN/Inf values")
    low, high = float(output.min()), float(output.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise fail(f"returned values in [{low:.4g}, {high:.4g}], expected [0, 1]")
    return output.clamp(0, 1)


def call_plugin(method: str, call: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``; an exception inside the plugin becomes a :class:`MethodOutputError`
    naming the method."""
    try:
        return fn(*args)
    except MethodOutputError:
        raise
    except Exception as err:
        raise MethodOutputError(
            f"method {method!r}: {call}() raised {type(err).__name__}: {err}"
        ) from err


def call_checked(method: str, call: str, fn: Callable[..., Any], *args: Any,
                 reference: Tensor) -> Tensor:
    """:func:`call_plugin`, then :func:`check_images` on its output."""
    return check_images(method, call, call_plugin(method, call, fn, *args), reference)
