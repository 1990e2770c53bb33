"""The MeMa on-disk layout: reading and validating ``metadata.csv`` and ``classes.json``.

Layout (docs/architecture.md §2, documented in ``data/README.md``)::

    <root>/metadata.csv   one row per image: image, split, label, signs, identity, age, sex,
                          optional mask, optional landmarks (10 pixel coordinates)
    <root>/classes.json   {"classes": [...], "signs": [...]} fixes label and sign order
    <root>/images/...     RGB images (png/jpg)
    <root>/masks/...      MeMa-Seg lesion masks, single channel, same size as their image

Every check raises :class:`MeMaFormatError` naming the file and the row, so a malformed
import is caught before any training starts.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SPLITS = ("train", "val", "test")
REQUIRED_COLUMNS = ("image", "split", "label", "signs", "identity", "age", "sex")
OPTIONAL_COLUMNS = ("mask", "landmarks")
METADATA = "metadata.csv"
CLASSES = "classes.json"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset root or its ``metadata.csv`` is missing."""

    def __init__(self, root: str | Path) -> None:
        super().__init__(
            f"No MeMa dataset at {root} ({Path(root) / METADATA} is missing).\n"
            "The MeMa release cannot be downloaded by this suite. To use it, import a\n"
            "class-folder tree (<split>/<class>/*.jpg) with\n"
            f"    python -m data.prepare SRC --out {root} [--landmarks]\n"
            "or generate the embedded MeMa-Synth set with\n"
            f"    python -m data.synthetic --out {root}\n"
            "(see data/README.md)."
        )
        self.root = Path(root)


class MeMaFormatError(ValueError):
    """A malformed MeMa dataset; the message names the file and the row."""

    def __init__(self, file: str | Path, message: str, row: int | None = None) -> None:
        # row is the 0-based data row (= batch "index"); line counts the header too
        where = f"{file}" if row is None else f"{file}, row {row} (line {row + 2})"
        super().__init__(f"{where}: {message}")
        self.file = str(file)
        self.row = row


@dataclass(frozen=True)
class Classes:
    """Coarse class names and fine-grained sign names, in the order of ``classes.json``."""

    classes: list[str]
    signs: list[str]


def load_classes(root: str | Path) -> Classes:
    """Read ``<root>/classes.json``."""
    path = Path(root) / CLASSES
    if not path.is_file():
        raise MeMaFormatError(path, "missing (it fixes the order of classes and signs)")
    try:
        raw = json.loads(path.read_text())
        classes, signs = list(raw["classes"]), list(raw.get("signs", []))
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise MeMaFormatError(path, f'expected {{"classes": [...], "signs": [...]}} ({err})')
    for kind, names in (("class", classes), ("sign", signs)):
        if len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise MeMaFormatError(path, f"{kind} names must be distinct non-empty strings")
    if not classes:
        raise MeMaFormatError(path, "no classes")
    return Classes(classes, signs)


def resolve_inside(root: Path, rel: str, file: Path, row: int, column: str) -> Path:
    """``root / rel``, refusing paths that escape ``root`` (``..``, absolute, symlink out)."""
    if not isinstance(rel, str) or not rel:
        raise MeMaFormatError(file, f"empty {column} path", row)
    pure = Path(rel)
    if pure.is_absolute() or rel.startswith(("/", "\\")) or ".." in pure.parts:
        raise MeMaFormatError(file, f"{column} path {rel!r} escapes the dataset root", row)
    path = root / pure
    if not path.resolve().is_relative_to(root.resolve()):
        raise MeMaFormatError(
            file, f"{column} path {rel!r} resolves outside the dataset root (symlink?)", row
        )
    return path


