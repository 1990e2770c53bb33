"""Naturalness: kernel inception distance (KID; Binkowski et al., "Demystifying MMD GANs",
ICLR 2018) between de-identified and clean test images, computed by torchmetrics on features
of a network the harness trained itself on the clean training split — the identity
evaluator's backbone (no downloaded Inception). Those features respond to whatever makes a
face look unlike the faces it was trained on: blotches, flat masks, blur.

KID is reported x1000. Its interval is the spread of the subset estimates torchmetrics draws
(mean ± 1.96 sd), not an identity bootstrap: KID is not a mean of per-image values.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn
from torchmetrics.image.kid import KernelInceptionDistance

from benchmark.evaluators.common import normalise
from benchmark.scoring import Score

#: KID values are tiny; tables show them x1000, as the GAN literature does
KID_SCALE = 1000.0


class BackboneFeatures(nn.Module):
    """The recogniser's backbone features (before the embedding layer) of [0,1] images."""

    def __init__(self, recognizer: nn.Module) -> None:
        super().__init__()
        self.backbone = recognizer.backbone

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        return self.backbone(normalise(images)).flatten(1)


@torch.no_grad()
def kid_score(deid: Tensor, clean: Tensor, recognizer: nn.Module, *, subsets: int,
              subset_size: int, batch_size: int, device: torch.device, seed: int) -> Score:
    size = min(subset_size, len(deid), len(clean))
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(seed)  # torchmetrics draws its subsets from the global generator
        return _kid(deid, clean, recognizer, subsets, size, batch_size, device)


def _kid(deid, clean, recognizer, subsets, size, batch_size, device) -> Score:
    with warnings.catch_warnings():  # "will save all extracted features": it is meant to
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=BackboneFeatures(recognizer).eval(),
                                      subsets=subsets, subset_size=size).to(device)
    for images, real in ((clean, True), (deid, False)):
        for start in range(0, len(images), batch_size):
            kid.update(images[start:start + batch_size].to(device), real=real)
    mean, sd = (float(v) * KID_SCALE for v in kid.compute())
    return Score(mean, mean - 1.96 * sd, mean + 1.96 * sd)
