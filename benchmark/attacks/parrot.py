"""Parrot attack (Newton, Sweeney & Malin, IEEE TKDE 2005): the attacker runs the method on its
own training faces and trains a recogniser on the *de-identified* faces, so it learns what
identity survives the method. Architecture, loss and augmentation are the harness's identity
recogniser's (:func:`benchmark.evaluators.identity.identity_recognizer`), trained afresh with
the attacker's own seed; keyed methods get several fresh keys per training image.

Scored against a clean enrolment (``parrot``: the parrot embeds clean enrolment images and
de-identified probes) and against a de-identified enrolment (``parrot_deid``).
"""
from __future__ import annotations

from benchmark.attacks.base import Attack, AttackContext, AttackResult, TrainingPairs
from benchmark.attacks.naive import enrolment_attack, reid_specs
from benchmark.evaluators.common import train_module
from benchmark.evaluators.identity import identity_recognizer


class ParrotAttack(Attack):
    name = "parrot"
    description = "recogniser retrained on the method's output for the training split"
    needs_train = True
    scores = (*reid_specs("parrot", "parrot, clean enrolment"),
              *reid_specs("parrot_deid", "parrot, de-identified enrolment", pair=False,
                          top5=False))

    def run(self, ctx: AttackContext) -> AttackResult:
        cfg = ctx.config.parrot
        deid, source = ctx.deid_train(cfg.keys_per_image)
        identities = ctx.train["identity"][source]
        data = TrainingPairs(ctx.batch_size, cfg.seed, image=deid,
                             landmarks=ctx.train["landmarks"][source], identity=identities)
        recogniser = identity_recognizer(ctx.evaluator_config.identity,
                                         sorted(set(identities.tolist())))
        # several keys per image are several views of one epoch's faces: same number of steps
        epochs = max(1, round(cfg.epochs / (len(source) / len(ctx.train["image"]))))
        recogniser = train_module(recogniser, data, epochs=epochs, seed=cfg.seed,
                                  trainer_kwargs=ctx.trainer()).to(ctx.device).eval()
        gallery = ctx.embed(recogniser.embed, ctx.test.float_images())
        result, _ = enrolment_attack(ctx, "parrot", recogniser.embed, gallery)
        return result
