"""Networks of MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware De-Identification",
AAAI 2025, arXiv 2412.10804): Enc_med, a training-time identity network, and the generator of
the ID-encryptor.

The paper fixes the data flow (image features (+) Enc_med features (+) key -> ID-encryptor ->
de-identified face) but not the layers. Our choice: the head is *inpainted* by the training
kit's U-Net (``benchmark.api.inpainting``) from its surroundings, an identity code drawn from
the key, and, joined by channel-wise concatenation, a narrow projection of the frozen Enc_med
feature maps computed on the eye band and laid back where the eyes are (the signs' only
source). Recovery does not go through a network at all: see ``payload.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.inpainting import InpaintingUNet
from benchmark.api.nn import conv_norm_act
from data.regions import periocular_crop, periocular_uncrop


def conv_bn(cin: int, cout: int, stride: int = 1):
    return conv_norm_act(cin, cout, stride=stride, norm="batch", act="silu")


class MedicalSemanticsEncoder(nn.Module):
    """Enc_med: a small CNN trained on coarse disease labels and fine-grained signs of the
    landmark-aligned eye band (``data.regions.periocular_crop``).

    Returns the stride-8 feature map and both heads' logits. The heads read a 4x4 pooled map,
    not a global average, so laterality (left/right) survives.
    """

    def __init__(self, num_classes: int, num_signs: int, width: int = 32, channels: int = 48):
        super().__init__()
        w = width
        # a strided stem keeps it cheap: it runs on every image the generator paints
        self.features = nn.Sequential(
            conv_bn(3, w, 2), conv_bn(w, w),
            conv_bn(w, 2 * w, 2), conv_bn(2 * w, 2 * w),
            conv_bn(2 * w, channels, 2),
        )
        self.neck = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 128), nn.SiLU(),
                                  nn.Dropout(0.2))
        #: channels of each of :meth:`pyramid`'s maps, coarse first
        self.pyramid_channels = (channels, 2 * w, w)
        self.label_head = nn.Linear(128, num_classes)
        self.sign_head = nn.Linear(128, max(num_signs, 1))
        self.num_signs = num_signs

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feats = self.features(images * 2 - 1)
        hidden = self.neck(F.adaptive_avg_pool2d(feats, 4))
        return feats, self.label_head(hidden), self.sign_head(hidden)[:, : self.num_signs]

    def pyramid(self, images: Tensor) -> list[Tensor]:
        """The stride-8, stride-4 and stride-2 feature maps (coarse first): what the generator
        is conditioned on."""
        stride2 = self.features[:2](images * 2 - 1)
        stride4 = self.features[2:4](stride2)
        return [self.features[4](stride4), stride4, stride2]


class IdentityEmbedder(nn.Module):
    """Training-time identity network (unit-norm embedding); never the harness's evaluator.
    ``forward`` also returns its first-stage feature map."""

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


def edge_taper(size: tuple[int, int], fraction: float, device=None) -> Tensor:
    """``[H, W]`` window: 1 inside, a linear ramp to 0 over the outer ``fraction`` of each
    side (0 < fraction <= 0.5)."""
    def ramp(n: int) -> Tensor:
        i = torch.arange(n, device=device, dtype=torch.float32) + 0.5
        return (torch.minimum(i, n - i) / (fraction * n)).clamp(max=1)
    return ramp(size[0])[:, None] * ramp(size[1])[None, :]


class MedSemGenerator(nn.Module):
    """The ID-encryptor's generator: the inpainting U-Net on (image with the head blanked (+)
    the head's mask (+) the medical condition), the key's identity code through a small mapping
    network (z -> w, as StyleGAN's) at every decoder level.

    The medical condition is the coarsest ``cond_levels`` of Enc_med's stride-8, -4 and -2 maps
    of the eye band, resized to the finest of them, projected by a learned 1x1 convolution to
    ``cond_channels``, optionally modulated by the key's code (``key_film``: a per-channel
    scale and shift, so the key changes the eye region too) and laid back on the eye band of
    the face frame (zero elsewhere; ``cond_taper`` fades it out towards the band's edges).
    Without Enc_med (the no-prior ablation) there is no condition. Enc_med is frozen: always
    in eval mode, no gradients.
    """

    def __init__(self, enc_med: MedicalSemanticsEncoder | None, z_dim: int, code_dim: int,
                 width: int, cond_channels: int, cond_levels: int = 3, key_film: bool = False,
                 cond_taper: float = 0.0):
        super().__init__()
        if not 0 <= cond_taper <= 0.5:
            raise ValueError(f"cond_taper must lie in [0, 0.5] (a share of each side of the "
                             f"eye band), got {cond_taper}")
        self.enc_med, self.cond_levels, self.cond_taper = enc_med, cond_levels, cond_taper
        self.mapping = nn.Sequential(nn.Linear(z_dim, code_dim), nn.SiLU(),
                                     nn.Linear(code_dim, code_dim), nn.SiLU())
        self.film = None
        cond = 0
        if enc_med is not None:
            enc_med.requires_grad_(False)
            enc_med.eval()
            self.project = nn.Conv2d(sum(enc_med.pyramid_channels[:cond_levels]),
                                     cond_channels, 1)
            if key_film:
                self.film = nn.Linear(code_dim, 2 * cond_channels)
                nn.init.zeros_(self.film.weight)  # starts as the identity modulation
                nn.init.zeros_(self.film.bias)
            cond = cond_channels
        self.unet = InpaintingUNet(3 + 1 + cond, code_dim, width)

    def train(self, mode: bool = True) -> "MedSemGenerator":
        super().train(mode)
        if self.enc_med is not None:
            self.enc_med.eval()  # frozen: its BatchNorm statistics stay those it was trained with
        return self

    def condition(self, image: Tensor, landmarks: Tensor, code: Tensor) -> Tensor:
        """``[B, cond_channels, H, W]``: Enc_med's view of the eye band, back on the face."""
        with torch.no_grad():  # Enc_med is frozen; only the projection learns
            maps = self.enc_med.pyramid(periocular_crop(image, landmarks))[: self.cond_levels]
        size = maps[-1].shape[-2:]
        joined = torch.cat([F.interpolate(m, size=size, mode="bilinear", align_corners=False)
                            for m in maps], 1)
        cond = self.project(joined)
        if self.film is not None:
            scale, shift = self.film(code)[:, :, None, None].chunk(2, 1)
            cond = cond * (1 + scale) + shift
        if self.cond_taper:  # fade to zero towards the band's edges: no rectangle in the face
            cond = cond * edge_taper(cond.shape[-2:], self.cond_taper, cond.device)
        return periocular_uncrop(cond, landmarks, image.shape[-2:])

    def forward(self, image: Tensor, landmarks: Tensor, mask: Tensor, z: Tensor) -> Tensor:
        code = self.mapping(z)
        parts = [image * (1 - mask), mask]
        if self.enc_med is not None:
            parts.append(self.condition(image, landmarks, code))
        return self.unet(torch.cat(parts, 1), code)
