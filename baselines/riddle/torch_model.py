"""Networks of RiDDLE (Li, Wang, Zhao, Dong, Tan, "RiDDLE: Reversible and Diversified
De-identification with Latent Encryptor", CVPR 2023): the autoencoder whose latent is encrypted
and the password-conditioned latent encryptor.

The paper inverts faces into a pre-trained StyleGAN2's W+ space (18 tokens of 512) and trains a
transformer encryptor ``M`` so that ``w' = M(w, p)`` is another identity and the *same* mapper
with the same password decrypts, ``M(w', p) = w``. At 64 px without a pre-trained GAN we train
the autoencoder on the suite (``Autoencoder``: a spatial latent, each grid cell a token), and
we build the "same mapper decrypts" property into ``M`` instead of learning it:
``M_p = T_p^{-1} o S o T_p``, with ``T_p`` an invertible stack of additive couplings whose
shifts are small transformers over the latent tokens conditioned on the password, and ``S`` the
sign flip of the last ``flipped`` of ``T_p``'s channels. ``S o S = id``, so ``M_p o M_p = id``
for every password, exactly; what remains to learn is a ``T_p`` whose flipped channels carry
the identity (``lightning_model.py``). ``T_p`` starts as the identity map, so ``M`` starts by
flipping the autoencoder's last (lowest-variance, ``Autoencoder.init_from_pca``) components: a
small change that training grows into an identity change.

``keyed_flip`` (our choice, the ``riddle_keyed_flip`` variant): ``S_p`` flips only those of the
last ``flipped`` channels whose password bit is set. Why: a wrong password ``k`` decrypts to
``T_k^{-1} S_k T_k T_p^{-1} S_p T_p w``. Where ``T`` depends little on the password
(``T_k ~ T_p``) that is ``T^{-1} S_k S_p T w``: with the fixed ``S`` it is ``w`` again (the wrong
key recovers the face), with keyed flips it is the flip of the channels where ``k`` and ``p``
differ, for a random wrong key a random half: distributed like a fresh encryption.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import conv_norm_act


class Autoencoder(nn.Module):
    """Encoder ``E`` to a ``[B, latent_channels, H/cell, W/cell]`` latent (one token per
    ``cell`` x ``cell`` pixel square) and decoder ``D`` back (unclipped; the caller clips).

    Each map is a linear cell code plus a small convolutional correction from the neighbouring
    cells. The linear parts start as the principal components of the training cells
    (:meth:`init_from_pca`), so minutes of CPU training start from a good code instead of
    from noise; the corrections start at zero."""

    def __init__(self, width: int = 32, latent_channels: int = 96, cell: int = 8):
        super().__init__()
        pixels = 3 * cell * cell
        self.cell = cell
        self.project = nn.Conv2d(pixels, latent_channels, 1)
        self.lift = nn.Conv2d(latent_channels, pixels, 1)
        self.encode_correction = nn.Sequential(
            conv_norm_act(pixels, width, norm=None, act="silu"),
            nn.Conv2d(width, latent_channels, 3, padding=1))
        self.decode_correction = nn.Sequential(
            conv_norm_act(latent_channels, width, norm=None, act="silu"),
            conv_norm_act(width, width, norm=None, act="silu"),
            nn.Conv2d(width, pixels, 3, padding=1))
        for correction in (self.encode_correction, self.decode_correction):
            nn.init.zeros_(correction[-1].weight)
            nn.init.zeros_(correction[-1].bias)

    @torch.no_grad()
    def init_from_pca(self, images: Tensor) -> None:
        """Set the linear code to the leading principal components of ``images``' cells."""
        cells = F.pixel_unshuffle(images, self.cell).permute(0, 2, 3, 1).flatten(0, 2)
        mean = cells.mean(0)
        _, _, v = torch.linalg.svd(cells - mean, full_matrices=False)
        basis = v[:self.project.out_channels]  # [latent, pixels], orthonormal rows
        self.project.weight.copy_(basis[:, :, None, None])
        self.project.bias.copy_(-basis @ mean)
        self.lift.weight.copy_(basis.t()[:, :, None, None])
        self.lift.bias.copy_(mean)

    def encode(self, images: Tensor) -> Tensor:
        cells = F.pixel_unshuffle(images, self.cell)
        return self.project(cells) + self.encode_correction(cells)

    def decode(self, latents: Tensor) -> Tensor:
        return F.pixel_shuffle(self.lift(latents) + self.decode_correction(latents), self.cell)

    def forward(self, images: Tensor) -> Tensor:
        return self.decode(self.encode(images))


