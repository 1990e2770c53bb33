"""Linkage attack: can de-identified images of one person be linked to each other, without
any clean photo? The clean-trained recogniser embeds de-identified images only.

- *photos* (``linkage``): the first de-identified image of each person is enrolled, the
  person's other de-identified images probe it (identity protocol, the same key for all);
- *keys* (keyed methods, ``linkage_key``): the same image under two keys — probes under the
  right keys search all test images under other keys (pair protocol); and the key diversity,
  how far apart the two versions embed (cf. RiDDLE, Li et al. CVPR 2023).
"""
from __future__ import annotations

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.attacks.naive import reid_specs
from benchmark.metrics import IdentityDiversity
from benchmark.scores import REID_CHANCE, ScoreSpec
from benchmark.scoring import identity_protocol, mean_score, pair_protocol


class LinkageAttack(Attack):
    name = "linkage"
    description = "de-identified images linked to each other (same person; same image, two keys)"
    scores = (
        *reid_specs("linkage", "linkage of a person's de-identified photos", pair=False,
                    top5=False),
        ScoreSpec("linkage_key_top1", "linkage of one image under two keys (pair top-1)", False,
                  digits=1, percent=True, chance=REID_CHANCE),
        ScoreSpec("key_diversity", "1 - cosine of one image's embeddings under two keys", True),
    )

    def run(self, ctx: AttackContext) -> AttackResult:
        embed, identity = ctx.evaluators.identity.embed, ctx.test.identity
        probes = ctx.naive_probes()
        result = AttackResult()
        scores, chance = identity_protocol("linkage", probes, probes, identity, ctx.resamples,
                                           ctx.seed, top_k=(1,))
        result.scores.update(scores)
        result.chance.update(chance)
        if ctx.key_bits:
            others = ctx.embed(embed, ctx.deid_other)
            scores, chance = pair_protocol("linkage_key", others, probes, identity,
                                           ctx.resamples, ctx.seed)
            result.scores["linkage_key_top1"] = scores["linkage_key_top1"]
            result.chance["linkage_key_top1"] = chance["linkage_key_top1"]
            diversity = IdentityDiversity()
            diversity.update(probes, others)
            result.scores["key_diversity"] = mean_score(diversity.per_sample(), ctx.resamples,
                                                        ctx.seed, identity)
        return result
