"""Network of DeepPrivacy2 (Hukkelås & Lindseth, "DeepPrivacy2: Towards Realistic Full-Body
Anonymization", WACV 2023), face generator at 64 px: a U-Net that inpaints the masked region
from (masked image (+) mask) and a latent code z.

The critic is the shared :class:`benchmark.api.inpainting.Critic` on (image, mask).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from benchmark.api.inpainting import InpaintingUNet


class DP2Generator(nn.Module):
    """Inpainting U-Net on (image with the region blanked (+) the region's mask), z ~ N(0, I)
    through a small mapping network (as StyleGAN's z -> w) joined at the bottleneck."""

    def __init__(self, z_dim: int = 64, code_dim: int = 64, width: int = 16):
        super().__init__()
        self.mapping = nn.Sequential(nn.Linear(z_dim, code_dim), nn.SiLU(),
                                     nn.Linear(code_dim, code_dim), nn.SiLU())
        self.unet = InpaintingUNet(3 + 1, code_dim, width)

    def forward(self, image: Tensor, landmarks: Tensor, mask: Tensor, z: Tensor) -> Tensor:
        # the landmarks only place the mask: DeepPrivacy2's face model sees no keypoints
        return self.unet(torch.cat([image * (1 - mask), mask], 1), self.mapping(z))