class TokenShift(nn.Module):
    """The shift of one coupling step: a transformer layer over the latent's grid cells (tokens)
    of the conditioning half, with a learned position embedding and the password embedded and
    added to every token (the paper feeds the password to its transformer alongside ``w``)."""

    def __init__(self, channels: int, tokens: int, key_bits: int, dim: int, heads: int):
        super().__init__()
        self.embed = nn.Linear(channels, dim)
        self.position = nn.Parameter(torch.randn(tokens, dim) * 0.02)
        self.password = nn.Linear(key_bits, dim)
        self.layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0,
                                                batch_first=True, norm_first=True)
        self.out = nn.Linear(dim, channels)
        nn.init.zeros_(self.out.weight)  # every step starts as the identity map
        nn.init.zeros_(self.out.bias)

    def forward(self, tokens: Tensor, signs: Tensor) -> Tensor:
        h = self.embed(tokens) + self.position + self.password(signs)[:, None]
        return self.out(self.layer(h))


class LatentEncryptor(nn.Module):
    """RiDDLE's encryptor ``M(w, p)``, an exact involution per password (module docstring):
    ``M(M(w, p), p) = w``. Latents ``[B, C, h, w]`` (C even), passwords ``{0,1}``
    ``[B, key_bits]``; with ``keyed_flip`` the first ``flipped`` password bits choose which of
    the last ``flipped`` channels flip."""

    def __init__(self, channels: int, tokens: int, key_bits: int, couplings: int = 4,
                 dim: int = 64, heads: int = 4, flipped: int | None = None,
                 keyed_flip: bool = False):
        super().__init__()
        if channels % 2:
            raise ValueError(f"latent channels must be even, got {channels}")
        self.key_bits, self.half = key_bits, channels // 2
        self.flipped, self.keyed_flip = flipped or self.half, keyed_flip
        most = min(channels, key_bits) if keyed_flip else channels  # keyed: one bit a channel
        if not 0 < self.flipped <= most:
            raise ValueError(f"flipped must be in 1..{most}, got {flipped}")
        self.steps = nn.ModuleList(TokenShift(self.half, tokens, key_bits, dim, heads)
                                   for _ in range(couplings))

    def forward(self, latents: Tensor, passwords: Tensor) -> Tensor:
        if passwords.shape != (latents.shape[0], self.key_bits):
            raise ValueError(f"passwords must be [{latents.shape[0]}, {self.key_bits}], "
                             f"got {tuple(passwords.shape)}")
        b, c, h, w = latents.shape
        signs = passwords.float() * 2 - 1
        tokens = latents.flatten(2).transpose(1, 2)  # [B, h*w, C]
        z = self._flow(tokens, signs, inverse=False)
        z = torch.cat([z[..., :-self.flipped], z[..., -self.flipped:] * self._flips(signs)], -1)
        tokens = self._flow(z, signs, inverse=True)
        return tokens.transpose(1, 2).reshape(b, c, h, w)

    def _flips(self, signs: Tensor) -> Tensor | float:
        """The involution's factors: -1 on every flipped channel, or with ``keyed_flip`` -1 where
        the password bit is set (``signs`` = 2p - 1) and +1 elsewhere."""
        return -signs[:, None, :self.flipped] if self.keyed_flip else -1.0

    def _flow(self, z: Tensor, signs: Tensor, inverse: bool) -> Tensor:
        """``T_p`` (or its inverse): additive couplings on alternating channel halves."""
        a, b = z[..., :self.half], z[..., self.half:]
        order = range(len(self.steps))
        for i in (reversed(order) if inverse else order):
            if i % 2 == 0:
                b = b - self.steps[i](a, signs) if inverse else b + self.steps[i](a, signs)
            else:
                a = a - self.steps[i](b, signs) if inverse else a + self.steps[i](b, signs)
        return torch.cat([a, b], -1)
