"""Lesion segmenter evaluator: is the lesion still where it was after de-identification?"""
from __future__ import annotations

import lightning as L
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmark.evaluators.common import adamw_one_cycle, normalise


class LesionSegmenter(L.LightningModule):
    """U-Net (Ronneberger et al., MICCAI 2015) from segmentation-models-pytorch with an
    untrained encoder (``encoder_weights=None``), trained on clean MeMa-Seg training rows
    with Dice + BCE."""

    def __init__(self, encoder: str = "resnet18", encoder_depth: int = 4,
                 decoder_channels: tuple[int, ...] = (128, 64, 32, 16), lr: float = 3e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = smp.Unet(
            encoder_name=encoder, encoder_weights=None, encoder_depth=encoder_depth,
            decoder_channels=list(decoder_channels), in_channels=3, classes=1,
        )
        self.dice_loss = smp.losses.DiceLoss(mode="binary", from_logits=True)

    def forward(self, images: Tensor) -> Tensor:
        """Lesion logits ``[B,1,H,W]``."""
        return self.net(normalise(images))

    def _loss(self, batch) -> tuple[Tensor, Tensor]:
        logits = self(batch["image"])
        mask = batch["mask"].float()
        loss = self.dice_loss(logits, mask) + F.binary_cross_entropy_with_logits(logits, mask)
        pred = (logits > 0).float()
        dice = (2 * (pred * mask).sum() + 1) / (pred.sum() + mask.sum() + 1)
        return loss, dice

    def training_step(self, batch, batch_idx):
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(batch["image"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, dice = self._loss(batch)
        self.log_dict({"val_loss": loss, "val_dice": dice}, prog_bar=True,
                      batch_size=len(batch["image"]))

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.hparams.lr, weight_decay=1e-4)

    @torch.no_grad()
    def predict(self, images: Tensor) -> Tensor:
        """Lesion probabilities ``[B,1,H,W]``."""
        return self(images).sigmoid()
