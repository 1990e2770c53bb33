"""Bad input to ``mema-bench anonymize`` / ``recover``: each refused with a message naming the
file, and nothing half-written (no output file for it, no temporary file left)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from deploy.cli import main
from deploy.photo import MAX_PIXELS, PhotoError, read_photo

_spec = importlib.util.spec_from_file_location("deploy_photos", Path(__file__).parent / "data" / "deploy_photos.py")
photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(photos)
TOY = photos.register_toy()  # the reversible toy, loaded by name like any plugin


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(photos.astronaut()[::2, ::2]).save(folder / "good.png")
    return folder


def _run(*args: str) -> int:
    return main([*args, "--quiet"])


def _written(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for p in out.rglob("*")} if out.exists() else set()


def _bad_photo_is_listed_not_written(folder: Path, out: Path, name: str, capsys, words: str) -> None:
    assert _run("anonymize", str(folder), "--out", str(out), "--method", "blur") == 1
    err = capsys.readouterr().err
    assert str(folder / name) in err and words in err
    assert _written(out) == {"good.png", "report.csv"}  # no temporary file left either
    report = (out / "report.csv").read_text()
    assert f"{name},,,blur," in report and "error: " in report


def test_truncated_image(tmp_path, capsys):
    folder = _folder(tmp_path)
    data = (folder / "good.png").read_bytes()
    (folder / "cut.png").write_bytes(data[: len(data) // 2])
    _bad_photo_is_listed_not_written(folder, tmp_path / "out", "cut.png", capsys, "not a readable image")


def test_text_file_named_png(tmp_path, capsys):
    folder = _folder(tmp_path)
    (folder / "notes.png").write_text("patient list, not a picture\n")
    _bad_photo_is_listed_not_written(folder, tmp_path / "out", "notes.png", capsys, "not a readable image")


def test_one_pixel_image(tmp_path, capsys):
    folder = _folder(tmp_path)
    Image.new("RGB", (1, 1)).save(folder / "dot.png")
    _bad_photo_is_listed_not_written(folder, tmp_path / "out", "dot.png", capsys, "too small")


def test_huge_image_refused_from_its_header(tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path)
    Image.new("1", (10000, 10000)).save(folder / "huge.png")  # 1-bit: a small file
    assert 10000 * 10000 > MAX_PIXELS
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size))
    with pytest.raises(PhotoError, match="10000x10000 px is above the limit"):
        read_photo(folder / "huge.png")
    assert not decoded  # refused from the header, before decoding
    monkeypatch.undo()
    _bad_photo_is_listed_not_written(folder, tmp_path / "out", "huge.png", capsys, "above the limit")


def test_symlink_leaving_the_input_folder(tmp_path, capsys):
    folder = _folder(tmp_path)
    secret = tmp_path / "elsewhere"
    secret.mkdir()
    Image.fromarray(photos.astronaut()[::4, ::4]).save(secret / "other.png")
    os.symlink(secret / "other.png", folder / "link.png")
    assert _run("anonymize", str(folder), "--out", str(tmp_path / "out"), "--method", "blur") == 2
    assert f"{folder / 'link.png'}: symlink leading outside" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["same", "inside"])
def test_output_folder_in_the_input_folder(tmp_path, capsys, where):
    folder = _folder(tmp_path)
    out = folder if where == "same" else folder / "anon"
    assert _run("anonymize", str(folder), "--out", str(out), "--method", "blur") == 2
    assert f"{out}: the output folder must not be" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["good.png"]


def test_existing_output_file_needs_overwrite(tmp_path, capsys):
    folder, out = _folder(tmp_path), tmp_path / "out"
    out.mkdir()
    (out / "good.png").write_bytes(b"earlier result")
    assert _run("anonymize", str(folder), "--out", str(out), "--method", "blur") == 2
    assert f"{out / 'good.png'}: already exists (use --overwrite" in capsys.readouterr().err
    assert (out / "good.png").read_bytes() == b"earlier result" and _written(out) == {"good.png"}
    assert _run("anonymize", str(folder), "--out", str(out), "--method", "blur", "--overwrite") == 0
    assert (out / "good.png").read_bytes() != b"earlier result"


def test_key_file_not_written_for_these_images(tmp_path, capsys):
    folder = _folder(tmp_path)
    for run in ("a", "b"):
        assert _run("anonymize", str(folder), "--out", str(tmp_path / run), "--method",
                    TOY, "--keys", str(tmp_path / f"{run}.json")) == 0
    # run b's keys on run a's photos: same names, other pixels
    assert _run("recover", str(tmp_path / "a"), "--keys", str(tmp_path / "b.json"),
                "--out", str(tmp_path / "restored")) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'b.json'} was not written for {tmp_path / 'a' / 'good.png'}" in err
    assert not (tmp_path / "restored").exists()


@pytest.mark.parametrize("content", [None, "{not json", json.dumps({"version": 1, "images": {}})])
def test_missing_or_malformed_key_file(tmp_path, capsys, content):
    folder, keys = _folder(tmp_path), tmp_path / "keys.json"
    if content is not None:
        keys.write_text(content)
    assert _run("recover", str(folder), "--keys", str(keys), "--out", str(tmp_path / "restored")) == 2
    assert str(keys) in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()


def test_key_file_inside_the_shared_output(tmp_path, capsys):
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    assert _run("anonymize", str(folder), "--out", str(out), "--method", TOY,
                "--keys", str(out / "keys.json")) == 2
    assert "keep the key file out of the output folder" in capsys.readouterr().err
    assert not out.exists()


def test_key_file_for_another_method_setting(tmp_path, capsys):
    folder, keys = _folder(tmp_path), tmp_path / "keys.json"
    assert _run("anonymize", str(folder), "--out", str(tmp_path / "out"), "--method",
                TOY, "--keys", str(keys)) == 0
    payload = json.loads(keys.read_text())
    payload["crop_size"] = 128  # as if the method had run on other crops
    keys.write_text(json.dumps(payload))
    assert _run("recover", str(tmp_path / "out"), "--keys", str(keys), "--out", str(tmp_path / "restored")) == 2
    assert f"{keys}: the method now differs" in capsys.readouterr().err
    assert not (tmp_path / "restored").exists()
