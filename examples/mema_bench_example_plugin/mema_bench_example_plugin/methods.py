"""Two small but complete mema-bench methods.

``FaceNoise`` adds Gaussian noise to the face outside the periocular region (keyless,
irreversible). ``KeyedScramble`` permutes the pixels of the face region with a permutation
drawn from the key: the key holder can undo it exactly, a wrong key cannot (a toy stand-in for
the reversible, key-conditioned methods such as RiDDLE or MedSem-DeID).
"""
from __future__ import annotations

import torch
from torch import Tensor

from benchmark.api import DeIdMethod
from data.regions import face_mask, periocular_mask


class FaceNoise(DeIdMethod):
    """Gaussian noise on the face, periocular region kept."""

    description = "Gaussian noise on the face outside the eye region (example plugin)"
    reversible = False

    def __init__(self, *, sigma: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sigma = sigma

    def config(self) -> dict:
        return {"sigma": self.sigma}

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        images, landmarks = batch["image"], batch["landmarks"]
        size = tuple(images.shape[-2:])
        region = face_mask(landmarks, size) * (1 - periocular_mask(landmarks, size))
        # seeded by the method seed and the image's row, so a run is reproducible whatever
        # the batch order
        noise = torch.stack([
            torch.randn(images.shape[1:], generator=torch.Generator().manual_seed(
                self.seed * 1_000_003 + int(row)))
            for row in batch["index"].tolist()
        ]).to(images.device) * self.sigma
        return (images + region * noise).clamp(0, 1)


class KeyedScramble(DeIdMethod):
    """Key-seeded pixel permutation, reversible with the key."""

    description = "key-seeded pixel permutation of the whole image, reversible (example plugin)"
    reversible = True
    key_bits = 16

    def _permutation(self, key: Tensor, n: int) -> Tensor:
        seed = int("".join(str(int(b)) for b in key.tolist()), 2)
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        images = batch["image"]
        flat = images.flatten(2)
        out = torch.stack([flat[i][:, self._permutation(k, flat.shape[2]).to(images.device)]
                           for i, k in enumerate(keys.cpu())])
        return out.view_as(images)

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        flat = images.flatten(2)
        out = torch.empty_like(flat)
        for i, k in enumerate(keys.cpu()):
            out[i][:, self._permutation(k, flat.shape[2]).to(images.device)] = flat[i]
        return out.view_as(images)
