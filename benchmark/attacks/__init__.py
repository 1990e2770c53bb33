"""Attacks on a de-identification method under a knowing attacker (docs/threat_model.md).

One module per attack; each declares its scores (:mod:`benchmark.scores`). ``ATTACKS`` is the
registry in run order; ``--attacks`` picks from its keys.
"""
from __future__ import annotations

from benchmark.attacks.attribute_floor import AttributeFloor
from benchmark.attacks.base import Attack, AttackCache, AttackContext, AttackResult, TestSet
from benchmark.attacks.dlib_recognizer import DlibAttack
from benchmark.attacks.linkage import LinkageAttack
from benchmark.attacks.naive import NaiveAttack
from benchmark.attacks.parrot import ParrotAttack
from benchmark.attacks.reversal import ReversalAttack
from benchmark.attacks.storage import StorageAttack
from benchmark.attacks.wrong_key import WrongKeyAttack

ATTACKS: dict[str, Attack] = {a.name: a for a in (
    NaiveAttack(), ParrotAttack(), ReversalAttack(), LinkageAttack(), StorageAttack(),
    WrongKeyAttack(), AttributeFloor(), DlibAttack())}

__all__ = ["ATTACKS", "Attack", "AttackCache", "AttackContext", "AttackResult", "TestSet",
           "parse_attacks"]


def parse_attacks(text: str | None) -> list[str]:
    """``--attacks`` value to attack names in run order: comma-separated names, where ``all``
    (also the default, None) stands for every default attack; opt-in ones (``dlib``) must be
    named, e.g. ``all,dlib``."""
    requested = [n.strip() for n in (text or "all").split(",") if n.strip()]
    unknown = [n for n in requested if n != "all" and n not in ATTACKS]
    if unknown:
        raise ValueError(f"--attacks: unknown attack(s) {unknown}; choose from "
                         f"{['all', *ATTACKS]}")
    chosen = set(requested)
    if "all" in chosen:
        chosen |= {name for name, attack in ATTACKS.items() if attack.default}
    return [name for name in ATTACKS if name in chosen]
