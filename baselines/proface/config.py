"""Hyper-parameters of PRO-Face S (Yuan et al., TCSVT 2024), one preset per profile.

``toy`` trains one epoch of narrow conditioners (tests, the CI pipeline); ``quick`` trains the
flow in CPU minutes at 64 px; ``full`` is the GPU preset. Every field is part of the method's
``config()``, hence of the harness's cache key (``obfuscation`` too, so each row caches its
own flow).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.api.fitted import MethodConfig, preset


@dataclass(frozen=True)
class ProFaceConfig(MethodConfig):
    #: the classic baseline the output imitates (a name of ``baselines.proface.method.CLASSICS``)
    obfuscation: str = "blur"
    key_bits: int = 64
    batch_size: int = 32
    # -- the flow ---------------------------------------------------------------------------
    levels: int = 3  # Haar levels: 64 px -> an 8 x 8 low band (the pixelation's block size)
    width: int = 16  # conditioner width
    min_gain: float = 0.05  # smallest coupling scale: bounds the 8-bit noise on recovery (x20)
    pad: float = 0.03  # amplitude of the keyed pad on the finest details (README: secrecy)
    lock: float = 2.0  # energy lock: pixel shift per unit of detail energy above the limit
    lock_margin: float = 1.5  # the limit: this times the training faces' largest detail energy
    # -- training ---------------------------------------------------------------------------
    epochs: int = 16
    lr: float = 3e-3
    w_obfuscation: float = 1.0  # L1(output without the pad, the classic's output)
    w_recovery: float = 0.05  # L1(recovered from the 8-bit output, original)
    w_range: float = 10.0  # output pixels outside [0, 1] (clipping breaks the inverse)



PROFILES = {
    "toy": ProFaceConfig(batch_size=16, levels=2, width=8, epochs=1),
    "quick": ProFaceConfig(),
    "full": ProFaceConfig(batch_size=64, width=64, epochs=60, lr=1e-3),
}


def make_config(profile: str = "quick", **options) -> ProFaceConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    return preset(PROFILES, profile, **options)
