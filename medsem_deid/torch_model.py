"""Networks of MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware De-Identification",
AAAI 2025, arXiv 2412.10804): Enc_med, a training-time identity network, the key embedding and
the keyed ID-encryptor / ID-decryptor pair.

The paper fixes the data flow (image encoder -> features (+) Enc_med features (+) key ->
ID-encryptor -> decoder; de-identified image (+) key -> ID-decryptor -> decoder) but not the
layers. Our choice: the encryptor is a key-conditioned affine-coupling flow (RealNVP, Dinh et
al. 2017) in logit space, whose coupling conditioners are the paper's image encoder ->
concatenation -> ID-encryptor -> decoder U-Nets; coupling i edits colour channel i mod 3
given the other two. The ID-decryptor runs the same couplings
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

    A U-Net on the two colour channels a coupling keeps; outputs the scale and shift of the
    third. It works at half resolution (strided first layer) and its output is upsampled
    bilinearly, so every edit is smooth. The last layer starts at zero, so every coupling
    starts near the identity map (Glow).
    """

    def __init__(self, in_ch: int, out_ch: int, width: int, med_channels: int, key_channels: int):
        super().__init__()
        w = width
        self.enc1 = conv_gn(in_ch, w, 2)
        self.enc2 = nn.Sequential(conv_gn(w, 2 * w, 2), conv_gn(2 * w, 2 * w))
        self.enc3 = conv_gn(2 * w, 4 * w, 2)
        self.encryptor = nn.Sequential(conv_gn(4 * w + med_channels + key_channels, 4 * w),
                                       conv_gn(4 * w, 4 * w))
        self.dec2 = conv_gn(4 * w + 2 * w, 2 * w)
        self.dec1 = conv_gn(2 * w + w, w)
        # the key also modulates every decoder stage (FiLM, Perez et al. 2018): joined only at
        # the bottleneck, different keys learned to give nearly the same face
        self.key_film = nn.Linear(key_channels, 2 * (2 * w + w))
        self.out = nn.Conv2d(w, 2 * out_ch, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # scale logits start at -5: each coupling starts as (nearly) the identity map, while
        # the gradient through the sigmoid stays non-zero
        nn.init.constant_(self.out.bias[:out_ch], -5.0)

    def forward(self, kept: Tensor, med: Tensor | None, key: Tensor) -> tuple[Tensor, Tensor]:
        s1 = self.enc1(kept)
        s2 = self.enc2(s1)
        bottleneck = self.enc3(s2)
        size = bottleneck.shape[-2:]
        joined = [bottleneck, key[:, :, None, None].expand(-1, -1, *size)]
        if med is not None:
            joined.insert(1, F.adaptive_avg_pool2d(med, size))  # channel-wise concatenation
        h = self.encryptor(torch.cat(joined, 1))
        gain2, bias2, gain1, bias1 = self.key_film(key).split(
            [s2.shape[1], s2.shape[1], s1.shape[1], s1.shape[1]], 1)
        h = self.dec2(torch.cat([F.interpolate(h, size=s2.shape[-2:]), s2], 1))
        h = h * (1 + gain2[:, :, None, None]) + bias2[:, :, None, None]
        h = self.dec1(torch.cat([F.interpolate(h, size=s1.shape[-2:]), s1], 1))
        h = h * (1 + gain1[:, :, None, None]) + bias1[:, :, None, None]
        out = F.interpolate(self.out(h), size=kept.shape[-2:], mode="bilinear",
                            align_corners=False)
        log_scale, shift = out.chunk(2, 1)
        return log_scale, shift


def channel_dropped(images: Tensor, channel: int) -> Tensor:
    """``images`` with ``channel`` replaced by the mean of the other two: what a coupling that
    edits ``channel`` may look at, as an RGB image for Enc_med."""
    kept = [c for c in range(3) if c != channel]
    out = images.clone()
    out[:, channel] = images[:, kept].mean(1)
    return out


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
            CouplingConditioner(2, 1, width, med, key_channels) for _ in range(num_couplings))

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

    def _coupling(self, index: int, z: Tensor, key: Tensor, bound: float
                  ) -> tuple[Tensor, Tensor]:
        """Scale ``alpha`` in [e^-S, 1) and shift ``beta`` of coupling ``index``, which edits
        colour channel ``index % 3`` of the logits ``z`` given the other two.

        ``|beta| <= margin + bound * (1 - alpha)`` keeps ``|alpha z + beta| <= bound + margin``:
        logits stay where float32 sigmoid/logit are precise, so decryption stays exact, and to
        move a pixel far the coupling must first fade the original out (a soft replacement).
        """
        channel = index % 3
        pixels = torch.sigmoid(z)
        med = None
        if self.enc_med is not None:
            with torch.no_grad():  # a conditioning signal: no gradient through the prior here
                med = self.enc_med(channel_dropped(pixels, channel))[0]
        kept = pixels[:, [c for c in range(3) if c != channel]]
        raw_scale, raw_shift = self.couplings[index](kept * 2 - 1, med, key)
        alpha = torch.exp(-self.scale_limit * torch.sigmoid(raw_scale))
        beta = (self.shift_margin + bound * (1 - alpha)) * torch.tanh(raw_shift)
        return alpha, beta

    def _bounds(self) -> list[float]:
        """Logit bound of the edited channel before each coupling (each widens it by margin)."""
        bound = [math.log((1 - _EPS) / _EPS)] * 3
        out = []
        for i in range(len(self.couplings)):
            out.append(bound[i % 3])
            bound[i % 3] += self.shift_margin
        return out

    def _check(self, images: Tensor, keys: Tensor) -> None:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] % 2 or images.shape[-2] % 2:
            raise ValueError(f"images must be [B,3,H,W] with even H, W; got {tuple(images.shape)}")
        if keys.shape != (images.shape[0], self.key_bits):
            raise ValueError(f"keys must be [B,{self.key_bits}]; got {tuple(keys.shape)}")

    def encrypt(self, images: Tensor, keys: Tensor) -> Tensor:
        """ID-encryptor: de-identify ``images`` [B,3,H,W] in [0,1] under ``keys`` [B,K]."""
        self._check(images, keys)
        channels = list(torch.logit(images.clamp(_EPS, 1 - _EPS)).unbind(1))
        key = self.key_embedding(keys.to(images.dtype))
        for i, bound in enumerate(self._bounds()):
            alpha, beta = self._coupling(i, torch.stack(channels, 1), key, bound)
            channels[i % 3] = alpha[:, 0] * channels[i % 3] + beta[:, 0]
        return torch.sigmoid(torch.stack(channels, 1))

    def decrypt(self, images: Tensor, keys: Tensor) -> Tensor:
        """ID-decryptor: restore the original face from a de-identified image and its key."""
        self._check(images, keys)
        channels = list(torch.logit(images.clamp(1e-6, 1 - 1e-6)).unbind(1))
        key = self.key_embedding(keys.to(images.dtype))
        for i, bound in reversed(list(enumerate(self._bounds()))):
            alpha, beta = self._coupling(i, torch.stack(channels, 1), key, bound)
            channels[i % 3] = (channels[i % 3] - beta[:, 0]) / alpha[:, 0]
        # a wrong key can push logits far out; sigmoid keeps the output a valid image
        return torch.sigmoid(torch.stack(channels, 1).clamp(-20, 20))
