"""Toy inputs the keyed-method tests share (FIT, RiDDLE, keyed DDIM): smooth faces, random
keys, PSNR, the 8-bit rounding a PNG applies and a tiny training split."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

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


class ToyDataModule:
    """Four 'identities', two smooth images each, at 32 px, without landmarks (the canonical
    template stands in): the training split a keyed method's ``fit`` needs."""

    classes, signs = ["healthy"], []

    def setup(self, stage=None):
        self.images = smooth_faces(8, seed=5)
        self.identity = torch.arange(8) % 4 + 10

    def train_dataloader(self):
        data = TensorDataset(self.images, self.identity)
        return [{"image": x, "identity": i} for x, i in DataLoader(data, batch_size=4)]
