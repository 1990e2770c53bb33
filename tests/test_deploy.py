"""The photo pipeline (deploy/): faces found, pixels kept, keys, files — on real photos."""
from __future__ import annotations

import importlib.util
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from data.regions import face_mask, periocular_mask
from deploy.align import feather_width
from deploy.cli import main
from deploy.detect import FaceDetector
from deploy.photo import read_photo

_spec = importlib.util.spec_from_file_location("deploy_photos", Path(__file__).parent / "data" / "deploy_photos.py")
photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(photos)
TOY = photos.register_toy()  # the reversible toy, loaded by name like any plugin


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(photos.astronaut()).save(folder / "astronaut.png")
    (folder / "group").mkdir()
    Image.fromarray(photos.group_picture()).save(folder / "group" / "lfw.png")
    return folder


@pytest.fixture(scope="module")
def astronaut_face():
    return FaceDetector()([photos.astronaut()])[0]


def _anonymize(photo_dir, out, method, *extra) -> int:
    return main(["anonymize", str(photo_dir), "--out", str(out), "--method", method, "--quiet", *extra])


def _photo_mask(mask_fn, face, shape, grow: int) -> np.ndarray:
    """A region of ``data.regions`` drawn in photo pixels (square photo), grown by ``grow`` px."""
    landmarks = torch.from_numpy(face.points / shape[1]).float()[None]
    mask = mask_fn(landmarks, shape)
    if grow > 0:
        mask = F.max_pool2d(mask, 2 * grow + 1, 1, grow)
    elif grow < 0:
        mask = -F.max_pool2d(-mask, -2 * grow + 1, 1, -grow)
    return mask[0, 0].numpy() > 0


def test_every_face_found_and_reported(photo_dir, tmp_path):
    assert _anonymize(photo_dir, tmp_path / "out", "blur") == 0
    report = (tmp_path / "out" / "report.csv").read_text().splitlines()
    rows = {line.split(",")[0]: line for line in report[1:]}
    assert set(rows) == {"astronaut.png", "group/lfw.png"}
    assert rows["astronaut.png"].split(",")[1] == "1"
    assert rows["group/lfw.png"].split(",")[1] == str(len(photos.GROUP_FACES))
    assert all(line.endswith("anonymized") for line in rows.values())


def test_only_the_face_changes(photo_dir, tmp_path, astronaut_face):
    _anonymize(photo_dir, tmp_path / "out", "blur")
    before, after = photos.astronaut(), read_photo(tmp_path / "out" / "astronaut.png").rgb
    changed = (before != after).any(-1)
    # paste_alpha grows the mask by the feather, then blurs over the feather, plus one pixel
    # for the change test: (2 f + 1) crop px, in photo px
    scale = np.linalg.norm(astronaut_face[0].points[1] - astronaut_face[0].points[0]) / (0.3 * 64)
    region = _photo_mask(face_mask, astronaut_face[0], before.shape[:2],
                         grow=int(np.ceil((2 * feather_width(64) + 2) * scale)))
    assert changed.sum() > 0.5 * _photo_mask(face_mask, astronaut_face[0], before.shape[:2], 0).sum()
    assert not (changed & ~region).any()


def test_blur_keep_eyes_keeps_the_periocular_band(photo_dir, tmp_path, astronaut_face):
    _anonymize(photo_dir, tmp_path / "out", "blur_keep_eyes")
    before, after = photos.astronaut(), read_photo(tmp_path / "out" / "astronaut.png").rgb
    eyes = _photo_mask(periocular_mask, astronaut_face[0], before.shape[:2], grow=-8)
    cheeks = _photo_mask(face_mask, astronaut_face[0], before.shape[:2], 0) & ~_photo_mask(
        periocular_mask, astronaut_face[0], before.shape[:2], grow=12)
    assert eyes.sum() > 200
    np.testing.assert_array_equal(after[eyes], before[eyes])
    assert (after[cheeks] != before[cheeks]).any(-1).mean() > 0.5


def test_blur_defeats_the_dlib_recogniser(photo_dir, tmp_path, astronaut_face):
    recogniser = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")  # importing it needs pkg_resources
    if spec is None:
        pytest.skip("face-recognition-models is not installed (the [dlib] extra)")
    models = Path(spec.origin).parent / "models"
    shape = recogniser.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
    net = recogniser.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
    _anonymize(photo_dir, tmp_path / "out", "blur")
    x0, y0, x1, y1 = (int(v) for v in astronaut_face[0].box)
    box = recogniser.rectangle(x0, y0, x1, y1)

    def embed(rgb):
        return np.asarray(net.compute_face_descriptor(rgb, shape(rgb, box)))

    distance = np.linalg.norm(embed(photos.astronaut()) - embed(read_photo(tmp_path / "out" / "astronaut.png").rgb))
    assert distance > 0.6  # dlib's same-person threshold


