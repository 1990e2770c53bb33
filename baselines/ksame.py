"""k-Same-Select: k-Same-Pixel averaging within each disease class.

Gross, Airoldi, Malin & Sweeney, "Integrating utility into face de-identification",
PET 2005. k-Same (Newton, Sweeney & Malin, TKDE 2005) replaces a face by the pixel average of
its k closest gallery faces, so no output can be traced to fewer than k people; k-Same-Select
first partitions the gallery by a utility attribute (here: the coarse disease class) and
averages only within the probe's partition, so the average keeps that attribute.

At test time the harness strips every label, so the method predicts the probe's class with a
small CNN of its own, trained on the same training gallery (train split only). The CNN looks at
the periocular crop given by the eye landmarks, where the MeMa diseases show (measured on a
120-identity MeMa-Synth, 8 classes, 30 epochs: test accuracy 0.71 on the crop against 0.33 on
the whole 64 px face, in a quarter of the time).
"""
from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from baselines.classic import REGIONS, region_mask
from benchmark.api import DeIdMethod
from benchmark.api.nn import conv_norm_act
from benchmark.api.training import derive_seed, make_trainer, tensor_loader
from data.regions import CANONICAL_LANDMARKS, periocular_crop

#: classifier epochs per profile
EPOCHS = {"toy": 3, "quick": 20, "full": 60}
#: size (H, W) of the periocular crop the classifier sees
CROP = (24, 48)


