"""Calling a method blind: images in a random order, with indices that reveal nothing.

A method sees test images only through :class:`BlindedMethod`: each call shuffles the images
with a fresh per-run random permutation and numbers them by their position in that shuffled
stream, so neither the order nor ``batch["index"]`` carries the metadata row (on MeMa-Synth
``row // 8`` *is* the identity). Outputs are put back in the caller's order. Only the public
:class:`benchmark.api.DeIdMethod` interface is used, so a proxy running the method in another
process works the same.
"""
from __future__ import annotations

import time
import zlib

import numpy as np
import torch
from torch import Tensor

from benchmark.validation import call_checked, call_plugin, check_images


def stream(seed: int, purpose: str) -> torch.Generator:
    """An independent random stream for one purpose of a run (keys, permutation, attacker
    keys, ...), spawned from ``seed`` by NumPy's SeedSequence rather than by seed arithmetic."""
    sequence = np.random.SeedSequence([seed, zlib.crc32(purpose.encode())])
    return torch.Generator().manual_seed(int(sequence.generate_state(1, np.uint64)[0] >> 1))


def draw_keys(n: int, bits: int, generator: torch.Generator) -> Tensor | None:
    """``[n, bits]`` {0,1} keys (the harness, not the method, owns keys); None when keyless."""
    if not bits:
        return None
    return torch.randint(0, 2, (n, bits), generator=generator).float()


def _float_images(images: Tensor) -> Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


class BlindedMethod:
    """Runs ``method.anonymize``/``recover`` over whole image sets in shuffled batches.

    ``seconds`` and ``batch_sizes`` record the time of every ``anonymize`` call of
    :meth:`anonymize` with ``timed=True`` (the cost scores)."""

    def __init__(self, method, *, batch_size: int, seed: int, device: torch.device) -> None:
        self.method, self.batch_size, self.device = method, int(batch_size), device
        self._order = stream(seed, "blind order")
        self.seconds: list[float] = []
        self.batch_sizes: list[int] = []

    @property
    def name(self) -> str:
        return self.method.name

    def _batches(self, n: int):
        """Yield ``(positions, opaque indices)`` of a fresh random permutation of ``n``."""
        order = torch.randperm(n, generator=self._order)
        for start in range(0, n, self.batch_size):
            positions = order[start:start + self.batch_size]
            yield positions, torch.arange(start, start + len(positions))

    @torch.no_grad()
    def anonymize(self, images: Tensor, landmarks: Tensor, keys: Tensor | None, *,
                  timed: bool = False) -> Tensor:
        """De-identify ``images [N,3,H,W]`` (float or uint8) with one key row each; returns
        float ``[N,3,H,W]`` on the CPU in the input order."""
        out = torch.empty(images.shape, dtype=torch.float32)
        for positions, opaque in self._batches(len(images)):
            image = _float_images(images[positions]).to(self.device)
            # only what a method may read (benchmark.api.METHOD_INPUT_KEYS), nothing else
            batch = {"image": image, "landmarks": landmarks[positions].to(self.device),
                     "index": opaque.to(self.device)}
            batch_keys = keys[positions].to(self.device) if keys is not None else None
            reference = image.clone()
            _synchronize(self.device)
            start = time.perf_counter()
            deid = call_plugin(self.name, "anonymize", self.method.anonymize, batch, batch_keys)
            _synchronize(self.device)
            if timed:
                self.seconds.append(time.perf_counter() - start)
                self.batch_sizes.append(len(positions))
            out[positions] = check_images(self.name, "anonymize", deid, reference).float().cpu()
        return out

    @torch.no_grad()
    def recover(self, images: Tensor, keys: Tensor, reference: Tensor) -> Tensor:
        """``method.recover`` over ``images`` with their ``keys``; ``reference`` (the
        originals) only sets the expected shape of the output check."""
        out = torch.empty(images.shape, dtype=torch.float32)
        for positions, _ in self._batches(len(images)):
            recovered = call_checked(self.name, "recover", self.method.recover,
                                     _float_images(images[positions]).to(self.device),
                                     keys[positions].to(self.device),
                                     reference=_float_images(reference[positions]).to(self.device))
            out[positions] = recovered.float().cpu()
        return out


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
