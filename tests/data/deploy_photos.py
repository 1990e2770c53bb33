"""Real photos for the deploy tests, from the images bundled with scikit-image (no download):
the astronaut (Eileen Collins, NASA, public domain) and faces of ``lfw_subset`` (Labeled Faces
in the Wild, 25 px) upscaled and pasted side by side into one picture."""
from __future__ import annotations

import sys
import types

import numpy as np
import torch
from PIL import Image

from benchmark.api import DeIdMethod
from data.regions import CANONICAL_LANDMARKS, face_mask

#: faces of lfw_subset pasted into the group picture
GROUP_FACES = (0, 7, 14, 21)


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()  # 512 x 512 RGB, one face


def group_picture(side: int = 150) -> np.ndarray:
    """``len(GROUP_FACES)`` LFW faces, upscaled to ``side`` px, in a row on a grey canvas."""
    from skimage import data

    faces = data.lfw_subset()  # the first 100 are faces, 25 x 25 grey in [0,1]
    canvas = np.full((side + 170, len(GROUP_FACES) * (side + 10) + 10), 128, dtype=np.uint8)
    for i, index in enumerate(GROUP_FACES):
        face = Image.fromarray((faces[index] * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
        canvas[80:80 + side, 10 + i * (side + 10):10 + i * (side + 10) + side] = np.asarray(face)
    return np.repeat(canvas[..., None], 3, axis=2)


class PermuteFace(DeIdMethod):
    """Reversible toy: a key-seeded permutation of the pixels inside the canonical face region
    of the crop, away from the crop's border (which the paste-back feathers: see
    ``deploy.align.paste_alpha``)."""

    reversible = True
    key_bits = 32

    def _region(self, size: tuple[int, int]) -> torch.Tensor:
        inside = face_mask(CANONICAL_LANDMARKS[None], size)[0, 0] > 0
        border = size[0] // 6
        inside[:border], inside[-border:], inside[:, :border], inside[:, -border:] = False, False, False, False
        return inside.flatten().nonzero()[:, 0]

    def _permute(self, images: torch.Tensor, keys: torch.Tensor, inverse: bool) -> torch.Tensor:
        idx = self._region(tuple(images.shape[-2:]))
        flat, out = images.flatten(2), images.clone().flatten(2)
        for i, key in enumerate(keys):
            seed = int("".join(str(int(b)) for b in key.tolist()), 2)
            perm = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))]
            if inverse:
                out[i][:, perm] = flat[i][:, idx]
            else:
                out[i][:, idx] = flat[i][:, perm]
        return out.view_as(images)

    def anonymize(self, batch, keys):
        return self._permute(batch["image"], keys, inverse=False)

    def recover(self, images, keys):
        return self._permute(images, keys, inverse=True)


def register_toy() -> str:
    """Make :class:`PermuteFace` importable as ``deploy_toy:PermuteFace`` (how a user names a
    plugin method) and return that name."""
    module = types.ModuleType("deploy_toy")
    module.PermuteFace = PermuteFace
    sys.modules["deploy_toy"] = module
    return "deploy_toy:PermuteFace"
