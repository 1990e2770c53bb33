"""Warp a face to the suite's canonical crop and paste the de-identified crop back.

The canonical crop is what every method is trained and scored on: a square image of the
method's resolution whose 5 landmarks sit on ``data.regions.CANONICAL_LANDMARKS`` (the MeMa
loader resizes each stored image to that square). A detected face is mapped there by the
least-squares similarity (rotation, uniform scale, shift; Umeyama, IEEE TPAMI 13(4), 1991) of its
landmarks onto the template; a pre-aligned crop is simply resized.

Coordinates are continuous pixels: pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)``. Photos are
uint8 tensors ``[3,H,W]``; only the pixels around a face are ever converted to float.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms.functional import gaussian_blur

from data.regions import CANONICAL_LANDMARKS, face_mask

from .detect import Face


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``3x3`` similarity mapping points ``src [N,2]`` onto ``dst [N,2]`` in least squares."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sv, vt = np.linalg.svd(d.T @ s / len(src))
    flip = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ flip @ vt
    scale = float((sv * np.diag(flip)).sum() / s.var(0).sum())
    matrix = np.eye(3)
    matrix[:2, :2] = scale * rotation
    matrix[:2, 2] = mu_d - scale * rotation @ mu_s
    return matrix


def crop_transform(face: Face, size: int) -> np.ndarray:
    """``3x3`` matrix from photo pixels to pixels of the ``size``-px canonical crop."""
    if face.aligned:
        x0, y0, x1, y1 = face.box
        return np.array([[size / (x1 - x0), 0, -x0 * size / (x1 - x0)],
                         [0, size / (y1 - y0), -y0 * size / (y1 - y0)], [0, 0, 1.0]])
    return similarity(face.points, CANONICAL_LANDMARKS.double().numpy() * size)


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:2, :2].T + matrix[:2, 2]


def _sample(image: Tensor, out_to_src: np.ndarray, top_left: tuple[int, int],
            shape: tuple[int, int], padding: str = "zeros") -> Tensor:
    """Bilinear samples ``[C,h,w]`` of ``image [C,H,W]`` at ``out_to_src`` of the pixel centres
    of an ``shape`` grid whose corner is ``top_left`` (x, y); outside the image reads 0
    (``padding="zeros"``) or the nearest edge pixel (``"border"``)."""
    h, w = shape
    src_h, src_w = image.shape[-2:]
    # grid_sample's normalised coordinates -> pixels of the grid -> source pixels -> normalised
    from_grid = np.array([[w / 2, 0, w / 2 + top_left[0]], [0, h / 2, h / 2 + top_left[1]], [0, 0, 1.0]])
    to_unit = np.array([[2 / src_w, 0, -1], [0, 2 / src_h, -1], [0, 0, 1.0]])
    theta = torch.from_numpy(to_unit @ out_to_src @ from_grid)[None, :2].to(image.dtype)
    grid = F.affine_grid(theta, [1, image.shape[0], h, w], align_corners=False)
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode=padding, align_corners=False)[0]


def _bounds(matrix: np.ndarray, size: int, shape: tuple[int, int], margin: int = 2):
    """Photo pixel box ``(x0, y0, x1, y1)`` covered by the crop (``matrix``: photo -> crop)."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    pts = transform_points(np.linalg.inv(matrix), corners)
    x0, y0 = np.floor(pts.min(0)).astype(int) - margin
    x1, y1 = np.ceil(pts.max(0)).astype(int) + margin
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _unit(pixels: Tensor) -> Tensor:
    return pixels.float().div_(255)


def extract_crop(photo: Tensor, matrix: np.ndarray, size: int) -> Tensor:
    """The ``[3,size,size]`` canonical crop (float in [0,1]) of ``photo`` (uint8 ``[3,H,W]``).
    Shrinking faces are low-pass filtered first (anti-aliasing), so the crop looks like a
    resized photo, as in training."""
    x0, y0, x1, y1 = _bounds(matrix, size, photo.shape[-2:], margin=2)
    region = _unit(photo[:, y0:y1, x0:x1])
    zoom = 1.0
    shrink = 1.0 / math.sqrt(abs(np.linalg.det(matrix[:2, :2])))  # photo px per crop px
    if shrink > 1.25 and min(region.shape[-2:]) > 1:
        # resize (with an anti-aliasing filter) to about the crop's scale, then warp
        region = F.interpolate(region[None], scale_factor=1 / shrink, mode="bilinear",
                               antialias=True, recompute_scale_factor=False)[0]
        zoom = 1 / shrink
    to_region = np.array([[zoom, 0, -x0 * zoom], [0, zoom, -y0 * zoom], [0, 0, 1.0]])
    # beyond the photo's edge the crop repeats the edge, as a method would rather see than black
    return _sample(region, to_region @ np.linalg.inv(matrix), (0, 0), (size, size), "border")


