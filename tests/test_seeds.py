"""Run seeds: --seeds expands into one run per seed, and each run seed retrains the evaluators
and attackers with seeds of their own (seed 0 keeps the declared ones)."""
from __future__ import annotations

import argparse
import dataclasses

import pytest

from benchmark.profiles import get_profile
from benchmark.sweep import expand_runs, parse_seeds


def _seeds(config) -> list[int]:
    """Every ``seed`` field of a nested config dataclass."""
    found = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "seed":
            found.append(value)
        elif dataclasses.is_dataclass(value):
            found += _seeds(value)
    return found


def test_run_seed_zero_keeps_the_declared_seeds_and_others_spawn_new_ones():
    quick = get_profile("quick")
    assert quick.for_seed(0) == quick
    one, two = quick.for_seed(1), quick.for_seed(2)
    declared = _seeds(quick.evaluators) + _seeds(quick.attacks)
    for other in (one, two):
        spawned = _seeds(other.evaluators) + _seeds(other.attacks)
        assert len(spawned) == len(declared) and not set(spawned) & set(declared)
        assert len(set(spawned)) == len(spawned)  # independent streams, no two alike
    assert _seeds(one.evaluators) != _seeds(two.evaluators)
    assert one.evaluators.digest() != quick.evaluators.digest()  # its own evaluator cache
    assert quick.for_seed(1) == one  # deterministic


def test_seeds_times_sweep_points():
    args = argparse.Namespace(method="blur", seed=0, seeds="0,2", sweep="blur.sigma=1,4")
    runs = expand_runs(args)
    assert [(r.run_name, r.seed) for r in runs] == [
        ("blur[sigma=1]", 0), ("blur[sigma=1]", 2), ("blur[sigma=4]", 0), ("blur[sigma=4]", 2)]
    assert [r.seed for r in expand_runs(argparse.Namespace(method="blur", seed=5, seeds=None,
                                                           sweep=None))] == [5]


@pytest.mark.parametrize("bad", ["", "a,b", "0,-1", "1,1"])
def test_bad_seed_lists_are_refused(bad):
    with pytest.raises(ValueError, match="--seeds"):
        parse_seeds(bad)
