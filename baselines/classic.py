"""Classic obfuscation baselines: blur, pixelate, mask, and the no-op reference.

These are the "naive" de-identifiers of Newton, Sweeney & Malin, "Preserving privacy by
de-identifying face images", IEEE TKDE 17(2), 2005: they defeat a recogniser trained on clean
faces but are undone by one trained on obfuscated faces (the parrot attack of docs/architecture.md §4).
Each works on a region from the 5-point landmarks: the whole head (``region="face"``) or the
head except the periocular region (``region="face_except_eyes"``), which keeps the eye signs
for diagnosis but, since eye shape and iris colour carry identity, must leak some of it.

Strengths are given for a 64 px face crop and scale with the image width, so a run at another
resolution removes the same facial detail.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from benchmark.api import DeIdMethod
from data.regions import face_mask, periocular_mask

#: region options of every classic baseline
REGIONS = ("face", "face_except_eyes")
#: image width the strength parameters refer to
REFERENCE_SIZE = 64


def region_mask(batch: dict[str, Tensor], region: str, method: str) -> Tensor:
    """``[B,1,H,W]`` bool mask of the pixels a method replaces."""
    if "landmarks" not in batch:
        raise KeyError(f"{method}: the batch has no 'landmarks'; the region '{region}' needs them")
    size = tuple(batch["image"].shape[-2:])
    landmarks = batch["landmarks"].to(batch["image"].device, torch.float32)
    mask = face_mask(landmarks, size) > 0
    if region == "face_except_eyes":
        mask &= ~(periocular_mask(landmarks, size) > 0)
    return mask


def _check_region(region: str, method: str) -> str:
    if region not in REGIONS:
        raise ValueError(f"{method}: region must be one of {REGIONS}, got {region!r}")
    return region


def _check_image(batch: dict[str, Tensor], method: str) -> Tensor:
    image = batch.get("image")
    if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{method}: batch['image'] must be a [B,3,H,W] tensor, got {shape}")
    return image


class Identity(DeIdMethod):
    """No-op reference: returns the images unchanged, so its scores are the clean references
    (full re-identification, clean diagnostic accuracy) every table is read against."""

    description = "no-op reference: returns the original images"

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        return _check_image(batch, type(self).__name__).clone()


class _RegionObfuscation(DeIdMethod):
    """Replace the chosen region by an obfuscated copy of the image; keep the rest exactly."""

    default_region = "face"

    def __init__(self, *, region: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.region = _check_region(region or self.default_region, type(self).__name__)

    def config(self) -> dict[str, Any]:
        return {"region": self.region}

    def obfuscate(self, image: Tensor) -> Tensor:
        raise NotImplementedError

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        image = _check_image(batch, type(self).__name__)
        mask = region_mask(batch, self.region, type(self).__name__)
        # torch.where, not a blend: pixels outside the region stay bit-identical
        return torch.where(mask, self.obfuscate(image).clamp(0, 1), image)

    @staticmethod
    def _scaled(value: float, image: Tensor) -> float:
        return value * image.shape[-1] / REFERENCE_SIZE


class Blur(_RegionObfuscation):
    """Gaussian blur of the face (Newton, Sweeney & Malin 2005, "blurring").

    ``sigma``: standard deviation in pixels of a 64 px image (default 4: eyes, nose and mouth
    merge into blobs); the kernel spans ±3 sigma.
    """

    description = "Gaussian blur of the face (Newton et al. 2005)"

    def __init__(self, *, sigma: float = 4.0, region: str | None = None, **kwargs: Any) -> None:
        super().__init__(region=region, **kwargs)
        if not sigma > 0:
            raise ValueError(f"{type(self).__name__}: sigma must be positive, got {sigma}")
        self.sigma = float(sigma)

    def config(self) -> dict[str, Any]:
        return {"sigma": self.sigma, **super().config()}

    def obfuscate(self, image: Tensor) -> Tensor:
        sigma = self._scaled(self.sigma, image)
        # odd kernel of ±3 sigma, no wider than reflect padding allows
        radius = min(int(3 * sigma + 0.5), min(image.shape[-2:]) - 1)
        return gaussian_blur(image, [2 * radius + 1] * 2, [sigma, sigma])


class Pixelate(_RegionObfuscation):
    """Pixelation: the face replaced by block averages (Newton, Sweeney & Malin 2005).

    ``block``: block side in pixels of a 64 px image (default 8: about 5x6 blocks per face).
    """

    description = "pixelation of the face in block averages (Newton et al. 2005)"

    def __init__(self, *, block: int = 8, region: str | None = None, **kwargs: Any) -> None:
        super().__init__(region=region, **kwargs)
        if int(block) != block or block < 1:
            raise ValueError(f"{type(self).__name__}: block must be a positive integer, got {block}")
        self.block = int(block)

    def config(self) -> dict[str, Any]:
        return {"block": self.block, **super().config()}

    def obfuscate(self, image: Tensor) -> Tensor:
        block = max(1, round(self._scaled(self.block, image)))
        h, w = image.shape[-2:]
        # ceil so a partial block at the border is still averaged, not dropped
        coarse = F.adaptive_avg_pool2d(image, (-(-h // block), -(-w // block)))
        return F.interpolate(coarse, size=(h, w), mode="nearest")


class Mask(_RegionObfuscation):
    """Solid fill of the face: the "black box" of Newton, Sweeney & Malin 2005.

    ``fill``: grey level in [0,1] or an RGB triple (default 0.5, mid grey).
    """

    description = "solid fill of the face (Newton et al. 2005)"

    def __init__(
        self, *, fill: float | Sequence[float] = 0.5, region: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(region=region, **kwargs)
        fill_t = torch.as_tensor(fill, dtype=torch.float32).flatten()
        if fill_t.numel() not in (1, 3) or fill_t.min() < 0 or fill_t.max() > 1:
            raise ValueError(f"{type(self).__name__}: fill must be one or three values in [0,1], got {fill}")
        self.fill = fill_t.tolist() if fill_t.numel() == 3 else float(fill_t)

    def config(self) -> dict[str, Any]:
        return {"fill": self.fill, **super().config()}

    def obfuscate(self, image: Tensor) -> Tensor:
        fill = torch.as_tensor(self.fill, dtype=image.dtype, device=image.device)
        return fill.view(1, -1, 1, 1).expand_as(image)


class BlurKeepEyes(Blur):
    """:class:`Blur` of the face except the periocular region (Newton et al. 2005 blur with
    the diagnostic eye region kept, the naive Med-DeID of Tian et al., AAAI 2025)."""

    description = "Gaussian blur of the face, periocular region kept"
    default_region = "face_except_eyes"


class PixelateKeepEyes(Pixelate):
    """:class:`Pixelate` of the face except the periocular region (Newton et al. 2005)."""

    description = "pixelation of the face, periocular region kept"
    default_region = "face_except_eyes"


class MaskKeepEyes(Mask):
    """:class:`Mask` of the face except the periocular region (Newton et al. 2005)."""

    description = "solid fill of the face, periocular region kept"
    default_region = "face_except_eyes"
