"""Scores torchmetrics lacks: identity leakage, lesion Dice, key diversity (docs/architecture.md §4).

Every metric keeps one value per test sample (state ``dist_reduce_fx="cat"``, so it reduces
correctly under DDP) and exposes them through ``per_sample()``; the harness bootstraps its
confidence intervals over those values (:mod:`benchmark.bootstrap`). ``compute()`` returns the
mean over samples (a dict of means for :class:`ReidentificationRate`).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class _PerSampleMean(Metric):
    """Base: accumulates per-sample values in ``self.values`` and reports their mean."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def per_sample(self) -> Tensor:
        """Values of every sample seen so far, gathered from all processes (``[N]`` or ``[N,K]``)."""
        with self.sync_context(should_unsync=True):
            return self._values()

    def _values(self) -> Tensor:
        if isinstance(self.values, Tensor):  # after a DDP sync the list is already one tensor
            return self.values
        if not self.values:
            return torch.empty(0, device=self.device)
        return dim_zero_cat(self.values)

    def compute(self) -> Tensor:
        values = self._values()
        # an empty metric has no mean: NaN, not 0, so it cannot pass for a score
        return values.float().mean(dim=0) if values.numel() else torch.tensor(float("nan"))


def _cosine_pairs(emb_a: Tensor, emb_b: Tensor, name: str) -> Tensor:
    if emb_a.ndim != 2 or emb_a.shape != emb_b.shape:
        raise ValueError(
            f"{name}: expected two embedding batches of the same shape [B,D], "
            f"got {tuple(emb_a.shape)} and {tuple(emb_b.shape)}"
        )
    return F.cosine_similarity(emb_a.float(), emb_b.float(), dim=1)


class IdentitySimilarity(_PerSampleMean):
    """Mean cosine similarity between identity embeddings of paired images.

    ``update(emb_a [B,D], emb_b [B,D])``, e.g. de-identified vs. source (identity leakage) or
    recovered vs. source (recovery with the right key). ``per_sample()`` -> ``[N]``.
    """

    higher_is_better = None  # lower for leakage, higher for recovery

    def update(self, emb_a: Tensor, emb_b: Tensor) -> None:
        self.values.append(_cosine_pairs(emb_a, emb_b, type(self).__name__))


class IdentityDiversity(_PerSampleMean):
    """Mean cosine distance ``1 - cos`` between embeddings of the same image de-identified
    with two different keys (keyed methods: a key should choose a different surrogate
    identity; cf. RiDDLE, Li et al. CVPR 2023). ``per_sample()`` -> ``[N]``."""

    higher_is_better = True

    def update(self, emb_key1: Tensor, emb_key2: Tensor) -> None:
        self.values.append(1.0 - _cosine_pairs(emb_key1, emb_key2, type(self).__name__))


class LesionDice(_PerSampleMean):
    """Per-image Dice of lesion masks, averaged over images.

    ``update(pred_probs [B,1,H,W], target [B,1,H,W])``: predictions are binarised at
    ``threshold``, targets at 0.5. Dice = 2|P∩T| / (|P|+|T|); an image where both masks are
    empty scores 1 (nothing to find, nothing found), one empty and one not scores 0.
    ``per_sample()`` -> ``[N]``.
    """

    higher_is_better = True

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"LesionDice: threshold must lie in [0,1], got {threshold}")
        self.threshold = threshold

    def update(self, pred_probs: Tensor, target: Tensor) -> None:
        if pred_probs.shape != target.shape or pred_probs.ndim != 4:
            raise ValueError(
                f"LesionDice: expected pred_probs and target of the same shape [B,1,H,W], "
                f"got {tuple(pred_probs.shape)} and {tuple(target.shape)}"
            )
        pred = (pred_probs >= self.threshold).flatten(1).float()
        true = (target >= 0.5).flatten(1).float()
        overlap = (pred * true).sum(1)
        total = pred.sum(1) + true.sum(1)
        dice = torch.where(total > 0, 2 * overlap / total.clamp_min(1), torch.ones_like(total))
        self.values.append(dice)


