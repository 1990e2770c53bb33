"""Builder settings per profile: autoencoder and denoiser sizes, training lengths, sampling
and filter thresholds.

``quick`` is sized for a 2-core CPU (64 px images, an 8 x 16 x 16 latent; its measured time and
quality are in ``data/README.md``); ``full`` is sized for a GPU (128 px, a 8 x 32 x 32 latent);
``toy`` runs in seconds for the tests.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

#: bump when builder code changes what a cached autoencoder, generator or judge means
BUILDER_CODE_VERSION = 2


@dataclass(frozen=True)
class AutoencoderConfig:
    """The latent space: a diffusers ``AutoencoderKL`` on ``patch x patch`` pixel blocks
    (``data.builder.autoencoder``); the latent is ``latent_channels x latent_size^2``."""

    image_size: int = 64
    #: pixel-unshuffle factor before the encoder: its convolutions run at image_size / patch
    patch: int = 4
    block_out_channels: tuple[int, ...] = (64,)
    layers_per_block: int = 1
    latent_channels: int = 8
    norm_num_groups: int = 16
    #: self-attention in the encoder's and decoder's middle blocks (costly on a CPU)
    attention: bool = False
    train_steps: int = 600
    batch_size: int = 32
    lr: float = 3e-3
    #: weight of the KL term against the L1 reconstruction: a little, so the latent stays
    #: smooth around the training images without losing the eyelid signs
    kl_weight: float = 1e-6
    #: extra L1 weight of the periocular region (canonical landmarks): without it 600 steps
    #: blur the eyes away (measured: 25.3 dB overall with blurred eyes; with 10, 25.8 dB and
    #: eyes, iris colour and red lids kept)
    eye_weight: float = 10.0
    seed: int = 4245

    @property
    def latent_size(self) -> int:
        return self.image_size // (self.patch * 2 ** (len(self.block_out_channels) - 1))


@dataclass(frozen=True)
class GeneratorConfig:
    """Conditional DDPM: a diffusers ``UNet2DModel`` whose timestep embedding is added to a
    projected condition vector (disease, signs, age, sex). In the builder it denoises the
    autoencoder's latents, so ``image_size`` is the latent's size."""

    image_size: int = 32
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 1
    #: add self-attention at the lowest resolution (costly on a CPU)
    attention: bool = False
    norm_num_groups: int = 8
    train_steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    #: probability of training a batch row without its condition (classifier-free guidance)
    condition_dropout: float = 0.1
    ema_decay: float = 0.995
    #: extra loss weight of the periocular region (canonical face, at the denoised size), where
    #: the signs are: a short training otherwise spends its capacity on hair and background
    eye_weight: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    #: what the network predicts, "v_prediction" (Salimans & Ho, 2022) or "epsilon". On the old
    #: 32 px pixel model after 600 CPU steps, epsilon gave face layouts under heavy residual
    #: noise, v_prediction smooth colour blobs; the latent model keeps v_prediction
    prediction_type: str = "v_prediction"
    seed: int = 4243


@dataclass(frozen=True)
class SamplingConfig:
    """DDIM sampling with classifier-free guidance; images of one generated person share an
    identity latent, mixed with a little per-image noise (pose, light, expression)."""

    ddim_steps: int = 8
    guidance: float = 2.0
    #: variance share of the per-image noise in each starting latent (0: every photo of a
    #: person starts from the same latent; 1: unrelated photos)
    identity_jitter: float = 0.15
    per_condition: int = 250
    images_per_identity: int = 4
    batch_size: int = 128


@dataclass(frozen=True)
class FilterConfig:
    """Judges trained on the source (``data.calibration`` networks) and their thresholds."""

    #: a face is memorised when it is closer to a source training face (identity similarity,
    #: or pixel RMSE) than this quantile of unseen real people (the source val split) are
    memorisation_quantile: float = 0.95
    #: fixed memorisation thresholds instead of the calibrated ones (identity similarity at or
    #: above, pixel RMSE at or below)
    id_similarity_threshold: float | None = None
    pixel_rmse_threshold: float | None = None
    #: the pixel RMSE compares pixel_pool x pixel_pool block means: measured on the quick
    #: profile, 43 % of the (smooth, non-copied) generated faces were closer to a training photo
    #: in full-resolution RMSE than real unseen photos, whose grain counts against them
    pixel_pool: int = 4
    #: keep a face when min(p(intended label), p(each intended sign)) reaches the score that
    #: ``1 - plausibility_quantile`` of real unseen photos (source val split, their own
    #: conditions) reach: as clear a manifestation as most real photos show
    plausibility_quantile: float = 0.2
    #: a fixed threshold instead of the calibrated one
    plausibility_threshold: float | None = None
    #: a generated person needs this many kept photos (the identity protocols need two)
    min_images_per_identity: int = 2
    classifier_epochs: int = 15
    recogniser_epochs: int = 10
    kid_subset_size: int = 200
    seed: int = 8111


@dataclass(frozen=True)
class BuildProfile:
    name: str
    autoencoder: AutoencoderConfig
    generator: GeneratorConfig
    sampling: SamplingConfig
    filters: FilterConfig

    def __post_init__(self) -> None:
        if self.generator.image_size != self.autoencoder.latent_size:
            raise ValueError(f"profile {self.name!r}: the denoiser's image_size ({self.generator.image_size}) "
                             f"must be the autoencoder's latent size ({self.autoencoder.latent_size})")

    @property
    def image_size(self) -> int:
        """Side of the generated (and judged) images in pixels."""
        return self.autoencoder.image_size

    def autoencoder_digest(self, fingerprint: str) -> str:
        """Short hash naming the cached autoencoder: source data and its settings."""
        return _digest({"version": BUILDER_CODE_VERSION, "source": fingerprint,
                        "autoencoder": asdict(self.autoencoder)})

    def generator_digest(self, fingerprint: str) -> str:
        """Short hash naming the cached denoiser: source data, its settings and the latent space
        it was trained in."""
        return _digest({"version": BUILDER_CODE_VERSION, "source": fingerprint,
                        "autoencoder": asdict(self.autoencoder), "generator": asdict(self.generator)})

    def judges_digest(self, fingerprint: str) -> str:
        """Short hash naming the cached judges (classifier, recogniser, thresholds)."""
        return _digest({"version": BUILDER_CODE_VERSION, "source": fingerprint,
                        "size": self.image_size, "filters": asdict(self.filters)})

    def stage_directory(self, cache: Path, fingerprint: str, stage: str) -> Path:
        """Where ``stage`` ("autoencoder", "generator" or "judges") of a build from the source
        ``fingerprint`` is cached under ``cache`` (the builder cache's per-source folder)."""
        digests = {"autoencoder": self.autoencoder_digest, "generator": self.generator_digest,
                   "judges": self.judges_digest}
        return Path(cache) / f"{stage}-{digests[stage](fingerprint)}"


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


PROFILES = {
    "toy": BuildProfile(
        "toy",
        AutoencoderConfig(image_size=16, block_out_channels=(8,), latent_channels=4, norm_num_groups=4,
                          train_steps=60, batch_size=8, lr=1e-2),
        GeneratorConfig(image_size=4, block_out_channels=(8, 16), norm_num_groups=4,
                        train_steps=20, batch_size=8),
        SamplingConfig(ddim_steps=3, per_condition=3, images_per_identity=3, batch_size=64),
        # toy networks judge nothing reliably (a 2-epoch recogniser finds every smooth face
        # identical to some training face): only near-copies of the pixels are rejected
        FilterConfig(plausibility_threshold=0.0, id_similarity_threshold=1.01, pixel_rmse_threshold=0.01,
                     classifier_epochs=3, recogniser_epochs=2, kid_subset_size=10),
    ),
    "quick": BuildProfile(
        "quick",
        AutoencoderConfig(),
        # 0.30 s per batch-32 step and 0.8 s per batch-256 forward on one CPU thread (measured)
        GeneratorConfig(image_size=16, block_out_channels=(32, 64, 128), attention=True, norm_num_groups=16,
                        train_steps=1500, batch_size=32, lr=2e-3, eye_weight=10.0),
        SamplingConfig(),
        # at 64 px an epoch of a judge costs 14 s on one thread: fewer epochs than calibration's
        FilterConfig(classifier_epochs=12, recogniser_epochs=8),
    ),
    "full": BuildProfile(
        "full",
        AutoencoderConfig(image_size=128, block_out_channels=(128,), attention=True, norm_num_groups=32,
                          train_steps=20_000, batch_size=64, lr=5e-4),
        GeneratorConfig(image_size=32, block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                        attention=True, norm_num_groups=32, train_steps=60_000, batch_size=64,
                        lr=2e-4, ema_decay=0.9995),
        SamplingConfig(ddim_steps=50, guidance=3.0, per_condition=1000, images_per_identity=8),
        FilterConfig(classifier_epochs=30, recogniser_epochs=20, kid_subset_size=1000),
    ),
}


def get_profile(name: str, **sampling) -> BuildProfile:
    """The named profile, with sampling fields (``per_condition`` ...) overridden when given."""
    if name not in PROFILES:
        raise ValueError(f"unknown builder profile {name!r}; choose one of {sorted(PROFILES)}")
    profile = PROFILES[name]
    given = {k: v for k, v in sampling.items() if v is not None}
    return replace(profile, sampling=replace(profile.sampling, **given)) if given else profile
