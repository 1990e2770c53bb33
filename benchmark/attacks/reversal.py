"""Reversal attack (cf. Todt et al. 2023, "Fantômas"; SEBA's "deanon" experiment): the attacker
trains a de-anonymiser on (de-identified, original) pairs of its own training faces, applies
it to the de-identified test images, and hands the result to the clean-trained recogniser.

The de-anonymiser is a segmentation-models-pytorch U-Net (random init, ``encoder_weights=None``)
predicting a residual on top of its input, trained with L1 + (1 - SSIM). Scores: its
re-identification (clean enrolment) and the PSNR of the reversed images to the originals.
"""
from __future__ import annotations

import lightning as L
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import (
    peak_signal_noise_ratio, structural_similarity_index_measure,
)

from benchmark.attacks.base import Attack, AttackContext, AttackResult, TrainingPairs
from benchmark.attacks.naive import reid_specs
from benchmark.blinding import stream
from benchmark.evaluators.common import adamw_one_cycle, normalise, train_module
from benchmark.scores import ScoreSpec
from benchmark.scoring import identity_protocol, mean_score, pair_protocol


class Deanonymizer(L.LightningModule):
    """U-Net mapping de-identified faces back to originals (residual output in [0,1])."""

    def __init__(self, encoder: str = "resnet18", encoder_depth: int = 3,
                 decoder_channels: tuple[int, ...] = (64, 32, 16), lr: float = 3e-3,
                 ssim_weight: float = 0.5) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = smp.Unet(encoder, encoder_weights=None, encoder_depth=encoder_depth,
                            decoder_channels=tuple(decoder_channels), classes=3)
        # a zero residual at the start: training begins from "the method changed nothing"
        head = self.net.segmentation_head[0]
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)

    def forward(self, images: Tensor) -> Tensor:
        return (images + self.net(normalise(images))).clamp(0, 1)

    def training_step(self, batch, batch_idx):
        pred, target = self(batch["image"]), batch["target"]
        # a 7x7 window, not the usual 11x11: faces are 32-128 px and the loss runs on a CPU
        ssim = structural_similarity_index_measure(pred, target, data_range=1.0, kernel_size=7,
                                                   sigma=1.0)
        loss = F.l1_loss(pred, target) + self.hparams.ssim_weight * (1 - ssim)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(pred))
        return loss

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.hparams.lr, weight_decay=1e-4)

    @torch.no_grad()
    def reverse(self, images: Tensor) -> Tensor:
        return self(images)


class ReversalAttack(Attack):
    name = "reversal"
    description = "U-Net trained to undo the method, then the clean recogniser"
    needs_train = True
    scores = (
        *reid_specs("reversal", "reversal + clean recogniser", top5=False),
        ScoreSpec("reversal_psnr", "PSNR of reversed test images to their originals (dB)",
                  False, digits=1),
    )

    def run(self, ctx: AttackContext) -> AttackResult:
        cfg = ctx.config.reversal
        deid, source = ctx.deid_train(1)
        if cfg.max_pairs is not None and cfg.max_pairs < len(source):
            keep = torch.randperm(len(source), generator=stream(cfg.seed, "reversal pairs"))
            deid, source = deid[keep[:cfg.max_pairs]], source[keep[:cfg.max_pairs]]
        data = TrainingPairs(ctx.batch_size, cfg.seed, image=deid,
                             target=ctx.train["image"][source].float() / 255.0)
        net = Deanonymizer(cfg.encoder, cfg.encoder_depth, tuple(cfg.decoder_channels), cfg.lr,
                           cfg.ssim_weight)
        net = train_module(net, data, epochs=cfg.epochs, seed=cfg.seed,
                           trainer_kwargs=ctx.trainer()).to(ctx.device).eval()
        reversed_ = ctx.embed(net.reverse, ctx.deid)
        probes = ctx.embed(ctx.evaluators.identity.embed, reversed_)
        result, identity = AttackResult(), ctx.test.identity
        for protocol in (identity_protocol, pair_protocol):
            scores, chance = protocol("reversal", ctx.clean_emb, probes, identity,
                                      ctx.resamples, ctx.seed)
            result.scores.update({k: v for k, v in scores.items() if "top5" not in k})
            result.chance.update({k: v for k, v in chance.items() if "top5" not in k})
        psnr = peak_signal_noise_ratio(reversed_, ctx.test.float_images(), data_range=1.0,
                                       reduction="none", dim=(1, 2, 3))
        result.scores["reversal_psnr"] = mean_score(psnr, ctx.resamples, ctx.seed, identity)
        result.grid["reversed"] = reversed_[ctx.grid_rows]
        return result