class ReidentificationRate(_PerSampleMean):
    """Top-k re-identification rate of probes against a labelled gallery (cosine similarity).

    A probe is re-identified at rank k when its own label is among the k gallery *labels*
    most similar to it (a label's similarity is that of its closest gallery embedding, so
    several gallery images per label do not inflate the rank). Ties are broken at random in
    expectation: a probe whose label ties with others scores the probability a random order
    puts it within the top k, so a constant recogniser scores exactly chance, not 1.

    Used for both protocols of docs/architecture.md §4: *pair* (gallery = every clean test image labelled
    by its row index; probe label = its source row) and *identity* (gallery = one enrolment
    image per test identity; probes = the other images, labelled by identity).

    ``update(probe_embeddings [B,D], probe_labels [B])``; ``compute()`` ->
    ``{"top1": rate, "top5": rate, ...}``; ``per_sample()`` -> ``[N, len(top_k)]`` with one
    column per k; ``chance(k)`` = k / number of distinct gallery labels, capped at 1.
    """

    higher_is_better = False  # for a de-identifier; the clean reference should be ~1

    def __init__(
        self,
        gallery_embeddings: Tensor,
        gallery_labels: Tensor,
        top_k: Sequence[int] = (1, 5),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if gallery_embeddings.ndim != 2 or gallery_labels.shape != gallery_embeddings.shape[:1]:
            raise ValueError(
                "ReidentificationRate: expected gallery_embeddings [G,D] and gallery_labels [G], "
                f"got {tuple(gallery_embeddings.shape)} and {tuple(gallery_labels.shape)}"
            )
        if len(gallery_labels) == 0:
            raise ValueError("ReidentificationRate: the gallery is empty")
        self.top_k = tuple(int(k) for k in top_k)
        if not self.top_k or min(self.top_k) < 1:
            raise ValueError(f"ReidentificationRate: top_k must be positive ranks, got {top_k}")
        labels, label_index = torch.unique(gallery_labels.long(), return_inverse=True)
        # buffers, so .to(device) moves the gallery with the metric
        self.register_buffer("gallery", F.normalize(gallery_embeddings.float(), dim=1))
        self.register_buffer("labels", labels)
        self.register_buffer("label_index", label_index)

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def chance(self, k: int) -> float:
        """Re-identification rate at rank ``k`` of a recogniser that guesses at random."""
        return min(k / self.num_labels, 1.0)

    def update(self, probe_embeddings: Tensor, probe_labels: Tensor) -> None:
        if probe_embeddings.ndim != 2 or probe_embeddings.shape[1] != self.gallery.shape[1]:
            raise ValueError(
                f"ReidentificationRate: probe embeddings must be [B,{self.gallery.shape[1]}], "
                f"got {tuple(probe_embeddings.shape)}"
            )
        target = self._label_positions(probe_labels.long())
        sim = F.normalize(probe_embeddings.float(), dim=1) @ self.gallery.T  # [B,G]
        # best similarity per label: [B,L]
        per_label = sim.new_full((sim.shape[0], self.num_labels), -float("inf"))
        per_label.scatter_reduce_(1, self.label_index.expand_as(sim), sim, reduce="amax")
        own = per_label.gather(1, target[:, None])
        better = (per_label > own).sum(1, keepdim=True).float()
        tied = (per_label == own).sum(1, keepdim=True).float()  # includes the probe's own label
        ks = torch.tensor(self.top_k, device=sim.device, dtype=torch.float32)[None]
        self.values.append(((ks - better) / tied).clamp(0.0, 1.0))

    def _label_positions(self, probe_labels: Tensor) -> Tensor:
        pos = torch.searchsorted(self.labels, probe_labels).clamp_max(self.num_labels - 1)
        missing = self.labels[pos] != probe_labels
        if missing.any():
            raise ValueError(
                "ReidentificationRate: probe labels absent from the gallery: "
                f"{probe_labels[missing].unique()[:10].tolist()}"
            )
        return pos

    def compute(self) -> dict[str, Tensor]:
        means = super().compute()
        if means.ndim == 0:  # no probes seen
            means = means.expand(len(self.top_k))
        return {f"top{k}": means[i] for i, k in enumerate(self.top_k)}
