"""Naive attack: the harness's clean-trained recogniser (and FaceNet, when its weights are
given) embeds the de-identified test images and searches an enrolment of the test identities.

Two enrolments: *clean* (the first clean image of each person; what the leaderboard showed so
far) and *de-identified* (that image de-identified under other keys: an attacker who collected
de-identified photos of known people). Protocols are those of :mod:`benchmark.scoring`.
"""
from __future__ import annotations

from typing import Callable

from torch import Tensor

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.metrics import IdentitySimilarity
from benchmark.scores import REID_CHANCE, ScoreSpec
from benchmark.scoring import (
    Score, identity_protocol, impostor_similarity, mean_score, pair_protocol,
)


def reid_specs(prefix: str, who: str, *, pair: bool = True, top5: bool = True,
               worst: bool = True, headline: bool = False) -> tuple[ScoreSpec, ...]:
    """Declarations of ``{prefix}_top1/5_identity`` and (``pair``) ``{prefix}_top1/5``."""
    def spec(suffix: str, text: str, **kw) -> ScoreSpec:
        return ScoreSpec(f"{prefix}_{suffix}", f"{who}: {text}", False, digits=1, percent=True,
                         chance=REID_CHANCE, **kw)
    specs = [spec("top1_identity", "identity-protocol top-1 re-identification",
                  worst=worst, headline=headline, frontier=headline)]
    if top5:
        specs.append(spec("top5_identity", "identity-protocol top-5 re-identification"))
    if pair:
        specs.append(spec("top1", "pair-protocol top-1 (own source image)"))
        if top5:
            specs.append(spec("top5", "pair-protocol top-5 (own source image)"))
    return tuple(specs)


def enrolment_attack(ctx: AttackContext, prefix: str, embed: Callable[[Tensor], Tensor],
                     clean_gallery: Tensor, probes: Tensor | None = None
                     ) -> tuple[AttackResult, Tensor]:
    """``embed`` on the de-identified probes against the clean enrolment (``prefix``, both
    protocols) and against a de-identified enrolment under other keys (``prefix_deid``,
    identity protocol); returns the result and the probe embeddings (``probes``, when given,
    are ``embed`` of the de-identified images already)."""
    probes = ctx.embed(embed, ctx.deid) if probes is None else probes
    others = probes if ctx.deid_other is ctx.deid else ctx.embed(embed, ctx.deid_other)
    result, identity = AttackResult(), ctx.test.identity
    runs = ((identity_protocol, prefix, clean_gallery, {}),
            (pair_protocol, prefix, clean_gallery, {}),
            (identity_protocol, f"{prefix}_deid", others, {"top_k": (1,)}))
    for protocol, name, gallery, options in runs:
        scores, chance = protocol(name, gallery, probes, identity, ctx.resamples, ctx.seed,
                                  **options)
        result.scores.update(scores)
        result.chance.update(chance)
    return result, probes


class NaiveAttack(Attack):
    name = "naive"
    description = "clean-trained recogniser; clean and de-identified enrolment"
    scores = (
        *reid_specs("reid", "naive, clean enrolment", headline=True),
        *reid_specs("reid_deid", "naive, de-identified enrolment", pair=False, top5=False),
        *reid_specs("facenet_reid", "naive FaceNet, clean enrolment"),
        *reid_specs("facenet_reid_deid", "naive FaceNet, de-identified enrolment",
                    pair=False, top5=False),
        ScoreSpec("id_similarity", "naive: cosine similarity of a de-identified image to its "
                  "clean source", False, chance="impostor pairs"),
    )

    def run(self, ctx: AttackContext) -> AttackResult:
        ev, identity = ctx.evaluators, ctx.test.identity
        result, probes = enrolment_attack(ctx, "reid", ev.identity.embed, ctx.clean_emb,
                                           ctx.naive_probes())
        similarity = IdentitySimilarity()
        similarity.update(probes, ctx.clean_emb)
        result.scores["id_similarity"] = mean_score(similarity.per_sample(), ctx.resamples,
                                                    ctx.seed, identity)
        result.chance["id_similarity"], genuine = impostor_similarity(ctx.clean_emb, identity)
        result.clean["id_similarity_genuine"] = Score(genuine)
        for protocol in (pair_protocol, identity_protocol):
            clean, _ = protocol("reid", ctx.clean_emb, ctx.clean_emb, identity, ctx.resamples,
                                ctx.seed)
            result.clean.update(clean)
        if ev.facenet is not None:
            gallery = ctx.embed(ev.facenet.embed, ctx.test.float_images())
            facenet, _ = enrolment_attack(ctx, "facenet_reid", ev.facenet.embed, gallery)
            result.scores.update(facenet.scores)
            result.chance.update(facenet.chance)
        return result
