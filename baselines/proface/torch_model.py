"""PRO-Face S (Yuan et al., TCSVT 2024) at 64 px: the keyed secure flow.

The paper's INN takes a face with its pre-obfuscated copy and outputs a protected image that
looks like the copy; the key holder runs it backwards. Ours is one exactly invertible flow of
the face alone, in the orthonormal Haar domain (the copy is the training target, not an
input: it is a function of the face, so it brings no information the inverse could use):

- the low band (8 x 8 at 64 px, the pixelation's blocks) gets a per-position affine coupling
  (``gain * low + shift``), conditioned on the position only (MeMa faces are aligned);
- each detail band gets an affine coupling conditioned on the protected low band, which the
  receiver reads back from the image: the conditioner learns where the classic hides detail
  (the face, not the eyes for the eye-keeping rows) and scales it down to ``gain >= min_gain``;
- what the gain takes away is filled with a keyed pad, ``(1 - gain) * pad``: a uniform field
  drawn from the hashed key (``key_pad``). It buries the scaled-down details (the hidden
  original) under noise an attacker cannot subtract without the key, and a wrong key subtracts
  the wrong field, which the inverse then amplifies by ``1 / gain``: noise, not a face;
- last, the energy lock: an additive coupling moves the whole low band by
  ``lock * relu(E / limit - 1)``, where E is the mean energy of the details (each level in
  units of its 2^l scale) and ``limit`` a margin above the largest E of the training faces
  (``set_energy_limit``). A face's own details stay under the limit (no shift at all), but
  after a wrong key's subtraction they are noise amplified ``1 / gain`` times, E jumps past
  the limit and the recovered image saturates to black: without it the noise averaged back
  to the visible 8 x 8 face and a wrong key re-identified about as often as the classic.

``SecureFlow.inverse(SecureFlow(x, pad), pad) == x`` up to float error; from an 8-bit image the
error is the rounding, amplified at most ``1 / min_gain`` times.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the 2 x 2 orthonormal Haar analysis matrix (rows LL, LH, HL, HH over a block's pixels
#: (0,0), (0,1), (1,0), (1,1)); symmetric and orthogonal, hence its own inverse
_HAAR = 0.5 * torch.tensor([[1.0, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]])


def haar(images: Tensor, levels: int) -> tuple[Tensor, list[Tensor]]:
    """Orthonormal ``levels``-level Haar transform: the low band ``[B,C,H/2^L,W/2^L]`` and the
    details of each level, finest first, ``[B,3C,H/2^l,W/2^l]`` (H, W divisible by 2^L)."""
    low, details = images, []
    for _ in range(levels):
        b, c, h, w = low.shape
        blocks = F.pixel_unshuffle(low, 2).view(b, c, 4, h // 2, w // 2)
        bands = torch.einsum("kj,bcjhw->bckhw", _HAAR.to(low), blocks)
        low = bands[:, :, 0]
        details.append(bands[:, :, 1:].reshape(b, 3 * c, h // 2, w // 2))
    return low, details


def inverse_haar(low: Tensor, details: list[Tensor]) -> Tensor:
    """The image of :func:`haar`'s bands."""
    for detail in reversed(details):
        b, c, h, w = low.shape
        bands = torch.cat([low[:, :, None], detail.reshape(b, c, 3, h, w)], 2)
        blocks = torch.einsum("kj,bckhw->bcjhw", _HAAR.to(low), bands)
        low = F.pixel_shuffle(blocks.reshape(b, 4 * c, h, w), 2)
    return low


def key_pad(keys: Tensor, size: int) -> Tensor:
    """``[B, size]`` uniform in [-1, 1), one stream per key: the key's bits, hashed (BLAKE2b),
    seed a torch generator, so an equal key gives the equal pad and any other key an
    independent one."""
    rows = []
    for bits in keys.detach().cpu().round().to(torch.uint8).numpy():
        digest = hashlib.blake2b(np.packbits(bits).tobytes(), digest_size=8,
                                 person=b"proface-s pad").digest()
        generator = torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)
        rows.append(torch.rand(size, generator=generator))
    return (torch.stack(rows) * 2 - 1).to(keys.device)


class Conditioner(nn.Module):
    """The (raw gain, shift) maps of one band's affine coupling, from what the receiver holds
    too: the protected low band (resized to the band) and the pixel position (MeMa faces are
    aligned, so position says where the face and the eyes are). Starts at a uniform gain."""

    def __init__(self, in_channels: int, band_channels: int, width: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels + 2, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * band_channels, 3, padding=1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, condition: Tensor | None, like: Tensor) -> tuple[Tensor, Tensor]:
        b, _, h, w = like.shape
        ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
        xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
        inputs = [torch.stack(torch.meshgrid(ys, xs, indexing="ij")).expand(b, 2, h, w)]
        if condition is not None:
            inputs.append(F.interpolate(condition, size=(h, w), mode="bilinear"))
        raw_gain, shift = self.body(torch.cat(inputs, 1)).chunk(2, 1)
        return raw_gain, shift


