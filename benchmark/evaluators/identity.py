"""Learned identity recogniser: the naive attacker that tries to re-identify de-identified faces."""
from __future__ import annotations

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.evaluators.common import normalise, random_shift


class CosFaceHead(nn.Module):
    """Large-margin cosine classifier (Wang et al., "CosFace", CVPR 2018):
    logits ``s * (cos(theta_j) - m * [j == y])`` over the training identities."""

    def __init__(self, embedding_dim: int, num_identities: int, scale: float, margin: float):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_identities, embedding_dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: Tensor, targets: Tensor) -> Tensor:
        cosine = F.normalize(embeddings) @ F.normalize(self.weight).t()
        margin = F.one_hot(targets, cosine.shape[1]) * self.margin
        return self.scale * (cosine - margin)


class IdentityRecognizer(L.LightningModule):
    """Face embedding network (timm backbone, ``pretrained=False``) trained with a CosFace
    margin loss on the training identities; at test time identities are unseen, so it is
    used as an open-set embedding (cosine similarity, nearest neighbour)."""

    def __init__(self, identity_ids: list[int], backbone: str = "resnet18d",
                 embedding_dim: int = 128, margin: float = 0.25, scale: float = 24.0,
                 lr: float = 3e-3, max_shift: int = 3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        self.embedding = nn.Sequential(
            nn.Linear(self.backbone.num_features, embedding_dim), nn.BatchNorm1d(embedding_dim)
        )
        self.head = CosFaceHead(embedding_dim, len(identity_ids), scale, margin)
        # global identity id -> row of the margin head
        lookup = torch.full((max(identity_ids) + 1,), -1, dtype=torch.long)
        lookup[torch.tensor(identity_ids)] = torch.arange(len(identity_ids))
        self.register_buffer("class_of_identity", lookup, persistent=True)
        self._val: list[tuple[Tensor, Tensor]] = []

    def forward(self, images: Tensor) -> Tensor:
        """L2-normalised identity embeddings ``[B,D]``."""
        return F.normalize(self.embedding(self.backbone(normalise(images))), dim=1)

    def training_step(self, batch, batch_idx):
        images = random_shift(batch["image"], self.hparams.max_shift)
        images = torch.where(torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5,
                             images, images.flip(-1))  # identity is mirror-invariant
        targets = self.class_of_identity[batch["identity"]]
        logits = self.head(self.embedding(self.backbone(normalise(images))), targets)
        loss = F.cross_entropy(logits, targets)
        self.log("train_loss", loss, prog_bar=True, on_epoch=True, on_step=False,
                 batch_size=len(targets))
        return loss

    def validation_step(self, batch, batch_idx):
        self._val.append((self(batch["image"]), batch["identity"]))

    def on_validation_epoch_end(self):
        if not self._val:
            return
        emb = torch.cat([e for e, _ in self._val])
        ids = torch.cat([i for _, i in self._val])
        self._val.clear()
        # leave-one-out nearest neighbour on unseen val identities: the attack the harness runs
        sim = emb @ emb.t()
        sim.fill_diagonal_(-2.0)
        has_mate = (ids[:, None] == ids[None, :]).sum(1) > 1
        hits = (ids[sim.argmax(1)] == ids).float()[has_mate]
        if len(hits):
            self.log("val_reid_top1", hits.mean(), prog_bar=True)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=5e-4)
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches
        )
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self(images)