def class_picker(num_classes: int, width: int = 32) -> nn.Module:
    """A four-layer CNN that guesses the disease class of a face for the partition choice."""

    block = conv_norm_act
    return nn.Sequential(
        block(3, width // 2), nn.MaxPool2d(2),
        block(width // 2, width), nn.MaxPool2d(2),
        block(width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 2 * width),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


class _ClassPickerModule(L.LightningModule):
    def __init__(self, net: nn.Module, lr: float = 3e-3) -> None:
        super().__init__()
        self.net, self.lr = net, lr

    def training_step(self, batch, _):
        images, labels = batch["image"], batch["label"]
        # a coarse class does not depend on which side a sign is on, so mirroring keeps the label
        flip = torch.rand(images.shape[0], device=images.device) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        loss = F.cross_entropy(self.net(images), labels)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.trainer.max_epochs)
        return [opt], [sched]


class KSameSelect(DeIdMethod):
    """k-Same-Select (Gross, Airoldi, Malin & Sweeney, PET 2005): each face is replaced, inside
    ``region``, by the pixel mean of the ``k`` training faces of its (predicted) disease class
    closest in pixel L2 distance (k-Same-Pixel).

    Options: ``k`` (default 10), ``region`` ("face" or "face_except_eyes"), ``max_gallery``
    (training images kept, a seeded random subset beyond it; default 4000: ~50 MB at 64 px as
    uint8), ``classifier_epochs`` (default by profile: quick 20, full 60).
    """

    description = "k-Same-Pixel averaging within the predicted disease class (Gross et al. 2005)"

    #: bumped whenever fit() learns differently from the same config (2: the class picker's
    #: seed by name and the training kit's loader), so a cached fit of older code is not reused
    fit_recipe = 2

    def __init__(
        self,
        *,
        k: int = 10,
        region: str = "face",
        max_gallery: int = 4000,
        classifier_epochs: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        name = type(self).__name__
        if int(k) != k or k < 1:
            raise ValueError(f"{name}: k must be a positive integer, got {k}")
        if region not in REGIONS:
            raise ValueError(f"{name}: region must be one of {REGIONS}, got {region!r}")
        if max_gallery < 1:
            raise ValueError(f"{name}: max_gallery must be positive, got {max_gallery}")
        if self.profile not in EPOCHS and classifier_epochs is None:
            raise ValueError(f"{name}: unknown profile {self.profile!r}; expected one of {list(EPOCHS)}")
        self.k, self.region, self.max_gallery = int(k), region, int(max_gallery)
        self.classifier_epochs = int(classifier_epochs or EPOCHS[self.profile])
        self.gallery: Tensor | None = None  # uint8 [N,3,H,W]
        self.gallery_labels: Tensor | None = None  # long [N]
        self.classifier: nn.Module | None = None
        self.num_classes = 0

    def config(self) -> dict[str, Any]:
        return {"k": self.k, "region": self.region, "max_gallery": self.max_gallery,
                "classifier_epochs": self.classifier_epochs, "fit_recipe": self.fit_recipe}

    # -- training ---------------------------------------------------------------------------
    def fit(self, train) -> None:
        images, labels, landmarks = self._collect(train.train_dataloader())
        gen = torch.Generator().manual_seed(self.seed)
        if len(images) > self.max_gallery:
            keep = torch.randperm(len(images), generator=gen)[: self.max_gallery]
            images, labels, landmarks = images[keep], labels[keep], landmarks[keep]
        # PNG pixels are 8-bit: storing the gallery as uint8 is lossless and 4x smaller
        self.gallery = (images * 255).round().to(torch.uint8)
        self.gallery_labels = labels
        self.num_classes = len(train.classes) if hasattr(train, "classes") else int(labels.max()) + 1
        self.classifier = self._train_classifier(periocular_crop(images.float(), landmarks, CROP), labels)

    @staticmethod
    def _collect(loader) -> tuple[Tensor, Tensor, Tensor]:
        images, labels, landmarks = [], [], []
        for batch in loader:
            images.append(batch["image"].float().cpu())
            labels.append(batch["label"].long().cpu())
            default = CANONICAL_LANDMARKS.expand(len(images[-1]), 5, 2)
            landmarks.append(batch.get("landmarks", default).float().cpu())
        if not images:
            raise ValueError("KSameSelect.fit: the training split is empty")
        return torch.cat(images), torch.cat(labels), torch.cat(landmarks)

    def _train_classifier(self, crops: Tensor, labels: Tensor) -> nn.Module:
        # own seed, and a forked RNG so fitting leaves the caller's random state alone
        seed = derive_seed(self.seed, "class_picker")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = class_picker(self.num_classes)
            loader = tensor_loader({"image": crops, "label": labels}, 64, True, seed)
            trainer = make_trainer(self.work_dir, self.classifier_epochs, self.trainer_kwargs)
            trainer.fit(_ClassPickerModule(net), loader)
        return net.cpu().eval()

    # -- caching ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        self._check_fitted()
        return {"gallery": self.gallery.cpu(), "gallery_labels": self.gallery_labels.cpu(),
                "num_classes": self.num_classes,
                "classifier": {k: v.cpu() for k, v in self.classifier.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.gallery = state["gallery"].to(torch.uint8)
        self.gallery_labels = state["gallery_labels"].long()
        self.num_classes = int(state["num_classes"])
        self.classifier = class_picker(self.num_classes)
        self.classifier.load_state_dict(state["classifier"])
        self.classifier.eval()
        self.to(self.device)

    def to(self, device) -> "KSameSelect":
        super().to(device)
        if self.classifier is not None:
            self.classifier.to(self.device)
            # the gallery lives where the probes are, so anonymize copies nothing per batch
            self.gallery = self.gallery.to(self.device)
            self.gallery_labels = self.gallery_labels.to(self.device)
        return self

    def _check_fitted(self) -> None:
        if self.gallery is None or self.classifier is None:
            raise RuntimeError(f"{type(self).__name__}: call fit() or load_state_dict() first")

    # -- inference --------------------------------------------------------------------------
    @torch.inference_mode()
    def predict_class(self, images: Tensor, landmarks: Tensor) -> Tensor:
        """Disease class the method attributes to each image, among those in its gallery."""
        self._check_fitted()
        crops = periocular_crop(images.float(), landmarks, CROP)
        logits = self.classifier.to(images.device).eval()(crops)
        present = torch.zeros(self.num_classes, dtype=torch.bool, device=images.device)
        present[self.gallery_labels.to(images.device)] = True
        return logits.masked_fill(~present, -float("inf")).argmax(1)

    @torch.inference_mode()
    def k_same_faces(self, images: Tensor, classes: Tensor) -> Tensor:
        """Pixel mean of the ``k`` gallery faces of class ``classes[i]`` nearest ``images[i]``."""
        self._check_fitted()
        if tuple(images.shape[-2:]) != tuple(self.gallery.shape[-2:]):
            raise ValueError(
                f"{type(self).__name__}: images are {tuple(images.shape[-2:])} but the gallery was "
                f"fitted at {tuple(self.gallery.shape[-2:])}; fit at the evaluation image size"
            )
        out = torch.empty_like(images, dtype=torch.float32)
        for c in classes.unique().tolist():
            rows = (classes == c).nonzero().flatten()
            members = (self.gallery_labels == c).nonzero().flatten()
            faces = self.gallery[members].to(images.device).float() / 255
            dist = torch.cdist(images[rows].float().flatten(1), faces.flatten(1))
            nearest = dist.topk(min(self.k, len(members)), dim=1, largest=False).indices
            out[rows] = faces[nearest].mean(dim=1)
        return out

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        image = batch["image"]
        mask = region_mask(batch, self.region, type(self).__name__)  # checks the landmarks
        surrogate = self.k_same_faces(image, self.predict_class(image, batch["landmarks"]))
        return torch.where(mask, surrogate.to(image.dtype), image)
