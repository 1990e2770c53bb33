"""The generator's latent space (Rombach et al., "High-Resolution Image Synthesis with Latent
Diffusion Models", 2022): a small diffusers ``AutoencoderKL`` trained on the source images with
an L1 reconstruction loss and a little KL, so the denoiser works on a ``[C, 16, 16]`` latent
instead of the pixels (a fraction of the cost per step, hence many more steps in a CPU budget).

The encoder sees the image pixel-unshuffled into ``patch x patch`` blocks (64 px -> 48 x 16 x
16): its convolutions all run at the latent's resolution, several times cheaper on a CPU than
full-resolution stages, and still free to keep the fine eyelid signs (measured, data/README.md).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from torchmetrics.functional.image import peak_signal_noise_ratio
from torch import Tensor, nn

from .diffusion import adamw_one_cycle, fit_cached, periocular_weight
from .profiles import AutoencoderConfig

WEIGHTS = "autoencoder.safetensors"


class LatentAutoencoder(nn.Module):
    """``AutoencoderKL`` between images ``[N, C, H, W]`` in ``[-1, 1]`` and standardised
    latents (per channel zero mean, unit variance over the training images, the scale the noise
    schedule assumes; set by :meth:`standardise`)."""

    def __init__(self, config: AutoencoderConfig, channels: int) -> None:
        super().__init__()
        self.patch = config.patch
        levels = len(config.block_out_channels)
        blocks = channels * config.patch ** 2
        self.vae = AutoencoderKL(
            in_channels=blocks, out_channels=blocks, block_out_channels=config.block_out_channels,
            down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
            layers_per_block=config.layers_per_block, latent_channels=config.latent_channels,
            norm_num_groups=config.norm_num_groups, sample_size=config.image_size // config.patch,
            mid_block_add_attention=config.attention)
        self.register_buffer("latent_mean", torch.zeros(1, config.latent_channels, 1, 1))
        self.register_buffer("latent_std", torch.ones(1, config.latent_channels, 1, 1))

    def posterior(self, images: Tensor):
        return self.vae.encode(F.pixel_unshuffle(images, self.patch)).latent_dist

    def reconstruct(self, raw_latents: Tensor) -> Tensor:
        return F.pixel_shuffle(self.vae.decode(raw_latents).sample, self.patch)

    @torch.no_grad()
    def encode(self, images: Tensor, batch_size: int = 256) -> Tensor:
        """Standardised posterior means."""
        means = torch.cat([self.posterior(chunk).mean for chunk in images.split(batch_size)])
        return (means - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def decode(self, latents: Tensor, batch_size: int = 256) -> Tensor:
        """Images in ``[-1, 1]`` from standardised latents."""
        raw = latents * self.latent_std + self.latent_mean
        return torch.cat([self.reconstruct(chunk) for chunk in raw.split(batch_size)]).clamp(-1, 1)

    @torch.no_grad()
    def standardise(self, images: Tensor) -> None:
        self.latent_mean.zero_(), self.latent_std.fill_(1.0)
        raw = self.encode(images)
        self.latent_mean.copy_(raw.mean((0, 2, 3), keepdim=True))
        self.latent_std.copy_(raw.std((0, 2, 3), keepdim=True))


class AutoencoderTraining(L.LightningModule):
    """L1 reconstruction of a posterior sample, weighted ``1 + eye_weight`` in the periocular
    region of the canonical face (where the signs show: a few pixels that an unweighted loss
    leaves blurred after a short training), plus ``kl_weight`` x KL to the unit Gaussian; AdamW
    with a one-cycle schedule."""

    def __init__(self, config: dict, channels: int) -> None:
        super().__init__()
        self.config = AutoencoderConfig(**{**config, "block_out_channels": tuple(config["block_out_channels"])})
        self.autoencoder = LatentAutoencoder(self.config, channels)
        self.register_buffer("pixel_weight", periocular_weight(self.config.image_size, self.config.eye_weight),
                             persistent=False)
        self.save_hyperparameters()

    def training_step(self, batch, _):
        (images,) = batch
        posterior = self.autoencoder.posterior(images)
        error = (self.autoencoder.reconstruct(posterior.sample()) - images).abs()
        reconstruction = (error * self.pixel_weight).mean()
        loss = reconstruction + self.config.kl_weight * posterior.kl().mean()
        self.log("l1", reconstruction, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self.parameters(), self.config.lr, self.config.train_steps)


def train_autoencoder(images: Tensor, config: AutoencoderConfig, directory: Path,
                      trainer_kwargs: dict | None = None) -> tuple[LatentAutoencoder, str]:
    """Train (or load from ``directory``) the autoencoder on ``images`` ``[N,C,H,W]`` in
    ``[-1,1]`` and standardise its latents on them; returns it and the SHA-256 of its weights."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = AutoencoderTraining(asdict(config), images.shape[1])

    def export() -> dict:
        module.autoencoder.eval().standardise(images)
        return module.autoencoder.state_dict()

    state, sha = fit_cached(module, (images,), config.batch_size, config.seed, config.train_steps,
                            directory / WEIGHTS, export, trainer_kwargs)
    autoencoder = LatentAutoencoder(config, images.shape[1])
    autoencoder.load_state_dict(state)
    return autoencoder.eval(), sha


def with_empty_mask(images: Tensor, channels: int) -> Tensor:
    """RGB ``images`` in ``[-1, 1]`` padded with empty mask channels (-1) up to ``channels``,
    the autoencoder's input when it also encodes lesion masks."""
    empty = -torch.ones(len(images), channels - images.shape[1], *images.shape[2:])
    return torch.cat([images, empty.to(images)], 1)


@torch.no_grad()
def reconstruction_psnr(autoencoder: LatentAutoencoder, images: Tensor) -> float:
    """Mean PSNR (dB, on ``[0, 1]`` RGB) of encoding and decoding ``images`` in ``[-1, 1]``."""
    rgb = images[:, :3]  # the mask channel aside
    decoded = autoencoder.decode(autoencoder.encode(images))[:, :3]
    return float(peak_signal_noise_ratio((decoded + 1) / 2, (rgb + 1) / 2, data_range=1.0,
                                         reduction="none", dim=(1, 2, 3)).mean())


__all__ = ["LatentAutoencoder", "reconstruction_psnr", "train_autoencoder"]
