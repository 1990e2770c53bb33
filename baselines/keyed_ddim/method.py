"""``keyed_ddim`` and ``keyed_ddim_keep_eyes``: keyed DDIM inversion (after Labarbarie, Itier,
Puech, "Secure and reversible face anonymization with diffusion models", 2025) as
``DeIdMethod`` plugins.

``fit`` trains the inpainting denoiser as a DDPM (a diffusers ``UNet2DModel``, through a
Lightning ``Trainer``, cached and resumable under ``work_dir``). ``anonymize(batch, keys)``
inverts the face region with DDIM to an intermediate timestep, mixes the latent with noise
seeded by the 64-bit key and regenerates; ``recover(images, keys)`` inverts the de-identified
face, unmixes the same noise and regenerates the original (``README.md``).
"""
from __future__ import annotations

import functools
import logging
import tempfile
from pathlib import Path

import lightning as L
import torch
from torch import Tensor, nn

from benchmark.api.fitted import FittedMethod
from benchmark.api.inpainting import composite, deid_mask
from benchmark.api.training import (data_fingerprint, derive_seed, load_stage, make_trainer,
                                    materialize, metrics_line, save_stage, tensor_loader)
from data.regions import CANONICAL_LANDMARKS

from .config import FLIP_PROFILES, PROFILES, KeyedDDIMConfig
from .lightning_model import KeyedDDIMModule, masked_face
from .torch_model import (InpaintingDenoiser, KeyedDDIMProcess, key_draws, keyed_reflection,
                          mix_key, region_modes, soft_clip, soft_unclip, unmix_key)

log = logging.getLogger(__name__)

#: config fields the trained denoiser depends on (its stage's cache key): the region
#: (``keep_eyes``: it learns both) and the sampling fields (``ddim_steps``, ``depth``,
#: ``corrector_steps``, ``key_mix``) only change inference
DENOISER_FIELDS = ("patch", "block_out_channels", "layers_per_block",
                   "norm_num_groups", "train_steps", "batch_size", "lr", "ema_decay",
                   "num_train_timesteps", "beta_schedule", "prediction_type")


@functools.lru_cache(maxsize=None)
def canonical_region(size: tuple[int, int], keep_eyes: bool) -> Tensor:
    """``[1, 1, H, W]`` {0,1}: the region cut at the canonical landmarks of the aligned crop,
    not the image's own (``recover`` receives only the image and the key, and must cut the same
    region), so the same for every image of a size: computed once."""
    return deid_mask(CANONICAL_LANDMARKS.expand(1, 5, 2), size, keep_eyes)


@functools.lru_cache(maxsize=None)
def canonical_modes(size: tuple[int, int], keep_eyes: bool, modes: int) -> tuple[Tensor, Tensor]:
    """The cells of :func:`canonical_region` (``[H, W]`` bool) and their low-frequency basis
    (:func:`region_modes`)."""
    region = canonical_region(size, keep_eyes)[0, 0] > 0
    return region, region_modes(region, modes)


