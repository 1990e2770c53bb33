"""Lightning glue of DeepPrivacy2: the non-saturating GAN with R1 on the inpainted composite."""
from __future__ import annotations

import torch
from torch import Tensor

from benchmark.api.inpainting import InpaintingGANModule


class DP2Module(InpaintingGANModule):
    """Non-saturating logistic GAN loss, lazy R1 on real images and the drift (epsilon)
    penalty on the critic; z ~ N(0, I) per image."""

    gan_loss = "ns"

    def train_codes(self, batch: dict[str, Tensor]) -> Tensor:
        return torch.randn(len(batch["image"]), self.generator.mapping[0].in_features,
                           device=batch["image"].device)
