"""Storage (reversible methods): a user recovers from a *file*, not from the float tensor the
method returned. The de-identified test images go through 8-bit PNG (lossless, so exactly an
8-bit quantisation) and JPEG (quality from the profile, 90 by default), are decoded and
recovered with the right keys. ``recovery_psnr``/``recovery_ssim`` — the headline — are the
PNG ones; the float-tensor recovery is kept as ``recovery_psnr_float`` for comparison.
Recovered re-identification (clean recogniser, identity protocol) says whether the recovered
face is the right person again: higher is better here.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio, structural_similarity_index_measure,
)
from torchvision.io import decode_jpeg, decode_png, encode_jpeg, encode_png

from benchmark.attacks.base import Attack, AttackContext, AttackResult
from benchmark.metrics import IdentitySimilarity
from benchmark.scores import REID_CHANCE, ScoreSpec
from benchmark.scoring import identity_protocol, mean_score

#: PSNR of an exact recovery (infinite) is reported as this
PSNR_CAP_DB = 100.0


def through_file(images: Tensor, codec: str, quality: int = 90) -> Tensor:
    """``images`` [N,3,H,W] in [0,1] encoded as 8-bit ``png`` or ``jpeg`` and decoded."""
    out = torch.empty_like(images)
    for i, image in enumerate(images):
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8)
        if codec == "png":
            decoded = decode_png(encode_png(pixels))
        else:
            decoded = decode_jpeg(encode_jpeg(pixels, quality=quality))
        out[i] = decoded.float() / 255.0
    return out


def _specs(suffix: str, where: str, headline: bool) -> tuple[ScoreSpec, ...]:
    return (
        ScoreSpec(f"recovery_psnr{suffix}", f"recovery PSNR with the right key, {where} (dB)",
                  True, digits=1, headline=headline),
        ScoreSpec(f"recovery_ssim{suffix}", f"recovery SSIM with the right key, {where}", True,
                  headline=headline),
    )


class StorageAttack(Attack):
    name = "storage"
    description = "recovery after 8-bit PNG and JPEG storage (reversible methods)"
    scores = (
        *_specs("", "from an 8-bit PNG", True),
        *_specs("_jpeg", "from a JPEG", False),
        *_specs("_float", "from the float tensor", False),
        ScoreSpec("recovery_id_similarity", "cosine of recovered (PNG) and clean embeddings",
                  True),
        ScoreSpec("recovery_reid_top1_identity", "recovered (PNG) faces re-identified "
                  "(identity protocol, clean recogniser)", True, digits=1, percent=True,
                  chance=REID_CHANCE),
        ScoreSpec("recovery_reid_jpeg_top1_identity", "recovered (JPEG) faces re-identified",
                  True, digits=1, percent=True, chance=REID_CHANCE),
    )

    def applies(self, ctx: AttackContext) -> bool:
        return ctx.reversible

    def run(self, ctx: AttackContext) -> AttackResult:
        originals, identity = ctx.test.float_images(), ctx.test.identity
        quality = ctx.config.storage.jpeg_quality
        result = AttackResult()
        for suffix, stored in (("", through_file(ctx.deid, "png")),
                               ("_jpeg", through_file(ctx.deid, "jpeg", quality)),
                               ("_float", ctx.deid)):
            recovered = ctx.method.recover(stored, ctx.right_keys, reference=originals)
            psnr = peak_signal_noise_ratio(recovered, originals, data_range=1.0,
                                           reduction="none", dim=(1, 2, 3))
            ssim = structural_similarity_index_measure(recovered, originals, data_range=1.0,
                                                       reduction="none")
            # exact recovery has infinite PSNR; capping keeps means and intervals finite
            result.scores[f"recovery_psnr{suffix}"] = mean_score(
                psnr.clamp(max=PSNR_CAP_DB), ctx.resamples, ctx.seed, identity)
            result.scores[f"recovery_ssim{suffix}"] = mean_score(ssim, ctx.resamples, ctx.seed,
                                                                 identity)
            if suffix == "_float":
                continue
            embedded = ctx.embed(ctx.evaluators.identity.embed, recovered)
            scores, chance = identity_protocol(f"recovery_reid{suffix}", ctx.clean_emb,
                                               embedded, identity, ctx.resamples, ctx.seed,
                                               top_k=(1,))
            result.scores.update(scores)
            result.chance.update(chance)
            if suffix == "":
                similarity = IdentitySimilarity()
                similarity.update(embedded, ctx.clean_emb)
                result.scores["recovery_id_similarity"] = mean_score(
                    similarity.per_sample(), ctx.resamples, ctx.seed, identity)
                result.grid["recovered (PNG)"] = recovered[ctx.grid_rows]
        return result
