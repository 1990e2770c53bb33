"""Conditions of the generator: what a face should show (disease, signs) and who it is
(age, sex), encoded as one vector; and the sampling plan of a build.

A condition vector is ``[one-hot label | multi-hot signs | age/100, age known | F, M | 1]``;
the all-zero vector is the "no condition" input of classifier-free guidance (the trailing 1
tells a real condition from it even for an unknown age and sex).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..layout import Classes, split_signs


@dataclass(frozen=True)
class ConditionSpace:
    classes: list[str]
    signs: list[str]

    @classmethod
    def of(cls, names: Classes) -> "ConditionSpace":
        return cls(list(names.classes), list(names.signs))

    @property
    def dim(self) -> int:
        return len(self.classes) + len(self.signs) + 5

    def encode(self, labels: list[str], signs: list[str], ages, sexes) -> Tensor:
        """``[N, dim]`` condition vectors from label names, ``;``-joined sign names, ages
        (number or empty) and sexes (``F``/``M``/empty)."""
        c, s = len(self.classes), len(self.signs)
        sign_index = {name: i for i, name in enumerate(self.signs)}
        out = torch.zeros(len(labels), self.dim)
        for i, (label, text, age, sex) in enumerate(zip(labels, signs, ages, sexes)):
            out[i, self.classes.index(label)] = 1.0
            for sign in split_signs(text):
                out[i, c + sign_index[sign]] = 1.0
            years = pd.to_numeric(age, errors="coerce")
            if np.isfinite(years):
                out[i, c + s], out[i, c + s + 1] = float(years) / 100.0, 1.0
            if sex in ("F", "M"):
                out[i, c + s + 2 + ("F", "M").index(sex)] = 1.0
            out[i, -1] = 1.0
        return out


def sampling_plan(source: pd.DataFrame, space: ConditionSpace, per_condition: int,
                  images_per_identity: int, rng: np.random.Generator) -> pd.DataFrame:
    """One row per face to generate: ``person``, ``label``, ``signs``, ``age``, ``sex``.

    Each class gets ``per_condition`` faces; the fine-grained signs of a face are the signs of a
    random source photo of that class (their empirical joint distribution), and each generated
    person takes the age and sex of a random source person (the empirical P(age, sex)). The
    conditions are shuffled over people, so a person's photos show different conditions, as in
    MeMa-Synth. ``source`` is the training rows of the source ``metadata.csv``.
    """
    present = [c for c in space.classes if (source["label"] == c).any()]
    if not present:
        raise ValueError("the source training split has no labelled rows")
    labels = np.repeat(np.array(present, dtype=object), per_condition)
    labels = labels[rng.permutation(len(labels))]
    signs = [source["signs"].values[rng.choice(np.flatnonzero(source["label"].values == label))]
             for label in labels]
    people = source.drop_duplicates("identity")
    n_people = -(-len(labels) // images_per_identity)
    drawn = people.iloc[rng.integers(0, len(people), n_people)]
    person = np.arange(len(labels)) // images_per_identity
    return pd.DataFrame(dict(
        person=person, label=labels, signs=signs,
        age=drawn["age"].values[person], sex=drawn["sex"].values[person],
    ))