class SecureFlow(nn.Module):
    """The keyed flow (module docstring): ``forward(images, pad)`` protects, ``inverse``
    recovers; ``pad`` is ``[B, pad_size]`` in [-1, 1] (``key_pad`` of the key)."""

    def __init__(self, levels: int = 3, width: int = 16, min_gain: float = 0.05,
                 pad: float = 0.03, lock: float = 2.0):
        super().__init__()
        self.levels, self.min_gain, self.pad, self.lock = levels, min_gain, pad, lock
        # no lock until set_energy_limit: a buffer, so a fitted flow saves and loads it
        self.register_buffer("energy_limit", torch.tensor(float("inf")))
        self.low_net = Conditioner(0, 3, width)
        self.detail_nets = nn.ModuleList(Conditioner(3, 9, width) for _ in range(levels))

    @staticmethod
    def pad_size(images: Tensor) -> int:
        """Pad values per image: one per Haar coefficient, i.e. per pixel and colour."""
        return images[0].numel()

    def _gain(self, raw: Tensor) -> Tensor:
        # bounded below: the inverse divides by it, amplifying the 8-bit rounding
        return self.min_gain + (1 - self.min_gain) * torch.sigmoid(raw)

    def _pads(self, pad: Tensor, low: Tensor, details: list[Tensor]) -> list[Tensor]:
        """``pad`` split into the bands' shapes, coarse bands louder: an orthonormal level-l
        coefficient spans 4^l pixels, and the details it must bury grow as 2^l."""
        bands = [low, *details]
        sizes = [band[0].numel() for band in bands]
        scales = [2 ** (self.levels - 1)] + [2 ** level for level in range(len(details))]
        return [self.pad * scale * part.view_as(band) for part, band, scale in
                zip(pad.split(sizes, 1), bands, scales)]

    def _low_coupling(self, low: Tensor) -> tuple[Tensor, Tensor]:
        raw_gain, shift = self.low_net(None, low)
        return self._gain(raw_gain), shift * 2 ** self.levels  # a low coefficient: 2^L x mean

    def _detail_couplings(self, protected_low: Tensor,
                          details: list[Tensor]) -> list[tuple[Tensor, Tensor]]:
        condition = protected_low / 2 ** self.levels  # the low band as pixel means
        couplings = []
        for level, (net, band) in enumerate(zip(self.detail_nets, details)):
            raw_gain, shift = net(condition, band)
            couplings.append((self._gain(raw_gain), shift * 2 ** level))
        return couplings

    def detail_energy(self, details: list[Tensor]) -> Tensor:
        """``[B]``: the mean square of the details, each level in units of its 2^l scale."""
        return sum((band / 2 ** level).square().flatten(1).mean(1)
                   for level, band in enumerate(details))

    @torch.no_grad()
    def set_energy_limit(self, images: Tensor, margin: float) -> None:
        """The energy lock's limit: ``margin`` times the largest detail energy of ``images``."""
        energy = torch.cat([self.detail_energy(haar(images[i:i + 256], self.levels)[1])
                            for i in range(0, len(images), 256)])
        self.energy_limit.fill_(margin * float(energy.max()))

    def _energy_lock(self, details: list[Tensor]) -> Tensor:
        """The low band's additive coupling on the details (module docstring), in units of a
        low coefficient (2^L x a pixel mean)."""
        excess = (self.detail_energy(details) / self.energy_limit - 1).relu()
        return (self.lock * 2 ** self.levels * excess)[:, None, None, None]

    def forward(self, images: Tensor, pad: Tensor,
                with_unpadded: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The protected images (not clipped); ``with_unpadded``: also the same image without
        the keyed pad (what the training loss compares with the classic's output)."""
        low, details = haar(images, self.levels)
        pads = self._pads(pad, low, details)
        gain, shift = self._low_coupling(low)
        clean_low = gain * low + shift + self._energy_lock(details)
        protected_low = clean_low + (1 - gain) * pads[0]
        clean, protected = [], []
        for band, band_pad, (gain, shift) in zip(details, pads[1:],
                                                  self._detail_couplings(protected_low, details)):
            clean.append(gain * band + shift)
            protected.append(clean[-1] + (1 - gain) * band_pad)
        out = inverse_haar(protected_low, protected)
        return (out, inverse_haar(clean_low, clean)) if with_unpadded else out

    def inverse(self, protected: Tensor, pad: Tensor) -> Tensor:
        """The images whose protection with ``pad`` is ``protected``."""
        protected_low, bands = haar(protected, self.levels)
        pads = self._pads(pad, protected_low, bands)
        details = [(band - shift - (1 - gain) * band_pad) / gain for band, band_pad, (gain, shift)
                   in zip(bands, pads[1:], self._detail_couplings(protected_low, bands))]
        gain, shift = self._low_coupling(protected_low)
        low = protected_low - self._energy_lock(details) - shift - (1 - gain) * pads[0]
        return inverse_haar(low / gain, details)
