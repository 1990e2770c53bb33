"""Wrong key (reversible methods): the attacker recovers the de-identified test images with
keys it drew itself, and the clean recogniser tries to re-identify the result — pair protocol
(own source image) and identity protocol (clean enrolment)."""
from __future__ import annotations

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.attacks.naive import reid_specs
from benchmark.blinding import draw_keys, stream
from benchmark.scoring import identity_protocol, pair_protocol


class WrongKeyAttack(Attack):
    name = "wrong_key"
    description = "recovery with keys the attacker drew (reversible methods)"
    scores = reid_specs("wrongkey_reid", "recovered with a wrong key", top5=False)

    def applies(self, ctx: AttackContext) -> bool:
        return ctx.reversible

    def run(self, ctx: AttackContext) -> AttackResult:
        keys = draw_keys(len(ctx.deid), ctx.key_bits, stream(ctx.seed, "wrong keys"))
        recovered = ctx.method.recover(ctx.deid, keys, reference=ctx.deid)
        probes = ctx.embed(ctx.evaluators.identity.embed, recovered)
        result = AttackResult()
        for protocol in (pair_protocol, identity_protocol):
            scores, chance = protocol("wrongkey_reid", ctx.clean_emb, probes, ctx.test.identity,
                                      ctx.resamples, ctx.seed)
            result.scores.update({k: v for k, v in scores.items() if "top5" not in k})
            result.chance.update({k: v for k, v in chance.items() if "top5" not in k})
        result.grid["wrong-key recovered"] = recovered[ctx.grid_rows]
        return result
