"""Import a class-folder image tree into the MeMa layout.

``python -m data.prepare SRC --out DIR [--landmarks]`` reads ``SRC/<split>/<class>/*.jpg|png``
(split: ``train``, ``val`` or ``test``; ``valid``/``validation`` are read as ``val``), copies
the images to ``DIR/images/<split>/<class>/``, and writes ``metadata.csv`` and
``classes.json``. As in MeMa, every image is its own identity. Class-folder trees carry no
fine-grained signs, age or sex, so those columns stay empty.

``--landmarks`` adds 5-point landmarks found by MTCNN (Zhang et al., "Joint Face Detection and
Alignment Using Multitask Cascaded Convolutional Networks", IEEE SPL 2016), from
facenet-pytorch, whose weights ship inside the wheel (nothing is downloaded). Images where no
face is found keep empty landmarks; the loader then uses the canonical template.

The import is atomic: it is written to a temporary folder beside ``DIR``, checked with the
loader's own validation, and only then renamed to ``DIR``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .files import atomic_directory
from .layout import (METADATA, MeMaFormatError, format_landmarks, open_image, read_metadata,
                     write_classes)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def scan_class_folders(src: Path) -> list[tuple[str, str, Path]]:
    """``(split, class, image path)`` for every image under ``src/<split>/<class>/``."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is not a folder (expected <split>/<class>/*.jpg)")
    found = []
    for split_dir in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        split = SPLIT_ALIASES.get(split_dir.name.lower())
        if split is None:
            raise MeMaFormatError(split_dir, f"unknown split folder; expected one of {sorted(SPLIT_ALIASES)}")
        for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(class_dir.iterdir()):
                if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
                    found.append((split, class_dir.name, path))
    if not found:
        raise MeMaFormatError(src, "no images found under <split>/<class>/ (jpg, jpeg, png)")
    return found


class LandmarkDetector:
    """MTCNN 5-point landmarks (eyes, nose, mouth corners) of the most confident face."""

    #: MTCNN's smallest face (its ``min_face_size``); a smaller image cannot hold one, and
    #: MTCNN's image pyramid is empty for it
    MIN_FACE_PX = 20

    def __init__(self) -> None:
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=False, device="cpu", min_face_size=self.MIN_FACE_PX)

    def __call__(self, image, path: Path) -> np.ndarray | None:
        """The landmarks in pixels, or None when no face is found; a detector failure is a
        :class:`MeMaFormatError` naming ``path``."""
        if min(image.size) < self.MIN_FACE_PX:
            return None
        try:
            boxes, probs, points = self.mtcnn.detect(image, landmarks=True)
        except Exception as err:  # MTCNN fails on degenerate images in many ways
            raise MeMaFormatError(path, f"landmark detection failed ({type(err).__name__}: "
                                        f"{err})") from err
        if boxes is None:
            return None
        return np.asarray(points[int(np.argmax(probs))], dtype=np.float64)  # [5,2] pixels


def prepare(src: str | Path, out: str | Path, landmarks: bool = False, progress: bool = True) -> Path:
    """Import ``src`` (a class-folder tree) into the MeMa layout at ``out``; returns ``out``."""
    src, out = Path(src), Path(out)
    images = scan_class_folders(src)
    detector = LandmarkDetector() if landmarks else None
    classes = sorted({c for _, c, _ in images})
    rows, missed = [], 0
    with atomic_directory(out) as tmp:
        for split, name, path in tqdm(images, desc="import", unit="img", disable=not progress):
            rel = Path("images") / split / name / path.name
            image = open_image(path, "RGB", path, None, "image")  # fails on unreadable files
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, tmp / rel)
            points = detector(image, path) if detector else None
            missed += detector is not None and points is None
            rows.append(dict(image=rel.as_posix(), split=split, label=name, signs="",
                             identity=f"{split}/{name}/{path.stem}", age="", sex="", mask="",
                             landmarks=format_landmarks(points) if points is not None else ""))
        pd.DataFrame(rows).to_csv(tmp / METADATA, index=False)
        write_classes(tmp, classes, [])
        read_metadata(tmp)  # the loader's checks (empty split, duplicates...) before committing
    if missed:
        print(f"MTCNN found no face in {missed} of {len(rows)} images (images under "
              f"{LandmarkDetector.MIN_FACE_PX} px are not searched); they use canonical landmarks")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Import a class-folder tree SRC/<split>/<class>/*.jpg|png (e.g. the MeMa "
        "release) into the MeMa layout read by MeMaDataModule (see data/README.md).")
    parser.add_argument("src", type=Path, help="folder holding train/, val/ and test/ class folders")
    parser.add_argument("--out", type=Path, required=True, help="new dataset root (must not exist or be empty)")
    parser.add_argument("--landmarks", action="store_true",
                        help="detect 5-point landmarks with facenet-pytorch's MTCNN (bundled weights)")
    args = parser.parse_args(argv)
    try:
        root = prepare(args.src, args.out, args.landmarks)
    except (MeMaFormatError, FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"MeMa layout written to {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
