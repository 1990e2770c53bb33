"""Percentile bootstrap confidence intervals (Efron & Tibshirani 1993, ch. 13).

Every score of the suite carries an interval: resample the test set with replacement, recompute
the score on each resample, and take the ``(1-level)/2`` and ``(1+level)/2`` percentiles.

Test images cluster by person (MeMa-Synth has several photos per identity), and photos of one
person succeed or fail together; resampling images one by one then treats them as independent
and gives intervals that are too narrow. With ``clusters`` (one identity id per sample) the
bootstrap resamples *identities* and keeps each drawn identity's samples together, the cluster
bootstrap (Davison & Hinkley 1997, §3.8). A resample is a weight per sample: how often its
unit (the sample itself, or its cluster) was drawn.

:func:`bootstrap_ci` takes any statistic of a resample (macro-F1, kappa, ...);
:func:`bootstrap_mean_ci` is the vectorised fast path for means of per-sample values. Both draw
the same resamples for the same ``n``, ``clusters``, ``n_resamples`` and ``seed``, so intervals
of different scores of one run are computed on the same resamples.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import Tensor

#: resamples drawn per chunk, to bound memory at ``chunk * n`` weights
_CHUNK = 256


def _check(n: int, n_resamples: int, level: float) -> None:
    if n < 1:
        raise ValueError(f"bootstrap: need at least one test sample, got n={n}")
    if n_resamples < 1:
        raise ValueError(f"bootstrap: n_resamples must be positive, got {n_resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"bootstrap: level must lie in (0,1), got {level}")


def resample_weights(n: int, n_resamples: int, seed: int, clusters: Tensor | None = None
                     ) -> Iterator[Tensor]:
    """Yield ``[chunk, n]`` float64 weights, how often each sample is drawn in each resample;
    the same sequence for the same arguments. With ``clusters [n]``, the units drawn are the
    distinct cluster ids and a sample weighs as often as its cluster was drawn."""
    if clusters is None:
        units, unit_of = n, torch.arange(n)
    else:
        if clusters.shape != (n,):
            raise ValueError(f"bootstrap: clusters must be [{n}], got {tuple(clusters.shape)}")
        _, unit_of = torch.unique(clusters.cpu(), return_inverse=True)
        units = int(unit_of.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        drawn = torch.randint(units, (size, units), generator=gen)
        counts = torch.zeros(size, units, dtype=torch.float64)
        counts.scatter_add_(1, drawn, torch.ones_like(drawn, dtype=torch.float64))
        yield counts[:, unit_of]


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
    clusters: Tensor | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over ``n`` test samples.

    ``statistic(indices)`` receives a LongTensor of sample indices (drawn with replacement;
    with ``clusters``, whole clusters) and returns the score recomputed on those samples.
    Returns ``(low, high)``; ``(nan, nan)`` if the statistic is NaN on every resample.
    """
    _check(n, n_resamples, level)
    positions = torch.arange(n)
    stats = [float(statistic(torch.repeat_interleave(positions, w.long())))
             for chunk in resample_weights(n, n_resamples, seed, clusters) for w in chunk]
    low, high = percentile_interval(torch.tensor(stats, dtype=torch.float64), level)
    return float(low), float(high)


def bootstrap_mean_ci(
    values: Tensor,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    clusters: Tensor | None = None,
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
    vals = values.detach().cpu().to(torch.float64)
    columns = vals if vals.ndim == 2 else vals[:, None]
    means = torch.cat([(w @ columns) / w.sum(1, keepdim=True)
                       for w in resample_weights(n, n_resamples, seed, clusters)])
    low, high = percentile_interval(means, level)
    if values.ndim == 1:
        return float(low[0]), float(high[0])
    return low, high
