"""Networks of CIAGAN (Maximov, Elezi, Leal-Taixé, "CIAGAN: Conditional Identity Anonymization
Generative Adversarial Networks", CVPR 2020), at 64 px: the identity-conditioned inpainting
generator and the training-time recogniser whose embedding the identity loss reads.

The critic is the shared :class:`benchmark.api.inpainting.Critic` on (image, landmark heatmaps).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import conv_norm_act
from benchmark.api.inpainting import InpaintingUNet, landmark_heatmaps


class CiaganGenerator(nn.Module):
    """Generator on (landmark sketch (+) image with the region blanked (+) the region's mask),
    with the target identity's learned embedding joined at the U-Net's bottleneck (the paper
    feeds a one-hot identity through dense layers to the same place; a one-hot through a linear
    layer is an embedding)."""

    def __init__(self, num_identities: int, code_dim: int = 64, width: int = 16):
        super().__init__()
        self.identity = nn.Embedding(num_identities, code_dim)
        self.unet = InpaintingUNet(3 + 1 + 5, code_dim, width)

    def forward(self, image: Tensor, landmarks: Tensor, mask: Tensor, targets: Tensor) -> Tensor:
        x = torch.cat([image * (1 - mask), mask, landmark_heatmaps(landmarks, image.shape[-2:])], 1)
        return self.unet(x, self.identity(targets))


class Recogniser(nn.Module):
    """CIAGAN's training-time identity network (the paper's Siamese network; here trained
    with a CosFace head, see the README): a small CNN to a unit-norm embedding. Only the
    identity loss reads it; it is never the harness's recogniser."""

    def __init__(self, width: int = 24, dim: int = 64):
        super().__init__()
        w = width

        def block(cin, cout, stride=1):
            return conv_norm_act(cin, cout, stride=stride, norm="batch", act="silu")

        self.features = nn.Sequential(block(3, w), block(w, w, 2), block(w, 2 * w),
                                      block(2 * w, 2 * w, 2), block(2 * w, 4 * w),
                                      block(4 * w, 4 * w, 2), block(4 * w, 4 * w))
        self.embed = nn.Linear(4 * w * 16, dim)

    def forward(self, images: Tensor) -> Tensor:
        # a 4x4 pooled map, not a global average: where a feature sits is part of who it is
        pooled = F.adaptive_avg_pool2d(self.features(images * 2 - 1), 4).flatten(1)
        return F.normalize(self.embed(pooled), dim=1)
