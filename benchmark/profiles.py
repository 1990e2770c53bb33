"""Evaluator and run settings per profile (docs/architecture.md §4, §6).

``quick`` runs on a 2-core CPU in minutes (64 px, small nets, few epochs); ``full`` is sized for a
GPU; ``toy`` trains in seconds and exists for the test-suite. Evaluator seeds and backbones are
deliberately different from anything a method trains, so a method cannot overfit "its own"
recogniser or classifier.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field

import numpy as np

#: bump when evaluator code changes what a cached checkpoint means
EVALUATOR_CODE_VERSION = 5


@dataclass(frozen=True)
class ClassifierConfig:
    """Disease classifier: timm backbone, coarse-label head and multi-label sign head."""

    backbone: str = "resnet18"
    #: stage widths for timm ResNets (None: the architecture's own)
    channels: tuple[int, ...] | None = None
    #: size (H, W) of the periocular crop the classifier looks at
    crop_size: tuple[int, int] = (48, 96)
    epochs: int = 12
    lr: float = 3e-3
    seed: int = 9173


@dataclass(frozen=True)
class SegmenterConfig:
    """Lesion segmenter: segmentation-models-pytorch U-Net on the MeMa-Seg rows."""

    encoder: str = "resnet18"
    encoder_depth: int = 4
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16)
    epochs: int = 20
    lr: float = 3e-3
    seed: int = 5231


@dataclass(frozen=True)
class IdentityConfig:
    """Learned identity recogniser: embedding network trained with a CosFace margin loss and
    occlusion augmentation (``benchmark.api.nn.occlude``)."""

    #: ``face_cnn`` (small plain CNN keeping a 4x4 spatial map) or a timm model name
    backbone: str = "face_cnn"
    #: base channel width of ``face_cnn``
    width: int = 16
    embedding_dim: int = 128
    margin: float = 0.25
    scale: float = 16.0
    epochs: int = 15
    lr: float = 3e-3
    seed: int = 7717
    #: mirror augmentation; off by default: MeMa faces can differ left/right (laterality)
    flip: bool = False
    #: per-image probability of hiding the face outside the periocular region in training
    p_keep_eyes: float = 0.3
    #: per-image probability of random erasing in training
    p_erase: float = 0.3


@dataclass(frozen=True)
class EvaluatorConfig:
    image_size: int = 64
    batch_size: int = 64
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)

    def digest(self) -> str:
        """Short hash naming the evaluator cache folder."""
        payload = json.dumps({"version": EVALUATOR_CODE_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class ParrotConfig:
    """Parrot attack: the identity recogniser's recipe retrained on the method's output."""

    epochs: int = 12
    #: fresh attacker keys per training image (keyed methods; epochs shrink to match)
    keys_per_image: int = 2
    seed: int = 4421


@dataclass(frozen=True)
class ReversalConfig:
    """Reversal attack: a U-Net de-anonymiser (segmentation-models-pytorch, random init)."""

    #: a small MobileNetV3 by default: a ResNet-18 U-Net costs minutes per epoch on 2 CPU cores
    encoder: str = "timm-mobilenetv3_small_minimal_100"
    encoder_depth: int = 3
    decoder_channels: tuple[int, ...] = (32, 16, 8)
    epochs: int = 4
    lr: float = 3e-3
    ssim_weight: float = 0.5
    #: training pairs drawn from the attacker's training split (None: all)
    max_pairs: int | None = 960
    seed: int = 6607


@dataclass(frozen=True)
class StorageConfig:
    jpeg_quality: int = 90


@dataclass(frozen=True)
class NaturalnessConfig:
    """KID (Binkowski et al., ICLR 2018) on the identity evaluator's backbone features."""

    subsets: int = 50
    subset_size: int = 500


