"""Network pieces a learned method may build on (the training kit; docs/plugins.md).

``conv_norm_act`` and ``CosFaceHead`` are defined in ``data.layers`` (the bottom layer, so the
data judges use them too) and offered here; the augmentations below serve the harness's
recogniser and the methods' own training-time networks alike. Each caller passes its own
constants: one function, not one recipe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from data.layers import CosFaceHead, conv_norm_act
from data.regions import face_mask, periocular_mask

__all__ = ["CosFaceHead", "PatchCritic", "conv_norm_act", "occlude", "random_shift"]


def random_shift(images: Tensor, max_shift: int) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels (reflect padding): a mild augmentation
    that keeps left/right laterality intact, unlike a horizontal flip; under the global torch
    seed."""
    if max_shift <= 0:
        return images
    b, _, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4, mode="reflect")
    dx = torch.randint(0, 2 * max_shift + 1, (b,)).tolist()
    dy = torch.randint(0, 2 * max_shift + 1, (b,)).tolist()
    return torch.stack([padded[i, :, y:y + h, x:x + w] for i, (x, y) in enumerate(zip(dx, dy))])


def occlude(images: Tensor, landmarks: Tensor, p_keep_eyes: float, p_erase: float, *,
            p_solid: float = 0.7, p_grey: float = 0.5) -> Tensor:
    """Occlusion augmentation for a recogniser, so it learns every identity cue, the periocular
    ones included, instead of leaning on the whole face (cf. random erasing, Zhong et al.,
    AAAI 2020; occlusion-robust face recognition). Per image, independently:

    - with ``p_keep_eyes``: the face outside the periocular region is replaced, what
      eye-keeping de-identification leaves: with ``p_solid`` by a solid fill (grey with
      ``p_grey``, else a random colour), otherwise by a strong blur;
    - with ``p_erase``: a random rectangle (2-25% of the image) is filled with a random colour.
    """
    b, _, h, w = images.shape
    dev = images.device
    out = images.clone()
    # -- keep the eyes, hide the rest of the face
    region = face_mask(landmarks, (h, w)) * (1 - periocular_mask(landmarks, (h, w)))
    chosen = (torch.rand(b, 1, 1, 1, device=dev) < p_keep_eyes).float()
    colour = torch.where(torch.rand(b, 1, 1, 1, device=dev) < p_grey,
                         torch.full((b, 3, 1, 1), 0.5, device=dev),
                         torch.rand(b, 3, 1, 1, device=dev))
    sigma = max(h, w) / 16
    blurred = gaussian_blur(images, [int(4 * sigma) | 1] * 2, [sigma, sigma])
    fill = torch.where(torch.rand(b, 1, 1, 1, device=dev) < p_solid, colour.expand_as(images),
                       blurred)
    out = torch.lerp(out, fill, region * chosen)
    # -- random erasing
    area = (0.02 + 0.23 * torch.rand(b, device=dev)) * h * w
    aspect = torch.exp((torch.rand(b, device=dev) - 0.5) * 2 * 1.1)  # 1/3 .. 3
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    y0 = torch.rand(b, device=dev) * (h - eh)
    x0 = torch.rand(b, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
           & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1))).unsqueeze(1).float()
    erase = box * (torch.rand(b, 1, 1, 1, device=dev) < p_erase).float()
    return torch.lerp(out, torch.rand(b, 3, 1, 1, device=dev).expand_as(out), erase)


class PatchCritic(nn.Module):
    """A real/fake score per 8 x 8 px patch (PatchGAN, Isola et al. 2017) of ``[0, 1]`` images,
    spectral-normalised (Miyato et al. 2018) so a short CPU run stays stable; the loss (hinge,
    LSGAN, ...) is the caller's."""

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        sn = nn.utils.parametrizations.spectral_norm
        self.body = nn.Sequential(
            sn(nn.Conv2d(3, w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(w, 2 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(2 * w, 4 * w, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(4 * w, 1, 3, 1, 1)),
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.body(images * 2 - 1)


def through_uint8(images: Tensor) -> Tensor:
    """Clip and round to 8 bits as a PNG stores the image; gradients pass straight through."""
    clipped = images.clamp(0, 1)
    return clipped + ((clipped * 255).round() / 255 - clipped).detach()
