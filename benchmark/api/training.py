"""What every learned method needs to train (the training kit; docs/plugins.md): seeds derived
by name, a split held in memory, a Lightning ``Trainer`` with an epoch log and resumable
checkpoints, and a cache of trained stages under the method's ``work_dir``.

Plugins may import this module (README, import rule); it imports only ``data`` and Lightning.
"""
from __future__ import annotations

import hashlib
import json
import logging
import zlib
from pathlib import Path
from typing import Any, Iterable

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from data.files import atomic_torch_save

log = logging.getLogger(__name__)


def derive_seed(seed: int, name: str) -> int:
    """The seed of the part ``name`` (a stage, a sub-network, a data order) of a run seeded
    ``seed``: ``numpy.random.SeedSequence(entropy=(seed, crc32(name)))``'s first 32-bit word.
    Stable across runs and platforms, distinct per name, and adding a stage never shifts the
    seeds of the others (as ``1000 * seed + k`` arithmetic would when k is renumbered)."""
    entropy = (int(seed), zlib.crc32(name.encode()))
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class InMemoryBatches(torch.utils.data.Dataset):
    """A split held as tensors (images as uint8), served a whole batch at a time: at 64 px a
    re-decode of every PNG each epoch would cost more than the small networks themselves."""

    def __init__(self, tensors: dict[str, Tensor]):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitems__(self, indices: list[int]) -> dict[str, Tensor]:
        index = torch.as_tensor(indices)
        batch = {k: v[index] for k, v in self.tensors.items()}
        if batch.get("image", torch.empty(0)).dtype == torch.uint8:
            batch["image"] = batch["image"].float() / 255
        return batch


def materialize(loader, keys: Iterable[str] | None = None) -> dict[str, Tensor]:
    """Read a split once into tensors: ``keys`` of each batch (default: every tensor in it),
    images as uint8 (the stored images are 8-bit, so nothing is lost)."""
    parts: dict[str, list[Tensor]] = {}
    for batch in loader:
        for key in keys or [k for k, v in batch.items() if torch.is_tensor(v)]:
            if key in batch:
                value = batch[key]
                if key == "image":
                    value = (value.clamp(0, 1) * 255).round().to(torch.uint8)
                parts.setdefault(key, []).append(value)
    if not parts:
        raise ValueError("the dataloader is empty")
    return {k: torch.cat(v) for k, v in parts.items()}


def tensor_loader(tensors: dict[str, Tensor], batch_size: int, shuffle: bool,
                  seed: int) -> DataLoader:
    """Batches of ``tensors`` (an :class:`InMemoryBatches`), shuffled in the order ``seed``
    fixes; a shuffled loader drops a last batch of one image (BatchNorm cannot train on it)."""
    count = len(next(iter(tensors.values())))
    return DataLoader(InMemoryBatches(tensors), batch_size=batch_size, shuffle=shuffle,
                      drop_last=shuffle and count % batch_size == 1,
                      generator=torch.Generator().manual_seed(seed), collate_fn=lambda b: b)


def metrics_line(trainer: L.Trainer) -> str:
    """The trainer's current metrics as one ``name=value`` line."""
    return ", ".join(f"{k}={float(v):.3f}" for k, v in sorted(trainer.callback_metrics.items()))


class EpochLog(L.Callback):
    """One log line per epoch, for runs without a progress bar (``--quiet``)."""

    def on_train_epoch_end(self, trainer, pl_module):
        log.info("%s epoch %d: %s", type(pl_module).__name__, trainer.current_epoch,
                 metrics_line(trainer))


def make_trainer(root: Path | None, epochs: int, trainer_kwargs: dict[str, Any] | None = None,
                 *, resumable: bool = False) -> L.Trainer:
    """A Lightning ``Trainer`` for ``epochs`` epochs with the epoch log; ``resumable`` keeps the
    newest epoch in ``root/last.ckpt`` (pass it as ``ckpt_path`` to resume). ``trainer_kwargs``
    (the method's, from the harness: accelerator, devices, fast_dev_run ...) override."""
    callbacks: list[L.Callback] = [EpochLog()]
    if resumable:
        # monitor=None, top-1: the newest epoch is kept (and copied to last.ckpt) each epoch
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(
            dirpath=root, save_last=True, save_top_k=1, every_n_epochs=1))
    kwargs = dict(max_epochs=epochs, default_root_dir=root, logger=False,
                  enable_checkpointing=resumable, callbacks=callbacks,
                  enable_model_summary=False, deterministic="warn", log_every_n_steps=10)
    kwargs.update(trainer_kwargs or {})
    return L.Trainer(**kwargs)


def adamw_cosine(parameters, lr: float, epochs: int, weight_decay: float = 1e-4):
    """``configure_optimizers``' answer for one network: AdamW with a cosine learning rate over
    ``epochs`` epochs."""
    opt = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(epochs, 1))]


def data_fingerprint(datamodule) -> str:
    """The dataset's fingerprint (part of a stage's key), when the datamodule has a root."""
    root = getattr(datamodule, "root", None)
    if root is None:
        return ""
    from data import dataset_fingerprint  # the data package, not the harness

    return dataset_fingerprint(root)


def stage_path(work_dir: Path | None, stage: str, config: dict[str, Any], seed: int,
               fingerprint: str) -> Path | None:
    """Where a trained stage lives: ``work_dir/<stage>-<hash of config, seed and data>`` (add a
    suffix for a file, or use it as a folder). Pass only the config fields the stage depends
    on, so that e.g. a new loss weight of a later stage reuses the trained earlier ones.
    ``None`` without a ``work_dir``."""
    if work_dir is None:
        return None
    blob = json.dumps({"config": config, "seed": seed, "data": fingerprint}, sort_keys=True,
                      default=str)
    return Path(work_dir) / f"{stage}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def load_stage(path: Path) -> Any:
    """A cached stage (tensors and plain values only: read with ``weights_only=True``)."""
    return torch.load(path, map_location="cpu", weights_only=True)


def save_stage(obj: Any, path: Path) -> None:
    """Cache a stage atomically: a crash leaves the old file or none, never half of one."""
    atomic_torch_save(obj, path)


def other_passwords(passwords: Tensor, same_direction: bool = False) -> Tensor:
    """Random passwords that differ from ``passwords`` in at least one bit (global torch RNG);
    ``same_direction``: with the same first bit (FIT's direction bit). A keyed method's wrong
    keys in training (FIT, RiDDLE)."""
    flips = torch.randint(0, 2, passwords.shape, device=passwords.device).float()
    if same_direction:
        flips[:, 0] = 0.0
    none = flips.sum(1) == 0
    flips[none, -1] = 1.0
    return (passwords + flips) % 2
