"""The conditional patient-face generator: a diffusers ``UNet2DModel`` trained as a DDPM
through a Lightning ``Trainer`` (cached and resumable) on the latents of the builder's
autoencoder (``autoencoder.py``), sampled with DDIM and classifier-free guidance (Ho &
Salimans, "Classifier-Free Diffusion Guidance", 2022).

The autoencoder encodes the RGB image and, when the source has lesion masks, the mask as a
fourth channel, so every generated eyelid tumour comes with its mask (a pseudo-label).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import lightning as L
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from lightning.pytorch.callbacks import ModelCheckpoint
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from ..files import atomic_file
from ..regions import CANONICAL_LANDMARKS, periocular_mask
from .profiles import GeneratorConfig, SamplingConfig

WEIGHTS = "generator.safetensors"


class ConditionalDenoiser(nn.Module):
    """``UNet2DModel`` with ``class_embed_type="identity"``: the condition vector, projected by
    a small MLP to the timestep-embedding width, is added to the timestep embedding.

    ``condition_dim=0``: no condition vector (a denoiser conditioned through its input channels
    only, as the diffusion de-identifier's); ``out_channels`` (default ``channels``): the
    predicted channels, when the input also carries conditioning channels."""

    def __init__(self, config: GeneratorConfig, condition_dim: int, channels: int,
                 out_channels: int | None = None) -> None:
        super().__init__()
        levels = len(config.block_out_channels)
        down = ["DownBlock2D"] * levels
        if config.attention:
            down[-1] = "AttnDownBlock2D"
        self.unet = UNet2DModel(
            sample_size=config.image_size, in_channels=channels,
            out_channels=out_channels or channels,
            block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
            down_block_types=tuple(down),
            up_block_types=tuple(b.replace("Down", "Up") for b in reversed(down)),
            norm_num_groups=config.norm_num_groups,
            class_embed_type="identity" if condition_dim else None,
        )
        width = 4 * config.block_out_channels[0]  # UNet2DModel's timestep-embedding width
        self.condition = (nn.Sequential(nn.Linear(condition_dim, width), nn.SiLU(), nn.Linear(width, width))
                          if condition_dim else None)

    def forward(self, x: Tensor, t: Tensor, condition: Tensor | None = None) -> Tensor:
        labels = None if self.condition is None else self.condition(condition)
        return self.unet(x, t, class_labels=labels).sample


def adamw_one_cycle(parameters, lr: float, steps: int) -> dict:
    """Lightning's optimiser configuration for the builder's networks: AdamW with a one-cycle
    schedule over ``steps``, stepped every batch."""
    opt = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=max(0.05, 3 / steps))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def periocular_weight(size: int, eye_weight: float) -> Tensor:
    """``[1,1,size,size]`` loss weights, ``1 + eye_weight`` in the periocular region of the
    canonical face and 1 elsewhere, scaled to mean 1 (the loss keeps its scale)."""
    weight = 1 + eye_weight * periocular_mask(CANONICAL_LANDMARKS[None], (size, size))
    return weight / weight.mean()


def noise_schedule(config: GeneratorConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps,
                         beta_schedule=config.beta_schedule, prediction_type=config.prediction_type)


class DenoiserTraining(L.LightningModule):
    """DDPM training of ``model``, whatever conditions it: the noise schedule, a noised batch
    with its regression target (the velocity, the added noise or the clean sample), an EMA copy of the weights
    (what gets sampled) and AdamW with a one-cycle schedule over ``config.train_steps``.
    Subclasses write ``training_step``."""

    def __init__(self, model: nn.Module, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.model = model
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        self.scheduler = noise_schedule(config)

    def noised(self, x0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x0`` at random timesteps: (noisy batch, timesteps, what the model should predict:
        the noise, the clean sample or the velocity, as ``prediction_type`` says)."""
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.config.num_train_timesteps, (len(x0),), device=x0.device)
        noisy = self.scheduler.add_noise(x0, noise, t)
        targets = {"epsilon": lambda: noise, "sample": lambda: x0,
                   "v_prediction": lambda: self.scheduler.get_velocity(x0, noise, t)}
        return noisy, t, targets[self.config.prediction_type]()

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        # here, not in on_train_batch_end: checkpoints are saved before that hook runs
        self.ema.update_parameters(self.model)

    def configure_optimizers(self):
        return adamw_one_cycle(self.model.parameters(), self.config.lr, self.config.train_steps)


class ConditionalDDPM(DenoiserTraining):
    """DDPM training of the conditional generator, with condition dropout (classifier-free
    guidance) and the squared error weighted ``1 + eye_weight`` on the periocular cells."""

    def __init__(self, config: dict, condition_dim: int, channels: int) -> None:
        generator = GeneratorConfig(**{**config, "block_out_channels": tuple(config["block_out_channels"])})
        super().__init__(ConditionalDenoiser(generator, condition_dim, channels), generator)
        self.register_buffer("cell_weight", periocular_weight(generator.image_size, generator.eye_weight),
                             persistent=False)
        self.save_hyperparameters()

    def training_step(self, batch, _):
        x0, condition = batch
        keep = torch.rand(len(x0), 1, device=x0.device) >= self.config.condition_dropout
        noisy, t, target = self.noised(x0)
        loss = ((self.model(noisy, t, condition * keep) - target) ** 2 * self.cell_weight).mean()
        self.log("loss", loss, prog_bar=True)
        return loss


