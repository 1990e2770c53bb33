"""The keyed DDIM anonymiser's networks and its deterministic diffusion process.

:class:`InpaintingDenoiser` predicts the noise of the face region given the pixels outside it
(the ``data.builder`` diffusers UNet, on pixel blocks). :class:`KeyedDDIMProcess` runs DDIM
(eta 0) both ways over the last ``depth`` steps of the schedule: :meth:`~KeyedDDIMProcess.invert`
takes a face to its latent at an intermediate timestep, :meth:`~KeyedDDIMProcess.regenerate`
takes a latent back to a face. The pixels outside the mask are an input of every step, not part
of the state, so a composite that keeps them bit-identical does not break the inversion.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from torch import Tensor, nn

from data.builder.diffusion import ConditionalDenoiser, noise_schedule

from .config import KeyedDDIMConfig


class InpaintingDenoiser(nn.Module):
    """``eps(x_t, t | context, mask)``: the noise in the face region ``x_t`` (zero outside the
    mask) given the known pixels outside it (``context``, in [-1, 1], zero inside) and the mask.
    The three are stacked (7 channels) and folded into ``patch x patch`` blocks
    (``pixel_unshuffle``: lossless, so a 64 px face costs the UNet a 16 x 16 map); the
    prediction is unfolded and masked."""

    def __init__(self, cfg: KeyedDDIMConfig):
        super().__init__()
        self.patch = cfg.patch
        blocks = cfg.patch ** 2
        self.unet = ConditionalDenoiser(cfg.generator(), condition_dim=0, channels=7 * blocks,
                                        out_channels=3 * blocks)

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        stacked = F.pixel_unshuffle(torch.cat([x_t, context, mask], 1), self.patch)
        return F.pixel_shuffle(self.unet(stacked, t), self.patch) * mask


def ddim_step(x: Tensor, eps: Tensor, alpha_from: float, alpha_to: float) -> Tensor:
    """Deterministic DDIM (eta 0) from noise level ``alpha_from`` to ``alpha_to`` (cumulative
    alphas) with the noise estimate ``eps``; the same formula runs up (inversion) and down."""
    x0 = (x - (1 - alpha_from) ** 0.5 * eps) / alpha_from ** 0.5
    return alpha_to ** 0.5 * x0 + (1 - alpha_to) ** 0.5 * eps


class KeyedDDIMProcess:
    """DDIM over the last ``cfg.depth`` steps of a ``cfg.ddim_steps`` schedule (trailing
    spacing, as the builder samples), no clipping of the predicted face: every step is an
    invertible map given its noise estimate.

    Inversion solves each step exactly (in the limit): the up-step ``x_t = step(x_s, eps(x_t))``
    needs the noise estimate at the unknown ``x_t``; plain DDIM inversion uses the one at
    ``x_s`` instead, whose error the regeneration does not undo. ``cfg.corrections(i)``
    fixed-point iterations re-evaluate it at the current ``x_t`` estimate (as in exact DDIM
    inversion by fixed points, Pan et al. 2023; Hong et al. 2024)."""

    def __init__(self, denoiser: InpaintingDenoiser, cfg: KeyedDDIMConfig):
        self.denoiser, self.cfg = denoiser, cfg
        scheduler = DDIMScheduler.from_config(noise_schedule(cfg.generator()).config,
                                              timestep_spacing="trailing")
        scheduler.set_timesteps(cfg.ddim_steps)
        #: timesteps of the kept steps, least noisy first; their cumulative alphas, with the
        #: clean image's 1.0 in front
        self.timesteps = scheduler.timesteps[-cfg.depth:].flip(0).tolist()
        self.alphas = {t: float(scheduler.alphas_cumprod[t]) for t in self.timesteps}
        self.levels = [1.0] + [self.alphas[t] for t in self.timesteps]

    def _eps(self, x: Tensor, t: int, context: Tensor, mask: Tensor) -> Tensor:
        """The noise estimate at ``(x, t)``, whatever the denoiser predicts."""
        out = self.denoiser(x, torch.full((len(x),), t, device=x.device), context, mask)
        a = self.alphas[t]
        if self.cfg.prediction_type == "sample":  # eps from the predicted clean face
            return (x - a ** 0.5 * out) / (1 - a) ** 0.5
        if self.cfg.prediction_type == "v_prediction":
            return (1 - a) ** 0.5 * x + a ** 0.5 * out
        return out

    def invert(self, face: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """The latent at the deepest kept timestep whose regeneration is ``face`` (``[-1, 1]``,
        zero outside ``mask``)."""
        x, eps = face, None
        for i, t in enumerate(self.timesteps):
            a_from, a_to = self.levels[i], self.levels[i + 1]
            if eps is None:  # later steps start from the previous step's estimate
                eps = self._eps(x, t, context, mask)
            for _ in range(self.cfg.corrections(i)):
                eps = self._eps(ddim_step(x, eps, a_from, a_to), t, context, mask)
            x = ddim_step(x, eps, a_from, a_to)
        return x

    def regenerate(self, latent: Tensor, context: Tensor, mask: Tensor) -> Tensor:
        """The face (``[-1, 1]``, zero outside ``mask``) DDIM draws from ``latent``."""
        x = latent
        for i in reversed(range(len(self.timesteps))):
            eps = self._eps(x, self.timesteps[i], context, mask)
            x = ddim_step(x, eps, self.levels[i + 1], self.levels[i])
        return x


def key_draws(keys: Tensor, shape: tuple[int, ...], modes: int = 0) -> tuple[Tensor, Tensor]:
    """What each key draws: ``[B, *shape]`` standard normal noise, then ``[B, shape[0], modes]``
    {0,1} flip bits (one per colour and low-frequency pattern), from NumPy's PCG64 seeded with
    the key's bits read as one integer, through ``SeedSequence`` (which takes every bit: a torch
    CPU generator's ``manual_seed`` keeps only the low 32 of 64, so half the key would be lost)."""
    noise, flips = [], []
    for row in keys.round().int().tolist():
        entropy = sum(1 << i for i, bit in enumerate(row) if bit)
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))
        noise.append(torch.from_numpy(rng.standard_normal(shape, dtype=np.float32)))
        flips.append(torch.from_numpy(rng.integers(0, 2, (shape[0], modes)).astype(np.float32)))
    return torch.stack(noise), torch.stack(flips)


