"""MeMa datasets: the on-disk layout, its loaders, importers and the MeMa-Synth generator.

See ``data/README.md`` for the layout and how to import the MeMa release.
"""
from .layout import DatasetNotFoundError, MeMaFormatError, dataset_fingerprint, load_classes
from .mema import MeMaDataModule, MeMaDataset, MeMaSegDataModule
from .synthetic import ensure_mema_synth

__all__ = [
    "DatasetNotFoundError", "MeMaDataModule", "MeMaDataset", "MeMaFormatError",
    "MeMaSegDataModule", "dataset_fingerprint", "ensure_mema_synth", "load_classes",
]
