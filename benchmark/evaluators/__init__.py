"""Independent evaluators, trained once per dataset on its clean training split (DESIGN.md §4).

They live under ``cache_root()/evaluators/<dataset fingerprint>/<config hash>/`` and are never
handed to a method: the harness alone holds them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.evaluators.classifier import DiseaseClassifier
from benchmark.evaluators.common import train_module
from benchmark.evaluators.facenet import FaceNetRecognizer
from benchmark.evaluators.identity import CosFaceHead, IdentityRecognizer, identity_recognizer
from benchmark.evaluators.segmenter import LesionSegmenter
from benchmark.profiles import EvaluatorConfig
from data.paths import cache_root

__all__ = [
    "CosFaceHead", "DiseaseClassifier", "Evaluators", "FaceNetRecognizer", "IdentityRecognizer",
    "LesionSegmenter", "evaluator_dir", "load_evaluators",
]
log = logging.getLogger(__name__)


@dataclass
class Evaluators:
    classifier: DiseaseClassifier
    identity: IdentityRecognizer
    segmenter: LesionSegmenter | None = None
    facenet: FaceNetRecognizer | None = None
    directory: Path | None = None
    #: which evaluators were trained (not loaded from the cache) by this call
    trained: list[str] = field(default_factory=list)

    def clean_cache_path(self, fingerprint: str, image_size: int) -> Path | None:
        """File caching these evaluators' outputs on the clean test split of the dataset
        ``fingerprint`` at ``image_size`` px (see ``benchmark.evaluation.clean_outputs``).
        The name also hashes the checkpoints' sizes and times (and the FaceNet weights file),
        so retrained evaluators never reuse stale outputs."""
        if self.directory is None:
            return None
        files = sorted(self.directory.glob("*.pt"))
        if self.facenet is not None:
            files.append(Path(self.facenet.weights_file).resolve())
        stamp = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
        digest = hashlib.sha256(stamp.encode()).hexdigest()[:12]
        return self.directory / "clean-outputs" / f"{fingerprint}-{image_size}px-{digest}.pt"

    def to(self, device) -> "Evaluators":
        for net in (self.classifier, self.identity, self.segmenter, self.facenet):
            if net is not None:
                net.to(device).eval()
        return self


def evaluator_dir(fingerprint: str, config: EvaluatorConfig) -> Path:
    return cache_root() / "evaluators" / fingerprint / config.digest()


def _save(module: nn.Module, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"hparams": dict(module.hparams), "state_dict": module.state_dict()}, tmp)
    os.replace(tmp, path)


def _load(cls, path: Path):
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    module = cls(**checkpoint["hparams"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def _train_identities(datamodule) -> list[int]:
    return sorted(set(datamodule.dataset("train").identities.tolist()))


def _build(name: str, config: EvaluatorConfig, datamodule):
    if name == "classifier":
        c = config.classifier
        return DiseaseClassifier(len(datamodule.classes), len(datamodule.signs), c.backbone, c.lr,
                                 channels=c.channels, crop_size=tuple(c.crop_size))
    if name == "identity":
        return identity_recognizer(config.identity, _train_identities(datamodule))
    c = config.segmenter
    return LesionSegmenter(c.encoder, c.encoder_depth, tuple(c.decoder_channels), c.lr)


_CLASSES = {"classifier": DiseaseClassifier, "identity": IdentityRecognizer,
            "segmenter": LesionSegmenter}


def load_evaluators(datamodule, seg_datamodule, fingerprint: str, config: EvaluatorConfig, *,
                    retrain: bool = False, trainer_kwargs: dict | None = None,
                    facenet_weights: str | Path | None = None) -> Evaluators:
    """Load the cached evaluators for this dataset and config, training the missing ones.

    ``datamodule`` serves the clean classification splits, ``seg_datamodule`` the MeMa-Seg rows
    (``None`` when the dataset has no lesion masks: no segmenter, no Dice).
    """
    directory = evaluator_dir(fingerprint, config)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(asdict(config), indent=1))
    nets, trained = {}, []
    for name in ("classifier", "identity", "segmenter"):
        source = seg_datamodule if name == "segmenter" else datamodule
        if source is None:
            continue
        path = directory / f"{name}.pt"
        if path.is_file() and not retrain:
            nets[name] = _load(_CLASSES[name], path)
            continue
        log.info("training the %s evaluator -> %s", name, path)
        epochs = getattr(config, name).epochs
        seed = getattr(config, name).seed
        nets[name] = train_module(_build(name, config, source), source, epochs=epochs,
                                  seed=seed, trainer_kwargs=trainer_kwargs)
        _save(nets[name], path)
        trained.append(name)
    facenet = FaceNetRecognizer(facenet_weights) if facenet_weights else None
    return Evaluators(nets["classifier"], nets["identity"], nets.get("segmenter"), facenet,
                      directory, trained)
