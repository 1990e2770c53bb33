"""What a method's ``fit`` sees, inside its worker process (docs/isolation.md).

The harness sends the train and val splits as tensors (:func:`training_payload`); the worker
rebuilds a small datamodule from them (:class:`TrainingView`). It serves the same batches as
``data.MeMaDataModule`` — ``image``, ``label``, ``signs``, ``identity``, ``landmarks``,
``index`` (and ``mask`` for MeMa-Seg) — but holds no dataset root, no test split and no
evaluator: there is nothing on disk or in memory to reach them through.
"""
from __future__ import annotations

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

#: the splits a method may learn from
TRAINING_SPLITS = ("train", "val")


def training_payload(datamodule) -> dict:
    """The training view of a set-up ``data.MeMaDataModule`` as tensors and plain values
    (images stay 8-bit, as the dataset holds them)."""
    splits = {}
    for split in TRAINING_SPLITS:
        ds = datamodule.dataset(split)
        tensors = {"images": ds.images, "labels": ds.labels, "signs": ds.sign_targets,
                   "identities": ds.identities, "landmarks": ds.landmarks,
                   "rows": torch.as_tensor(ds.rows, dtype=torch.long)}
        if ds.masks is not None:
            tensors["masks"] = ds.masks
        splits[split] = tensors
    return {"splits": splits, "classes": list(datamodule.classes),
            "signs": list(datamodule.signs), "image_size": int(datamodule.image_size),
            "batch_size": int(datamodule.batch_size), "seed": int(datamodule.seed)}


class InMemorySplit(Dataset):
    """One split of the training view; samples as ``data.MeMaDataset`` serves them."""

    def __init__(self, split: str, tensors: dict[str, Tensor]) -> None:
        self.split = split
        self.images, self.labels = tensors["images"], tensors["labels"]
        self.sign_targets, self.identities = tensors["signs"], tensors["identities"]
        self.landmarks, self.rows = tensors["landmarks"], tensors["rows"]
        self.masks = tensors.get("masks")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        sample = {"image": self.images[i].float() / 255.0, "label": self.labels[i],
                  "signs": self.sign_targets[i], "identity": self.identities[i],
                  "landmarks": self.landmarks[i], "index": self.rows[i]}
        if self.masks is not None:
            sample["mask"] = self.masks[i].float()
        return sample


class TrainingView(L.LightningDataModule):
    """The train and val splits, class and sign names, image and batch size — never the test
    split, the evaluators or the dataset root."""

    def __init__(self, payload: dict) -> None:
        super().__init__()
        self._splits = {name: InMemorySplit(name, tensors)
                        for name, tensors in payload["splits"].items()}
        self.classes, self.signs = list(payload["classes"]), list(payload["signs"])
        self.image_size, self.batch_size = payload["image_size"], payload["batch_size"]
        self.seed = payload["seed"]

    def setup(self, stage: str | None = None) -> None:
        """Nothing to do: the splits arrived in memory."""

    def dataset(self, split: str) -> InMemorySplit:
        if split not in self._splits:
            raise PermissionError(f"methods may only read the train and val splits, not {split!r}")
        return self._splits[split]

    def train_dataloader(self) -> DataLoader:
        # shuffled with a seeded generator, as MeMaDataModule does
        return DataLoader(self.dataset("train"), batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.dataset("val"), batch_size=self.batch_size)

    def test_dataloader(self):
        raise PermissionError("methods may not read the test split")

    predict_dataloader = test_dataloader
