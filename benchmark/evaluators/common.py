"""Pieces shared by the evaluator networks."""
from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from torch import Tensor


def normalise(images: Tensor) -> Tensor:
    """[0,1] images to roughly zero-mean inputs for networks trained from scratch."""
    return (images - 0.5) / 0.25


def train_module(build: Callable[[], L.LightningModule], datamodule, *, epochs: int,
                 seed: int, trainer_kwargs: dict | None = None) -> L.LightningModule:
    """Build a network with ``build()`` and fit it with a Lightning Trainer (evaluators on the
    clean train split, val for monitoring; attackers on their own data). The seed is set
    before the network is built: its initial weights are part of what the seed fixes."""
    L.seed_everything(seed, workers=True, verbose=False)
    module = build()
    kwargs = {"accelerator": "auto", "devices": 1}
    kwargs.update(trainer_kwargs or {})
    trainer = L.Trainer(
        max_epochs=epochs, logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0, **kwargs,
    )
    trainer.fit(module, datamodule=datamodule)
    return module.cpu().eval()


def adamw_one_cycle(module: L.LightningModule, lr: float, weight_decay: float):
    """AdamW with a one-cycle schedule stepped per batch: short CPU budgets converge reliably
    with a warm-up and a decay to zero."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=module.trainer.estimated_stepping_batches)
    return [optimizer], [{"scheduler": schedule, "interval": "step"}]
