"""Where the suite keeps generated data, trained evaluators and fitted methods."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "MEMA_BENCH_CACHE"


def cache_root() -> Path:
    """``$MEMA_BENCH_CACHE``, else ``$XDG_CACHE_HOME/mema-bench``, else ``~/.cache/mema-bench``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "mema-bench"
