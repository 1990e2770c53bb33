"""Hyper-parameters of the keyed DDIM anonymiser, one preset per profile.

``toy`` trains a few steps with a narrow UNet (tests, the CI pipeline); ``quick`` trains the
denoiser in CPU minutes at 64 px and samples with an 8-step DDIM schedule; ``full`` is the GPU
preset. Every field is part of :meth:`KeyedDDIM.config`, hence of the harness's cache key.
"""
from __future__ import annotations

from dataclasses import dataclass

from benchmark.api.fitted import MethodConfig, preset

from data.builder.profiles import GeneratorConfig


@dataclass(frozen=True)
class KeyedDDIMConfig(MethodConfig):
    # -- the region -------------------------------------------------------------------------
    keep_eyes: bool = False  # eye holes in the face mask: the periocular pixels stay the input's
    # -- the denoiser (diffusers UNet2DModel) ----------------------------------------------------
    patch: int = 4  # the UNet sees patch x patch pixel blocks as channels (64 px -> 16 x 16)
    block_out_channels: tuple[int, ...] = (48, 64)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    # -- DDPM training ------------------------------------------------------------------------
    train_steps: int = 1500
    batch_size: int = 32
    lr: float = 2e-3
    ema_decay: float = 0.995
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    #: the velocity (Salimans & Ho, 2022): after CPU minutes of training an epsilon denoiser
    #: regenerates faces under heavy residual noise, and a clean-face one is a smoothing map
    #: whose last step no inversion undoes (28 dB); the velocity is the noise at low noise
    #: levels (invertible steps) and the face at high ones (smooth faces) (README)
    prediction_type: str = "v_prediction"
    # -- keyed DDIM -----------------------------------------------------------------------------
    ddim_steps: int = 8  # the DDIM schedule (trailing spacing over the training timesteps)
    depth: int = 5  # how many of its steps the face is inverted: down to timestep ~ depth/steps*T
    #: fixed-point iterations per inversion step (exact inversion), least noisy step first; the
    #: last entry holds for the deeper steps (one number, e.g. from ``--sweep``, for all). The
    #: least noisy step's error is the one the regeneration amplifies most: (5, 1) recovers
    #: more than 3 everywhere, with 15 network evaluations a face instead of 21 (README.md)
    corrector_steps: tuple[int, ...] = (5, 1)
    #: share s of key noise in the latent, z' = sqrt(1 - s^2) z + s n_key: 0.8 spends the
    #: recovery headroom of the corrections on the key (the head's wrong key 4.8 -> 2.0 % over
    #: three seeds, recovery -1 dB); the flip rows keep 0.7, where the flip already hides the
    #: layout (README.md)
    key_mix: float = 0.8
    #: low-frequency patterns of the region whose sign the key flips in the latent before the
    #: mix (0: off, the paper's additive perturbation only); a wrong key leaves the face's
    #: layout in the latent without it (README.md)
    key_modes: int = 0
    #: the regenerated face enters [0, 1] through an invertible soft clip, the identity on
    #: [m, 1 - m] (``torch_model.soft_clip``) that ``recover`` undoes: the noisy regeneration
    #: draws about 1 % of its pixels out of range, and a hard clamp lost them (README.md);
    #: 0: the hard clamp
    clip_margin: float = 0.2

    def corrections(self, step: int) -> int:
        """The fixed-point iterations of inversion step ``step`` (0: the least noisy)."""
        return self.corrector_steps[min(step, len(self.corrector_steps) - 1)]

    def generator(self) -> GeneratorConfig:
        """The builder's denoiser settings (``data.builder``) for this denoiser."""
        return GeneratorConfig(
            image_size=64 // self.patch, block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block, norm_num_groups=self.norm_num_groups,
            train_steps=self.train_steps, batch_size=self.batch_size, lr=self.lr,
            condition_dropout=0.0, ema_decay=self.ema_decay,
            num_train_timesteps=self.num_train_timesteps, beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type)


PROFILES = {
    "toy": KeyedDDIMConfig(block_out_channels=(8, 16), norm_num_groups=4, train_steps=4,
                           batch_size=8, ddim_steps=4, depth=2, corrector_steps=(1,)),
    "quick": KeyedDDIMConfig(),
    "full": KeyedDDIMConfig(patch=2, block_out_channels=(64, 128, 256), layers_per_block=2,
                            norm_num_groups=32, train_steps=60_000, batch_size=64, lr=2e-4,
                            ema_decay=0.9995, ddim_steps=20, depth=10),
}


#: ``keyed_ddim_flip`` (and its eye-keeping twin): the key also flips the region's 64
#: lowest-frequency patterns in the latent, at the earlier key strength (README.md)
FLIP_PROFILES = {name: cfg.replace(key_modes=64, key_mix=0.7) for name, cfg in PROFILES.items()}


def make_config(profile: str = "quick", **options) -> KeyedDDIMConfig:
    """The preset for ``profile`` with ``options`` overriding single fields."""
    return preset(PROFILES, profile, **options)