def region_modes(region: Tensor, modes: int) -> Tensor:
    """``[N, modes]``: an orthonormal basis of the lowest-frequency patterns on the ``N`` pixels
    of ``region`` (``[H, W]`` bool), lowest first: the 2D DCT-II patterns of the image grid
    ordered by frequency, restricted to the region and orthonormalised (QR, float64). The
    region is not a rectangle, so the restricted patterns are not orthogonal by themselves."""
    h, w = region.shape
    if not 0 < modes <= int(region.sum()):
        raise ValueError(f"key_modes must be in [1, {int(region.sum())}] (the region's pixels), "
                         f"got {modes}")
    order = sorted(((u * u + v * v, u, v) for u in range(h) for v in range(w)))[:modes]
    ys, xs = torch.nonzero(region, as_tuple=True)
    ys, xs = ys.double(), xs.double()
    patterns = torch.stack([torch.cos(torch.pi * (2 * ys + 1) * u / (2 * h))
                            * torch.cos(torch.pi * (2 * xs + 1) * v / (2 * w))
                            for _, u, v in order], 1)
    return torch.linalg.qr(patterns).Q.float()


def keyed_reflection(latent: Tensor, flips: Tensor, basis: Tensor, region: Tensor) -> Tensor:
    """``R_k z = z - 2 Q diag(f_k) Q^T z`` on the ``region``'s pixels of each colour: negate
    the low-frequency components of ``latent`` ``[B, 3, H, W]`` (``basis`` ``Q``, from
    :func:`region_modes`) whose key bit in ``flips`` ``[B, 3, modes]`` is set. An orthogonal
    involution: the key undoes it, and it keeps a Gaussian latent Gaussian. A wrong key ``j``
    leaves ``R_j R_k = R_{j xor k}``: about half of the face's layout negated, where the
    key's additive noise alone left all of it (scaled) in the latent (README.md)."""
    flat = latent.flatten(2)
    inside = flat[:, :, region.flatten()]
    inside = inside - 2 * ((inside @ basis) * flips) @ basis.t()
    out = flat.clone()
    out[:, :, region.flatten()] = inside
    return out.view_as(latent)


def soft_clip(image: Tensor, margin: float) -> Tensor:
    """Values into [0, 1] invertibly: the identity on ``[margin, 1 - margin]``, a ``tanh`` knee
    beyond it on either side (continuous slope 1 at the knee), so a pixel drawn out of range
    keeps what it was, up to rounding; ``margin`` 0 is the hard clamp, which loses it."""
    if margin == 0:
        return image.clamp(0, 1)
    side, excess = _beyond_knee(image, margin)
    return image - side * (excess - margin * torch.tanh(excess / margin))


def soft_unclip(image: Tensor, margin: float, cap: float = 0.999) -> Tensor:
    """The inverse of :func:`soft_clip` (the identity for ``margin`` 0). An 8-bit file can
    round a knee value to 0 or 1, where the inverse is infinite: the knee is read at most
    ``cap`` of the way out (``atanh(0.999)`` = 3.8 margins beyond the range)."""
    if margin == 0:
        return image
    side, excess = _beyond_knee(image, margin)
    return image + side * (margin * torch.atanh((excess / margin).clamp(max=cap)) - excess)


def _beyond_knee(image: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Which side of 0.5 each value lies on (+1 / -1) and how far beyond the soft clip's knee
    on that side (0 inside ``[margin, 1 - margin]``): the one measure both directions bend."""
    centred = image - 0.5
    return centred.sign(), (centred.abs() - (0.5 - margin)).clamp(min=0)


def mix_key(latent: Tensor, noise: Tensor, mask: Tensor, share: float) -> Tensor:
    """``sqrt(1 - s^2) z + s n`` inside ``mask``: the latent stays standard-normal-like (a
    variance-preserving mix), so the regeneration sees what it was trained on."""
    return ((1 - share ** 2) ** 0.5 * latent + share * noise) * mask


def unmix_key(latent: Tensor, noise: Tensor, mask: Tensor, share: float) -> Tensor:
    """The inverse of :func:`mix_key` for the same noise."""
    return (latent - share * noise * mask) / (1 - share ** 2) ** 0.5
