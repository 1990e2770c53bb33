"""MeMa-Synth: determinism, where identity and signs are drawn, CLI and cache behaviour."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import torch

from data import MeMaDataModule, ensure_mema_synth, regions
from data.synthetic import CLASSES, SIGNS, generate, sample_dataset
from data.synthetic.generator import render

MEDICAL = ("ptosis", "retraction", "redness", "swelling", "xanthelasma", "strabismus", "chalazion", "tumour")
# identity factors that do not move the landmarks (those would move the masks too)
APPEARANCE = ("skin", "face_rx", "face_ry", "face_cy", "jaw", "ear", "hair_col", "hair_style", "hair_vol",
              "hair_len", "hairline", "part", "hair_freq", "hair_ang", "hair_phase", "brow_col", "brow_th",
              "brow_arch", "brow_slant", "brow_gap", "brow_w", "iris_col", "eye_w", "iris_r", "h_up", "h_lo",
              "tilt", "lash_th", "crease", "nose_w", "lip_up", "lip_lo", "lip_col", "moles", "freckles",
              "age_lines", "beard")


def tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def test_same_seed_same_bytes(tmp_path, tiny_mema):
    again = generate(tmp_path / "again", identities=12, images_per_identity=3, size=48, seed=0, progress=False)
    assert tree_digest(again) == tree_digest(tiny_mema)
    other = generate(tmp_path / "other", identities=12, images_per_identity=3, size=48, seed=1, progress=False)
    assert tree_digest(other) != tree_digest(tiny_mema)


def test_layout_and_taxonomy(tiny_mema):
    table = pd.read_csv(tiny_mema / "metadata.csv", keep_default_na=False)
    classes = json.loads((tiny_mema / "classes.json").read_text())
    assert classes == {"classes": CLASSES, "signs": SIGNS}
    assert len(table) == 36 and table["identity"].nunique() == 12
    assert (table["landmarks"].str.split().str.len() == 10).all()
    assert set(table["sex"]) <= {"F", "M"} and table["age"].astype(int).between(0, 100).all()
    tumour = table["label"] == "eyelid_tumour"
    assert (table.loc[tumour, "mask"] != "").all() and (table.loc[~tumour, "mask"] == "").all()
    assert (table.loc[table["label"] == "healthy", "signs"] == "").all()
    assert (table.loc[table["label"] != "healthy", "signs"] != "").all()
    assert table.groupby("identity")["split"].nunique().max() == 1


@pytest.fixture(scope="module")
def params():
    p, *_ = sample_dataset(16, 1, seed=3)
    p = {k: v.copy() for k, v in p.items()}
    # give every image a strong sign on both eyes of every kind: the worst case for leaks
    p["ptosis"][:] = 1.0
    p["redness"][:] = 1.0
    p["swelling"][:] = 1.0
    p["xanthelasma"][:] = 1.0
    p["strabismus"][:] = 0.6
    p["chalazion"][:] = [1.0, 1.0, 0.5, 0.11]
    p["tumour"][:] = [0.13, 1.0, 1.0]
    return p


def test_signs_lie_inside_periocular_mask(params):
    healthy = {k: (np.zeros_like(v) if k in MEDICAL else v) for k, v in params.items()}
    sick, _, landmarks = render(params, 64, 0, 0, 16)
    clean, _, _ = render(healthy, 64, 0, 0, 16)
    changed = torch.from_numpy((np.abs(sick.astype(int) - clean.astype(int)).max(-1) > 0).astype(np.float32))
    region = regions.periocular_mask(torch.from_numpy(landmarks / 64), (64, 64))[:, 0]
    assert changed.sum() > 100  # the signs are drawn at all
    assert (changed * (1 - region)).sum() == 0


def test_identity_only_inside_face_mask(params):
    other = {k: (np.roll(v, 1, axis=0) if k in APPEARANCE else v) for k, v in params.items()}
    a, _, landmarks = render(params, 64, 0, 0, 16)
    b, _, _ = render(other, 64, 0, 0, 16)
    changed = torch.from_numpy((np.abs(a.astype(int) - b.astype(int)).max(-1) > 0).astype(np.float32))
    face = regions.face_mask(torch.from_numpy(landmarks / 64), (64, 64))[:, 0]
    assert changed.sum() > 1000
    assert (changed * (1 - face)).sum() == 0


def test_periocular_region_carries_identity(params):
    """Two people differ inside the periocular mask even with identical (absent) signs."""
    healthy = {k: (np.zeros_like(v) if k in MEDICAL else v) for k, v in params.items()}
    other = {k: (np.roll(v, 1, axis=0) if k in APPEARANCE else v) for k, v in healthy.items()}
    a, _, landmarks = render(healthy, 64, 0, 0, 16)
    b, _, _ = render(other, 64, 0, 0, 16)
    region = regions.periocular_mask(torch.from_numpy(landmarks / 64), (64, 64))[:, 0, ..., None].numpy()
    diff = (np.abs(a.astype(float) - b.astype(float)) * region).sum((1, 2, 3)) / region.sum((1, 2, 3))
    assert (diff > 5).all()  # mean absolute difference in grey levels per periocular pixel


def test_ensure_reuses_and_checks_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMA_BENCH_CACHE", str(tmp_path / "cache"))
    root = ensure_mema_synth(identities=4, images_per_identity=2, size=32, progress=False)
    assert root.parent == tmp_path / "cache" / "data" and (root / "metadata.csv").is_file()
    stamp = (root / "metadata.csv").stat().st_mtime_ns
    assert ensure_mema_synth(identities=4, images_per_identity=2, size=32, progress=False) == root
    assert (root / "metadata.csv").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="not the requested"):
        ensure_mema_synth(root, identities=5, images_per_identity=2, size=32, progress=False)
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_generation_failure_leaves_nothing(tmp_path, monkeypatch):
    import data.synthetic.generator as generator

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(generator, "_write_image", boom)
    with pytest.raises(RuntimeError):
        generate(tmp_path / "out", identities=4, images_per_identity=1, size=32, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_set_and_preview(tmp_path):
    from data.synthetic.__main__ import main

    assert main(["--out", str(tmp_path / "s"), "--identities", "3", "--images-per-identity", "1",
                 "--size", "32", "--preview", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert len(MeMaDataModule(tmp_path / "s", image_size=32).dataset("train")) == 1


def test_drawing_regions_stay_inside_the_evaluator_masks():
    """The generator clips with slightly eroded copies of data.regions' masks."""
    from data.synthetic.render import face_region, periocular_region

    landmarks = regions.CANONICAL_LANDMARKS.repeat(3, 1, 1).numpy().copy()
    landmarks[1] += 0.03
    landmarks[2] = (landmarks[2] - 0.5) * 0.8 + 0.5
    pts = torch.from_numpy(landmarks)
    for mine, theirs in ((periocular_region, regions.periocular_mask), (face_region, regions.face_mask)):
        ours = torch.from_numpy(mine(landmarks, 128))
        reference = theirs(pts, (128, 128))[:, 0]
        assert (ours * (1 - reference)).sum() == 0 and ours.sum() > 0.7 * reference.sum()


