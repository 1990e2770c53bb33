"""Attribute floor: the re-identification an attacker gets from the attributes a
utility-preserving method must keep — diagnosis label, signs, age and sex — matched exactly
against the enrolment (identity protocol; ties broken at random). No method that keeps the
diagnosis can go below it, so it is a reference row beside chance, not an attack on the
method: it is the same for every method and does not enter ``reid_worst``."""
from __future__ import annotations

import torch.nn.functional as F

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.scores import REID_CHANCE, ScoreSpec
from benchmark.scoring import identity_protocol


class AttributeFloor(Attack):
    name = "attribute_floor"
    description = "re-identification from the kept diagnosis, age and sex alone (reference)"
    scores = (ScoreSpec("attribute_floor_top1_identity", "identity-protocol top-1 from label, "
                        "signs, age and sex alone", None, digits=1, percent=True,
                        chance=REID_CHANCE),)

    def run(self, ctx: AttackContext) -> AttackResult:
        # one-hot of the attribute combination: cosine 1 for an exact match, 0 otherwise
        combos = F.one_hot(ctx.test.attributes).float()
        scores, chance = identity_protocol("attribute_floor", combos, combos, ctx.test.identity,
                                           ctx.resamples, ctx.seed, top_k=(1,))
        return AttackResult(scores, chance)
