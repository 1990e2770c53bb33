"""Photo de-identification: every face of a photo aligned, de-identified and pasted back.

One photo: faces (MTCNN, or the whole image with ``--aligned``) -> canonical crops at the
method's resolution (``deploy.align``) -> ``method.anonymize`` on all crops at once -> each crop
pasted back through the inverse warp with a feathered face mask. Pixels the method leaves
unchanged (e.g. the eyes of ``blur_keep_eyes``; keyless methods only) and everything outside
the face keep the photo's own values exactly.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from benchmark.api import DeIdMethod
from benchmark.validation import call_checked

from .align import crop_transform, extract_crop, paste_alpha, paste_crop, solve_crop, transform_points
from .detect import Face
from .keys import draw_keys

#: a crop pixel counts as changed by the method when a channel moves by more than this
CHANGE_TOLERANCE = 1.0 / 255


def _writable_copy(rgb: np.ndarray) -> tuple[np.ndarray, Tensor]:
    """A copy of ``rgb [H,W,3]`` and a ``[3,H,W]`` uint8 tensor view of it to paste into."""
    copy = np.array(rgb, dtype=np.uint8)
    return copy, torch.from_numpy(copy).permute(2, 0, 1)


def _alignment(faces: list[Face], size: int) -> tuple[list[np.ndarray], Tensor]:
    """Photo-to-crop matrices of the faces and their landmarks in the crop ``[F,5,2]`` in [0,1]."""
    matrices = [crop_transform(face, size) for face in faces]
    landmarks = torch.stack([torch.from_numpy(transform_points(m, f.points) / size)
                             for m, f in zip(matrices, faces)]).float()
    return matrices, landmarks


def anonymize_photo(rgb: np.ndarray, faces: list[Face], method: DeIdMethod,
                    size: int) -> tuple[np.ndarray, Tensor | None]:
    """De-identify every face of ``rgb`` (uint8 ``[H,W,3]``); returns the new pixels and, for a
    method with keys, the fresh key drawn for each face ``[F, key_bits]``."""
    result, photo = _writable_copy(rgb)
    matrices, landmarks = _alignment(faces, size)
    crops = torch.stack([extract_crop(photo, m, size) for m in matrices])
    keys = draw_keys(len(faces), method.key_bits) if method.key_bits else None
    batch = {"image": crops, "landmarks": landmarks, "index": torch.arange(len(faces))}
    with torch.no_grad():
        out = call_checked(method.name, "anonymize", method.anonymize, batch, keys, reference=crops)
    # a reversible method's crop is pasted whole: recover_photo must find the same blend
    changed = None if keys is not None else (out - crops).abs().amax(1, keepdim=True) > CHANGE_TOLERANCE
    alphas = paste_alpha(landmarks, size, changed)
    for crop, alpha, matrix in zip(out, alphas, matrices):  # every crop was taken before
        paste_crop(photo, crop, alpha, matrix)
    return result, keys


def recover_photo(rgb: np.ndarray, faces: list[Face], keys: Tensor, method: DeIdMethod,
                  size: int) -> np.ndarray:
    """Restore the faces :func:`anonymize_photo` de-identified with ``keys``."""
    result, photo = _writable_copy(rgb)
    matrices, landmarks = _alignment(faces, size)
    alphas = paste_alpha(landmarks, size)
    with torch.enable_grad():
        pasted = torch.stack([solve_crop(photo, a, m, size) for a, m in zip(alphas, matrices)])
    with torch.no_grad():
        restored = call_checked(method.name, "recover", method.recover, pasted, keys, reference=pasted)
    for crop, alpha, matrix in zip(restored, alphas, matrices):
        paste_crop(photo, crop, alpha, matrix)
    return result
