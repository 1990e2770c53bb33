"""Builder settings per profile: generator size, training length, sampling and filter thresholds.

``quick`` is sized for a 2-core CPU (32 px: at 64 px a training step costs 1.7x and a sampling
step 2.2x; its measured time and quality are in ``data/README.md`` -- it is too short to give
plausible faces); ``full`` is sized for a GPU; ``toy`` runs in seconds for the tests.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

#: bump when builder code changes what a cached generator or judge means
BUILDER_CODE_VERSION = 1


@dataclass(frozen=True)
class GeneratorConfig:
    """Conditional DDPM: a diffusers ``UNet2DModel`` whose timestep embedding is added to a
    projected condition vector (disease, signs, age, sex)."""

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
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    #: what the network predicts, "v_prediction" (Salimans & Ho, 2022) or "epsilon". After the
    #: quick profile's 600 CPU steps neither is good: epsilon gave face layouts under heavy
    #: residual noise, v_prediction smooth colour blobs (data/README.md, measured figures)
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
    generator: GeneratorConfig
    sampling: SamplingConfig
    filters: FilterConfig

    def generator_digest(self, fingerprint: str) -> str:
        """Short hash naming the cached generator: source data and generator settings."""
        return _digest({"version": BUILDER_CODE_VERSION, "source": fingerprint,
                        "generator": asdict(self.generator)})

    def judges_digest(self, fingerprint: str) -> str:
        """Short hash naming the cached judges (classifier, recogniser, thresholds)."""
        return _digest({"version": BUILDER_CODE_VERSION, "source": fingerprint,
                        "size": self.generator.image_size, "filters": asdict(self.filters)})


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


PROFILES = {
    "toy": BuildProfile(
        "toy",
        GeneratorConfig(image_size=16, block_out_channels=(8, 16), norm_num_groups=4,
                        train_steps=20, batch_size=8),
        SamplingConfig(ddim_steps=3, per_condition=3, images_per_identity=3, batch_size=64),
        # toy networks judge nothing reliably: only near-copies are rejected
        FilterConfig(plausibility_threshold=0.0, memorisation_quantile=0.999, classifier_epochs=3,
                     recogniser_epochs=2, kid_subset_size=10),
    ),
    "quick": BuildProfile("quick", GeneratorConfig(), SamplingConfig(), FilterConfig()),
    "full": BuildProfile(
        "full",
        GeneratorConfig(image_size=64, block_out_channels=(64, 128, 256, 256), layers_per_block=2,
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