class KeyedDDIM(FittedMethod):
    """Keyed DDIM inversion on a denoiser trained from scratch: the face region (the whole
    head) is inverted to an intermediate DDIM step, mixed with key-seeded noise and
    regenerated; the key holder inverts, unmixes and regenerates the original. Pixels outside
    the region are the input's, bit for bit.

    The region comes from the canonical landmarks of the aligned crop, not the image's own:
    ``recover`` receives only the image and the key, and must cut the same region."""

    name = "keyed_ddim"
    description = ("keyed DDIM inversion (Labarbarie et al. 2025): a diffusers DDPM inverts the "
                   "head to a mid step, mixes in 64-bit-key-seeded noise and regenerates; the "
                   "key recovers")
    reversible = True
    key_bits = 64
    networks = ("denoiser",)
    presets = PROFILES
    #: the eye-keeping variant sets this
    keep_eyes = False

    def make_config(self, profile: str, **options) -> KeyedDDIMConfig:
        return super().make_config(profile, **{"keep_eyes": self.keep_eyes, **options})

    def build_networks(self) -> dict[str, nn.Module]:
        return {"denoiser": InpaintingDenoiser(self.cfg)}

    # -- training --------------------------------------------------------------------------------
    def fit(self, train) -> None:
        """Train the denoiser (DDPM, EMA weights kept). The denoiser is cached under
        ``work_dir`` by the fields it depends on (:data:`DENOISER_FIELDS`), seed and dataset
        fingerprint, resumable; the sampling fields (steps, depth, key mix) reuse it."""
        train.setup()
        fingerprint = data_fingerprint(train)
        final = self.stage_path("keyed_ddim", None, fingerprint)
        final = final.with_suffix(".pt") if final else None
        if final is not None and final.exists():
            self.load_state_dict(load_stage(final))
            return
        run_dir = self.stage_path("keyed_ddim_denoiser", DENOISER_FIELDS, fingerprint)
        weights = run_dir / "denoiser.pt" if run_dir else None
        if weights is not None and weights.exists():
            denoiser = self.build_networks()["denoiser"]
            denoiser.load_state_dict(load_stage(weights))
        else:
            denoiser = self._train_denoiser(train, run_dir)
            if weights is not None and not self.smoke_run:
                save_stage(denoiser.state_dict(), weights)
        self.set_networks(denoiser=denoiser)
        self.save_fitted(final)

    def _train_denoiser(self, train, run_dir: Path | None) -> InpaintingDenoiser:
        data = materialize(train.train_dataloader(), ("image", "landmarks"))
        with tempfile.TemporaryDirectory() as scratch:
            root = run_dir or Path(scratch)
            L.seed_everything(derive_seed(self.seed, "keyed_ddim/denoiser"), verbose=False)
            module = KeyedDDIMModule(self.cfg)
            last = root / "last.ckpt"
            # the one-cycle schedule counts optimiser steps: stop there, whatever the epochs
            trainer = make_trainer(root, -1, {"max_steps": self.cfg.train_steps,
                                              **self.trainer_kwargs},
                                   resumable=not self.smoke_run)
            trainer.fit(module, tensor_loader(data, self.cfg.batch_size, True,
                                              derive_seed(self.seed, "keyed_ddim/order")),
                        ckpt_path=last if last.exists() else None)
            log.info("keyed DDIM denoiser trained: %s", metrics_line(trainer))
        return module.ema.module

    # -- inference -------------------------------------------------------------------------------
    def _region(self, images: Tensor) -> Tensor:
        size = tuple(images.shape[-2:])
        return canonical_region(size, self.cfg.keep_eyes).to(images.device).expand(
            len(images), -1, -1, -1)

    def _reflect(self, latent: Tensor, flips: Tensor) -> Tensor:
        """The key's reflection of the latent's low-frequency patterns (``key_modes``)."""
        region, basis = (t.to(latent.device) for t in canonical_modes(
            tuple(latent.shape[-2:]), self.cfg.keep_eyes, self.cfg.key_modes))
        return keyed_reflection(latent, flips, basis, region)

    def _rekey(self, images: Tensor, keys: Tensor, sign: float) -> Tensor:
        """Invert the region of ``images``, mix (``sign`` +1) or unmix (-1) the keys' noise,
        regenerate and composite: pixels outside the region are ``images``', bit for bit."""
        keys = self.checked_keys(keys, len(images)).float()

        def chunk(x: Tensor, k: Tensor) -> Tensor:
            mask = self._region(x)
            # a de-identified region went through the soft clip: undo it before inverting
            face = composite(x, soft_unclip(x, self.cfg.clip_margin), mask) if sign < 0 else x
            face, context = masked_face(face, mask)
            process = KeyedDDIMProcess(self.denoiser, self.cfg)
            latent = process.invert(face, context, mask)
            modes = self.cfg.key_modes
            noise, flips = (d.to(x) for d in key_draws(k, x.shape[1:], modes))
            if modes and sign > 0:  # mix(R_k z); the inverse: R_k unmix(z')
                latent = self._reflect(latent, flips)
            rekey = mix_key if sign > 0 else unmix_key
            latent = rekey(latent, noise, mask, self.cfg.key_mix)
            if modes and sign < 0:
                latent = self._reflect(latent, flips)
            drawn = (process.regenerate(latent, context, mask) + 1) / 2
            # a recovered face is an original (in [0, 1]); a de-identified one is soft-clipped
            drawn = soft_clip(drawn, self.cfg.clip_margin) if sign > 0 else drawn.clamp(0, 1)
            return composite(x, drawn, mask)

        return self.run_chunked(chunk, images, keys)

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """Another face in the region, determined by the image and its key."""
        return self._rekey(batch["image"], keys, +1.0)

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """The original face from the de-identified image and its key; a wrong key unmixes
        another key's noise and gives yet another face."""
        return self._rekey(images, keys, -1.0)


class KeyedDDIMKeepEyes(KeyedDDIM):
    """:class:`KeyedDDIM` with eye holes in the region: the periocular pixels (eyes, lids,
    brows: where the eye signs show) are the input's, bit for bit."""

    name = "keyed_ddim_keep_eyes"
    description = ("keyed DDIM inversion with eye holes: the periocular region keeps its "
                   "original pixels; the key recovers the rest")
    keep_eyes = True


class KeyedDDIMFlip(KeyedDDIM):
    """:class:`KeyedDDIM` whose key also flips the signs of the region's 64 lowest-frequency
    patterns in the latent (our variant, ``key_modes``): a wrong key no longer leaves the
    face's layout in the latent."""

    name = "keyed_ddim_flip"
    description = ("keyed DDIM with a keyed flip of the latent's low-frequency patterns (our "
                   "variant): a wrong key leaves no layout of the face")
    presets = FLIP_PROFILES


class KeyedDDIMFlipKeepEyes(KeyedDDIMFlip):
    """:class:`KeyedDDIMFlip` with eye holes in the region (the periocular pixels are the
    input's, bit for bit)."""

    name = "keyed_ddim_flip_keep_eyes"
    description = ("keyed DDIM with the keyed low-frequency flip and eye holes: the periocular "
                   "region keeps its original pixels")
    keep_eyes = True
