"""Hyper-parameters of FIT (Gu et al., ECCV 2020), one preset per profile.

``toy`` trains each stage for one epoch with narrow nets (tests, the CI pipeline); ``quick``
trains the recogniser and the password-conditioned transformer in CPU minutes at 64 px;
``full`` is the GPU preset. Every field is part of :meth:`FITReversible.config`, hence of the
harness's cache key. Loss terms follow the authors' main configuration (recovery L1 100,
password diversity 2 and 1, GAN 1); the anonymised and wrong-recovery L1 and the recogniser
push are re-weighted, ``w_smooth`` and ``w_range`` are ours (``README.md`` says why).
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.api.fitted import MethodConfig, preset


@dataclass(frozen=True)
class FITConfig(MethodConfig):
    batch_size: int = 32
    password_bits: int = 16  # the paper's password length
    # -- networks ---------------------------------------------------------------------------
    couplings: int = 4  # additive coupling steps of the transformer (even: both halves move)
    width: int = 16  # coupling sub-network width
    disc_width: int = 16  # LSGAN patch critic
    id_width: int = 16  # training-time recogniser
    id_dim: int = 64
    # -- recogniser pre-training (its own seed) -----------------------------------------------
    id_epochs: int = 6
    id_lr: float = 2e-3
    # -- transformer training ---------------------------------------------------------------
    epochs: int = 3
    lr: float = 1e-3
    id_finetune_lr: float = 2e-4  # the recogniser keeps learning the anonymised faces (FIT)
    w_gan: float = 1.0
    w_recovery: float = 100.0  # L1(recovered from the 8-bit anonymised image, original)
    w_anon_l1: float = 2.0  # L1(anonymised, original): keeps pose and background
    w_wrong_l1: float = 0.0  # L1(wrong recovery, original): off, see README (cancellation)
    w_push: float = 4.0  # recogniser: anonymised and wrong recoveries away from the source
    w_pull: float = 2.0  # recogniser: the recovered face is the source again
    w_diversity: float = 2.0  # two passwords -> two identities
    w_wrong_diversity: float = 1.0  # wrong recovery -> not the anonymised identity either
    aux_fraction: float = 0.25  # share of a batch that also gets a second and a wrong password
    w_smooth: float = 30.0  # high-pass of the anonymised change (no sub-pixel checkerboard)
    w_range: float = 10.0  # anonymised pixels outside [0, 1] (clipping breaks the inverse)
    keyed_flip: bool = False  # a keyed Haar-detail flip mid-flow (a wrong password cannot cancel)



PROFILES = {
    "toy": FITConfig(batch_size=16, couplings=2, width=8, disc_width=8, id_width=8, id_dim=16,
                     id_epochs=1, epochs=1),
    "quick": FITConfig(),
    "full": FITConfig(batch_size=64, couplings=8, width=64, disc_width=64, id_width=48,
                      id_dim=128, id_epochs=40, epochs=60, lr=5e-4),
}


#: ``fit_keyed_flip``: the keyed flip mid-flow, trained twice as long (README.md)
KEYED_FLIP_PROFILES = {name: cfg.replace(keyed_flip=True, epochs=2 * cfg.epochs)
                       for name, cfg in PROFILES.items()}


def make_config(profile: str = "quick", **options) -> FITConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    return preset(PROFILES, profile, **options)
