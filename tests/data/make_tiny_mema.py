"""Build the tiny MeMa-Synth set the tests share (the ``tiny_mema`` fixture).

    python tests/data/make_tiny_mema.py OUT_DIR     # to look at it by hand

12 identities x 3 images at 48 px (split 7/1/4 identities); every split holds eyelid-tumour
rows with masks, so MeMa-Seg loads too. Same bytes on every run.
"""
from __future__ import annotations

import sys
from pathlib import Path

TINY = dict(identities=12, images_per_identity=3, size=48, seed=0)


def make(root: str | Path) -> Path:
    from data.synthetic import generate

    return generate(root, **TINY, progress=False)


if __name__ == "__main__":
    print(make(sys.argv[1]))
