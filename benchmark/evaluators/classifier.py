"""Disease classifier evaluator: does a de-identified face still show its diagnosis?"""
from __future__ import annotations

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.evaluators.common import adamw_one_cycle, normalise
from data.regions import periocular_crop


class DiseaseClassifier(L.LightningModule):
    """A timm backbone (``pretrained=False``) on a landmark-aligned periocular crop, with a
    coarse-disease head (softmax) and a fine-grained sign head (multi-label, sigmoid), trained
    on clean training images only."""

    def __init__(self, num_classes: int, num_signs: int, backbone: str = "resnet18",
                 lr: float = 3e-3, channels: tuple[int, ...] | None = None,
                 crop_size: tuple[int, int] = (48, 96), jitter: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        options = {"channels": tuple(channels)} if channels else {}
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0,
                                          global_pool="", **options)
        # pooling to 1x2 instead of 1x1 keeps the left and right eye apart: laterality is
        # part of the sign labels
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d((1, 2)), nn.Flatten(), nn.Dropout(0.2))
        features = 2 * self.backbone.num_features
        self.coarse_head = nn.Linear(features, num_classes)
        self.sign_head = nn.Linear(features, max(num_signs, 1))

    def forward(self, images: Tensor, landmarks: Tensor, jitter: float = 0.0
                ) -> tuple[Tensor, Tensor]:
        """Returns ``(coarse logits [B,C], sign logits [B,S])``."""
        crops = periocular_crop(images, landmarks, self.hparams.crop_size, jitter)
        features = self.pool(self.backbone(normalise(crops)))
        return self.coarse_head(features), self.sign_head(features)[:, : self.hparams.num_signs]

    def _loss(self, batch, augment: bool) -> tuple[Tensor, Tensor]:
        jitter = self.hparams.jitter if augment else 0.0
        logits, sign_logits = self(batch["image"], batch["landmarks"], jitter)
        loss = F.cross_entropy(logits, batch["label"])
        if self.hparams.num_signs:
            loss = loss + F.binary_cross_entropy_with_logits(sign_logits, batch["signs"].float())
        return loss, (logits.argmax(1) == batch["label"]).float().mean()

    def training_step(self, batch, batch_idx):
        loss, acc = self._loss(batch, augment=True)
        self.log_dict({"train_loss": loss, "train_acc": acc}, prog_bar=True, on_epoch=True,
                      on_step=False, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch, batch_idx):
        loss, acc = self._loss(batch, augment=False)
        self.log_dict({"val_loss": loss, "val_acc": acc}, prog_bar=True,
                      batch_size=len(batch["label"]))

    def configure_optimizers(self):
        return adamw_one_cycle(self, self.hparams.lr, weight_decay=1e-4)

    @torch.no_grad()
    def predict(self, images: Tensor, landmarks: Tensor) -> tuple[Tensor, Tensor]:
        """``(class probabilities [B,C], sign probabilities [B,S])``; ``landmarks`` are the
        test image's own (a method must not move the eyes)."""
        logits, sign_logits = self(images, landmarks)
        return logits.softmax(1), sign_logits.sigmoid()
