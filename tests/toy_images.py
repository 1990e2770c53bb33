"""Toy inputs the keyed-method tests share (FIT, RiDDLE, keyed DDIM): smooth faces, random
keys, PSNR and the 8-bit rounding a PNG applies."""
from __future__ import annotations

import torch

SIZE = 32


def smooth_faces(n: int, seed: int = 0, size: int = SIZE) -> torch.Tensor:
    """Smooth images inside [0.2, 0.8] (so a small change stays inside [0, 1])."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g)
    return 0.2 + 0.6 * torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear")


def random_keys(n: int, seed: int, bits: int) -> torch.Tensor:
    """``[n, bits]`` {0,1} float keys, reproducible from ``seed``."""
    return torch.randint(0, 2, (n, bits), generator=torch.Generator().manual_seed(seed)).float()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a - b) ** 2).mean()))


def png_round(images: torch.Tensor) -> torch.Tensor:
    """What an 8-bit PNG stores."""
    return (images * 255).round() / 255
