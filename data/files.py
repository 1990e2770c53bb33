"""Atomic writes: a crash or an error leaves the old file (or folder) or none, never half of one.

The one place for this in the suite: ``data`` is the bottom layer, so the datasets and the
builder, the harness, the photo CLI and the methods may all import it (README, import rule).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _default_mode() -> int:
    """What ``open`` would give a new file under the current umask (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_file(path: str | Path, mode: int | None = None):
    """Yield a temporary path beside ``path``; rename it to ``path`` only if the block succeeds.
    The file gets ``mode`` (default: what ``open`` would give under the umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, _default_mode() if mode is None else mode)
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, data: str | bytes, mode: int | None = None) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically."""
    with atomic_file(path, mode) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (checkpoints, stage caches)."""
    import torch  # here, not at the top: the text writers need no torch

    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


@contextmanager
def atomic_directory(out: str | Path):
    """Yield a temporary directory beside ``out`` that becomes ``out`` only on success,
    so an interrupted import or generation never leaves a half-written dataset."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} already exists and is not empty; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
        try:
            if out.exists():
                out.rmdir()  # still empty, else another process got there first
            os.replace(tmp, out)
        except OSError as err:
            raise FileExistsError(f"{out} appeared while it was being written ({err})") from err
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
