"""Run the photo pipeline over a folder: IN mirrored into OUT, a report, keys, a contact sheet.

Refused before anything is written: OUT equal to IN or inside it, a symlink under IN that leads
outside IN, an output file that exists (unless ``overwrite``), a key file inside OUT. A photo
that cannot be read is listed in the report with its error and not written; a photo without a
face is skipped (or, on request, copied) and listed — never written un-anonymised silently.
"""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from data.files import atomic_file

from .detect import Face, FaceDetector, aligned_face
from .keys import file_fingerprint, key_from_hex, key_to_hex, read_key_file, write_key_file
from .methods import PhotoMethod, load_for_photos
from .photo import MAX_PIXELS, PHOTO_SUFFIXES, Photo, PhotoError, read_photo, write_photo
from .pipeline import anonymize_photo, recover_photo

REPORT_COLUMNS = ("file", "faces", "boxes", "method", "seconds", "status")
#: photos decoded and detected together (MTCNN runs same-size photos as one batch)
CHUNK = 8


class FolderError(ValueError):
    """IN/OUT folders or files that cannot be used as asked; the message names the path."""


@dataclass
class Options:
    aligned: bool = False
    min_face: int = 40
    no_face: str = "skip"  # or "copy"
    overwrite: bool = False
    max_pixels: int = MAX_PIXELS
    progress: bool = True


@dataclass
class Summary:
    rows: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, prefix: str) -> int:
        return sum(row["status"].startswith(prefix) for row in self.rows)

    def line(self, verb: str) -> str:
        done = self.count(verb)
        faces = sum(int(r["faces"] or 0) for r in self.rows if r["status"].startswith(verb))
        rate = len(self.rows) / self.seconds if self.seconds else 0.0
        return (f"{verb} {done} of {len(self.rows)} files ({faces} faces); "
                f"{self.count('skipped')} skipped, {self.count('copied')} copied without a face, "
                f"{self.count('error')} errors; {self.seconds:.1f} s ({rate:.1f} files/s)")


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def check_folders(in_root: Path, out_root: Path, *others: Path) -> None:
    """Refuse an OUT that is IN or inside it (the run would read its own output), and files
    (key file, contact sheet) written inside IN or OUT's mirror of it."""
    if not in_root.is_dir():
        raise FolderError(f"{in_root}: not a folder")
    src, dst = in_root.resolve(), out_root.resolve()
    if _inside(dst, src):
        raise FolderError(f"{out_root}: the output folder must not be {in_root} or inside it")
    for path in others:
        if path is not None and _inside(path.resolve(), src):
            raise FolderError(f"{path}: must not be inside the input folder {in_root}")


def list_photos(in_root: Path) -> tuple[list[Path], list[Path]]:
    """``(photos, other files)`` under ``in_root``, relative to it, sorted. A symlink leading
    outside ``in_root`` is refused (it could pull in files the user did not mean to share);
    symlinked folders are not followed."""
    root = in_root.resolve()
    photos, others = [], []
    for folder, dirs, files in os.walk(in_root):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if path.is_symlink() and not _inside(path.resolve(), root):
                raise FolderError(f"{path}: symlink leading outside {in_root} (to {path.resolve()})")
        for name in files:
            rel = (Path(folder) / name).relative_to(in_root)
            if name.startswith("."):
                continue
            (photos if rel.suffix.lower() in PHOTO_SUFFIXES else others).append(rel)
    return sorted(photos), sorted(others)


def check_targets(out_root: Path, rels: list[Path], overwrite: bool, *extra: Path) -> None:
    if overwrite:
        return
    for path in [out_root / rel for rel in rels] + [p for p in extra if p is not None]:
        if path.exists():
            raise FolderError(f"{path}: already exists (use --overwrite to replace it)")


def _row(rel: Path, faces: list[Face] | None, method: str, seconds: float, status: str) -> dict:
    boxes = json.dumps([f.to_json()["box"] for f in faces]) if faces else ""
    return {"file": rel.as_posix(), "faces": "" if faces is None else len(faces), "boxes": boxes,
            "method": method, "seconds": f"{seconds:.3f}", "status": status}


