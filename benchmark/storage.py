"""Checkpoints and caches the suite writes and reads back (docs/isolation.md).

Everything is a ``torch.save`` file of tensors and plain values, read with
``weights_only=True``: a planted or foreign pickle cannot run code, it is only unreadable.
An unreadable file is one line naming the file and the flag that rebuilds it.
"""
from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from data.files import atomic_torch_save


class CorruptCacheError(RuntimeError):
    """A cached checkpoint is truncated, corrupt or not tensors and plain values."""


def save_checkpoint(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically (a crash leaves the old file or none)."""
    atomic_torch_save(obj, path)


def load_checkpoint(path: Path, rebuild_flag: str) -> Any:
    """Read ``path`` without executing anything; :class:`CorruptCacheError` names the file
    and ``rebuild_flag`` when it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, unsupported global ...
        raise CorruptCacheError(f"cannot read {path} ({_reason(err)}); rerun with "
                                f"{rebuild_flag} to rebuild it") from None


def _reason(err: Exception) -> str:
    """One short line: torch's own message on a refused pickle is a page that ends by
    suggesting ``weights_only=False``, which is exactly what must not be done here."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in str(err).splitlines()]
    if isinstance(err, pickle.UnpicklingError):
        refused = [line for line in lines if "Unsupported global" in line]
        detail = refused[0].split(" was not")[0] if refused else "a foreign object"
        return f"not tensors and plain values: {detail[:120]}"
    first = next((line for line in lines if line), "").split(". ")[0]
    return f"{type(err).__name__}: {first[:160]}" if first else type(err).__name__
