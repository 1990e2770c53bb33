"""Every malformed MeMa input fails at load time with the file and the row named."""
from __future__ import annotations

import os
import re
import shutil

import pandas as pd
import pytest
from PIL import Image

from data import MeMaDataModule, MeMaFormatError, MeMaSegDataModule, dataset_fingerprint


@pytest.fixture
def copy(tiny_mema, tmp_path):
    """A writable copy of the tiny set and its table."""
    root = shutil.copytree(tiny_mema, tmp_path / "mema")
    return root, pd.read_csv(root / "metadata.csv", keep_default_na=False)


def save(root, table):
    table.to_csv(root / "metadata.csv", index=False)


def load_fails(root, row, *fragments, seg=False):
    """Building every split must raise, naming metadata.csv, the row and ``fragments``."""
    module = MeMaSegDataModule if seg else MeMaDataModule
    with pytest.raises(MeMaFormatError) as info:
        module(root, image_size=32).setup()
    message = str(info.value)
    assert "metadata.csv" in message
    if row is not None:
        assert re.search(rf"\brow {row}\b", message) and info.value.row == row, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def first_row(table, split="test", label=None):
    rows = table.index[(table["split"] == split) & ((table["label"] == label) if label else True)]
    return int(rows[0])


def test_missing_image(copy):
    root, table = copy
    row = first_row(table)
    os.remove(root / table.loc[row, "image"])
    load_fails(root, row, table.loc[row, "image"], "not found")


def test_unreadable_image(copy):
    root, table = copy
    row = first_row(table, "val")
    (root / table.loc[row, "image"]).write_bytes(b"this is not a png")
    load_fails(root, row, table.loc[row, "image"], "unreadable")


def test_truncated_png(copy):
    root, table = copy
    row = first_row(table, "train")
    path = root / table.loc[row, "image"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    load_fails(root, row, table.loc[row, "image"], "unreadable")


def test_mask_size_differs_from_image(copy):
    root, table = copy
    row = first_row(table, "test", "eyelid_tumour")
    Image.new("L", (20, 20)).save(root / table.loc[row, "mask"])
    message = load_fails(root, row, table.loc[row, "mask"], "20x20")
    assert "48x48" in message
    load_fails(root, row, table.loc[row, "mask"], seg=True)


def test_missing_mask(copy):
    root, table = copy
    row = first_row(table, "train", "eyelid_tumour")
    os.remove(root / table.loc[row, "mask"])
    load_fails(root, row, table.loc[row, "mask"], "not found", seg=True)


def test_unknown_label(copy):
    root, table = copy
    table.loc[5, "label"] = "glaucoma"
    save(root, table)
    load_fails(root, 5, "unknown label 'glaucoma'", "classes.json")


def test_unknown_sign(copy):
    root, table = copy
    table.loc[7, "signs"] = "ptosis_left;wart_left"
    save(root, table)
    load_fails(root, 7, "unknown sign 'wart_left'")


def test_duplicate_row(copy):
    root, table = copy
    table = pd.concat([table, table.iloc[[3]]], ignore_index=True)
    save(root, table)
    load_fails(root, len(table) - 1, "duplicate", table.loc[3, "image"], "row 3")


@pytest.mark.parametrize("bad", ["../outside.png", "images/../../outside.png", "/etc/hostname"])
def test_path_escaping_root(copy, bad):
    root, table = copy
    table.loc[2, "image"] = bad
    save(root, table)
    load_fails(root, 2, bad, "escapes the dataset root")


def test_mask_path_escaping_root(copy):
    root, table = copy
    row = first_row(table, "train", "eyelid_tumour")
    table.loc[row, "mask"] = "../mask.png"
    save(root, table)
    load_fails(root, row, "../mask.png", "escapes")


def test_symlink_pointing_outside(copy, tmp_path):
    root, table = copy
    outside = tmp_path / "elsewhere.png"
    shutil.copyfile(root / table.loc[4, "image"], outside)
    link = root / "images" / "link.png"
    link.symlink_to(outside)
    table.loc[4, "image"] = "images/link.png"
    save(root, table)
    load_fails(root, 4, "images/link.png", "outside the dataset root")


def test_empty_split(copy):
    root, table = copy
    save(root, table[table["split"] != "val"])
    message = load_fails(root, None, "split 'val' is empty")
    with pytest.raises(MeMaFormatError, match="empty"):
        dataset_fingerprint(root)  # the fingerprint validates too
    assert message


def test_identity_in_two_splits(copy):
    root, table = copy
    person = table.loc[first_row(table, "train"), "identity"]
    rows = table.index[table["identity"] == person]
    table.loc[rows[-1], "split"] = "test"
    save(root, table)
    load_fails(root, int(rows[-1]), f"identity {person!r}", "must not cross splits")


def test_unknown_split(copy):
    root, table = copy
    table.loc[1, "split"] = "holdout"
    save(root, table)
    load_fails(root, 1, "split 'holdout'")


def test_malformed_landmarks(copy):
    root, table = copy
    table.loc[1, "landmarks"] = "1 2 3"
    save(root, table)
    load_fails(root, 1, "landmarks '1 2 3'")


def test_missing_columns_and_classes(copy):
    root, table = copy
    save(root, table.drop(columns=["identity"]))
    load_fails(root, None, "missing column")
    save(root, table)
    os.remove(root / "classes.json")
    with pytest.raises(MeMaFormatError, match="classes.json"):
        MeMaDataModule(root).setup()
