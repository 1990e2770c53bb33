"""Read and write the user's photos: EXIF orientation, any colour mode in, plain 8-bit RGB out.

Every photo is checked from its header before it is decoded, so a huge file is refused without
spending memory on it. What is written carries no metadata: no EXIF (camera, date, GPS), no XMP,
no ICC profile, no PNG text chunks — only pixels (and the alpha channel where the format keeps
one). Writes are atomic: a temporary file beside the target, renamed when complete.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from data.files import atomic_file

#: photos above this many pixels are refused (the header is read, the image is not decoded);
#: 40 MP is above every phone and clinic camera, well below what would exhaust memory.
MAX_PIXELS = 40_000_000
#: a photo whose smaller side is under this cannot hold a face MTCNN can find (12 px net)
MIN_SIDE = 32
#: file name endings read as photos; other files are listed in the report and not copied
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
#: writer options per format: no ``exif``/``icc_profile``/``pnginfo`` is ever passed
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}, "PNG": {}, "TIFF": {}, "BMP": {}}
_KEEPS_ALPHA = {"PNG", "TIFF", "WEBP"}


class PhotoError(ValueError):
    """A photo that cannot be read (or is refused); the message names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass
class Photo:
    """Pixels of a photo, upright: ``rgb`` uint8 ``[H,W,3]``, ``alpha`` uint8 ``[H,W]`` or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None


def read_photo(path: str | Path, max_pixels: int = MAX_PIXELS) -> Photo:
    """Decode ``path`` into an upright 8-bit RGB :class:`Photo`, or raise :class:`PhotoError`."""
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the size is checked below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            check_size(path, image.size, max_pixels)  # header only: nothing decoded yet
            image.load()  # a truncated file fails here
            return _to_photo(ImageOps.exif_transpose(image))
    except PhotoError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise PhotoError(path, f"not a readable image ({type(err).__name__}: {err})") from err


def check_size(path: str | Path, size: tuple[int, int], max_pixels: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise PhotoError(path, f"{width}x{height} px is above the limit of {max_pixels:,} pixels "
                               "(refused before decoding; raise it with --max-pixels)")
    if min(width, height) < MIN_SIDE:
        raise PhotoError(path, f"{width}x{height} px is too small to hold a face "
                               f"(smaller side under {MIN_SIDE} px)")


def _to_photo(image: Image.Image) -> Photo:
    alpha = None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA"))[..., 3].copy()
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale 0..65535 to 0..255 (PIL's convert("L") would clip instead)
        grey = np.asarray(image, dtype=np.float64) / 257.0
        rgb = np.repeat(np.clip(np.rint(grey), 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    else:
        rgb = np.asarray(image.convert("RGB"))  # CMYK, grey, palette, YCbCr ...
    return Photo(np.ascontiguousarray(rgb), alpha)


def output_format(path: str | Path) -> str:
    """PIL format name for the photo's own file ending (the output keeps the input's format)."""
    suffix = Path(path).suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF",
            ".bmp": "BMP", ".webp": "WEBP"}[suffix]


def write_photo(photo: Photo, path: str | Path) -> None:
    """Write ``photo`` to ``path`` atomically in the format its ending names, without metadata."""
    fmt = output_format(path)
    if photo.alpha is not None and fmt in _KEEPS_ALPHA:
        image = Image.fromarray(np.dstack([photo.rgb, photo.alpha]), "RGBA")
    else:
        image = Image.fromarray(photo.rgb, "RGB")
    with atomic_file(path) as tmp:
        image.save(tmp, format=fmt, **_SAVE_OPTIONS[fmt])


def copy_photo(src: str | Path, dst: str | Path, max_pixels: int = MAX_PIXELS) -> None:
    """Copy the pixels of ``src`` to ``dst`` (``--no-face copy``): re-encoded, so its metadata
    is stripped like every other output."""
    write_photo(read_photo(src, max_pixels), dst)
