"""MeMa datasets: the on-disk layout, its loaders, importers and the MeMa-Synth generator.

See ``data/README.md`` for the layout and how to import the MeMa release.

The names below are imported on first use (PEP 562), so ``data.regions`` and ``data.paths``
load without Lightning: ``mema-bench anonymize`` starts in a fraction of the time.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "DatasetNotFoundError": ".layout", "MeMaFormatError": ".layout",
    "dataset_fingerprint": ".layout", "load_classes": ".layout",
    "MeMaDataModule": ".mema", "MeMaDataset": ".mema", "MeMaSegDataModule": ".mema",
    "ensure_mema_synth": ".synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
