"""Plugins that try to cheat or break the harness (tests/test_isolation.py loads them by
``module:Class``, so they run in the method worker like any plugin).

Paths to snoop on come from the environment variable ``HOSTILE_TARGET`` (the worker inherits
the harness' environment, but never ``MEMA_BENCH_CACHE``).
"""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

from benchmark.api import DeIdMethod


class Sabotage(DeIdMethod):
    """Returns the original images and scrambles every foreign network it finds in memory
    (the issue's attack on the identity recogniser)."""

    found = 0

    def anonymize(self, batch, keys):
        for obj in gc.get_objects():
            if isinstance(obj, nn.Module) and not type(obj).__module__.startswith("torch"):
                Sabotage.found += 1
                with torch.no_grad():
                    for p in obj.parameters():
                        p.copy_(torch.randn_like(p))
        return batch["image"]


class SnoopInFit(DeIdMethod):
    """Reads the file ``$HOSTILE_TARGET`` (e.g. the data root's metadata.csv) in ``fit``."""

    def fit(self, train) -> None:
        self.text = Path(os.environ["HOSTILE_TARGET"]).read_text()

    def state_dict(self):
        return {"chars": len(self.text)}

    def anonymize(self, batch, keys):
        return batch["image"]


class SnoopInAnonymize(DeIdMethod):
    """Reads every checkpoint under the folder ``$HOSTILE_TARGET`` (e.g. the cache root)."""

    def anonymize(self, batch, keys):
        files = sorted(Path(os.environ["HOSTILE_TARGET"]).rglob("*.pt"))
        if not files:
            raise FileNotFoundError(f"no checkpoint visible under {os.environ['HOSTILE_TARGET']}")
        files[0].read_bytes()
        return batch["image"]


class Exits(DeIdMethod):
    """Calls ``sys.exit(0)`` in ``anonymize`` (the issue: exit code 0, no row)."""

    def anonymize(self, batch, keys):
        sys.exit(0)


class Dies(DeIdMethod):
    """Ends its process without a word in ``anonymize``."""

    def anonymize(self, batch, keys):
        os._exit(0)


class Hangs(DeIdMethod):
    def anonymize(self, batch, keys):
        time.sleep(600)


class Keyed(DeIdMethod):
    """Reversible: adds the key's first bit; records what it was called with."""

    reversible = True
    key_bits = 4

    def config(self):
        return {"shift": 0.25}

    def fit(self, train) -> None:
        self.mean = torch.stack([b["image"].mean() for b in train.train_dataloader()]).mean()

    def state_dict(self):
        return {"mean": self.mean, "splits": ["train", "val"]}

    def load_state_dict(self, state):
        self.mean = state["mean"]

    def anonymize(self, batch, keys):
        return (batch["image"] + 0.25 * keys[:, :1, None, None]) / 1.25

    def recover(self, images, keys):
        return images * 1.25 - 0.25 * keys[:, :1, None, None]


class BrokenInit(DeIdMethod):
    """Cannot be built: its constructor raises."""

    def __init__(self, **kwargs):
        raise RuntimeError("no weights here")

    def anonymize(self, batch, keys):
        return batch["image"]
