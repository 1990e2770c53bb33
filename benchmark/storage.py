"""Checkpoints and caches the suite writes and reads back (docs/isolation.md).

Everything is a ``torch.save`` file of tensors and plain values, read with
``weights_only=True``: a planted or foreign pickle cannot run code, it is only unreadable.
An unreadable file is one line naming the file and the flag that rebuilds it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class CorruptCacheError(RuntimeError):
    """A cached checkpoint is truncated, corrupt or not tensors and plain values."""


def save_checkpoint(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` atomically (a crash leaves the old file or none)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, rebuild_flag: str) -> Any:
    """Read ``path`` without executing anything; :class:`CorruptCacheError` names the file
    and ``rebuild_flag`` when it cannot be read."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, unsupported global ...
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CorruptCacheError(f"cannot read {path} ({type(err).__name__}: {reason[:200]}); "
                                f"rerun with {rebuild_flag} to rebuild it") from None
