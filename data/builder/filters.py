"""The builder's judges, trained on the source: they decide which generated faces are kept.

- memorisation: identity similarity to the nearest source training face (a CosFace
  recogniser trained on the source's training identities) and pixel RMSE to the nearest
  source training image (on ``pixel_pool``-averaged blocks). The thresholds come from unseen real people: the source val split's
  identities never reach the recogniser's or the generator's training, so a generated face
  closer to a training face than ``memorisation_quantile`` of them is treated as a copy.
- plausibility: a disease classifier trained on the source must give the intended label, and
  every intended sign, a probability at least as high as ``1 - plausibility_quantile`` of the
  real val photos get for their own conditions (or a fixed ``plausibility_threshold``).
- quality: KID of the kept set against the source, on the classifier's features (no
  downloaded Inception network).

The networks are ``data.calibration``'s (plain torch, one thread), independent of the
benchmark's evaluators.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor
from torchmetrics.image.kid import KernelInceptionDistance

from ..files import atomic_file, atomic_write
from ..calibration import SmallCNN, disease_scores, reidentification_scores
from ..layout import read_metadata, split_signs
from ..mema import MeMaDataModule
from .profiles import FilterConfig

EMBEDDING_DIM = 128  # data.calibration.reidentification_scores' embedding width


@dataclass
class Judges:
    classifier: SmallCNN
    recogniser: SmallCNN
    classes: list[str]
    signs: list[str]
    source_images: Tensor       # source training images, float [N,3,H,W] in [0,1]
    source_embeddings: Tensor   # their unit recogniser embeddings
    id_threshold: float
    pixel_threshold: float
    plausibility_threshold: float
    source_scores: dict         # the judges' own figures on the source test split
    pixel_pool: int = 1         # side of the blocks averaged before the pixel RMSE

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return torch.cat([F.normalize(self.recogniser(chunk)) for chunk in images.split(256)])

    @torch.no_grad()
    def memorisation(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Per image: the highest identity similarity to a source training face, and the
        lowest pixel RMSE to a source training image, both averaged over ``pixel_pool`` blocks
        (sensor grain, which no generator copies, would make a smooth face look closer to a
        training photo than an unseen real photo is)."""
        similarity = (self.embed(images) @ self.source_embeddings.T).amax(1)
        flat, source = (F.avg_pool2d(x, self.pixel_pool).flatten(1) for x in (images, self.source_images))
        rmse = torch.cat([torch.cdist(chunk, source).amin(1) for chunk in flat.split(256)])
        return similarity, rmse / flat.shape[1] ** 0.5

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """The classifier's ``[N, classes + signs]`` logits."""
        return torch.cat([self.classifier(chunk) for chunk in images.split(256)])

    @torch.no_grad()
    def plausibility(self, images: Tensor, labels: list[str], signs: list[str],
                     logits: Tensor | None = None) -> Tensor:
        """min(p(intended label), p(each intended sign)) per image (``logits``: the
        classifier's on ``images``, when already computed)."""
        logits = self.logits(images) if logits is None else logits
        c = len(self.classes)
        p_label, p_sign = logits[:, :c].softmax(1), logits[:, c:].sigmoid()
        scores = torch.empty(len(images))
        for i, (label, text) in enumerate(zip(labels, signs)):
            wanted = [p_label[i, self.classes.index(label)]]
            wanted += [p_sign[i, self.signs.index(s)] for s in split_signs(text)]
            scores[i] = torch.stack(wanted).min()
        return scores

    def judge(self, images: Tensor, labels: list[str], signs: list[str]) -> pd.DataFrame:
        """Scores and verdicts per image (``images`` float ``[N,3,H,W]`` in ``[0,1]``)."""
        similarity, rmse = self.memorisation(images)
        plausible = self.plausibility(images, labels, signs)
        return pd.DataFrame(dict(
            memorisation_id_similarity=similarity.double().numpy().round(4),
            memorisation_pixel_rmse=rmse.double().numpy().round(4),
            plausibility=plausible.double().numpy().round(4),
            memorised=((similarity >= self.id_threshold) | (rmse <= self.pixel_threshold)).numpy(),
            implausible=(plausible < self.plausibility_threshold).numpy(),
        ))

    def kid(self, real: Tensor, fake: Tensor, subset_size: int, seed: int = 0) -> tuple[float, float]:
        """Kernel Inception Distance (mean, std) on the classifier's features."""
        torch.manual_seed(seed)  # the metric draws its subsets from the global generator
        metric = KernelInceptionDistance(feature=self.classifier.features, subsets=50,
                                         subset_size=min(subset_size, len(real), len(fake)))
        with torch.no_grad():
            for images, is_real in ((real, True), (fake, False)):
                for chunk in images.split(256):
                    metric.update(chunk, real=is_real)
            mean, std = metric.compute()
        return float(mean), float(std)


