"""Networks of MedSem-DeID (Tian, Wang, Zhai, "Medical Manifestation-Aware De-Identification",
AAAI 2025, arXiv 2412.10804): Enc_med, a training-time identity network, and the face generator
of the ID-encryptor (a conditional VAE-GAN: identity encoder, decoder, patch discriminator).

The paper fixes the data flow (image encoder -> features (+) Enc_med features (+) key ->
ID-encryptor -> decoder) but not the layers. Our choice: the shown face is *generated* by a
decoder from an identity code drawn from the key, joined by channel-wise concatenation with a
narrow projection of the frozen Enc_med feature maps, restricted to the periocular region
(where the signs are). Recovery does not go through a network at all: see ``payload.py``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import conv_norm_act
from data.regions import periocular_mask


def conv_bn(cin: int, cout: int, stride: int = 1):
    return conv_norm_act(cin, cout, stride=stride, norm="batch", act="silu")


def conv_gn(cin: int, cout: int, stride: int = 1):
    # GroupNorm, not BatchNorm: a de-identified face must not depend on its batch-mates
    return conv_norm_act(cin, cout, stride=stride, norm="group", act="silu")


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

    def pyramid(self, images: Tensor) -> list[Tensor]:
        """The stride-8, stride-4 and stride-2 feature maps (coarse first): what the generator
        is conditioned on."""
        stride2 = self.features[:2](images * 2 - 1)
        stride4 = self.features[2:4](stride2)
        return [self.features[4](stride4), stride4, stride2]


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


def film(h: Tensor, params: Tensor) -> Tensor:
    """Feature-wise modulation (FiLM, Perez et al. 2018) of ``h`` by ``params`` = (gain, bias)."""
    gain, bias = params[:, :, None, None].chunk(2, 1)
    return h * (1 + gain) + bias


class IdentityEncoder(nn.Module):
    """q(z|x) of the VAE: mean and log-variance of a face's identity code. Used only in
    training (the decoder learns what z means); at anonymize time z comes from the key."""

    def __init__(self, width: int, z_dim: int):
        super().__init__()
        w = width
        self.body = nn.Sequential(conv_gn(3, w, 2), conv_gn(w, 2 * w, 2), conv_gn(2 * w, 4 * w, 2),
                                  conv_gn(4 * w, 4 * w, 2))
        self.head = nn.Linear(4 * w * 16, 2 * z_dim)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        h = F.adaptive_avg_pool2d(self.body(images * 2 - 1), 4).flatten(1)
        mean, log_var = self.head(h).chunk(2, 1)
        return mean, log_var.clamp(-8, 4)


class UpBlock(nn.Module):
    """x2 upsampling, optional channel-wise concatenation of a condition map, ``convs`` convs,
    FiLM by the identity code (so z shapes every scale: eye shape as well as skin and hair)."""

    def __init__(self, cin: int, cout: int, z_dim: int, convs: int = 2):
        super().__init__()
        self.conv = nn.Sequential(conv_gn(cin, cout), *(conv_gn(cout, cout) for _ in range(convs - 1)))
        self.film = nn.Linear(z_dim, 2 * cout)

    def forward(self, h: Tensor, z: Tensor, condition: Tensor | None = None) -> Tensor:
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        if condition is not None:
            h = torch.cat([h, condition], 1)
        return film(self.conv(h), self.film(z))


class FaceGenerator(nn.Module):
    """Decoder: identity code z -> face, with the medical condition joined at 1/8, 1/4 and 1/2
    of the resolution (channel-wise concatenation). Starts at 1/16 of the output size; the last
    x2 is a bilinear upsampling and one convolution straight to RGB (wide convolutions at full
    resolution would dominate the CPU time of ``anonymize``). The output is an edit of a
    ``template`` face (the mean training face, in logits; set by :meth:`set_template`), so a
    short CPU training starts from a face, not from noise."""

    def __init__(self, width: int, z_dim: int, cond_channels: int):
        super().__init__()
        w = width
        self.start_channels = 8 * w
        self.start = nn.Linear(z_dim, 8 * w * 16)  # a 4x4 map, resized for other resolutions
        self.blocks = nn.ModuleList([
            UpBlock(8 * w + cond_channels, 4 * w, z_dim),  # -> 1/8
            UpBlock(4 * w + cond_channels, 2 * w, z_dim),  # -> 1/4
            UpBlock(2 * w + cond_channels, w, z_dim, convs=1),  # -> 1/2
        ])
        self.to_rgb = nn.Conv2d(w, 3, 3, padding=1)
        nn.init.normal_(self.to_rgb.weight, std=1e-3)
        nn.init.zeros_(self.to_rgb.bias)
        self.register_buffer("template", torch.zeros(1, 3, 64, 64))

    def set_template(self, face: Tensor) -> None:
        """Start every face from ``face`` [3,H,W] in [0,1] (the mean training face)."""
        self.template = torch.logit(face.clamp(0.02, 0.98))[None].to(self.template)

    def forward(self, z: Tensor, conditions: list[Tensor], size: tuple[int, int]) -> Tensor:
        h = self.start(z).view(-1, self.start_channels, 4, 4)
        if (size[0] // 16, size[1] // 16) != (4, 4):
            h = F.interpolate(h, size=(size[0] // 16, size[1] // 16), mode="bilinear",
                              align_corners=False)
        for block, condition in zip(self.blocks, conditions):
            h = block(h, z, condition)
        h = F.interpolate(h, size=size, mode="bilinear", align_corners=False)
        template = self.template
        if template.shape[-2:] != tuple(size):
            template = F.interpolate(template, size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(template + self.to_rgb(h))


class MedSemDeIDNet(nn.Module):
    """The ID-encryptor's face generator: frozen Enc_med (``None`` in the no-prior ablation),
    the narrow periocular projection of its features, the identity encoder and the decoder.

    The medical condition is a ``cond_channels``-wide 1x1 projection of Enc_med's stride-8, -4
    and -2 maps, zeroed outside the periocular region, plus the periocular mask itself (where
    the eyes are; given in the ablation too): a bottleneck for the signs, not for the face.
    """

    def __init__(self, enc_med: MedicalSemanticsEncoder | None, *, z_dim: int = 64,
                 width: int = 16, med_width: int = 24, med_channels: int = 48,
                 cond_channels: int = 4):
        super().__init__()
        self.enc_med = enc_med
        self.z_dim = z_dim
        self.identity_encoder = IdentityEncoder(width, z_dim)
        self.med_projection = None
        cond = 1
        if enc_med is not None:
            self.med_projection = nn.ModuleList([nn.Conv2d(med_channels, cond_channels, 1),
                                                 nn.Conv2d(2 * med_width, cond_channels, 1),
                                                 nn.Conv2d(med_width, cond_channels, 1)])
            cond += cond_channels
        self.generator = FaceGenerator(width, z_dim, cond)

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

    def condition(self, images: Tensor, landmarks: Tensor) -> list[Tensor]:
        """The medical condition at 1/8, 1/4 and 1/2 of the resolution (coarse first)."""
        h, w = images.shape[-2:]
        if images.dim() != 4 or images.shape[1] != 3 or h % 16 or w % 16:
            raise ValueError(f"images must be [B,3,H,W] with H, W multiples of 16; "
                             f"got {tuple(images.shape)}")
        eyes = periocular_mask(landmarks.to(images.device, images.dtype), (h, w))
        masks = [F.adaptive_avg_pool2d(eyes, (h // s, w // s)) for s in (8, 4, 2)]
        if self.enc_med is None:
            return masks
        with torch.no_grad():  # a frozen prior: its features are an input, not a trainee
            feats = self.enc_med.pyramid(images)
        return [torch.cat([mask, projection(f) * mask], 1)
                for mask, projection, f in zip(masks, self.med_projection, feats)]

    def generate(self, z: Tensor, conditions: list[Tensor]) -> Tensor:
        h, w = conditions[0].shape[-2:]
        return self.generator(z, conditions, (8 * h, 8 * w))
