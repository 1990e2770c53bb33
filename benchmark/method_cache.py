"""Fitted methods, cached by the harness (docs/isolation.md).

A method's fitted state (its ``state_dict()``: tensors and plain values) is stored under
``cache_root()/methods/<name>/<dataset fingerprint>-<hash of profile, seed, config, image
size>.pt`` and read back with ``weights_only=True``. :func:`newest_fitted_state_path` and
:func:`load_fitted_state` are the public way in for other tools (the photo CLI) that reuse
a benchmarked method.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from benchmark.leaderboard import safe_name
from benchmark.profiles import Profile
from benchmark.storage import load_checkpoint, save_checkpoint
from data.paths import cache_root

#: the flag that refits (and so rewrites) a cached method
REFIT_FLAG = "--refit-method"


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def method_dir(name: str) -> Path:
    return cache_root() / "methods" / safe_name(name)


def work_dir(name: str, fingerprint: str) -> Path:
    """The method's own folder for resumable checkpoints and logs (its only writable folder
    under ``--isolate``)."""
    return method_dir(name) / f"work-{fingerprint}"


def _state_key(profile: Profile, seed: int, config: dict[str, Any]) -> str:
    return _digest({"profile": profile.name, "seed": seed, "config": config,
                    "image_size": profile.image_size})


def fitted_state_path(name: str, fingerprint: str, profile: Profile, seed: int,
                      config: dict[str, Any]) -> Path:
    return method_dir(name) / f"{fingerprint}-{_state_key(profile, seed, config)}.pt"


def newest_fitted_state_path(name: str, profile: Profile, seed: int,
                             config: dict[str, Any]) -> Path | None:
    """The newest cached fit of method ``name`` with this profile, seed and config on *any*
    dataset (the photo CLI applies a method fitted on the user's data), or None."""
    found = sorted(method_dir(name).glob(f"*-{_state_key(profile, seed, config)}.pt"),
                   key=lambda path: path.stat().st_mtime)
    return found[-1] if found else None


def load_fitted_state(path: Path) -> dict[str, Any]:
    return load_checkpoint(path, REFIT_FLAG)


def save_fitted_state(state: dict[str, Any], path: Path) -> None:
    save_checkpoint(state, path)
