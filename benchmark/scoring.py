"""Scores with bootstrap intervals, shared by the evaluation pass and the attacks.

Every per-image score is resampled by identity (``clusters``): test images cluster by person,
and resampling them one by one gives intervals that are too narrow (:mod:`benchmark.bootstrap`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.bootstrap import bootstrap_ci, bootstrap_mean_ci, percentile_interval, resample_weights
from benchmark.metrics import ReidentificationRate


@dataclass
class Score:
    value: float
    ci_low: float | None = None
    ci_high: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}


def mean_score(values: Tensor, resamples: int, seed: int, clusters: Tensor | None = None) -> Score:
    values = values.double().cpu()
    low, high = bootstrap_mean_ci(values, n_resamples=resamples, seed=seed, clusters=clusters)
    return Score(float(values.mean()), low, high)


def statistic_score(statistic, n: int, resamples: int, seed: int,
                    clusters: Tensor | None = None) -> Score:
    low, high = bootstrap_ci(statistic, n, n_resamples=resamples, seed=seed, clusters=clusters)
    return Score(float(statistic(torch.arange(n))), low, high)


def count_score(counts: Tensor, score_fn, resamples: int, seed: int,
                clusters: Tensor | None = None) -> Score:
    """A score that is a function of per-image counts summed over the test images
    (``counts [n,K]`` -> ``score_fn(sums [R,K]) -> [R]``), with its bootstrap CI computed for
    all resamples at once (each resample is a weight vector, so the sums are one matrix
    product). Same resamples as :func:`bootstrap_ci`."""
    counts = counts.double()
    stats = [score_fn(w @ counts) for w in resample_weights(len(counts), resamples, seed, clusters)]
    low, high = percentile_interval(torch.cat(stats), 0.95)
    return Score(float(score_fn(counts.sum(0, keepdim=True))[0]), float(low), float(high))


def enrolment_split(identity: Tensor) -> tuple[Tensor, Tensor]:
    """Positions of the first image of each identity (enrolment) and of every other image."""
    first: dict[int, int] = {}
    for pos, ident in enumerate(identity.tolist()):
        first.setdefault(ident, pos)
    enrol = torch.tensor(sorted(first.values()), dtype=torch.long)
    probes = torch.ones(len(identity), dtype=torch.bool)
    probes[enrol] = False
    return enrol, probes.nonzero().flatten()


def pair_protocol(prefix: str, gallery: Tensor, probes: Tensor, identity: Tensor,
                  resamples: int, seed: int) -> tuple[dict[str, Score], dict[str, float]]:
    """``{prefix}_top1/_top5``: a probe is a hit when the nearest of all ``gallery``
    embeddings (one per test image, same order as ``probes``) is its own source image."""
    positions = torch.arange(len(gallery))
    rate = ReidentificationRate(gallery, positions, top_k=(1, 5))
    rate.update(probes, positions)
    hits = rate.per_sample()
    scores = {f"{prefix}_top{k}": mean_score(hits[:, c], resamples, seed, identity)
              for c, k in enumerate(rate.top_k)}
    return scores, {f"{prefix}_top{k}": rate.chance(k) for k in rate.top_k}


def identity_protocol(prefix: str, gallery: Tensor, probes: Tensor, identity: Tensor,
                      resamples: int, seed: int, top_k=(1, 5)
                      ) -> tuple[dict[str, Score], dict[str, float]]:
    """``{prefix}_top{k}_identity``: the first image of each identity is enrolled (its
    ``gallery`` embedding), every other image is a probe (its ``probes`` embedding), a hit when
    the nearest enrolment is the same person. Empty when no identity has two images."""
    enrol, probe_pos = enrolment_split(identity)
    if not len(probe_pos):
        return {}, {}
    rate = ReidentificationRate(gallery[enrol], identity[enrol], top_k=top_k)
    rate.update(probes[probe_pos], identity[probe_pos])
    hits = rate.per_sample()
    scores = {f"{prefix}_top{k}_identity": mean_score(hits[:, c], resamples, seed,
                                                      identity[probe_pos])
              for c, k in enumerate(rate.top_k)}
    return scores, {f"{prefix}_top{k}_identity": rate.chance(k) for k in rate.top_k}


def impostor_similarity(embeddings: Tensor, identity: Tensor) -> tuple[float, float]:
    """Mean cosine similarity of clean test pairs of different people (the chance level of
    identity similarity) and of the same person (the genuine level)."""
    sim = torch.nn.functional.normalize(embeddings.float(), dim=1)
    sim = sim @ sim.t()
    same = identity[:, None] == identity[None, :]
    off_diagonal = ~torch.eye(len(identity), dtype=torch.bool)
    genuine = sim[same & off_diagonal]
    return float(sim[~same].mean()), float(genuine.mean()) if len(genuine) else float("nan")
