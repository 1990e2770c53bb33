"""Networks of MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware De-Identification",
AAAI 2025, arXiv 2412.10804): Enc_med, a training-time identity network, the key embedding and
the keyed ID-encryptor / ID-decryptor pair.

The paper fixes the data flow (image encoder -> features (+) Enc_med features (+) key ->
ID-encryptor -> decoder; de-identified image (+) key -> ID-decryptor -> decoder) but not the
layers. Our choice: the encryptor is a key-conditioned affine-coupling flow (RealNVP, Dinh et
al. 2017) in logit space, whose coupling conditioners are the paper's image encoder ->
concatenation -> ID-encryptor -> decoder U-Nets. The ID-decryptor runs the same couplings
backwards from the de-identified image and the key alone, so recovery with the right key is
exact up to float/8-bit rounding, and a wrong key scrambles the face instead.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_EPS = 1e-3  # pixels are clamped to [eps, 1-eps] before the logit


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.SiLU())


def conv_gn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    # GroupNorm, not BatchNorm: a de-identified face must not depend on its batch-mates
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class MedicalSemanticsEncoder(nn.Module):
    """Enc_med: a small CNN trained on coarse disease labels and fine-grained signs.

    Returns the stride-8 feature map (joined to the image features) and both heads' logits.
    The heads read a 4x4 pooled map, not a global average, so laterality (left/right) survives.
    """

    def __init__(self, num_classes: int, num_signs: int, width: int = 32, channels: int = 48):
        super().__init__()
        w = width
        # a strided stem keeps it cheap: it runs inside every coupling of the encryptor
        self.features = nn.Sequential(
            conv_bn(3, w, 2), conv_bn(w, w),
            conv_bn(w, 2 * w, 2), conv_bn(2 * w, 2 * w),
            conv_bn(2 * w, channels, 2),
        )
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 128), nn.SiLU(),
                                  nn.Dropout(0.2))
        self.label_head = nn.Linear(128, num_classes)
        self.sign_head = nn.Linear(128, max(num_signs, 1))
        self.num_signs = num_signs

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.features(images * 2 - 1)
        hidden = self.neck(F.adaptive_avg_pool2d(feats, 4))
        return feats, self.label_head(hidden), self.sign_head(hidden)[:, : self.num_signs]


class IdentityEmbedder(nn.Module):
    """Training-time identity network (unit-norm embedding); never the harness's evaluator.

    ``forward`` also returns its first-stage feature map, whose channel statistics serve the
    naturalness loss.
    """

    def __init__(self, width: int = 24, dim: int = 64):
        super().__init__()
        w = width
        self.stem = nn.Sequential(conv_bn(3, w), conv_bn(w, w, 2))
        self.body = nn.Sequential(
            conv_bn(w, 2 * w), conv_bn(2 * w, 2 * w, 2),
            conv_bn(2 * w, 4 * w), conv_bn(4 * w, 4 * w, 2),
            conv_bn(4 * w, 4 * w),
        )
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, dim))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        stem = self.stem(images * 2 - 1)
        feats = F.adaptive_avg_pool2d(self.body(stem), 4)
        return F.normalize(self.embed(feats), dim=1), stem


class KeyEmbedding(nn.Module):
    """Maps a {0,1} key bit string [B,K] to a feature vector [B,C] (broadcast later)."""

    def __init__(self, key_bits: int, channels: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(key_bits, 4 * channels), nn.SiLU(),
                                 nn.Linear(4 * channels, channels))

    def forward(self, keys: Tensor) -> Tensor:
        return self.mlp(keys * 2 - 1)


class CouplingConditioner(nn.Module):
    """Image encoder -> (+) Enc_med features (+) key embedding -> ID-encryptor -> decoder.

    A U-Net on one half of the squeezed image; outputs log-scale and shift for the other half.
    The last layer starts at zero so every coupling starts near the identity map (Glow).
    """

    def __init__(self, in_ch: int, out_ch: int, width: int, med_channels: int, key_channels: int):
        super().__init__()
        w = width
        self.enc1 = conv_gn(in_ch, w)
        self.enc2 = nn.Sequential(conv_gn(w, 2 * w, 2), conv_gn(2 * w, 2 * w))
        self.enc3 = conv_gn(2 * w, 4 * w, 2)
        self.encryptor = nn.Sequential(conv_gn(4 * w + med_channels + key_channels, 4 * w),
                                       conv_gn(4 * w, 4 * w))
        self.dec2 = conv_gn(4 * w + 2 * w, 2 * w)
        self.dec1 = conv_gn(2 * w + w, w)
        self.out = nn.Conv2d(w, 2 * out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # scale logits start at -5: each coupling starts as (nearly) the identity map, while
        # the gradient through the sigmoid stays non-zero
        nn.init.constant_(self.out.bias[:out_ch], -5.0)

    def forward(self, half: Tensor, med: Tensor | None, key: Tensor) -> tuple[Tensor, Tensor]:
        s1 = self.enc1(half)
        s2 = self.enc2(s1)
        bottleneck = self.enc3(s2)
        size = bottleneck.shape[-2:]
        joined = [bottleneck, key[:, :, None, None].expand(-1, -1, *size)]
        if med is not None:
            joined.insert(1, F.adaptive_avg_pool2d(med, size))  # channel-wise concatenation
        h = self.encryptor(torch.cat(joined, 1))
        h = self.dec2(torch.cat([F.interpolate(h, size=s2.shape[-2:]), s2], 1))
        h = self.dec1(torch.cat([F.interpolate(h, size=s1.shape[-2:]), s1], 1))
        log_scale, shift = self.out(h).chunk(2, 1)
        return log_scale, shift


# squeezed layout: channel c*4 + p for colour c and 2x2 position p = 2*row + col; the two
# halves are the diagonal (p 0, 3) and anti-diagonal (p 1, 2) pixels, so each half sees the
# whole face at half resolution
_HALF_A = [c * 4 + p for c in range(3) for p in (0, 3)]
_HALF_B = [c * 4 + p for c in range(3) for p in (1, 2)]
_UNSPLIT = [(_HALF_A + _HALF_B).index(c) for c in range(12)]


def half_to_image(half_pixels: Tensor) -> Tensor:
    """A [B,6,h,w] half (pixel space) as a [B,3,2h,2w] image, for Enc_med."""
    b, _, h, w = half_pixels.shape
    rgb = half_pixels.view(b, 3, 2, h, w).mean(2)
    return F.interpolate(rgb, scale_factor=2, mode="nearest")


class MedSemDeIDNet(nn.Module):
    """ID-encryptor (``encrypt``) and ID-decryptor (``decrypt``) sharing keyed couplings.

    ``enc_med`` (frozen, may be ``None`` for the no-prior ablation) is a submodule so that it is
    saved with the network; its features condition every coupling.
    """

    def __init__(self, enc_med: MedicalSemanticsEncoder | None, *, key_bits: int = 32,
                 key_channels: int = 32, width: int = 32, num_couplings: int = 2,
                 med_channels: int = 48, scale_limit: float = 3.0, shift_margin: float = 1.0):
        super().__init__()
        self.enc_med = enc_med
        self.key_bits = key_bits
        self.scale_limit, self.shift_margin = scale_limit, shift_margin
        self.key_embedding = KeyEmbedding(key_bits, key_channels)
        med = med_channels if enc_med is not None else 0
        self.couplings = nn.ModuleList(
            CouplingConditioner(6, 6, width, med, key_channels) for _ in range(num_couplings))

    def freeze_prior(self) -> None:
        """Enc_med is trained first and never updated by DeID training (as in the paper)."""
        if self.enc_med is not None:
            self.enc_med.requires_grad_(False)
            self.enc_med.eval()

    def train(self, mode: bool = True) -> "MedSemDeIDNet":
        super().train(mode)
        if self.enc_med is not None:
            self.enc_med.eval()  # frozen: BatchNorm statistics stay as pre-trained
        return self

    def _coupling(self, index: int, fixed: Tensor, key: Tensor, bound: float
                  ) -> tuple[Tensor, Tensor]:
        """Scale ``alpha`` in [e^-S, 1) and shift ``beta`` of coupling ``index``.

        ``|beta| <= margin + bound * (1 - alpha)`` keeps ``|alpha z + beta| <= bound + margin``:
        logits stay where float32 sigmoid/logit are precise, so decryption stays exact, and to
        move a pixel far the coupling must first fade the original out (a soft replacement).
        """
        pixels = torch.sigmoid(fixed)
        med = None
        if self.enc_med is not None:
            with torch.no_grad():  # a conditioning signal: no gradient through the prior here
                med = self.enc_med(half_to_image(pixels))[0]
        raw_scale, raw_shift = self.couplings[index](pixels * 2 - 1, med, key)
        log_alpha = -self.scale_limit * torch.sigmoid(raw_scale)
        alpha = torch.exp(log_alpha)
        beta = (self.shift_margin + bound * (1 - alpha)) * torch.tanh(raw_shift)
        return alpha, beta

    def _bounds(self) -> list[tuple[float, float]]:
        """Logit bound of each half before each coupling (each coupling widens one by margin)."""
        start = math.log((1 - _EPS) / _EPS)
        bounds, a, b = [], start, start
        for i in range(len(self.couplings)):
            bounds.append((a, b))
            if i % 2 == 0:
                b += self.shift_margin
            else:
                a += self.shift_margin
        return bounds

    def _check(self, images: Tensor, keys: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] % 2 or images.shape[-2] % 2:
            raise ValueError(f"images must be [B,3,H,W] with even H, W; got {tuple(images.shape)}")
        if keys.shape != (images.shape[0], self.key_bits):
            raise ValueError(f"keys must be [B,{self.key_bits}]; got {tuple(keys.shape)}")

    def encrypt(self, images: Tensor, keys: Tensor) -> Tensor:
        """ID-encryptor: de-identify ``images`` [B,3,H,W] in [0,1] under ``keys`` [B,K]."""
        self._check(images, keys)
        z = F.pixel_unshuffle(torch.logit(images.clamp(_EPS, 1 - _EPS)), 2)
        a, b = z[:, _HALF_A], z[:, _HALF_B]
        key = self.key_embedding(keys.to(images.dtype))
        for i, (bound_a, bound_b) in enumerate(self._bounds()):
            if i % 2 == 0:
                alpha, beta = self._coupling(i, a, key, bound_b)
                b = alpha * b + beta
            else:
                alpha, beta = self._coupling(i, b, key, bound_a)
                a = alpha * a + beta
        return torch.sigmoid(self._merge(a, b))

    def decrypt(self, images: Tensor, keys: Tensor) -> Tensor:
        """ID-decryptor: restore the original face from a de-identified image and its key."""
        self._check(images, keys)
        z = F.pixel_unshuffle(torch.logit(images.clamp(1e-6, 1 - 1e-6)), 2)
        a, b = z[:, _HALF_A], z[:, _HALF_B]
        key = self.key_embedding(keys.to(images.dtype))
        for i, (bound_a, bound_b) in reversed(list(enumerate(self._bounds()))):
            if i % 2 == 0:
                alpha, beta = self._coupling(i, a, key, bound_b)
                b = (b - beta) / alpha
            else:
                alpha, beta = self._coupling(i, b, key, bound_a)
                a = (a - beta) / alpha
        # a wrong key can push logits far out; sigmoid keeps the output a valid image
        return torch.sigmoid(self._merge(a, b).clamp(-20, 20))

    @staticmethod
    def _merge(a: Tensor, b: Tensor) -> Tensor:
        return F.pixel_shuffle(torch.cat([a, b], 1)[:, _UNSPLIT], 2)
