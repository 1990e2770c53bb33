"""``python -m data.prepare``: class-folder tree -> MeMa layout, with MTCNN landmarks."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from data import MeMaDataModule, MeMaFormatError, load_classes
from data.prepare import main, prepare


@pytest.fixture
def class_tree(tiny_mema, tmp_path):
    """SRC/<split>/<class>/*.png|jpg built from the tiny set's images."""
    table = pd.read_csv(tiny_mema / "metadata.csv", keep_default_na=False)
    src = tmp_path / "src"
    for i, row in table.iterrows():
        folder = src / {"val": "valid"}.get(row["split"], row["split"]) / row["label"]
        folder.mkdir(parents=True, exist_ok=True)
        if i % 2:
            Image.open(tiny_mema / row["image"]).save(folder / f"img{i}.jpg", quality=95)
        else:
            shutil.copyfile(tiny_mema / row["image"], folder / f"img{i}.png")
    (src / "train" / "healthy" / "notes.txt").write_text("ignored")
    return src, table


def test_import_class_folders(class_tree, tmp_path):
    src, table = class_tree
    out = prepare(src, tmp_path / "out", progress=False)
    meta = pd.read_csv(out / "metadata.csv", keep_default_na=False)
    assert len(meta) == len(table) and meta["identity"].is_unique  # each image its own identity
    assert load_classes(out).classes == sorted(set(table["label"])) and load_classes(out).signs == []
    assert set(meta["split"]) == {"train", "val", "test"}
    assert (meta["landmarks"] == "").all()
    assert all((out / p).is_file() for p in meta["image"])
    dm = MeMaDataModule(out, image_size=32, batch_size=64)
    batch = next(iter(dm.test_dataloader()))
    assert batch["image"].shape[1:] == (3, 32, 32) and batch["signs"].shape[1] == 0
    copied = meta.loc[meta["image"].str.endswith("/img0.png"), "image"].item()
    source = next(src.rglob("img0.png"))
    assert (out / copied).read_bytes() == source.read_bytes() and copied.split("/")[2] == source.parent.name


def test_cli_and_refuses_existing_output(class_tree, tmp_path, capsys):
    src, _ = class_tree
    assert main([str(src), "--out", str(tmp_path / "out")]) == 0
    assert main([str(src), "--out", str(tmp_path / "out")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_corrupt_image_writes_nothing(class_tree, tmp_path):
    src, _ = class_tree
    bad = sorted((src / "test").rglob("*.png"))[0]
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.raises(MeMaFormatError, match=bad.name):
        prepare(src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]  # no output, no temp folder


def test_missing_split_writes_nothing(class_tree, tmp_path):
    src, _ = class_tree
    shutil.rmtree(src / "valid")
    with pytest.raises(MeMaFormatError, match="split 'val' is empty"):
        prepare(src, tmp_path / "out", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_unknown_split_folder(class_tree, tmp_path):
    src, _ = class_tree
    (src / "holdout" / "healthy").mkdir(parents=True)
    with pytest.raises(MeMaFormatError, match="holdout"):
        prepare(src, tmp_path / "out", progress=False)


def test_mtcnn_landmarks_on_astronaut(tmp_path):
    """facenet-pytorch's bundled MTCNN finds Eileen Collins' eyes, nose and mouth."""
    skimage_data = pytest.importorskip("skimage.data")
    src = tmp_path / "src"
    photo = Image.fromarray(skimage_data.astronaut())
    for split in ("train", "val", "test"):
        (src / split / "healthy").mkdir(parents=True)
        photo.save(src / split / "healthy" / "astronaut.png")
    # a face-less image must not break the import
    Image.new("RGB", (64, 64), (120, 160, 200)).save(src / "test" / "healthy" / "sky.png")
    Image.new("RGB", (1, 1), (120, 160, 200)).save(src / "test" / "healthy" / "dot.png")
    out = prepare(src, tmp_path / "out", landmarks=True, progress=False)
    meta = pd.read_csv(out / "metadata.csv", keep_default_na=False).set_index("image")
    points = np.array(meta.loc["images/train/healthy/astronaut.png", "landmarks"].split(), float).reshape(5, 2)
    # eye centres read off the photo by hand: (204, 101) and (247, 103) in the 512 px image
    assert np.abs(points[0] - [204, 101]).max() < 6 and np.abs(points[1] - [247, 103]).max() < 6
    assert points[0, 1] < points[2, 1] < points[3, 1] and points[3, 0] < points[2, 0] < points[4, 0]
    assert meta.loc["images/test/healthy/sky.png", "landmarks"] == ""
    assert meta.loc["images/test/healthy/dot.png", "landmarks"] == ""  # 1x1: no face, no crash
    lm = MeMaDataModule(out, image_size=32).dataset("train")[0]["landmarks"]
    assert torch.allclose(lm, torch.tensor(points, dtype=torch.float32) / 512, atol=1e-3)


def test_a_landmark_detector_failure_names_the_file(tmp_path):
    from data.prepare import LandmarkDetector

    class Broken:
        def detect(self, image, landmarks):
            raise RuntimeError("degenerate pyramid")

    detector = object.__new__(LandmarkDetector)
    detector.mtcnn = Broken()
    path = tmp_path / "odd.png"
    with pytest.raises(MeMaFormatError, match="odd.png.*landmark detection failed"):
        detector(Image.new("RGB", (40, 40)), path)
    assert detector(Image.new("RGB", (1, 1)), path) is None  # too small to hold a face
