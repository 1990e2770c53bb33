"""The method contract every de-identifier implements (docs/architecture.md §3).

A method is found by name through the ``mema_bench.methods`` entry-point group (see
``benchmark.registry``). The harness builds it in its own worker process
(``benchmark.worker``, docs/isolation.md) with keyword options, calls ``fit`` with a
datamodule that only serves the training split, then ``anonymize`` (and ``recover`` for
reversible methods) on test batches from which every label has been removed.
"""
from __future__ import annotations

import abc
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Batch keys a method may read at test time. Labels, signs, masks and identities are removed.
METHOD_INPUT_KEYS = ("image", "landmarks", "index")


class DeIdMethod(abc.ABC):
    """A face de-identification method.

    Subclasses set the class attributes and implement :meth:`anonymize`; reversible methods
    also implement :meth:`recover`. Images are float tensors ``[B,3,H,W]`` in ``[0,1]``.
    Keys are ``{0,1}``-valued float tensors ``[B, key_bits]`` (one random bit string per image);
    methods with ``key_bits == 0`` receive ``None``.
    """

    #: registry name; filled from the entry-point name when left empty
    name: str = ""
    #: one line for ``--list-methods``
    description: str = ""
    #: whether :meth:`recover` restores the original face given the right key
    reversible: bool = False
    #: length of the key bit strings this method takes (0: keyless)
    key_bits: int = 0

    def __init__(
        self,
        *,
        profile: str = "quick",
        seed: int = 0,
        work_dir: str | Path | None = None,
        trainer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        #: training preset: "toy" (seconds to a minute: the CI pipeline), "quick" (CPU
        #: minutes, the default) or "full" (GPU); a trainable method defines all three
        self.profile = profile
        self.seed = seed
        # where a trainable method may keep resumable checkpoints and logs
        self.work_dir = Path(work_dir) if work_dir is not None else None
        # forwarded to lightning.Trainer by trainable methods (accelerator, devices, ...)
        self.trainer_kwargs = dict(trainer_kwargs or {})
        self.device = torch.device("cpu")

    # -- training ---------------------------------------------------------------------------
    def fit(self, train) -> None:  # noqa: B027 - optional hook
        """Learn from the training split. ``train`` is a MeMa datamodule whose
        ``train_dataloader``/``val_dataloader`` serve the train/val splits only."""

    def config(self) -> dict[str, Any]:
        """Hyper-parameters that change what :meth:`fit` learns or what
        :meth:`anonymize` outputs; part of the cache key and of the run record."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`fit` learned, so the harness can cache a fitted method."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027
        """Restore what :meth:`state_dict` returned."""

    def to(self, device: str | torch.device) -> "DeIdMethod":
        self.device = torch.device(device)
        return self

    # -- inference --------------------------------------------------------------------------
    @abc.abstractmethod
    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        """De-identify ``batch["image"]``; returns ``[B,3,H,W]`` float in ``[0,1]``."""

    def recover(self, images: Tensor, keys: Tensor) -> Tensor:
        """Restore the original faces from de-identified ``images`` with their ``keys``."""
        raise NotImplementedError(f"{type(self).__name__} is not reversible")
