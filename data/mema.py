"""MeMa and MeMa-Seg: a torch ``Dataset`` over the MeMa layout and its LightningDataModules.

MeMa (Tian, Wang, Zhai, "Medical Manifestation-Aware De-Identification", AAAI 2025) pairs
face images with eye-disease labels; MeMa-Seg adds lesion masks. The authors' release is not
redistributed by this suite: import it with ``python -m data.prepare`` or use the embedded
MeMa-Synth set (``data.synthetic``), which is written in the same layout (``data/README.md``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import lightning as L
import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .layout import (
    METADATA,
    SPLITS,
    MeMaFormatError,
    open_image,
    parse_landmarks,
    read_metadata,
    resolve_inside,
    split_signs,
)
from .regions import CANONICAL_LANDMARKS

Sample = dict[str, Tensor]


class MeMaDataset(Dataset):
    """One split of a MeMa-layout dataset.

    Every listed file is decoded, checked and resized when the dataset is built, so a broken
    file fails at once with the file and row named, and epochs read from memory (MeMa-scale
    data at 64-256 px fits easily). Images are resized bilinearly, masks with nearest
    neighbour; landmarks are stored in pixels and returned normalised to ``[0,1]``.

    Args:
        root: dataset root holding ``metadata.csv`` and ``classes.json``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        image_size: side of the square images served.
        with_masks: serve only rows that have a mask, and add ``mask`` to each sample.
        transform: optional callable applied to each sample dict (e.g. augmentation).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        image_size: int = 64,
        with_masks: bool = False,
        transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root, self.split, self.image_size = Path(root), split, int(image_size)
        self.with_masks, self.transform = with_masks, transform
        table, names = read_metadata(self.root)
        self.classes, self.signs = names.classes, names.signs
        # identity ids are unique over the whole table so they agree across splits
        identity_ids = {name: i for i, name in enumerate(sorted(set(table["identity"])))}
        rows = table.index[table["split"] == split]
        if with_masks:
            rows = [r for r in rows if table.at[r, "mask"]]
            if not rows:
                raise MeMaFormatError(self.root / METADATA, f"split {split!r} has no rows with a mask")
        self.rows = np.asarray(rows, dtype=np.int64)
        self._load(table, identity_ids)

    def _load(self, table, identity_ids: dict[str, int]) -> None:
        file, size = self.root / METADATA, (self.image_size, self.image_size)
        sign_index = {s: i for i, s in enumerate(self.signs)}
        n = len(self.rows)
        self.images = torch.empty(n, 3, *size, dtype=torch.uint8)
        self.masks = torch.empty(n, 1, *size, dtype=torch.uint8) if self.with_masks else None
        self.labels = torch.empty(n, dtype=torch.long)
        self.sign_targets = torch.zeros(n, len(self.signs))
        self.identities = torch.empty(n, dtype=torch.long)
        self.landmarks = CANONICAL_LANDMARKS.repeat(n, 1, 1)
        for i, row in enumerate(self.rows):
            rec = table.loc[row]
            image = open_image(resolve_inside(self.root, rec["image"], file, row, "image"), "RGB", file, row, "image")
            if rec["mask"]:  # checked in both modules: a broken mask is a broken dataset
                mask = open_image(resolve_inside(self.root, rec["mask"], file, row, "mask"), "L", file, row, "mask")
                if mask.size != image.size:
                    raise MeMaFormatError(
                        file, f"mask {rec['mask']} is {mask.size[0]}x{mask.size[1]} but image "
                        f"{rec['image']} is {image.size[0]}x{image.size[1]}", row)
                if self.masks is not None:
                    self.masks[i] = torch.from_numpy(np.asarray(mask.resize(size, Image.NEAREST)) > 127)[None]
            points = parse_landmarks(rec["landmarks"], file, row)
            if points is not None:
                self.landmarks[i] = torch.from_numpy(points / np.array(image.size, dtype=np.float32))
            self.images[i] = torch.from_numpy(np.asarray(image.resize(size, Image.BILINEAR)).copy()).permute(2, 0, 1)
            self.labels[i] = self.classes.index(rec["label"])
            for sign in split_signs(rec["signs"]):
                self.sign_targets[i, sign_index[sign]] = 1.0
            self.identities[i] = identity_ids[rec["identity"]]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Sample:
        sample = {
            "image": self.images[i].float() / 255.0,
            "label": self.labels[i],
            "signs": self.sign_targets[i],
            "identity": self.identities[i],
            "landmarks": self.landmarks[i],
            "index": torch.tensor(int(self.rows[i])),
        }
        if self.masks is not None:
            sample["mask"] = self.masks[i].float()
        return self.transform(sample) if self.transform else sample


class MeMaDataModule(L.LightningDataModule):
    """MeMa classification data (``label``, ``signs``) for Lightning.

    Only wires splits, transforms and loaders; :class:`MeMaDataset` reads the layout.
    The training loader is shuffled with a generator seeded by ``seed``; val/test are not.
    """

    with_masks = False

    def __init__(
        self,
        root: str | Path,
        image_size: int = 64,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
        train_transform: Callable[[Sample], Sample] | None = None,
    ) -> None:
        super().__init__()
        self.root, self.image_size, self.batch_size = Path(root), image_size, batch_size
        self.num_workers, self.seed, self.train_transform = num_workers, seed, train_transform
        self._datasets: dict[str, MeMaDataset] = {}
        self._names = None

    @property
    def classes(self) -> list[str]:
        return self._class_names().classes

    @property
    def signs(self) -> list[str]:
        return self._class_names().signs

    def _class_names(self):
        if self._names is None:
            self._names = read_metadata(self.root)[1]
        return self._names

    def setup(self, stage: str | None = None) -> None:
        """Build all three splits (``stage`` is accepted for Lightning and ignored)."""
        for split in SPLITS:
            if split not in self._datasets:
                transform = self.train_transform if split == "train" else None
                self._datasets[split] = MeMaDataset(
                    self.root, split, self.image_size, self.with_masks, transform
                )

    def dataset(self, split: str) -> MeMaDataset:
        if split not in self._datasets:
            self.setup()
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(split), batch_size=self.batch_size, shuffle=shuffle,
            num_workers=self.num_workers, generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


class MeMaSegDataModule(MeMaDataModule):
    """MeMa-Seg: the rows of a MeMa-layout dataset that carry a lesion mask; batches add
    ``mask`` float ``[B,1,H,W]`` in {0,1}."""

    with_masks = True
