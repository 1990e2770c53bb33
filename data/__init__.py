"""MeMa datasets: the on-disk layout, its loaders, importers and the MeMa-Synth generator.

See ``data/README.md`` for the layout and how to import the MeMa release.

The names below are imported on first use (PEP 562), so ``import data.regions`` — what a
method's worker and ``mema-bench anonymize`` need — does not pull in Lightning and pandas
(docs/isolation.md, "Cost of the worker").
"""
from __future__ import annotations

import importlib

_SOURCES = {
    "DatasetNotFoundError": ".layout", "MeMaFormatError": ".layout",
    "dataset_fingerprint": ".layout", "load_classes": ".layout",
    "MeMaDataModule": ".mema", "MeMaDataset": ".mema", "MeMaSegDataModule": ".mema",
    "ensure_mema_synth": ".synthetic",
}
__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name], __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SOURCES))
