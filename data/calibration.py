"""Calibration report for a MeMa-layout dataset (docs/architecture.md §2).

Trains two small plain-torch CNNs on the training split and reports, on the test split:

- disease classification: coarse-label accuracy and macro-F1, and per-sign F1 of a
  multi-label head (a clean classifier should be good but not saturated: 0.75-0.97);
- identity re-identification: a CNN embedding trained with a large-margin cosine loss
  (CosFace: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition",
  CVPR 2018) on the training identities, tested on the unseen test identities by nearest
  neighbour: one enrolment image per identity is the gallery, every other image a probe
  (target: top-1 >= 0.8).

These networks are deliberately independent of the benchmark's evaluators (``data`` never
imports ``benchmark``); they only show that the data is learnable and identifiable.
"""
from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MultilabelF1Score
from tqdm import tqdm

from .layers import CosFaceHead, conv_norm_act
from .mema import MeMaDataModule
from .regions import face_mask, periocular_mask


class SmallCNN(nn.Module):
    """Four conv stages down to a 4x4 map, flattened so left and right stay apart
    (laterality is part of the labels)."""

    def __init__(self, out_features: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_norm_act(3, w), nn.MaxPool2d(2),  # one cheap layer at full resolution
            conv_norm_act(w, 2 * w), conv_norm_act(2 * w, 2 * w), nn.MaxPool2d(2),
            conv_norm_act(2 * w, 4 * w), nn.MaxPool2d(2),
            conv_norm_act(4 * w, 4 * w), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(64 * w, 256), nn.ReLU(inplace=True), nn.Linear(256, out_features))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def jitter(images: Tensor, generator: torch.Generator) -> Tensor:
    """Small shifts and brightness changes (no flips: they would swap left and right)."""
    b = images.shape[0]
    dx, dy = torch.randint(-2, 3, (2,), generator=generator).tolist()
    images = torch.roll(images, shifts=(dy, dx), dims=(2, 3))
    gain = 1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    return (images * gain).clamp(0, 1)