def fit_cached(module: L.LightningModule, tensors: tuple[Tensor, ...], batch_size: int, seed: int,
               steps: int, weights: Path, export: Callable[[], dict],
               trainer_kwargs: dict | None = None) -> tuple[dict, str]:
    """Fit ``module`` for ``steps`` optimiser steps on shuffled batches of ``tensors`` (the
    order drawn from ``seed``) through a Lightning ``Trainer`` unless ``weights`` exists, then
    write ``export()`` (a state dict) there atomically; returns the state in ``weights`` and its
    SHA-256. An interrupted fit resumes from the ``last.ckpt`` saved beside ``weights`` every
    tenth of the run, to the same weights."""
    n = len(tensors[0])
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                        drop_last=n > batch_size, generator=torch.Generator().manual_seed(seed))
    directory = weights.parent
    directory.mkdir(parents=True, exist_ok=True)
    if not weights.is_file():
        checkpoint = ModelCheckpoint(dirpath=directory, save_last=True, every_n_train_steps=max(1, steps // 10))
        trainer = L.Trainer(**{"max_steps": steps, "logger": False, "callbacks": [checkpoint],
                               "default_root_dir": directory, **(trainer_kwargs or {})})
        last = directory / "last.ckpt"
        trainer.fit(module, loader, ckpt_path=last if last.is_file() else None)
        with atomic_file(weights) as tmp:
            save_file({k: v.contiguous() for k, v in export().items()}, str(tmp))
    return load_file(str(weights)), hashlib.sha256(weights.read_bytes()).hexdigest()


def train_generator(latents: Tensor, conditions: Tensor, config: GeneratorConfig, directory: Path,
                    trainer_kwargs: dict | None = None) -> tuple[ConditionalDenoiser, str]:
    """Train (or load from ``directory``) the generator on ``latents`` ``[N,C,h,w]`` (the
    autoencoder's standardised latents of the source images); returns the EMA denoiser and the
    SHA-256 of its weights file (``directory/generator.safetensors``, reused afterwards)."""
    L.seed_everything(config.seed, workers=True, verbose=False)
    module = ConditionalDDPM(asdict(config), conditions.shape[1], latents.shape[1])
    state, sha = fit_cached(module, (latents, conditions), config.batch_size, config.seed,
                            config.train_steps, directory / WEIGHTS,
                            lambda: module.ema.module.state_dict(), trainer_kwargs)
    denoiser = ConditionalDenoiser(config, conditions.shape[1], latents.shape[1])
    denoiser.load_state_dict(state)
    return denoiser.eval(), sha


def identity_latents(people: Tensor, shape: tuple[int, ...], jitter: float, seed: int) -> Tensor:
    """Starting noise per face: a latent shared by the photos of one generated person, mixed
    with per-photo noise (variance ``jitter``), so DDIM turns it into the same face under
    changing conditions."""
    generator = torch.Generator().manual_seed(seed)
    n_people = int(people.max()) + 1
    shared = torch.randn(n_people, *shape, generator=generator)
    own = torch.randn(len(people), *shape, generator=generator)
    return (1 - jitter) ** 0.5 * shared[people] + jitter ** 0.5 * own


@torch.no_grad()
def sample(denoiser: ConditionalDenoiser, conditions: Tensor, latents: Tensor, config: GeneratorConfig,
           sampling: SamplingConfig, device: torch.device | str = "cpu", progress: bool = True) -> Tensor:
    """DDIM (eta 0) from the starting noise ``latents`` under ``conditions`` with
    classifier-free guidance; returns the denoised latents ``[N,C,h,w]``."""
    # trailing spacing: the first step starts from pure noise (t = T-1), as in training; no
    # clipping of the predicted sample: standardised latents are not bounded by 1
    scheduler = DDIMScheduler.from_config(noise_schedule(config).config, timestep_spacing="trailing",
                                          clip_sample=False)
    scheduler.set_timesteps(sampling.ddim_steps)
    denoiser = denoiser.to(device)
    out = []
    starts = range(0, len(latents), sampling.batch_size)
    for start in tqdm(starts, desc="sampling", unit="batch", disable=not progress):
        x = latents[start:start + sampling.batch_size].to(device)
        c = conditions[start:start + sampling.batch_size].to(device)
        for t in scheduler.timesteps:
            x = scheduler.step(guided_prediction(denoiser, x, t, c, sampling.guidance), t, x, eta=0.0).prev_sample
        out.append(x.cpu())
    return torch.cat(out)


def guided_prediction(denoiser: ConditionalDenoiser, x: Tensor, t: Tensor, condition: Tensor, guidance: float) -> Tensor:
    """u + w (c - u) for the unconditional and conditional predictions (noise or velocity),
    both halves in one batch; w = 1 is plain conditional."""
    if guidance == 1.0:
        return denoiser(x, t, condition)
    eps = denoiser(torch.cat([x, x]), t, torch.cat([condition, torch.zeros_like(condition)]))
    conditional, unconditional = eps.chunk(2)
    return unconditional + guidance * (conditional - unconditional)