def fit_judges(source: Path, image_size: int, config: FilterConfig, directory: Path) -> Judges:
    """Train the classifier and recogniser on ``source``'s training split at ``image_size``
    (or load them from ``directory``) and set the thresholds from its val split."""
    dm = MeMaDataModule(source, image_size=image_size, batch_size=64, seed=config.seed)
    dm.setup()
    n_outputs = len(dm.classes) + len(dm.signs)
    classifier, recogniser = SmallCNN(n_outputs), SmallCNN(EMBEDDING_DIM)
    weights, info = directory / "judges.safetensors", directory / "judges.json"
    if weights.is_file() and info.is_file():
        state = load_file(str(weights))
        classifier.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("classifier.")})
        recogniser.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("recogniser.")})
        scores = json.loads(info.read_text())
    else:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small convolutions run fastest on one thread
        try:
            classifier, disease = disease_scores(dm, config.classifier_epochs, config.seed)
            recogniser, reid = reidentification_scores(dm, config.recogniser_epochs, config.seed)
        finally:
            torch.set_num_threads(threads)
        scores = {"source_test": {"disease_accuracy": disease["disease_accuracy"],
                                  "disease_macro_f1": disease["disease_macro_f1"], **reid}}
        directory.mkdir(parents=True, exist_ok=True)
        state = {f"classifier.{k}": v for k, v in classifier.state_dict().items()}
        state.update({f"recogniser.{k}": v for k, v in recogniser.state_dict().items()})
        with atomic_file(weights) as tmp:
            save_file(state, str(tmp))
        atomic_write(info, json.dumps(scores, indent=2))
    judges = Judges(classifier.eval(), recogniser.eval(), dm.classes, dm.signs,
                    images(dm, "train"), torch.empty(0), 0.0, 0.0, config.plausibility_threshold, scores,
                    config.pixel_pool)
    judges.source_embeddings = judges.embed(judges.source_images)
    # unseen real people (val split) set how close to a training face is too close
    val = images(dm, "val")
    similarity, rmse = judges.memorisation(val)
    q = config.memorisation_quantile
    val_table = read_metadata(source)[0].loc[dm.dataset("val").rows]
    real = judges.plausibility(val, list(val_table["label"]), list(val_table["signs"])).numpy()
    plausibility = config.plausibility_threshold
    if plausibility is None:
        plausibility = float(np.quantile(real, config.plausibility_quantile))
    kid_floor = judges.kid(judges.source_images, val, config.kid_subset_size)
    id_threshold, pixel_threshold = config.id_similarity_threshold, config.pixel_rmse_threshold
    return replace(judges,
                   id_threshold=float(np.quantile(similarity.numpy(), q)) if id_threshold is None else id_threshold,
                   pixel_threshold=float(np.quantile(rmse.numpy(), 1 - q)) if pixel_threshold is None else pixel_threshold,
                   plausibility_threshold=plausibility,
                   source_scores={**scores, "kid_val_vs_train": kid_floor,
                                  "val_plausibility_median": float(np.median(real))})


def images(dm: MeMaDataModule, split: str) -> Tensor:
    return dm.dataset(split).images.float() / 255.0


__all__ = ["Judges", "fit_judges"]
