"""Lightning glue of the keyed DDIM anonymiser: DDPM training of the inpainting denoiser."""
from __future__ import annotations

import torch
from torch import Tensor

from benchmark.api.inpainting import deid_mask
from data.builder.diffusion import DenoiserTraining

from .config import KeyedDDIMConfig
from .torch_model import InpaintingDenoiser


def masked_face(images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Images in [0, 1] -> (the face region in [-1, 1], zero outside ``mask``; the pixels
    outside it, zero inside): the denoiser's state and its context."""
    scaled = images * 2 - 1
    return scaled * mask, scaled * (1 - mask)


class KeyedDDIMModule(DenoiserTraining):
    """DDPM training of :class:`InpaintingDenoiser` on the training faces: noise only inside
    the region, the loss on its pixels, an EMA copy of the weights
    (``data.builder.diffusion.DenoiserTraining``). Half the faces get the whole-head region,
    half the region with eye holes, so one denoiser serves both rows."""

    def __init__(self, cfg: KeyedDDIMConfig):
        super().__init__(InpaintingDenoiser(cfg), cfg.generator())

    def training_step(self, batch, _):
        images, landmarks = batch["image"], batch["landmarks"]
        size = images.shape[-2:]
        with_holes = torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5
        mask = torch.where(with_holes, deid_mask(landmarks, size, True),
                           deid_mask(landmarks, size, False))
        face, context = masked_face(images, mask)
        noisy, t, target = self.noised(face)
        error = (self.model(noisy * mask, t, context, mask) - target * mask) ** 2
        loss = error.sum() / (3 * mask.sum()).clamp_min(1)
        self.log("loss", loss, prog_bar=True, batch_size=len(images))
        return loss
