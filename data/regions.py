"""Face and periocular region masks from 5-point landmarks.

Landmarks are ``[B,5,2]`` float, ``(x, y)`` normalised to ``[0,1]`` by image width and height,
in the order left eye, right eye, nose tip, left mouth corner, right mouth corner (left/right
as seen in the image). Sizes are relative to the inter-ocular distance so the regions follow
the face whatever the resolution.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

#: 5-point template of an aligned, frontal face crop (normalised coordinates); used when an
#: image has no stored landmarks.
CANONICAL_LANDMARKS = torch.tensor(
    [[0.35, 0.42], [0.65, 0.42], [0.50, 0.58], [0.39, 0.72], [0.61, 0.72]]
)


def _grid(size: tuple[int, int], device) -> tuple[Tensor, Tensor]:
    h, w = size
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
    return ys.view(1, h, 1), xs.view(1, 1, w)


def _iod(landmarks: Tensor) -> Tensor:
    return (landmarks[:, 1] - landmarks[:, 0]).norm(dim=-1).clamp_min(1e-3)


def periocular_mask(landmarks: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B,1,H,W]`` {0,1} mask of both eyes, lids and brows (where the eye diseases show)."""
    ys, xs = _grid(size, landmarks.device)
    iod = _iod(landmarks).view(-1, 1, 1)
    mask = torch.zeros(landmarks.shape[0], *size, device=landmarks.device)
    for eye in (0, 1):
        cx = landmarks[:, eye, 0].view(-1, 1, 1)
        # centre a little above the pupil: the brow and upper lid carry most signs
        cy = landmarks[:, eye, 1].view(-1, 1, 1) - 0.08 * iod
        inside = ((xs - cx) / (0.48 * iod)) ** 2 + ((ys - cy) / (0.40 * iod)) ** 2 <= 1.0
        mask = torch.maximum(mask, inside.float())
    return mask.unsqueeze(1)


def face_mask(landmarks: Tensor, size: tuple[int, int]) -> Tensor:
    """``[B,1,H,W]`` {0,1} mask of the whole head: face, forehead and hair."""
    ys, xs = _grid(size, landmarks.device)
    iod = _iod(landmarks).view(-1, 1, 1)
    centre = landmarks.mean(dim=1)
    cx = centre[:, 0].view(-1, 1, 1)
    cy = centre[:, 1].view(-1, 1, 1) - 0.35 * iod
    inside = ((xs - cx) / (1.45 * iod)) ** 2 + ((ys - cy) / (1.95 * iod)) ** 2 <= 1.0
    return inside.float().unsqueeze(1)


def periocular_crop(images: Tensor, landmarks: Tensor, size: tuple[int, int] = (32, 64),
                    jitter: float = 0.0) -> Tensor:
    """``[B,3,*size]`` landmark-aligned crop of the eye band (both eyes, lids and brows;
    2.5 x 1.3 inter-ocular distances) resampled to ``size`` (H, W): the signs are a few pixels
    big in a 64 px face, so a disease model reads them enlarged, where a clinician looks.
    ``jitter`` shifts the box by up to that fraction of the inter-ocular distance (training
    augmentation)."""
    b, _, h, w = images.shape
    x0, y0, x1, y1 = periocular_box(landmarks.to(images.device, images.dtype), jitter).unbind(1)
    boxes = torch.stack([torch.arange(b, device=images.device, dtype=images.dtype),
                         x0 * w, y0 * h, x1 * w, y1 * h], dim=1)
    if images.is_cuda:
        # torchvision's roi_align swaps its CUDA kernel for a pure-Python version, compiled on
        # first use and memory-hungry, whenever deterministic algorithms are on (Lightning's
        # deterministic="warn" turns them on): on an H200 one 64 px training batch of the
        # generator then asked for 12 GiB (docs/architecture.md §6). The kernel itself is only
        # nondeterministic in its backward (atomic adds).
        return torch.ops.torchvision.roi_align(images, boxes, 1.0, size[0], size[1], -1, True)
    return roi_align(images, boxes, tuple(size), aligned=True)


def periocular_box(landmarks: Tensor, jitter: float = 0.0) -> Tensor:
    """``[B,4]`` normalised ``(x0, y0, x1, y1)`` of :func:`periocular_crop`'s eye band."""
    eyes = landmarks[:, :2]
    iod = _iod(eyes)
    cx, cy = eyes[:, :, 0].mean(1), eyes[:, :, 1].mean(1) - 0.08 * iod
    if jitter:
        cx = cx + jitter * iod * (torch.rand(len(eyes), device=eyes.device) - 0.5)
        cy = cy + jitter * iod * (torch.rand(len(eyes), device=eyes.device) - 0.5)
    half_w, half_h = 1.25 * iod, 0.65 * iod
    return torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)


def periocular_uncrop(maps: Tensor, landmarks: Tensor, size: tuple[int, int]) -> Tensor:
    """The inverse of :func:`periocular_crop`: ``maps`` ``[B,C,h,w]`` laid on the eye band of a
    ``size`` (H, W) image frame (bilinear), zero outside the band; what a network computed on
    the crop, back where the eyes are in the face."""
    x0, y0, x1, y1 = periocular_box(landmarks.to(maps.device, maps.dtype)).unbind(1)
    zeros = torch.zeros_like(x0)
    # the affine map from the face frame's [-1, 1] coordinates to the crop's
    sx, sy = 1 / (x1 - x0), 1 / (y1 - y0)
    theta = torch.stack([torch.stack([sx, zeros, (1 - 2 * x0) * sx - 1], 1),
                         torch.stack([zeros, sy, (1 - 2 * y0) * sy - 1], 1)], 1)
    grid = F.affine_grid(theta, (len(maps), maps.shape[1], *size), align_corners=False)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