def parse_landmarks(text, file: Path, row: int) -> np.ndarray | None:
    """10 space-separated pixel coordinates -> ``[5,2]`` array, or None when empty."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        values = np.array([float(v) for v in text.split()], dtype=np.float32)
    except ValueError:
        values = np.zeros(0)
    if values.shape != (10,) or not np.isfinite(values).all():
        raise MeMaFormatError(file, f"landmarks {text!r} must be 10 numbers (x y per point)", row)
    return values.reshape(5, 2)


def split_signs(text) -> list[str]:
    return [s for s in str(text).split(";") if s] if isinstance(text, str) else []


def read_metadata(root: str | Path) -> tuple[pd.DataFrame, Classes]:
    """Read and check the table (not the image files): columns, splits, labels, signs,
    duplicates, identities crossing splits, paths escaping the root, empty splits."""
    root = Path(root)
    file = root / METADATA
    if not file.is_file():
        raise DatasetNotFoundError(root)
    classes = load_classes(root)
    try:
        table = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise MeMaFormatError(file, f"not a readable CSV ({err})")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise MeMaFormatError(file, f"missing column(s) {missing}; expected {REQUIRED_COLUMNS}")
    for column in OPTIONAL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    known_classes, known_signs = set(classes.classes), set(classes.signs)
    seen: dict[str, int] = {}
    split_of: dict[str, tuple[str, int]] = {}
    for row, rec in enumerate(table.itertuples(index=False)):
        if rec.split not in SPLITS:
            raise MeMaFormatError(file, f"split {rec.split!r} is not one of {SPLITS}", row)
        if rec.label not in known_classes:
            raise MeMaFormatError(file, f"unknown label {rec.label!r} (not in {CLASSES})", row)
        for sign in split_signs(rec.signs):
            if sign not in known_signs:
                raise MeMaFormatError(file, f"unknown sign {sign!r} (not in {CLASSES})", row)
        if not rec.identity:
            raise MeMaFormatError(file, "empty identity", row)
        resolve_inside(root, rec.image, file, row, "image")
        if rec.mask:
            resolve_inside(root, rec.mask, file, row, "mask")
        parse_landmarks(rec.landmarks, file, row)
        key = os.path.normpath(rec.image)
        if key in seen:
            raise MeMaFormatError(file, f"duplicate row: image {rec.image!r} is also row {seen[key]}", row)
        seen[key] = row
        first = split_of.setdefault(rec.identity, (rec.split, row))
        if first[0] != rec.split:
            raise MeMaFormatError(
                file,
                f"identity {rec.identity!r} is in split {rec.split!r} here and in "
                f"{first[0]!r} at row {first[1]}: identities must not cross splits",
                row,
            )
    for split in SPLITS:
        if not (table["split"] == split).any():
            raise MeMaFormatError(file, f"split {split!r} is empty")
    return table, classes


def open_image(path: Path, mode: str, file: Path, row: int, column: str) -> Image.Image:
    """Decode an image fully (so truncated files fail here, not mid-epoch)."""
    if not path.is_file():
        raise MeMaFormatError(file, f"{column} file {path} not found", row)
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise MeMaFormatError(file, f"{column} file {path} is unreadable ({err})", row)


def dataset_fingerprint(root: str | Path) -> str:
    """Short hex hash of ``metadata.csv``, ``classes.json`` and the sizes of the files they
    list: changes when the data changes, cheap enough to key caches by."""
    root = Path(root)
    table, _ = read_metadata(root)
    digest = hashlib.sha256()
    for name in (METADATA, CLASSES):
        digest.update((root / name).read_bytes())
    for rel in list(table["image"]) + [m for m in table["mask"] if m]:
        path = root / rel
        digest.update(f"{rel}:{path.stat().st_size if path.exists() else -1};".encode())
    return digest.hexdigest()[:16]


def write_classes(root: Path, classes: list[str], signs: list[str]) -> None:
    (root / CLASSES).write_text(json.dumps({"classes": classes, "signs": signs}, indent=2) + "\n")


def format_landmarks(points: np.ndarray) -> str:
    return " ".join(f"{v:.2f}" for v in np.asarray(points, dtype=np.float64).reshape(-1))