def write_report(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_file(path) as tmp:
        tmp.write_text(buffer.getvalue())


def _detected(in_root: Path, rels: list[Path], detector: FaceDetector | None, max_pixels: int):
    """``(rel, photo or its PhotoError, faces, seconds of reading and detection)`` per photo,
    read and detected ``CHUNK`` at a time (MTCNN batches same-size photos)."""
    for first in range(0, len(rels), CHUNK):
        chunk, start = rels[first:first + CHUNK], time.perf_counter()
        photos = []
        for rel in chunk:
            try:
                photos.append(read_photo(in_root / rel, max_pixels))
            except PhotoError as err:
                photos.append(err)
        readable = [p.rgb for p in photos if isinstance(p, Photo)]
        if detector is None:
            found = iter([[aligned_face(rgb.shape[1], rgb.shape[0])] for rgb in readable])
        else:
            found = iter(detector(readable) if readable else [])
        share = (time.perf_counter() - start) / len(chunk)
        for rel, photo in zip(chunk, photos):
            yield rel, photo, (None if isinstance(photo, PhotoError) else next(found)), share


def anonymize_folder(in_root: Path, out_root: Path, loaded: PhotoMethod, options: Options,
                     keys_path: Path | None = None, sheet_path: Path | None = None) -> Summary:
    """De-identify every photo under ``in_root`` into ``out_root``; see the module docstring."""
    in_root, out_root = Path(in_root), Path(out_root)
    method, size = loaded.method, loaded.crop_size
    check_folders(in_root, out_root, keys_path, sheet_path)
    if keys_path is not None and _inside(keys_path.resolve(), out_root.resolve()):
        raise FolderError(f"{keys_path}: keep the key file out of the output folder you share")
    if method.key_bits and keys_path is None:
        raise FolderError(f"method {method.name!r} is reversible: name a key file with --keys "
                          "(without it the faces could never be restored)")
    rels, others = list_photos(in_root)
    check_targets(out_root, rels, options.overwrite, out_root / "report.csv", keys_path, sheet_path)
    detector = None if options.aligned else FaceDetector(options.min_face)
    summary, key_entries, pairs = Summary(), {}, []
    start = time.perf_counter()
    bar = tqdm(total=len(rels), desc=f"anonymize ({method.name})", unit="photo", disable=not options.progress)
    for rel, photo, faces, seconds in _detected(in_root, rels, detector, options.max_pixels):
        t0 = time.perf_counter()
        if isinstance(photo, PhotoError):
            tqdm.write(f"error: {photo}", file=sys.stderr)
            status = f"error: {photo.reason}"
        elif not faces:
            status = "skipped: no face found"
            if options.no_face == "copy":
                write_photo(photo, out_root / rel)
                status = "copied: no face found"
        else:
            rgb, keys = anonymize_photo(photo.rgb, faces, method, size)
            write_photo(Photo(rgb, photo.alpha), out_root / rel)
            status = "anonymized"
            if keys is not None:
                key_entries[rel.as_posix()] = {
                    "sha256": file_fingerprint(out_root / rel),
                    "faces": [{**f.to_json(), "key": key_to_hex(k)} for f, k in zip(faces, keys)]}
            if sheet_path is not None and len(pairs) < 16:
                pairs.append((photo.rgb, rgb))
        summary.rows.append(_row(rel, faces, method.name, seconds + time.perf_counter() - t0, status))
        bar.update()
    bar.close()
    summary.rows += [_row(rel, None, method.name, 0.0, "skipped: not a photo") for rel in others]
    summary.seconds = time.perf_counter() - start
    write_report(out_root / "report.csv", summary.rows)
    if key_entries:
        write_key_file(keys_path, loaded.header(), key_entries)
    if pairs:
        write_contact_sheet(sheet_path, pairs)
    return summary


def recover_folder(in_root: Path, out_root: Path, keys_path: Path, options: Options) -> Summary:
    """Restore the faces of the photos under ``in_root`` listed in the key file into ``out_root``
    with the method, profile, seed and fitted state recorded in the key file."""
    in_root, out_root = Path(in_root), Path(out_root)
    check_folders(in_root, out_root)
    payload = read_key_file(keys_path, in_root)
    loaded = load_for_photos(payload["method"], payload.get("profile", "quick"), payload.get("seed", 0))
    now = json.loads(json.dumps(loaded.header(), default=str))  # as it reads back from JSON
    differs = {k: v for k, v in now.items() if payload.get(k) != v}
    if differs:
        raise FolderError(f"{keys_path}: the method now differs from the one the keys were written "
                          f"for: now {differs}, then { {k: payload.get(k) for k in differs} }")
    method, size = loaded.method, loaded.crop_size
    rels = [Path(rel) for rel in sorted(payload["images"])]
    check_targets(out_root, rels, options.overwrite)
    summary, start = Summary(), time.perf_counter()
    for rel in tqdm(rels, desc=f"recover ({method.name})", unit="photo", disable=not options.progress):
        t0 = time.perf_counter()
        entries = payload["images"][rel.as_posix()]["faces"]
        faces = [Face.from_json(e) for e in entries]
        keys = torch.stack([key_from_hex(e["key"], method.key_bits) for e in entries])
        photo = read_photo(in_root / rel, options.max_pixels)
        rgb = recover_photo(photo.rgb, faces, keys, method, size)
        write_photo(Photo(rgb, photo.alpha), out_root / rel)
        summary.rows.append(_row(rel, faces, method.name, time.perf_counter() - t0, "recovered"))
    summary.seconds = time.perf_counter() - start
    return summary


def write_contact_sheet(path: Path, pairs: list[tuple[np.ndarray, np.ndarray]], thumb: int = 256) -> None:
    """A PNG of before/after thumbnails, one pair per row, up to 16 photos."""
    sheet = Image.new("RGB", (2 * thumb + 12, len(pairs) * (thumb + 4) + 4), "white")
    for i, pair in enumerate(pairs):
        for j, rgb in enumerate(pair):
            image = Image.fromarray(rgb)
            image.thumbnail((thumb, thumb))
            sheet.paste(image, (4 + j * (thumb + 4), 4 + i * (thumb + 4)))
    with atomic_file(path) as tmp:
        sheet.save(tmp, format="PNG")
