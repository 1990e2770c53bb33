"""A training-time face recogniser for methods whose losses need one (identity push-away,
wrong-password terms): the network and its Lightning training. Part of the training kit, so
methods may import it (README, import rule); it is never the harness's evaluator.
"""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .nn import CosFaceHead, conv_norm_act, random_shift
from .training import (adamw_cosine, derive_seed, load_stage, make_trainer, metrics_line,
                       save_stage, tensor_loader)

log = logging.getLogger(__name__)


class Recogniser(nn.Module):
    """A method's training-time face recogniser (FIT's and RiDDLE's; their papers use
    SphereFace/ArcFace models, here a small CNN trained with a CosFace head by
    :class:`RecogniserModule`), never the harness's evaluator: unit-norm embeddings."""

    def __init__(self, width: int = 24, dim: int = 64):
        super().__init__()
        w = width
        self.body = nn.Sequential(
            conv_norm_act(3, w), conv_norm_act(w, w, stride=2),
            conv_norm_act(w, 2 * w), conv_norm_act(2 * w, 2 * w, stride=2),
            conv_norm_act(2 * w, 4 * w), conv_norm_act(4 * w, 4 * w, stride=2),
        )
        self.embed = nn.Linear(4 * w * 16, dim)

    def forward(self, images: Tensor) -> Tensor:
        feats = F.adaptive_avg_pool2d(self.body(images * 2 - 1), 4)
        return F.normalize(self.embed(feats.flatten(1)), dim=1)


class RecogniserModule(L.LightningModule):
    """Trains the recogniser with a CosFace head over the training split's identities
    (``identity_class``: dataset ids mapped to 0..n-1), on shifted faces."""

    def __init__(self, recogniser: Recogniser, head: CosFaceHead, lr: float, epochs: int):
        super().__init__()
        self.recogniser, self.head, self.lr, self.epochs = recogniser, head, lr, epochs

    def training_step(self, batch, batch_idx):
        target = batch["identity_class"]
        logits = self.head(self.recogniser(random_shift(batch["image"], 3)), target)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        self.log_dict({"id_loss": loss, "id_acc": acc}, prog_bar=True, batch_size=len(target))
        return loss

    def configure_optimizers(self):
        return adamw_cosine(self.parameters(), self.lr, self.epochs)


def fit_recogniser(method, path: Path, data: dict, classes: int,
                   name: str) -> tuple[Recogniser, CosFaceHead]:
    """A fitted method's training-time recogniser and its CosFace head over ``classes``
    training identities (``data["identity_class"]``), from the seed of ``name`` (its data order
    from ``name + " data"``), sized and trained by the method config's ``id_width``, ``id_dim``,
    ``id_lr``, ``id_epochs`` and ``batch_size``; loaded from ``path`` when cached there, saved
    there otherwise (not after a ``fast_dev_run``)."""
    cfg = method.cfg
    L.seed_everything(derive_seed(method.seed, name), verbose=False)
    recogniser = Recogniser(cfg.id_width, cfg.id_dim)
    head = CosFaceHead(cfg.id_dim, classes, scale=16.0, margin=0.2)
    if path.exists():
        state = load_stage(path)
        recogniser.load_state_dict(state["recogniser"])
        head.load_state_dict(state["head"])
        return recogniser, head
    trainer = make_trainer(path.parent, cfg.id_epochs, method.trainer_kwargs)
    trainer.fit(RecogniserModule(recogniser, head, cfg.id_lr, cfg.id_epochs),
                tensor_loader(data, cfg.batch_size, True, derive_seed(method.seed, f"{name} data")))
    log.info("%s trained: %s", name, metrics_line(trainer))
    if not method.smoke_run:
        save_stage({"recogniser": recogniser.state_dict(), "head": head.state_dict()}, path)
    return recogniser, head


class RecogniserGANModule(L.LightningModule):
    """The optimisation FIT's recipe and RiDDLE's share: manual optimisation of a keyed
    generator (:meth:`generator`) against ``self.critic``, with the training-time recogniser and
    its head (``self.recogniser``, ``self.head``) fine-tuned in the critic's step at
    ``cfg.id_finetune_lr``; Adam (0.5, 0.999) at ``cfg.lr`` and a cosine decay over
    ``cfg.epochs``, stepped once per epoch."""

    def generator(self) -> nn.Module:
        raise NotImplementedError

    def _trainable(self, *modules) -> None:
        """Only ``modules`` collect gradients in the next backward (FIT's set_requires_grad)."""
        for module in (self.generator(), self.critic, self.recogniser, self.head):
            module.requires_grad_(any(module is m for m in modules))

    def on_train_epoch_end(self):
        for scheduler in self.lr_schedulers():
            scheduler.step()

    def configure_optimizers(self):
        cfg = self.cfg
        opt_g = torch.optim.Adam(self.generator().parameters(), lr=cfg.lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam([
            {"params": self.critic.parameters(), "lr": cfg.lr},
            {"params": [*self.recogniser.parameters(), *self.head.parameters()],
             "lr": cfg.id_finetune_lr}], betas=(0.5, 0.999))
        epochs = max(cfg.epochs, 1)
        return [opt_g, opt_d], [torch.optim.lr_scheduler.CosineAnnealingLR(opt_g, epochs),
                                torch.optim.lr_scheduler.CosineAnnealingLR(opt_d, epochs)]
