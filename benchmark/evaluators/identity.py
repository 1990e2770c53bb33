"""Learned identity recogniser: the naive attacker that tries to re-identify de-identified faces."""
from __future__ import annotations

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.api.nn import CosFaceHead, conv_norm_act, occlude, random_shift
from benchmark.evaluators.common import adamw_one_cycle, normalise

#: backbone name of the small plain CNN below (anything else is a timm model name)
FACE_CNN = "face_cnn"


class FaceCNN(nn.Module):
    """Small VGG-style CNN for 32-128 px aligned faces. Its last map is pooled to 4x4 and
    flattened, not globally averaged: where a feature sits (eye spacing, left vs right eye)
    is part of identity, and global pooling throws it away."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            conv_norm_act(3, w), nn.MaxPool2d(2),
            conv_norm_act(w, 2 * w), conv_norm_act(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_norm_act(2 * w, 4 * w), conv_norm_act(4 * w, 4 * w), nn.MaxPool2d(2),
            conv_norm_act(4 * w, 4 * w), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.2),
        )
        self.num_features = 64 * w

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


class IdentityRecognizer(L.LightningModule):
    """Face embedding network (``face_cnn`` or a timm backbone, never pretrained) trained with a
    CosFace margin loss on the training identities and occlusion augmentation
    (:func:`benchmark.api.nn.occlude`); at test time identities are unseen, so it is used as
    an open-set embedding (cosine similarity, nearest neighbour)."""

    def __init__(self, identity_ids: list[int], backbone: str = FACE_CNN,
                 embedding_dim: int = 128, margin: float = 0.25, scale: float = 16.0,
                 lr: float = 3e-3, max_shift: int = 3, flip: bool = False, width: int = 16,
                 p_keep_eyes: float = 0.3, p_erase: float = 0.3) -> None:
        super().__init__()
        self.save_hyperparameters()
        if backbone == FACE_CNN:
            self.backbone = FaceCNN(width)
        else:
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

    def augment(self, images: Tensor, landmarks: Tensor) -> Tensor:
        hp = self.hparams
        images = occlude(images, landmarks, hp.p_keep_eyes, hp.p_erase)
        images = random_shift(images, hp.max_shift)
        if hp.flip:  # identity is mirror-invariant (off where laterality carries identity)
            images = torch.where(torch.rand(len(images), 1, 1, 1, device=images.device) < 0.5,
                                 images, images.flip(-1))
        return images

    def training_step(self, batch, batch_idx):
        images = self.augment(batch["image"], batch["landmarks"])
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
        return adamw_one_cycle(self, self.hparams.lr, weight_decay=5e-4)

    @torch.no_grad()
    def embed(self, images: Tensor) -> Tensor:
        return self(images)


def identity_recognizer(config, identity_ids: list[int]) -> IdentityRecognizer:
    """An untrained :class:`IdentityRecognizer` as ``config``
    (:class:`benchmark.profiles.IdentityConfig`) describes it, with one margin-head row per
    training identity: the harness's evaluator and the parrot attacker share this recipe."""
    c = config
    return IdentityRecognizer(identity_ids, c.backbone, c.embedding_dim, c.margin, c.scale, c.lr,
                              flip=c.flip, width=c.width, p_keep_eyes=c.p_keep_eyes,
                              p_erase=c.p_erase)
