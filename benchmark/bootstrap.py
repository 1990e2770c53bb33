"""Percentile bootstrap confidence intervals over test images (Efron & Tibshirani 1993, ch. 13).

Every score of the suite carries an interval: resample the ``n`` test images with replacement,
recompute the score on each resample, and take the ``(1-level)/2`` and ``(1+level)/2``
percentiles. :func:`bootstrap_ci` takes any statistic of a resample (macro-F1, kappa, ...);
:func:`bootstrap_mean_ci` is the vectorised fast path for scores that are means of per-sample
values (re-identification, similarity, Dice, ...: the ``per_sample()`` of
:mod:`benchmark.metrics`). Both draw the same resamples for the same ``n``, ``n_resamples`` and
``seed``, so intervals of different scores of one run are computed on the same resamples.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

#: resamples drawn per chunk, to bound memory at ``chunk * n`` indices
_CHUNK = 256


def _check(n: int, n_resamples: int, level: float) -> None:
    if n < 1:
        raise ValueError(f"bootstrap: need at least one test sample, got n={n}")
    if n_resamples < 1:
        raise ValueError(f"bootstrap: n_resamples must be positive, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap: level must lie in (0,1), got {level}")


def resample_indices(n: int, n_resamples: int, seed: int, device=None) -> Iterator[Tensor]:
    """Yield ``[chunk, n]`` index tensors; the same sequence for the same arguments."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        yield torch.randint(n, (size, n), generator=gen).to(device)


def percentile_interval(stats: Tensor, level: float) -> tuple[Tensor, Tensor]:
    # resamples whose statistic is undefined (NaN) are dropped rather than poisoning the CI
    alpha = (1.0 - level) / 2
    q = torch.tensor([alpha, 1.0 - alpha], dtype=stats.dtype, device=stats.device)
    low, high = torch.nanquantile(stats, q, dim=0)
    return low, high


def bootstrap_ci(
    statistic: Callable[[Tensor], float],
    n: int,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` test samples.

    ``statistic(indices)`` receives a LongTensor ``[n]`` of sample indices (drawn with
    replacement) and returns the score recomputed on those samples. Returns ``(low, high)``;
    ``(nan, nan)`` if the statistic is NaN on every resample.
    """
    _check(n, n_resamples, level)
    stats = [float(statistic(idx)) for chunk in resample_indices(n, n_resamples, seed) for idx in chunk]
    low, high = percentile_interval(torch.tensor(stats, dtype=torch.float64), level)
    return float(low), float(high)


def bootstrap_mean_ci(
    values: Tensor,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | tuple[Tensor, Tensor]:
    """Percentile bootstrap interval of the mean of per-sample ``values``.

    ``values`` ``[N]`` gives ``(low, high)`` floats; ``[N,K]`` (e.g. top-1 and top-5
    re-identification per probe) gives two ``[K]`` tensors, one interval per column, all
    columns resampled together. Same resamples as :func:`bootstrap_ci` with equal arguments.
    """
    if values.ndim not in (1, 2):
        raise ValueError(f"bootstrap_mean_ci: values must be [N] or [N,K], got {tuple(values.shape)}")
    n = values.shape[0]
    _check(n, n_resamples, level)
    vals = values.detach().to(torch.float64)
    means = torch.cat(
        [vals[idx].mean(dim=1) for idx in resample_indices(n, n_resamples, seed, vals.device)]
    )
    low, high = percentile_interval(means, level)
    if values.ndim == 1:
        return float(low), float(high)
    return low.cpu(), high.cpu()

