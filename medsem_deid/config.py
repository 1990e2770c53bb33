"""Hyper-parameters of MedSem-DeID, one preset per profile.

``quick`` trains Enc_med, the training-time identity network and the DeID flow in a few
minutes on a 2-core CPU at 64 px; ``full`` is the GPU preset (wider nets, more epochs).
Every field is part of :meth:`MedSemDeID.config`, hence of the harness's cache key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MedSemConfig:
    # -- data ---------------------------------------------------------------------------------
    batch_size: int = 32
    # -- networks -----------------------------------------------------------------------------
    key_bits: int = 32  # length of the user's key (random bit string per image)
    key_channels: int = 16  # key embedding channels joined at the ID-encryptor
    width: int = 16  # base width of the coupling conditioners (image encoder/decoder)
    num_couplings: int = 3  # affine couplings, coupling i edits colour channel i mod 3
    med_width: int = 24  # Enc_med base width
    med_channels: int = 48  # Enc_med feature channels joined by channel-wise concatenation
    id_width: int = 24  # training-time identity network base width
    id_dim: int = 64  # identity embedding size
    scale_limit: float = 3.0  # a coupling keeps the original at >= e^-3 of its logit
    shift_margin: float = 1.0  # logit range a coupling may add beyond the input's
    # -- pre-training (Enc_med and the identity network, each its own seed) ----------------------
    med_epochs: int = 8
    id_epochs: int = 10
    pre_lr: float = 2e-3
    # occlusion augmentation of the identity network (keep-eyes fills/blur, random erasing), so
    # its push-away also removes periocular identity cues
    id_keep_eyes: float = 0.3
    id_erase: float = 0.3
    # periocular medical critic: a second Enc_med-like network on the landmark-aligned eye band,
    # used only by the medical-consistency loss (0 epochs: off)
    med_crop_epochs: int = 12
    # -- DeID training ----------------------------------------------------------------------------
    deid_epochs: int = 12
    lr: float = 1e-3
    aux_fraction: float = 0.25  # share of a batch used for the recovery / wrong-key / diversity terms
    id_margin: float = 0.0  # push-away: cos(de-identified, source) above this is penalised
    diversity_margin: float = 0.2  # key diversity: cos between two keys' outputs above this
    w_identity: float = 10.0  # the occlusion-robust identity network needs a firm push
    w_medical: float = 4.0
    w_medical_crop: float = 8.0  # medical consistency on the periocular crop (guards the signs against the push)
    w_locality: float = 4.0  # outside the head
    w_eye_locality: float = 4.0  # periocular region: the signs live there (the periocular critic guards them)
    w_naturalness: float = 0.5
    w_smoothness: float = 2.0  # total variation of the change (no checkerboard)
    w_recovery: float = 1.0
    w_wrong_key: float = 6.0
    w_diversity: float = 2.0

    def replace(self, **changes) -> "MedSemConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown MedSem-DeID option(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


PROFILES = {
    "quick": MedSemConfig(),
    "full": MedSemConfig(
        batch_size=64, width=48, key_channels=48, aux_fraction=0.5, num_couplings=6, med_width=48,
        med_channels=96, id_width=48, id_dim=128, med_epochs=30, med_crop_epochs=30, id_epochs=40, deid_epochs=80,
    ),
}


def make_config(profile: str = "quick", **options) -> MedSemConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[profile].replace(**options)