def test_racing_writers_keep_the_first_copy(tmp_path, monkeypatch):
    """Two processes generating the same set: the later one keeps the earlier one's copy."""
    from data.files import atomic_directory
    import data.synthetic.generator as generator

    out = tmp_path / "set"
    with pytest.raises(FileExistsError):
        with atomic_directory(out) as slow:
            (slow / "slow").write_text("1")
            with atomic_directory(out) as fast:
                (fast / "fast").write_text("2")
    assert [p.name for p in tmp_path.iterdir()] == ["set"] and [p.name for p in out.iterdir()] == ["fast"]

    original = generator.generate

    def racing(root, *args, **kwargs):
        original(root, *args, **kwargs)  # the other process commits first ...
        raise FileExistsError(f"{root} appeared while it was being written")  # ... and we lose

    monkeypatch.setattr(generator, "generate", racing)
    root = ensure_mema_synth(tmp_path / "s", identities=3, images_per_identity=1, size=32, progress=False)
    assert (root / "metadata.csv").is_file()


def test_persistent_condition_keeps_a_persons_diagnosis_and_raises_the_attribute_floor():
    from data.calibration import attribute_reid_floor
    from data.synthetic.generator import sample_dataset

    floors = {}
    for persistent in (False, True):
        _, person, split, cond, signs = sample_dataset(60, 4, 0, persistent)
        per_person = {p: {(cond[i], signs[i]) for i in range(len(person)) if person[i] == p} for p in set(person)}
        assert all(len(v) == 1 for v in per_person.values()) == persistent
        test = np.flatnonzero(split == "test")
        floors[persistent] = attribute_reid_floor([f"{cond[i]}|{signs[i]}" for i in test], list(person[test]))
    chance = floors[False]["reid_chance"]
    assert floors[False]["attribute_reid_top1"] < 2 * chance < floors[True]["attribute_reid_top1"]
    # the default set is unchanged by the option's existence
    assert sample_dataset(6, 2, 0)[4] == sample_dataset(6, 2, 0, False)[4]


def test_attribute_floor_reference_values():
    from data.calibration import attribute_reid_floor

    # two people, same diagnosis in every photo: a coin flip; unique diagnoses: certain
    assert attribute_reid_floor(["a", "a", "a", "a"], [0, 0, 1, 1])["attribute_reid_top1"] == 0.5
    assert attribute_reid_floor(["a", "a", "b", "b"], [0, 0, 1, 1])["attribute_reid_top1"] == 1.0
    # a probe whose diagnosis nobody enrolled with: a guess among all enrolments
    assert attribute_reid_floor(["a", "c", "b", "b"], [0, 0, 1, 1])["attribute_reid_top1"] == 0.75
