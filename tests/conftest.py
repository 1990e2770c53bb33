"""Shared fixtures: tiny generated datasets, so every test runs offline in seconds."""
from __future__ import annotations

import pytest
import torch

TINY = dict(identities=12, images_per_identity=3, size=48, seed=0)


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    # the CI machine has 2 cores shared by several test processes
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_mema(tmp_path_factory):
    """Path to a tiny MeMa-Synth root (12 identities x 3 images, 48 px; every split has
    eyelid-tumour rows with masks, so MeMa-Seg works too). Treat it as read-only."""
    from data.synthetic import generate

    return generate(tmp_path_factory.mktemp("mema") / "tiny-mema-synth", **TINY, progress=False)