def train(model: nn.Module, loader, loss_fn, epochs: int, lr: float, seed: int, desc: str) -> None:
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader))
    model.train()
    for _ in tqdm(range(epochs), desc=desc, unit="epoch"):
        for batch in loader:
            loss = loss_fn(model, jitter(batch["image"], generator), batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()


def disease_scores(dm: MeMaDataModule, epochs: int, seed: int) -> tuple[nn.Module, dict]:
    n_cls, n_signs = len(dm.classes), len(dm.signs)
    torch.manual_seed(seed)
    model = SmallCNN(n_cls + n_signs)

    def loss_fn(model, images, batch):
        out = model(images)
        return F.cross_entropy(out[:, :n_cls], batch["label"]) + F.binary_cross_entropy_with_logits(out[:, n_cls:], batch["signs"])

    train(model, dm.train_dataloader(), loss_fn, epochs, 3e-3, seed, "disease classifier")
    acc, f1 = MulticlassAccuracy(n_cls, average="micro"), MulticlassF1Score(n_cls, average="macro")
    sign_f1 = MultilabelF1Score(n_signs, average=None)
    per_class = MulticlassAccuracy(n_cls, average=None)
    with torch.no_grad():
        for batch in dm.test_dataloader():
            out = model(batch["image"])
            for metric in (acc, f1, per_class):
                metric.update(out[:, :n_cls], batch["label"])
            sign_f1.update(out[:, n_cls:], batch["signs"].long())
    return model, dict(
        disease_accuracy=acc.compute().item(), disease_macro_f1=f1.compute().item(),
        class_recall=dict(zip(dm.classes, per_class.compute().tolist())),
        sign_f1=dict(zip(dm.signs, sign_f1.compute().tolist())),
    )


def keep_eyes(images: Tensor, landmarks: Tensor) -> Tensor:
    """Only the periocular region, the rest a flat grey (what an eye-keeping method leaves)."""
    region = periocular_mask(landmarks, images.shape[-2:])
    return images * region + 0.5 * (1 - region)


def mask_face(images: Tensor, landmarks: Tensor) -> Tensor:
    """The face region filled with flat grey (the classic masking baseline)."""
    region = face_mask(landmarks, images.shape[-2:])
    return images * (1 - region) + 0.5 * region


def reidentification_scores(dm: MeMaDataModule, epochs: int, seed: int, view=None) -> tuple[nn.Module, dict]:
    """Re-id top-1 of a recogniser trained and tested on ``view(images, landmarks)`` (the
    clean images when ``view`` is None): a parrot attack on that view."""
    view = view or (lambda images, landmarks: images)
    train_ids = dm.dataset("train").identities
    remap = {int(i): k for k, i in enumerate(train_ids.unique().tolist())}
    torch.manual_seed(seed + 1)
    model = SmallCNN(128)
    margin = CosFaceHead(128, len(remap), scale=16.0, margin=0.25, init_std=0.1)
    params = nn.ModuleList([model, margin])

    def loss_fn(_, images, batch):
        labels = torch.tensor([remap[int(i)] for i in batch["identity"]])
        return F.cross_entropy(margin(model(view(images, batch["landmarks"])), labels), labels)

    train(params, dm.train_dataloader(), loss_fn, epochs, 3e-3, seed, "identity recogniser")
    embeddings, identities = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            embeddings.append(F.normalize(model(view(batch["image"], batch["landmarks"]))))
            identities.append(batch["identity"])
    return model, identity_protocol(torch.cat(embeddings), torch.cat(identities))


def identity_protocol(embeddings: Tensor, identities: Tensor, probe_embeddings: Tensor | None = None) -> dict:
    """Top-1 re-identification: the first image of each identity enrols it, every other image
    is a probe matched to the nearest enrolment by cosine similarity. ``probe_embeddings``
    (same rows) replace the probes' embeddings, e.g. those of de-identified images."""
    ids = identities.tolist()
    first = {i: k for k, i in reversed(list(enumerate(ids)))}
    gallery_rows = torch.tensor(sorted(first.values()))
    gallery_ids = identities[gallery_rows]
    probes = torch.tensor([k for k in range(len(ids)) if k not in set(gallery_rows.tolist())])
    if len(probes) == 0:
        raise ValueError("re-identification needs identities with at least two test images")
    probe_embeddings = embeddings if probe_embeddings is None else probe_embeddings
    nearest = (probe_embeddings[probes] @ embeddings[gallery_rows].T).argmax(1)
    top1 = (gallery_ids[nearest] == identities[probes]).float().mean().item()
    return dict(reid_top1=top1, reid_chance=1.0 / len(gallery_rows), reid_gallery=len(gallery_rows), reid_probes=len(probes))


def attribute_reid_floor(attributes: list[str], identities: list) -> dict:
    """Expected top-1 re-identification from the diagnosis alone, under the identity protocol
    (first photo of each identity enrols it, the others are probes): the attacker matches a
    probe to a random enrolment with the same attributes (label and signs), or to any
    enrolment when none has them. This is what a de-identifier that keeps the diagnosis
    perfectly still leaks; with conditions drawn per photo it stays near chance."""
    first: dict = {}
    for row, ident in enumerate(identities):
        first.setdefault(ident, row)
    enrolled = Counter(attributes[row] for row in first.values())
    probes = [row for row in range(len(identities)) if first[identities[row]] != row]
    if not probes:
        raise ValueError("the attribute floor needs identities with at least two photos")
    hits = 0.0
    for row in probes:
        same = enrolled.get(attributes[row], 0)
        if same == 0:
            hits += 1 / len(first)
        elif attributes[first[identities[row]]] == attributes[row]:
            hits += 1 / same
    return dict(attribute_reid_top1=hits / len(probes), reid_chance=1 / len(first))


def calibration_report(root: str | Path, image_size: int = 64, seed: int = 0, disease_epochs: int = 15,
                       identity_epochs: int = 10, batch_size: int = 64, verbose: bool = True,
                       leakage: bool = False) -> dict:
    """Train the two probes on ``root``'s train split, print and return the test figures.
    ``leakage`` also retrains the recogniser on eyes-only and face-masked images (the
    periocular region must leak identity, the masked face must not)."""
    start, threads = time.time(), torch.get_num_threads()
    # small convolutions run fastest on one thread, and the machine is usually shared
    torch.set_num_threads(1)
    try:
        scores = _calibrate(root, image_size, seed, disease_epochs, identity_epochs, batch_size, leakage)
    finally:
        torch.set_num_threads(threads)
    scores["seconds"] = time.time() - start
    if verbose:
        print(format_report(scores))
    return scores


def _calibrate(root, image_size, seed, disease_epochs, identity_epochs, batch_size, leakage) -> dict:
    dm = MeMaDataModule(root, image_size=image_size, batch_size=batch_size, seed=seed)
    dm.setup()
    classifier, scores = disease_scores(dm, disease_epochs, seed)
    recogniser, reid = reidentification_scores(dm, identity_epochs, seed)
    scores.update(reid)
    test = dm.dataset("test")
    attributes = [f"{label}|{signs.nonzero().flatten().tolist()}" for label, signs in zip(test.labels.tolist(), test.sign_targets)]
    scores.update(attribute_reid_floor(attributes, test.identities.tolist()))
    if leakage:
        for name, view in (("eyes_only", keep_eyes), ("face_masked", mask_face)):
            scores[f"reid_top1_{name}"] = reidentification_scores(dm, identity_epochs, seed, view)[1]["reid_top1"]
        scores["blur"] = blur_scores(dm, classifier, recogniser)
    return scores


def blur_scores(dm: MeMaDataModule, classifier: nn.Module, recogniser: nn.Module, sigmas=(1.0, 2.0, 3.0)) -> dict:
    """Clean-trained probes on Gaussian-blurred test images: disease accuracy, and naive
    re-identification of blurred probes against the clean enrolment images."""
    test = dm.dataset("test")
    images, labels, identities = test.images.float() / 255, test.labels, test.identities
    n_cls, out = len(dm.classes), {}
    with torch.no_grad():
        clean = F.normalize(recogniser(images))
        for sigma in sigmas:
            blurred = gaussian_blur(images, [int(4 * sigma) | 1] * 2, [sigma, sigma])
            accuracy = (classifier(blurred)[:, :n_cls].argmax(1) == labels).float().mean().item()
            reid = identity_protocol(clean, identities, probe_embeddings=F.normalize(recogniser(blurred)))
            out[sigma] = dict(disease_accuracy=accuracy, reid_top1=reid["reid_top1"])
    return out


def format_report(s: dict) -> str:
    lines = [
        "MeMa calibration (test split)",
        f"  disease accuracy   {s['disease_accuracy']:.3f}   (target 0.75-0.97)",
        f"  disease macro-F1   {s['disease_macro_f1']:.3f}",
        "  recall per class   " + ", ".join(f"{k} {v:.2f}" for k, v in s["class_recall"].items()),
        "  sign F1            " + ", ".join(f"{k} {v:.2f}" for k, v in s["sign_f1"].items()),
        f"  re-id top-1        {s['reid_top1']:.3f}   (target >= 0.8; chance {s['reid_chance']:.3f}, "
        f"{s['reid_gallery']} enrolled, {s['reid_probes']} probes)",
    ]
    lines.append(f"  re-id top-1 from the diagnosis alone (label + signs): {s['attribute_reid_top1']:.3f} "
                 f"(the attribute floor)")
    if "reid_top1_eyes_only" in s:
        lines.append(f"  re-id top-1, recogniser retrained on eyes only: {s['reid_top1_eyes_only']:.3f} "
                     f"(should stay clearly above chance)")
        lines.append(f"  re-id top-1, recogniser retrained on face-masked: {s['reid_top1_face_masked']:.3f} "
                     f"(should be near chance)")
    for sigma, b in s.get("blur", {}).items():
        lines.append(f"  Gaussian blur sigma {sigma:g} px: disease accuracy {b['disease_accuracy']:.3f}, "
                     f"naive re-id top-1 {b['reid_top1']:.3f}")
    lines.append(f"  took {s['seconds']:.0f} s")
    return "\n".join(lines)
