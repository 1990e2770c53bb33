"""The key file of a reversible de-identification: who holds it can restore the faces.

JSON, written atomically with file mode 0600 (owner only). For each written photo it holds
the photo's path relative to the output folder, the SHA-256 of the written file (so a key
file is only ever used on the images it was written for), and per face the box, the 5
landmarks (to rebuild the same alignment) and the key, a fresh random bit string per face
drawn from the operating system's generator (``secrets``), in hexadecimal.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from data.files import atomic_file

KEY_FILE_VERSION = 1


class KeyFileError(ValueError):
    """A key file that is unreadable or not the one written for these images."""


def draw_keys(count: int, bits: int) -> Tensor:
    """``[count, bits]`` float {0,1} keys from the OS's cryptographic generator."""
    raw = np.frombuffer(secrets.token_bytes(count * -(-bits // 8)), dtype=np.uint8)
    packed = raw.reshape(count, -1)
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :bits].astype(np.float32))


def key_to_hex(key: Tensor) -> str:
    return np.packbits(key.round().to(torch.uint8).numpy()).tobytes().hex()


def key_from_hex(text: str, bits: int) -> Tensor:
    unpacked = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    if unpacked.size < bits:
        raise ValueError(f"key has {unpacked.size} bits, the method needs {bits}")
    return torch.from_numpy(unpacked[:bits].astype(np.float32))


def file_fingerprint(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_key_file(path: str | Path, header: dict, images: dict[str, dict]) -> None:
    """Write ``{"version", **header, "images": images}`` to ``path`` with mode 0600."""
    payload = {"version": KEY_FILE_VERSION, **header, "images": images}
    with atomic_file(path, mode=0o600) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=str))


def read_key_file(path: str | Path, out_root: str | Path) -> dict:
    """Read a key file and check it was written for the photos under ``out_root``: every photo
    it lists must be there, byte for byte as written."""
    path, out_root = Path(path), Path(out_root)
    try:
        payload = json.loads(path.read_text())
        images = payload["images"]
        method = payload["method"]
    except FileNotFoundError:
        raise KeyFileError(f"{path}: no such key file") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise KeyFileError(f"{path}: not a mema-bench key file ({type(err).__name__}: {err})") from None
    if payload.get("version") != KEY_FILE_VERSION or not isinstance(images, dict) or not method:
        raise KeyFileError(f"{path}: not a mema-bench key file of version {KEY_FILE_VERSION}")
    if not images:
        raise KeyFileError(f"{path}: the key file lists no photos")
    for rel, entry in images.items():
        photo = out_root / rel
        if not photo.is_file():
            raise KeyFileError(f"{path} was not written for {out_root}: {photo} is missing")
        if file_fingerprint(photo) != entry.get("sha256"):
            raise KeyFileError(f"{path} was not written for {photo}: the file differs from the "
                               "one the keys were drawn for (another run, or edited since)")
    return payload