def feather_width(size: int) -> int:
    """Feather of the paste mask in crop pixels (5% of the crop side)."""
    return max(1, round(0.05 * size))


def _feather(mask: Tensor, width: int) -> Tensor:
    """Gaussian blur over ``width`` px; 1 stays exactly 1 where the whole window is 1."""
    soft = gaussian_blur(mask, [2 * width + 1] * 2, [width / 2] * 2)
    return torch.where(soft > 1 - 1e-6, 1.0, soft.clamp(0, 1))


def paste_alpha(landmarks: Tensor, size: int, changed: Tensor | None = None) -> Tensor:
    """``[B,1,size,size]`` blend weight of the de-identified crop.

    The head region of ``data.regions.face_mask`` is grown by the feather width and feathered,
    so the weight is exactly 1 over the whole face and falls smoothly to 0 outside it (and at
    the crop's border). Where ``changed`` says the method kept a face region (e.g. the eyes of
    ``blur_keep_eyes``), the weight is exactly 0, so the photo's own pixels stay there, with a
    narrow transition on the changed side."""
    f = feather_width(size)
    grown = F.max_pool2d(face_mask(landmarks, (size, size)), 2 * f + 1, 1, f)
    grown[..., :f, :], grown[..., -f:, :], grown[..., :, :f], grown[..., :, -f:] = 0, 0, 0, 0
    alpha = _feather(grown, f)
    if changed is not None:
        kept = face_mask(landmarks, (size, size)) * (1 - changed.float())
        kept = F.max_pool2d(-F.max_pool2d(-kept, 3, 1, 1), 3, 1, 1)  # opening: no single specks
        k = max(1, f // 2)
        alpha = alpha * (1 - _feather(F.max_pool2d(kept, 2 * k + 1, 1, k), k))
    return alpha


def paste_crop(photo: Tensor, crop: Tensor, alpha: Tensor, matrix: np.ndarray) -> None:
    """Blend ``crop [3,s,s]`` with weight ``alpha [1,s,s]`` into ``photo`` (uint8 ``[3,H,W]``)
    in place, through the inverse of ``matrix``; pixels where the weight is 0 are untouched."""
    size = crop.shape[-1]
    x0, y0, x1, y1 = _bounds(matrix, size, photo.shape[-2:])
    if x1 <= x0 or y1 <= y0:
        return
    sampled = _sample(torch.cat([crop, alpha]), matrix, (x0, y0), (y1 - y0, x1 - x0))
    weight = sampled[3:].clamp(0, 1)
    pixels = photo[:, y0:y1, x0:x1]
    region = _unit(pixels)
    blend = (region * (1 - weight) + sampled[:3] * weight).mul_(255).round_().clamp_(0, 255)
    pixels.copy_(torch.where(weight > 0, blend.to(torch.uint8), pixels))


def solve_crop(photo: Tensor, alpha: Tensor, matrix: np.ndarray, size: int,
               iterations: int = 60, prior: float = 1e-3) -> Tensor:
    """The crop that :func:`paste_crop` pasted into ``photo``, recovered exactly up to 8-bit
    rounding where the photo's face is larger than the crop: least squares (conjugate
    gradients) of the bilinear paste over the photo pixels of full weight, pulled weakly
    towards the resampled crop elsewhere. A reversible method needs its own output back, not
    a twice-resampled copy of it."""
    start = extract_crop(photo, matrix, size)
    x0, y0, x1, y1 = _bounds(matrix, size, photo.shape[-2:])
    shape = (y1 - y0, x1 - x0)
    if shape[0] <= 0 or shape[1] <= 0:
        return start
    full = (_sample(alpha, matrix, (x0, y0), shape) >= 1 - 1e-6).float()
    target = _unit(photo[:, y0:y1, x0:x1]) * full

    def paste(crop: Tensor) -> Tensor:
        return _sample(crop, matrix, (x0, y0), shape) * full

    def normal(crop: Tensor) -> Tensor:  # (P^T P + prior) crop, P^T by autograd (P is linear)
        crop = crop.detach().requires_grad_(True)
        pasted = paste(crop)
        (grad,) = torch.autograd.grad(pasted, crop, pasted.detach())
        return grad + prior * crop.detach()

    def adjoint(image: Tensor) -> Tensor:
        crop = torch.zeros_like(start, requires_grad=True)
        (grad,) = torch.autograd.grad(paste(crop), crop, image)
        return grad

    rhs = adjoint(target) + prior * start
    x = start.clone()
    r = rhs - normal(x)
    p, rr = r.clone(), (r * r).sum()
    for _ in range(iterations):
        if rr < 1e-14:
            break
        q = normal(p)
        step = rr / (p * q).sum()
        x, r = x + step * p, r - step * q
        rr_new = (r * r).sum()
        p, rr = r + (rr_new / rr) * p, rr_new
    return x.clamp(0, 1)
