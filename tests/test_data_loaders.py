"""MeMaDataModule / MeMaSegDataModule on the tiny generated set."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

from data import (
    DatasetNotFoundError, MeMaDataModule, MeMaSegDataModule, dataset_fingerprint, load_classes,
)
from data.regions import CANONICAL_LANDMARKS


def test_batch_keys_dtypes_shapes(tiny_mema):
    dm = MeMaDataModule(tiny_mema, image_size=32, batch_size=5)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image", "label", "signs", "identity", "landmarks", "index"}
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (5, 3, 32, 32)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert batch["label"].dtype == torch.long and batch["label"].max() < len(dm.classes)
    assert batch["signs"].shape == (5, len(dm.signs)) and set(batch["signs"].unique().tolist()) <= {0.0, 1.0}
    assert batch["identity"].dtype == torch.long and batch["index"].dtype == torch.long
    assert batch["landmarks"].shape == (5, 5, 2) and batch["landmarks"].dtype == torch.float32
    assert ((batch["landmarks"] > 0) & (batch["landmarks"] < 1)).all()
    # eyes above the nose above the mouth; left eye left of the right eye
    lm = batch["landmarks"]
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 0, 1] < lm[:, 2, 1]).all() and (lm[:, 2, 1] < lm[:, 3, 1]).all()


def test_labels_and_signs_follow_metadata(tiny_mema):
    dm = MeMaDataModule(tiny_mema, image_size=32, batch_size=64)
    names = load_classes(tiny_mema)
    assert dm.classes == names.classes and dm.signs == names.signs
    table = pd.read_csv(tiny_mema / "metadata.csv", keep_default_na=False)
    batch = next(iter(dm.test_dataloader()))
    for i, row in enumerate(batch["index"].tolist()):
        assert dm.classes[batch["label"][i]] == table.loc[row, "label"]
        on = {dm.signs[j] for j in batch["signs"][i].nonzero().flatten().tolist()}
        assert on == {s for s in table.loc[row, "signs"].split(";") if s}
        assert table.loc[row, "split"] == "test"


def test_landmarks_normalised_from_pixels(tiny_mema):
    table = pd.read_csv(tiny_mema / "metadata.csv", keep_default_na=False)
    ds = MeMaDataModule(tiny_mema, image_size=24).dataset("val")
    row = int(ds.rows[0])
    pixels = torch.tensor([float(v) for v in table.loc[row, "landmarks"].split()]).view(5, 2)
    assert torch.allclose(ds[0]["landmarks"], pixels / 48, atol=1e-5)  # tiny set is 48 px


def test_identities_disjoint_and_consistent(tiny_mema):
    dm = MeMaDataModule(tiny_mema, image_size=32)
    ids = {s: set(dm.dataset(s).identities.tolist()) for s in ("train", "val", "test")}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"] and not ids["val"] & ids["test"]
    table = pd.read_csv(tiny_mema / "metadata.csv", keep_default_na=False)
    assert sum(map(len, ids.values())) == table["identity"].nunique()


def test_train_shuffled_with_seed_eval_not(tiny_mema):
    first = lambda dm, split: torch.cat([b["index"] for b in getattr(dm, f"{split}_dataloader")()])  # noqa: E731
    a, b = MeMaDataModule(tiny_mema, batch_size=4, seed=1), MeMaDataModule(tiny_mema, batch_size=4, seed=1)
    assert torch.equal(first(a, "train"), first(b, "train"))
    assert not torch.equal(first(a, "train"), first(a, "train").sort().values) or len(a.dataset("train")) < 3
    test = first(a, "test")
    assert torch.equal(test, test.sort().values)


def test_seg_datamodule_serves_masks(tiny_mema):
    dm = MeMaSegDataModule(tiny_mema, image_size=32, batch_size=8)
    dm.setup()
    for split in ("train", "val", "test"):
        ds = dm.dataset(split)
        assert len(ds) > 0
        assert all(dm.classes[label] == "eyelid_tumour" for label in ds.labels)
    batch = next(iter(dm.train_dataloader()))
    assert batch["mask"].shape == (len(batch["image"]), 1, 32, 32) and batch["mask"].dtype == torch.float32
    assert set(batch["mask"].unique().tolist()) <= {0.0, 1.0} and batch["mask"].sum() > 0


def test_missing_root_raises_dataset_not_found(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m data.prepare"):
        MeMaDataModule(tmp_path / "nowhere").setup()
    with pytest.raises(DatasetNotFoundError, match="metadata.csv"):
        dataset_fingerprint(tmp_path)


def test_fingerprint_stable_and_sensitive(tiny_mema, tmp_path):
    import shutil

    assert dataset_fingerprint(tiny_mema) == dataset_fingerprint(tiny_mema)
    copy = shutil.copytree(tiny_mema, tmp_path / "copy")
    assert dataset_fingerprint(copy) == dataset_fingerprint(tiny_mema)
    table = pd.read_csv(copy / "metadata.csv", keep_default_na=False)
    table.loc[0, "age"] = 99
    table.to_csv(copy / "metadata.csv", index=False)
    assert dataset_fingerprint(copy) != dataset_fingerprint(tiny_mema)


def test_rows_without_landmarks_get_canonical(tiny_mema, tmp_path):
    import shutil

    copy = shutil.copytree(tiny_mema, tmp_path / "copy")
    table = pd.read_csv(copy / "metadata.csv", keep_default_na=False)
    table["landmarks"] = ""
    table.to_csv(copy / "metadata.csv", index=False)
    assert torch.equal(MeMaDataModule(copy).dataset("val")[0]["landmarks"], CANONICAL_LANDMARKS)
