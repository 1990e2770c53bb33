"""``DeIdMethod`` plugins: DeepPrivacy2 (Hukkelås & Lindseth, WACV 2023), its face generator,
and its eye-keeping variant (``baselines/deepprivacy2/README.md``).

``fit`` trains the inpainting GAN through Lightning, cached and resumable under ``work_dir``;
``anonymize`` inpaints the region from a latent code drawn per image from the method seed and
the image's index.
"""
from __future__ import annotations

import dataclasses

import torch

from benchmark.api.inpainting import Critic, GANConfig, InpaintingGAN, per_image_draw

from .lightning_model import DP2Module
from .networks import DP2Generator


@dataclasses.dataclass(frozen=True)
class DP2Config(GANConfig):
    z_dim: int = 64  # latent code per image
    # R1 weight for images in [0, 1] at 64 px (StyleGAN2's heuristic 2e-4 * pixels / batch,
    # x 1/4 for the [0, 1] range); 1.0 flattened the critic: d_loss sat at 2 ln 2
    r1_gamma: float = 0.02
    w_epsilon: float = 1e-3


PRESETS = {
    "toy": DP2Config(batch_size=8, width=8, disc_width=8, code_dim=16, z_dim=16, epochs=1),
    "quick": DP2Config(),
    "full": DP2Config(batch_size=64, width=48, disc_width=64, code_dim=256, z_dim=256,
                      epochs=100, r1_gamma=0.05),
}


class DeepPrivacy2(InpaintingGAN):
    """DeepPrivacy2 (WACV 2023), face generator: the head is repainted by a U-Net GAN from the
    rest of the image, the region's mask and a random latent code; it never sees the face."""

    name = "deepprivacy2"
    description = ("DeepPrivacy2 (WACV 2023): the head inpainted by a U-Net GAN from the "
                   "surroundings and a random code (eyes regenerated)")
    presets = PRESETS

    def build_generator(self) -> DP2Generator:
        return DP2Generator(self.cfg.z_dim, self.cfg.code_dim, self.cfg.width)

    def build_module(self, generator) -> DP2Module:
        return DP2Module(generator, Critic(3 + 1, self.cfg.disc_width), self.cfg, self.keep_eyes)

    def draw_codes(self, index: torch.Tensor) -> torch.Tensor:
        """z ~ N(0, I) per image, drawn from the method seed and the image's index."""
        return per_image_draw(self.seed, "z", index,
                              lambda g: torch.randn(self.cfg.z_dim, generator=g))


class DeepPrivacy2KeepEyes(DeepPrivacy2):
    """DeepPrivacy2 with eye holes in the mask (what its users asked for, issue #30 of its
    repository): the periocular region keeps its original pixels."""

    name = "deepprivacy2_keep_eyes"
    description = ("DeepPrivacy2 with eye holes: the head inpainted by a U-Net GAN, the "
                   "periocular region kept")
    keep_eyes = True
