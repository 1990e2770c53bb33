"""Learned identity recogniser: the naive attacker that tries to re-identify de-identified faces."""
from __future__ import annotations

import lightning as L
import timm
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from benchmark.evaluators.common import adamw_one_cycle, normalise, random_shift
from data.regions import face_mask, periocular_mask

#: backbone name of the small plain CNN below (anything else is a timm model name)
FACE_CNN = "face_cnn"


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


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class FaceCNN(nn.Module):
    """Small VGG-style CNN for 32-128 px aligned faces. Its last map is pooled to 4x4 and
    flattened, not globally averaged: where a feature sits (eye spacing, left vs right eye)
    is part of identity, and global pooling throws it away."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            _conv(3, w), nn.MaxPool2d(2),
            _conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), nn.MaxPool2d(2),
            _conv(4 * w, 4 * w), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.2),
        )
        self.num_features = 64 * w

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images)


def occlude(images: Tensor, landmarks: Tensor, p_keep_eyes: float = 0.3,
            p_erase: float = 0.3) -> Tensor:
    """Occlusion augmentation for the recogniser, so it learns every identity cue, the
    periocular ones included, instead of leaning on the whole face (cf. random erasing,
    Zhong et al., AAAI 2020; occlusion-robust face recognition). Per image, independently:

    - with ``p_keep_eyes``: the face outside the periocular region is replaced by a solid
      fill (grey or a random colour) or a strong blur, what eye-keeping de-identification
      leaves;
    - with ``p_erase``: a random rectangle (2-25% of the image) is filled with a random colour.
    """
    b, _, h, w = images.shape
    dev = images.device
    out = images.clone()
    # -- keep the eyes, hide the rest of the face
    region = face_mask(landmarks, (h, w)) * (1 - periocular_mask(landmarks, (h, w)))
    chosen = (torch.rand(b, 1, 1, 1, device=dev) < p_keep_eyes).float()
    colour = torch.where(torch.rand(b, 1, 1, 1, device=dev) < 0.5,
                         torch.full((b, 3, 1, 1), 0.5, device=dev), torch.rand(b, 3, 1, 1, device=dev))
    sigma = max(h, w) / 16
    blurred = gaussian_blur(images, [int(4 * sigma) | 1] * 2, [sigma, sigma])
    fill = torch.where(torch.rand(b, 1, 1, 1, device=dev) < 0.7, colour.expand_as(images), blurred)
    out = torch.lerp(out, fill, region * chosen)
    # -- random erasing
    area = (0.02 + 0.23 * torch.rand(b, device=dev)) * h * w
    aspect = torch.exp((torch.rand(b, device=dev) - 0.5) * 2 * 1.1)  # 1/3 .. 3
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    y0 = torch.rand(b, device=dev) * (h - eh)
    x0 = torch.rand(b, device=dev) * (w - ew)
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    box = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1))
           & (xs >= x0.view(-1, 1, 1)) & (xs < (x0 + ew).view(-1, 1, 1))).unsqueeze(1).float()
    erase = box * (torch.rand(b, 1, 1, 1, device=dev) < p_erase).float()
    return torch.lerp(out, torch.rand(b, 3, 1, 1, device=dev).expand_as(out), erase)


class IdentityRecognizer(L.LightningModule):
    """Face embedding network (``face_cnn`` or a timm backbone, never pretrained) trained with a
    CosFace margin loss on the training identities and occlusion augmentation
    (:func:`occlude`); at test time identities are unseen, so it is used as an open-set
    embedding (cosine similarity, nearest neighbour)."""

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
