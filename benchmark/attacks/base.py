"""What every attack shares: the attacker's view of a run (:class:`AttackContext`), the result
type, the attack base class and the result cache.

Threat model (docs/threat_model.md): the attacker knows the method and its code, can run it on
data it owns — the training split, with keys it draws itself — and sees the de-identified test
images. It never sees the test keys, the test originals or the evaluators' training. Test
originals and identities reach an attack only to *score* it (gallery enrolment, PSNR), never to
build it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from benchmark.blinding import BlindedMethod, draw_keys, stream
from benchmark.scores import ScoreSpec
from benchmark.scoring import Score
from data.files import atomic_write

log = logging.getLogger(__name__)

#: bump when attack code changes what a cached result means
ATTACK_CODE_VERSION = 2


@dataclass
class AttackResult:
    scores: dict[str, Score] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    #: the same score on clean images (a no-op de-identifier), where that is defined
    clean: dict[str, Score] = field(default_factory=dict)
    #: rows for the qualitative grid (first ``grid`` positions), not cached
    grid: dict[str, Tensor] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {part: {k: (v.as_dict() if isinstance(v, Score) else v)
                       for k, v in getattr(self, part).items()}
                for part in ("scores", "chance", "clean")}

    @classmethod
    def from_json(cls, data: dict) -> "AttackResult":
        return cls({k: Score(**v) for k, v in data["scores"].items()}, dict(data["chance"]),
                   {k: Score(**v) for k, v in data["clean"].items()})


@dataclass
class TestSet:
    """The test split as the harness holds it (CPU): ``image`` uint8, ``landmarks``,
    ``identity`` and ``attributes`` (kept-attribute combination id, for the floor)."""

    image: Tensor
    landmarks: Tensor
    identity: Tensor
    attributes: Tensor

    def float_images(self) -> Tensor:
        return self.image.float() / 255.0


@dataclass
class AttackContext:
    """Everything an attack may use. ``train`` is the attacker's own data (images, landmarks,
    identities of the training split); ``test`` and ``clean_emb`` serve only scoring."""

    method: BlindedMethod
    key_bits: int
    reversible: bool
    train: dict[str, Tensor]
    test: TestSet
    deid: Tensor                 # de-identified test images, right keys
    deid_other: Tensor           # the same under other keys (== deid for keyless methods)
    right_keys: Tensor | None
    evaluators: Any
    clean_emb: Tensor            # clean recogniser on the clean test images
    config: Any                  # benchmark.profiles.AttackConfig
    evaluator_config: Any        # benchmark.profiles.EvaluatorConfig
    seed: int
    device: torch.device
    resamples: int
    batch_size: int
    trainer_kwargs: dict = field(default_factory=dict)
    grid_rows: Tensor = field(default_factory=lambda: torch.arange(0))
    _deid_train: dict = field(default_factory=dict, init=False, repr=False)
    _memo: dict = field(default_factory=dict, init=False, repr=False)

    def embed(self, fn: Callable[[Tensor], Tensor], images: Tensor) -> Tensor:
        """``fn`` over ``images`` (float [N,3,H,W], CPU) in batches on the run's device."""
        parts = [fn(images[i:i + self.batch_size].float().to(self.device)).float().cpu()
                 for i in range(0, len(images), self.batch_size)]
        return torch.cat(parts)

    def naive_probes(self) -> Tensor:
        """The clean recogniser's embeddings of the de-identified test images (memoised: the
        naive and linkage attacks share them)."""
        if "naive" not in self._memo:
            self._memo["naive"] = self.embed(self.evaluators.identity.embed, self.deid)
        return self._memo["naive"]

    def deid_train(self, keys_per_image: int = 1) -> tuple[Tensor, Tensor]:
        """The method run by the attacker on its training images, ``keys_per_image`` fresh
        attacker-drawn keys each (one for keyless methods); returns ``(deid, source row)``,
        memoised so the parrot and the reversal share one pass."""
        copies = keys_per_image if self.key_bits else 1
        if copies not in self._deid_train:
            n = len(self.train["image"])
            source = torch.arange(n).repeat(copies)
            keys = draw_keys(len(source), self.key_bits, stream(self.seed, f"attacker keys {copies}"))
            log.info("attacker: de-identifying %d training images", len(source))
            self._deid_train[copies] = (self.method.anonymize(
                self.train["image"][source], self.train["landmarks"][source], keys), source)
        return self._deid_train[copies]

    def trainer(self) -> dict:
        """Trainer options for an attacker's network: the run's, without validation (the
        attacker has no held-out identities to monitor on)."""
        return {**self.trainer_kwargs, "limit_val_batches": 0}


class Attack:
    """An attack: a name, the scores it declares, and :meth:`run`.

    ``config_of`` picks the attack's settings from the profile's ``AttackConfig`` (part of the
    cache key); ``applies`` says whether it makes sense for a method (storage and wrong key only
    for reversible ones)."""

    name: str = ""
    description: str = ""
    scores: tuple[ScoreSpec, ...] = ()
    #: part of ``--attacks all``; False for opt-in attacks too slow to run by default
    default: bool = True
    #: trains on the attacker's own data (``AttackContext.train``)
    needs_train: bool = False

    def config_of(self, ctx: AttackContext) -> dict:
        settings = getattr(ctx.config, self.name, None)
        return asdict(settings) if settings is not None else {}

    def applies(self, ctx: AttackContext) -> bool:
        return True

    def run(self, ctx: AttackContext) -> AttackResult:
        raise NotImplementedError


class TensorData(Dataset):
    """Rows of equally long tensors as sample dicts."""

    def __init__(self, **tensors: Tensor) -> None:
        self.tensors = tensors
        self.n = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


class TrainingPairs(L.LightningDataModule):
    """A shuffled training loader over in-memory tensors (the attacker's own data)."""

    def __init__(self, batch_size: int, seed: int, **tensors: Tensor) -> None:
        super().__init__()
        self.data, self.batch_size, self.seed = TensorData(**tensors), batch_size, seed

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch_size, shuffle=True,
                          generator=stream(self.seed, "attacker loader"))


# -- cache ----------------------------------------------------------------------------------
class AttackCache:
    """Attack results as JSON under ``directory``, keyed by everything they depend on: the
    fitted method, the attack's config, the dataset, the evaluators, seed and resamples."""

    def __init__(self, directory: Path | None, key: dict) -> None:
        self.directory, self.key = directory, key

    def path(self, attack: Attack, config: dict) -> Path | None:
        if self.directory is None:
            return None
        payload = json.dumps({"version": ATTACK_CODE_VERSION, "attack": attack.name,
                              "config": config, **self.key}, sort_keys=True, default=str)
        digest = hashlib.sha256(payload.encode()).hexdigest()[:16]
        return self.directory / f"{attack.name}-{digest}.json"

    def load(self, path: Path | None) -> AttackResult | None:
        if path is None or not path.is_file():
            return None
        try:
            return AttackResult.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            log.warning("ignoring unreadable attack cache %s: %s", path, err)
            return None

    def save(self, path: Path | None, result: AttackResult) -> None:
        if path is not None:
            atomic_write(path, json.dumps(result.to_json(), indent=1))
