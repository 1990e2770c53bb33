"""Score declarations: each score family states once what its scores are called, which way is
better, what their chance level is and how many digits they deserve; the run summary, the CSV
columns, the Markdown formatting and the frontier axes are derived from these declarations
(DESIGN.md §4, the torchmetrics habit of keeping ``higher_is_better`` on the metric).

A family is anything with a ``name`` and a ``scores`` tuple of :class:`ScoreSpec`: the attacks
of :mod:`benchmark.attacks`, and the utility, naturalness and cost families declared here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ScoreSpec:
    """One score column.

    ``higher_is_better`` is seen from the de-identifier's side (re-identification: False);
    None for references that are neither (the attribute floor). ``percent`` scores are rates
    in [0,1] shown as percentages. ``chance`` says what the chance level beside the score is
    (its value depends on the data and is stored in each run record). ``headline`` scores are
    the compact Markdown table's columns. ``worst`` marks identity-protocol top-1 rates of an
    attack on the de-identified images: ``reid_worst`` is their maximum. ``frontier`` scores
    are the privacy axes of the frontier plot.
    """

    name: str
    description: str
    higher_is_better: bool | None
    digits: int = 3
    percent: bool = False
    chance: str | None = None
    headline: bool = False
    worst: bool = False
    #: a privacy axis of the frontier plot (against disease accuracy)
    frontier: bool = False

    def format(self, value: Any, low: Any = None, high: Any = None) -> str:
        """``value [low, high]`` with the declared digits; an en dash when undefined."""
        if not _defined(value):
            return "–"
        scale = 100.0 if self.percent else 1.0
        text = f"{scale * value:.{self.digits}f}"
        if _defined(low) and _defined(high):
            text += f" [{scale * low:.{self.digits}f}, {scale * high:.{self.digits}f}]"
        return text


def _defined(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


@dataclass(frozen=True)
class ScoreFamily:
    name: str
    description: str
    scores: tuple[ScoreSpec, ...]


REID_CHANCE = "random guessing: k / gallery identities"

#: the privacy column of the leaderboard, derived from every attack's ``worst`` scores
PRIVACY = ScoreFamily("privacy", "worst case over attacks", (
    ScoreSpec("reid_worst", "highest identity-protocol top-1 re-identification over all attacks",
              False, digits=1, percent=True, chance=REID_CHANCE, headline=True, frontier=True),
))
UTILITY = ScoreFamily("utility", "clean-trained evaluators on de-identified test images", (
    ScoreSpec("accuracy", "disease accuracy", True, digits=1, percent=True,
              chance="majority class", headline=True),
    ScoreSpec("macro_f1", "disease macro-F1", True, digits=1, percent=True, headline=True),
    ScoreSpec("sign_f1", "fine-grained sign macro-F1", True, digits=1, percent=True,
              headline=True),
    ScoreSpec("kappa", "Cohen's kappa, clean vs de-identified diagnosis", True, headline=True),
    ScoreSpec("dice", "lesion Dice (MeMa-Seg rows)", True, headline=True),
))
NATURALNESS = ScoreFamily("naturalness", "de-identified vs clean image statistics", (
    ScoreSpec("kid", "kernel inception distance on features of the suite-trained recogniser "
              "(x1000)", False, digits=2, headline=True),
))
COST = ScoreFamily("cost", "speed of anonymize()", (
    ScoreSpec("images_per_s", "images per second of anonymize()", True, digits=0,
              headline=True),
))


def families() -> list:
    """Every score family in table order: privacy, the attacks, utility, naturalness, cost."""
    from benchmark.attacks import ATTACKS  # the attacks import this module

    return [PRIVACY, *ATTACKS.values(), UTILITY, NATURALNESS, COST]


def declared() -> dict[str, ScoreSpec]:
    """Every declared score by name, in table order."""
    return {spec.name: spec for family in families() for spec in family.scores}


def family_of(score: str) -> str | None:
    """Name of the family (attack) that declares ``score``."""
    return next((f.name for f in families() for spec in f.scores if spec.name == score), None)


def frontier_axes() -> list[tuple[str, str]]:
    """``(score, axis label)`` of the frontier panels: the attacks' (the naive one) first,
    the worst case last."""
    ordered = [*families()[1:], PRIVACY]
    return [(spec.name, f"{family.name}: {spec.name}") for family in ordered
            for spec in family.scores if spec.frontier]


def worst_case_names() -> list[str]:
    return [spec.name for spec in declared().values() if spec.worst]


def summary_lines(record: dict) -> list[str]:
    """One line per family that has scores in ``record``: ``name  value [ci] (chance c)``."""
    scores, chance = record["scores"], record.get("chance", {})
    lines = []
    for family in families():
        cells = []
        for spec in family.scores:
            score = scores.get(spec.name)
            if not score or not _defined(score.get("value")):
                continue
            text = f"{spec.name} {spec.format(score['value'], score.get('ci_low'), score.get('ci_high'))}"
            if spec.name in chance and _defined(chance[spec.name]):
                text += f" (chance {spec.format(chance[spec.name])})"
            cells.append(text)
        if cells:
            lines.append(f"  {family.name:<16} " + "; ".join(cells))
    return lines
