"""Each metric of benchmark.metrics against a plain numpy reference, over several batches."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.metrics import (
    IdentityDiversity,
    IdentitySimilarity,
    LesionDice,
    ReidentificationRate,
)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _reid_reference(gallery, gallery_labels, probes, probe_labels, k):
    """Loop version: rank distinct labels by their best cosine similarity; ties share the
    probability of landing in the top k under a random order."""
    hits = []
    for p, y in zip(probes, probe_labels):
        best = {}
        for g, lab in zip(gallery, gallery_labels):
            best[lab] = max(best.get(lab, -math.inf), _cos(p, g))
        better = sum(s > best[y] for s in best.values())
        tied = sum(s == best[y] for s in best.values())
        hits.append(min(max((k - better) / tied, 0.0), 1.0))
    return np.array(hits)


def _batches(n, size):
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


@pytest.mark.parametrize("per_label", [1, 3])
def test_reidentification_rate_matches_reference(per_label):
    rng = np.random.default_rng(0)
    n_labels, dim = 12, 8
    gallery_labels = np.repeat(np.arange(n_labels) * 7 + 3, per_label)  # non-contiguous ids
    gallery = rng.normal(size=(len(gallery_labels), dim)).astype(np.float32)
    probe_labels = rng.choice(gallery_labels, size=37)
    # probes near their own gallery entry, so the rates are neither 0 nor 1
    probes = gallery[[np.flatnonzero(gallery_labels == y)[0] for y in probe_labels]]
    probes = (probes + rng.normal(scale=1.2, size=probes.shape)).astype(np.float32)

    metric = ReidentificationRate(torch.from_numpy(gallery), torch.from_numpy(gallery_labels), top_k=(1, 5))
    for sl in _batches(len(probes), 10):
        metric.update(torch.from_numpy(probes[sl]), torch.from_numpy(probe_labels[sl]))
    scores = metric.compute()
    per_sample = metric.per_sample()

    assert per_sample.shape == (37, 2)
    for col, k in enumerate((1, 5)):
        ref = _reid_reference(gallery, gallery_labels, probes, probe_labels, k)
        np.testing.assert_allclose(per_sample[:, col].numpy(), ref, atol=1e-6)
        assert scores[f"top{k}"].item() == pytest.approx(ref.mean(), abs=1e-6)
    assert 0 < scores["top1"] < scores["top5"] < 1
    assert metric.chance(1) == pytest.approx(1 / n_labels)
    assert metric.chance(100) == 1.0


def test_reidentification_exact_copies_and_constant_embeddings():
    gallery = torch.randn(20, 4)
    labels = torch.arange(20)
    metric = ReidentificationRate(gallery, labels, top_k=(1, 5))
    metric.update(gallery * 3.0, labels)  # cosine ignores scale
    assert metric.compute()["top1"].item() == 1.0

    # a recogniser that maps everything to one point is at chance, not perfect
    const = ReidentificationRate(torch.ones(20, 4), labels, top_k=(1, 5))
    const.update(torch.ones(20, 4), labels)
    out = const.compute()
    assert out["top1"].item() == pytest.approx(const.chance(1))
    assert out["top5"].item() == pytest.approx(const.chance(5))


def test_reidentification_rejects_unknown_probe_label():
    metric = ReidentificationRate(torch.randn(5, 3), torch.arange(5))
    with pytest.raises(ValueError, match="absent from the gallery"):
        metric.update(torch.randn(2, 3), torch.tensor([1, 9]))
    with pytest.raises(ValueError, match="probe embeddings"):
        metric.update(torch.randn(2, 4), torch.tensor([1, 2]))


@pytest.mark.parametrize("cls, ref", [
    (IdentitySimilarity, lambda a, b: _cos(a, b)),
    (IdentityDiversity, lambda a, b: 1.0 - _cos(a, b)),
])
def test_pair_metrics_match_reference(cls, ref):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(25, 16)).astype(np.float32)
    b = (a + rng.normal(size=a.shape)).astype(np.float32)
    metric = cls()
    for sl in _batches(25, 7):
        metric.update(torch.from_numpy(a[sl]), torch.from_numpy(b[sl]))
    expected = np.array([ref(x, y) for x, y in zip(a, b)])
    np.testing.assert_allclose(metric.per_sample().numpy(), expected, atol=1e-5)
    assert metric.compute().item() == pytest.approx(expected.mean(), abs=1e-5)


def _dice_reference(pred, target, threshold):
    out = []
    for p, t in zip(pred, target):
        p, t = p >= threshold, t >= 0.5
        total = p.sum() + t.sum()
        out.append(1.0 if total == 0 else 2.0 * np.logical_and(p, t).sum() / total)
    return np.array(out)


def test_lesion_dice_matches_reference():
    rng = np.random.default_rng(2)
    pred = rng.random((9, 1, 8, 8)).astype(np.float32)
    target = (rng.random((9, 1, 8, 8)) > 0.7).astype(np.float32)
    target[0] = 0
    pred[0] = 0.1  # both empty -> 1
    target[1] = 0  # empty target, non-empty prediction -> 0
    pred[2] = 0.0  # empty prediction, non-empty target -> 0
    metric = LesionDice(threshold=0.6)
    for sl in _batches(9, 4):
        metric.update(torch.from_numpy(pred[sl]), torch.from_numpy(target[sl]))
    expected = _dice_reference(pred, target, 0.6)
    assert expected[0] == 1.0 and expected[1] == 0.0 and expected[2] == 0.0
    np.testing.assert_allclose(metric.per_sample().numpy(), expected, atol=1e-6)
    assert metric.compute().item() == pytest.approx(expected.mean(), abs=1e-6)


def test_metrics_reset_and_empty():
    metric = IdentitySimilarity()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert math.isnan(metric.compute().item())
    metric.update(torch.randn(3, 4), torch.randn(3, 4))
    metric.reset()
    assert metric.per_sample().numel() == 0
    with pytest.raises(ValueError, match="same shape"):
        metric.update(torch.randn(3, 4), torch.randn(2, 4))
