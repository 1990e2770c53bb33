"""The bubblewrap sandbox a method worker runs in (docs/isolation.md).

The whole file system is mounted read-only, then the data root, the cache root and the
leaderboard folder are covered by empty in-memory folders, the method's own ``work_dir`` is
mounted back writable, ``/tmp`` is private, and the network is unshared. The Python
environment and every folder on ``sys.path`` stay visible, so the method imports as usual.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: how the method was isolated, as the run record says it
BWRAP, PROCESS = "bwrap", "process"


@functools.lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """Whether ``bwrap`` is installed and can create namespaces here (containers often
    forbid it): a one-off probe run. ``MEMA_BENCH_NO_BWRAP=1`` pretends it is not (CI tests
    the fallback that way)."""
    exe = shutil.which("bwrap")
    if exe is None or os.environ.get("MEMA_BENCH_NO_BWRAP"):
        return False
    try:
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "true"],
                               capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _outermost_first(paths) -> list[Path]:
    """Existing folders, resolved, parents before children (a child mount inside a hidden
    parent must be made after the parent is covered)."""
    found = {Path(p).resolve() for p in paths if p is not None and Path(p).exists()}
    return sorted(found, key=lambda p: len(p.parts))


def bwrap_command(argv: list[str], *, hidden: list[Path], work_dir: Path,
                  visible: list[Path]) -> list[str]:
    """``argv`` wrapped in a bubblewrap sandbox that hides ``hidden``, mounts ``work_dir``
    writable and keeps ``visible`` (code folders, possibly under ``/tmp``) readable."""
    cmd = ["bwrap", "--ro-bind", "/", "/",
           # /dev as is: GPUs (/dev/nvidia*) and shared memory for DataLoader workers
           "--dev-bind", "/dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
           "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
           "--new-session"]
    tmp = Path("/tmp").resolve()
    for path in _outermost_first(visible):
        if path.is_relative_to(tmp):
            cmd += ["--ro-bind", str(path), str(path)]
    for path in _outermost_first(hidden):
        if path.is_dir():
            cmd += ["--tmpfs", str(path)]
    work_dir = Path(work_dir).resolve()
    cmd += ["--bind", str(work_dir), str(work_dir), "--chdir", str(work_dir)]
    return cmd + ["--", *argv]


def python_path() -> list[Path]:
    """The folders the harness imports from (``sys.path``), which the worker must see too."""
    folders = [Path(p or ".").resolve() for p in sys.path]
    folders.append(Path(sys.prefix).resolve())
    return [p for p in dict.fromkeys(folders) if p.is_dir()]
