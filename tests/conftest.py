"""Shared fixtures: tiny generated datasets, so every test runs offline in seconds."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("make_tiny_mema", Path(__file__).parent / "data" / "make_tiny_mema.py")
make_tiny_mema = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_tiny_mema)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # the CI machine has 2 cores shared by several test processes
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_mema(tmp_path_factory) -> Path:
    """Path to a tiny MeMa-Synth root (12 identities x 3 images, 48 px; every split has
    eyelid-tumour rows with masks, so MeMa-Seg works too). Shared: treat it as read-only."""
    return make_tiny_mema.make(tmp_path_factory.mktemp("mema") / "tiny-mema-synth")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A private ``MEMA_BENCH_CACHE`` for one test module (evaluators, fitted methods), so
    tests never read or write the user's cache."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("MEMA_BENCH_CACHE")
    os.environ["MEMA_BENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MEMA_BENCH_CACHE")
    else:
        os.environ["MEMA_BENCH_CACHE"] = old