@dataclass(frozen=True)
class AttackConfig:
    """Settings of the attacks that train something, and of the naturalness score."""

    parrot: ParrotConfig = field(default_factory=ParrotConfig)
    reversal: ReversalConfig = field(default_factory=ReversalConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    naturalness: NaturalnessConfig = field(default_factory=NaturalnessConfig)


@dataclass(frozen=True)
class Profile:
    name: str
    #: profile name handed to methods (they only know "quick" and "full")
    method_profile: str
    evaluators: EvaluatorConfig
    bootstrap_resamples: int = 1000
    #: images shown in the qualitative grid
    grid_images: int = 8
    attacks: AttackConfig = field(default_factory=AttackConfig)

    def for_seed(self, run_seed: int) -> "Profile":
        """This profile for one run seed of ``--seeds``: the evaluators and the attackers get
        seeds of their own (:func:`reseeded`), so each seed retrains them."""
        return dataclasses.replace(self, evaluators=reseeded(self.evaluators, run_seed),
                                   attacks=reseeded(self.attacks, run_seed))

    # data are loaded at the resolution and batch size the evaluators were trained on
    @property
    def image_size(self) -> int:
        return self.evaluators.image_size

    @property
    def batch_size(self) -> int:
        return self.evaluators.batch_size


PROFILES: dict[str, Profile] = {
    "toy": Profile(
        name="toy",
        method_profile="quick",
        bootstrap_resamples=200,
        evaluators=EvaluatorConfig(
            image_size=32,
            batch_size=32,
            classifier=ClassifierConfig(backbone="resnet18", channels=(8, 16, 32, 64),
                                        crop_size=(24, 48), epochs=1),
            segmenter=SegmenterConfig(
                encoder="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), epochs=1
            ),
            identity=IdentityConfig(backbone="test_resnet", embedding_dim=32, epochs=1),
        ),
        # tests stay fast: a few quick epochs of small attacker networks
        attacks=AttackConfig(
            parrot=ParrotConfig(epochs=2, keys_per_image=1),
            reversal=ReversalConfig(encoder_depth=2, decoder_channels=(16, 8), epochs=3,
                                    lr=1e-2, max_pairs=None),
            naturalness=NaturalnessConfig(subsets=10, subset_size=16),
        ),
    ),
    # the whole pipeline in CI (every method, every attack) in minutes: 32 px, few epochs,
    # and the methods' own "toy" presets
    "ci": Profile(
        name="ci",
        method_profile="toy",
        bootstrap_resamples=200,
        evaluators=EvaluatorConfig(
            image_size=32,
            batch_size=64,
            classifier=ClassifierConfig(backbone="resnet18", channels=(16, 32, 64, 128),
                                        crop_size=(24, 48), epochs=4),
            segmenter=SegmenterConfig(
                encoder="resnet18", encoder_depth=3, decoder_channels=(32, 16, 8), epochs=4
            ),
            identity=IdentityConfig(backbone="face_cnn", width=8, embedding_dim=64, epochs=6),
        ),
        attacks=AttackConfig(
            parrot=ParrotConfig(epochs=4, keys_per_image=1),
            reversal=ReversalConfig(encoder_depth=2, decoder_channels=(16, 8), epochs=2,
                                    max_pairs=480),
            naturalness=NaturalnessConfig(subsets=10, subset_size=100),
        ),
    ),
    "quick": Profile(
        name="quick",
        method_profile="quick",
        evaluators=EvaluatorConfig(
            image_size=64,
            batch_size=64,
            # a half-width ResNet-18: the full one is too slow for a 2-core CPU at 64 px
            classifier=ClassifierConfig(backbone="resnet18", channels=(32, 64, 128, 256),
                                        epochs=8),
            segmenter=SegmenterConfig(
                encoder="resnet18", encoder_depth=3, decoder_channels=(64, 32, 16), epochs=20
            ),
            identity=IdentityConfig(backbone="face_cnn", width=16, embedding_dim=128,
                                    epochs=12),
        ),
    ),
    "full": Profile(
        name="full",
        method_profile="full",
        evaluators=EvaluatorConfig(
            image_size=128,
            batch_size=128,
            classifier=ClassifierConfig(backbone="resnet26d", crop_size=(96, 192), epochs=40,
                                        lr=1e-3),
            segmenter=SegmenterConfig(
                encoder="resnet34", encoder_depth=5,
                decoder_channels=(256, 128, 64, 32, 16), epochs=60, lr=1e-3,
            ),
            identity=IdentityConfig(
                backbone="face_cnn", width=64, embedding_dim=256, epochs=60, lr=1e-3,
                margin=0.35, scale=30.0,
            ),
        ),
        attacks=AttackConfig(
            parrot=ParrotConfig(epochs=60, keys_per_image=4),
            reversal=ReversalConfig(encoder="resnet34", encoder_depth=5,
                                    decoder_channels=(256, 128, 64, 32, 16), epochs=40,
                                    lr=1e-3, max_pairs=None),
            naturalness=NaturalnessConfig(subsets=100, subset_size=1000),
        ),
    ),
}


def reseeded(config, run_seed: int):
    """``config`` (a frozen dataclass, nested) with every ``seed`` field spawned from itself
    and the run seed by NumPy's SeedSequence (not seed arithmetic); run seed 0 keeps the
    declared seeds, so a single-seed run trains exactly the declared evaluators."""
    if run_seed == 0:
        return config
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name == "seed":
            state = np.random.SeedSequence([value, run_seed]).generate_state(1, np.uint32)
            changes["seed"] = int(state[0])
        elif dataclasses.is_dataclass(value):
            changes[f.name] = reseeded(value, run_seed)
    return dataclasses.replace(config, **changes)


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}") from None
