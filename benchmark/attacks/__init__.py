"""Attacks on a de-identification method under a knowing attacker (docs/threat_model.md).

One module per attack; each declares its scores (:mod:`benchmark.scores`). ``ATTACKS`` is the
registry in run order; ``--attacks`` picks from its keys.
"""
from __future__ import annotations

from benchmark.attacks.attribute_floor import AttributeFloor
from benchmark.attacks.base import Attack, AttackCache, AttackContext, AttackResult, TestSet
from benchmark.attacks.linkage import LinkageAttack
from benchmark.attacks.naive import NaiveAttack
from benchmark.attacks.parrot import ParrotAttack
from benchmark.attacks.reversal import ReversalAttack
from benchmark.attacks.storage import StorageAttack
from benchmark.attacks.wrong_key import WrongKeyAttack

ATTACKS: dict[str, Attack] = {a.name: a for a in (
    NaiveAttack(), ParrotAttack(), ReversalAttack(), LinkageAttack(), StorageAttack(),
    WrongKeyAttack(), AttributeFloor())}

__all__ = ["ATTACKS", "Attack", "AttackCache", "AttackContext", "AttackResult", "TestSet",
           "parse_attacks"]


def parse_attacks(text: str | None) -> list[str]:
    """``--attacks`` value (comma-separated names, or ``all``/None) to attack names."""
    if text is None or text.strip() in ("", "all"):
        return list(ATTACKS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise ValueError(f"--attacks: unknown attack(s) {unknown}; choose from {list(ATTACKS)}")
    return names