def test_reversible_round_trip_through_files(photo_dir, tmp_path, astronaut_face):
    keys, out, restored = tmp_path / "keys.json", tmp_path / "out", tmp_path / "restored"
    assert _anonymize(photo_dir, out, TOY, "--profile", "full", "--keys", str(keys)) == 0
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "astronaut.png").stat().st_mode) == 0o666 & ~umask  # shareable
    payload = json.loads(keys.read_text())
    entry = payload["images"]["astronaut.png"]
    assert len(entry["faces"]) == 1 and len(entry["faces"][0]["box"]) == 4
    assert len(bytes.fromhex(entry["faces"][0]["key"])) == 4
    assert main(["recover", str(out), "--keys", str(keys), "--out", str(restored), "--quiet"]) == 0
    face = _photo_mask(face_mask, astronaut_face[0], (512, 512), 0)
    original = photos.astronaut().astype(np.float64)

    def psnr(path):
        return 10 * np.log10(255 ** 2 / ((read_photo(path).rgb - original)[face] ** 2).mean())

    assert psnr(out / "astronaut.png") < 15
    assert psnr(restored / "astronaut.png") >= 30


def test_fresh_key_per_face(photo_dir, tmp_path):
    keys = tmp_path / "keys.json"
    _anonymize(photo_dir, tmp_path / "out", TOY, "--keys", str(keys))
    faces = json.loads(keys.read_text())["images"]["group/lfw.png"]["faces"]
    assert len({face["key"] for face in faces}) == len(photos.GROUP_FACES)


def test_reversible_method_needs_a_key_file(photo_dir, tmp_path, capsys):
    assert _anonymize(photo_dir, tmp_path / "out", TOY) == 2
    assert "--keys" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_aligned_crops_skip_detection(tmp_path):
    folder = tmp_path / "crops"
    folder.mkdir()
    crop = Image.fromarray(photos.astronaut()).crop((150, 40, 300, 190)).resize((96, 96))
    crop.save(folder / "crop.png")
    assert _anonymize(folder, tmp_path / "out", "blur", "--aligned") == 0
    after = read_photo(tmp_path / "out" / "crop.png").rgb
    assert (after != np.asarray(crop)).any(-1).mean() > 0.3


def test_no_face_is_skipped_or_copied_never_written_silently(tmp_path):
    from skimage import data

    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker"
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", exif=exif)
    assert _anonymize(folder, tmp_path / "skip", "blur") == 0
    assert not (tmp_path / "skip" / "coffee.jpg").exists()
    assert "coffee.jpg,0,,blur," in (tmp_path / "skip" / "report.csv").read_text()
    assert _anonymize(folder, tmp_path / "copy", "blur", "--no-face", "copy") == 0
    with Image.open(tmp_path / "copy" / "coffee.jpg") as copied:
        assert not copied.getexif()


def test_exif_orientation_applied_and_metadata_stripped(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS latitude
    Image.fromarray(photos.astronaut()).rotate(90, expand=True).save(folder / "phone.jpg", exif=exif)
    assert _anonymize(folder, tmp_path / "out", "blur", "--contact-sheet", str(tmp_path / "sheet.png")) == 0
    with Image.open(tmp_path / "out" / "phone.jpg") as out:
        assert not out.getexif() and "exif" not in out.info and "icc_profile" not in out.info
    assert "phone.jpg,1," in (tmp_path / "out" / "report.csv").read_text()  # upright: face found
    assert Image.open(tmp_path / "sheet.png").size[0] > 300


@pytest.mark.parametrize("mode", ["CMYK", "L", "I;16", "RGBA", "P"])
def test_colour_modes_read_as_rgb(tmp_path, mode):
    rgb = photos.astronaut()[::4, ::4]
    image = Image.fromarray(rgb)
    if mode == "I;16":
        image = Image.fromarray((np.asarray(image.convert("L")).astype(np.uint16) * 257))
    else:
        image = image.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    image.save(path)
    photo = read_photo(path)
    assert photo.rgb.dtype == np.uint8 and photo.rgb.shape == (128, 128, 3)
    assert (photo.alpha is not None) == (mode == "RGBA")
    grey = np.asarray(Image.fromarray(rgb).convert("L"), dtype=float)
    assert np.abs(photo.rgb.mean(-1) - grey).mean() < 12  # same picture, not a scaled or clipped one


def test_learned_method_without_a_fit_says_how_to_fit(photo_dir, tmp_path, capsys, cache):
    assert _anonymize(photo_dir, tmp_path / "out", "ksame_select") == 2
    err = capsys.readouterr().err
    assert "python -m benchmark.run --method ksame_select --dataset mema --data-root" in err


def test_dispatcher_forwards_run(capsys):
    assert main(["run", "--list-methods"]) == 0
    assert "blur_keep_eyes" in capsys.readouterr().out
