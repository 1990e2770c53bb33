"""Hyper-parameters of MedSem-DeID, one preset per profile.

``toy`` trains each stage for one epoch (the CI pipeline); ``quick`` trains Enc_med, the periocular critic, the training-time identity network and the
face generator in minutes on a 2-core CPU at 64 px; ``full`` is the GPU preset (wider nets,
more epochs). Every field is part of :meth:`MedSemDeID.config`, hence of the harness's cache key.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class MedSemConfig:
    # -- data ---------------------------------------------------------------------------------
    batch_size: int = 32
    # -- keys and the recovery payload ----------------------------------------------------------
    key_bits: int = 256  # the user's key: a random bit string per image (AES-256 via SHA-256)
    payload_bits: int = 3  # low bits of every 8-bit channel value that carry the ciphertext
    # -- networks -----------------------------------------------------------------------------
    z_dim: int = 64  # identity code drawn from the key
    width: int = 16  # generator / identity-encoder base width
    disc_width: int = 16  # patch discriminator base width
    cond_channels: int = 4  # Enc_med projection per scale (1/8, 1/4, 1/2): a narrow bottleneck
    med_width: int = 24  # Enc_med base width
    med_channels: int = 48  # Enc_med stride-8 feature channels
    id_width: int = 24  # training-time identity network base width
    id_dim: int = 64  # identity embedding size
    # -- pre-training (Enc_med, periocular critic, identity network; each its own seed) --------
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
    # -- generator training (VAE-GAN) -----------------------------------------------------------
    deid_epochs: int = 6
    lr: float = 2e-3
    aux_fraction: float = 0.25  # share of a batch that gets a second key (key diversity)
    id_margin: float = 0.0  # push-away: cos(generated, source) above this is penalised
    diversity_margin: float = 0.2  # key diversity: cos between two keys' faces above this
    w_reconstruction: float = 10.0  # L1 of the VAE reconstruction (z from the face itself)
    w_eye_reconstruction: float = 4.0  # extra weight of the periocular region in that L1
    w_kl: float = 0.005  # KL(q(z|x) || N(0, I)), summed over z
    w_adversarial: float = 0.5  # hinge GAN term of the key-drawn faces
    w_identity: float = 4.0
    w_diversity: float = 2.0
    w_medical: float = 2.0  # Enc_med consistency on the whole face (features and predictions)
    w_medical_crop: float = 8.0  # medical consistency on the periocular crop (guards the signs)

    def replace(self, **changes) -> "MedSemConfig":
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown MedSem-DeID option(s): {sorted(unknown)}")
        return dataclasses.replace(self, **changes)


PROFILES = {
    # the CI pipeline (--profile ci, 32 px): every stage trains for one epoch, narrow nets
    "toy": MedSemConfig(
        width=8, disc_width=8, z_dim=16, med_width=8, med_channels=16, id_width=8, id_dim=16,
        med_epochs=1, med_crop_epochs=1, id_epochs=1, deid_epochs=1,
    ),
    "quick": MedSemConfig(),
    "full": MedSemConfig(
        batch_size=64, width=48, disc_width=64, z_dim=128, med_width=48, med_channels=96,
        id_width=48, id_dim=128, med_epochs=30, med_crop_epochs=30, id_epochs=40, deid_epochs=80,
    ),
}


def make_config(profile: str = "quick", **options) -> MedSemConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[profile].replace(**options)
