"""The recovery payload of MedSem-DeID: the original face, compressed, encrypted under the
user's key and hidden in the low bits of the shown (generated) face.

What the image *shows* is a generated face; what recovery *needs* travels beside it:

1. the original is JPEG-compressed (4:4:4 chroma, the highest quality of a fixed ladder whose
   file fits the image's capacity: about 95 at 64 px, 39.5 dB on MeMa-Synth);
2. ``[length | JPEG | zero padding]`` is sealed with AES-256-GCM-SIV (``cryptography``), an
   authenticated cipher that is deterministic (same key and image, same output) and safe
   under nonce reuse, so a fixed nonce is sound; the key is a hash of the user's bit string;
3. the ciphertext (always exactly the capacity: its size says nothing about the image) fills
   the ``bits`` lowest bits of every 8-bit channel value of the shown face.

The output is a uint8 image, so an 8-bit PNG stores it exactly; a wrong key fails the cipher's
authentication (``None`` is returned), and so does any lossy re-encoding (JPEG).
Everything here is NumPy/bytes; the method converts from and to tensors.
"""
from __future__ import annotations

import hashlib
import io

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from PIL import Image

_TAG = 16  # bytes of the authentication tag
_LENGTH = 3  # bytes of the plaintext's length field
_NONCE = bytes(12)  # GCM-SIV is nonce-misuse resistant: a fixed nonce only reveals equal inputs
_QUALITIES = (98, 96, 95, 94, 93, 92, 90, 88, 85, 80, 75, 70, 60, 50, 40, 30, 20, 10)
_DOMAIN_PAYLOAD = b"medsem-deid/payload/v2"
_DOMAIN_FACE = b"medsem-deid/face/v2"


def key_bytes(keys: np.ndarray) -> list[bytes]:
    """``{0,1}`` key bit strings ``[B, K]`` (K a multiple of 8) as ``B`` byte strings."""
    keys = np.asarray(keys)
    if keys.ndim != 2 or keys.shape[1] % 8:
        raise ValueError(f"keys must be [B, K] with K a multiple of 8; got {keys.shape}")
    bits = np.rint(keys).astype(np.uint8)
    if bits.max(initial=0) > 1 or not np.allclose(keys, bits):
        raise ValueError("keys must hold only 0 and 1")
    return [row.tobytes() for row in np.packbits(bits, axis=1)]


def face_noise(keys: np.ndarray, dim: int) -> np.ndarray:
    """``[B, dim]`` standard-normal identity codes drawn from the keys (Box-Muller on SHAKE-256
    output): same key, same face; the code is a one-way function of the key, so the shown face
    says nothing about the key that opens the payload."""
    out = np.empty((len(keys), dim), dtype=np.float32)
    for i, key in enumerate(key_bytes(keys)):
        raw = np.frombuffer(hashlib.shake_256(_DOMAIN_FACE + key).digest(8 * dim), dtype="<u4")
        u1, u2 = (raw.reshape(2, dim).astype(np.float64) + 0.5) / 2.0**32
        out[i] = np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2)
    return out


def capacity(height: int, width: int, bits: int) -> int:
    """Ciphertext bytes an ``height x width`` RGB image holds in its ``bits`` low bits."""
    return height * width * 3 * bits // 8


def _cipher(key: bytes) -> AESGCMSIV:
    return AESGCMSIV(hashlib.sha256(_DOMAIN_PAYLOAD + key).digest())


def _compress(image: np.ndarray, room: int) -> bytes:
    """The best JPEG (4:4:4) of ``image`` [H,W,3] uint8 that fits ``room`` bytes: the highest
    quality of a fixed ladder whose file fits, searched from the usual fit (quality 95 at
    64 px) so most images cost two or three encodings; deterministic for a given image."""
    def encode(quality: int) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality, subsampling=0,
                                    optimize=True)
        return buffer.getvalue()

    start = _QUALITIES.index(95)
    best = encode(_QUALITIES[start])
    if len(best) <= room:  # climb while the next quality up still fits
        for quality in reversed(_QUALITIES[:start]):
            data = encode(quality)
            if len(data) > room:
                break
            best = data
        return best
    lo, hi = start + 1, len(_QUALITIES) - 1  # binary search below: the first that fits
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        data = encode(_QUALITIES[mid])
        if len(data) <= room:
            best, hi = data, mid - 1
        else:
            lo = mid + 1
    if best is None:
        raise ValueError(f"a {image.shape[1]}x{image.shape[0]} image does not fit its payload "
                         f"capacity ({room} bytes) even at JPEG quality {_QUALITIES[-1]}")
    return best


def seal(original: np.ndarray, key: bytes, bits: int) -> bytes:
    """Ciphertext (exactly :func:`capacity` bytes) of ``original`` [H,W,3] uint8 under ``key``."""
    h, w, _ = original.shape
    size = capacity(h, w, bits)
    room = size - _TAG - _LENGTH
    jpeg = _compress(original, room)
    plain = len(jpeg).to_bytes(_LENGTH, "big") + jpeg + bytes(room - len(jpeg))
    return _cipher(key).encrypt(_NONCE, plain, f"{h}x{w}x{bits}".encode())


def unseal(ciphertext: bytes, key: bytes, shape: tuple[int, int], bits: int) -> np.ndarray | None:
    """The original [H,W,3] uint8 back, or ``None`` when the key (or the image) is wrong."""
    h, w = shape
    try:
        plain = _cipher(key).decrypt(_NONCE, ciphertext, f"{h}x{w}x{bits}".encode())
    except InvalidTag:
        return None
    length = int.from_bytes(plain[:_LENGTH], "big")
    image = Image.open(io.BytesIO(plain[_LENGTH:_LENGTH + length])).convert("RGB")
    return np.asarray(image)


def embed(shown: np.ndarray, ciphertexts: list[bytes], bits: int) -> np.ndarray:
    """Write each ciphertext into the ``bits`` low bits of ``shown`` [B,H,W,3] uint8, choosing
    for every value the nearest one with the wanted low bits (change <= 2**(bits-1))."""
    b = shown.shape[0]
    planes = np.unpackbits(np.frombuffer(b"".join(ciphertexts), np.uint8).reshape(b, -1), axis=1)
    planes = planes.reshape(b, -1, bits)
    symbols = np.zeros(planes.shape[:2], np.int16)
    for i in range(bits):  # most significant bit first
        symbols = (symbols << 1) | planes[:, :, i]
    step = 1 << bits
    value = shown.reshape(b, -1).astype(np.int16)
    candidate = (value & ~(step - 1)) | symbols
    diff = candidate - value
    candidate -= step * ((diff > step // 2) & (candidate >= step))
    candidate += step * ((diff < -step // 2) & (candidate + step <= 255))
    return candidate.astype(np.uint8).reshape(shown.shape)


def extract(stego: np.ndarray, bits: int) -> list[bytes]:
    """The ciphertexts in the ``bits`` low bits of ``stego`` [B,H,W,3] uint8."""
    b = stego.shape[0]
    symbols = stego.reshape(b, -1) & np.uint8((1 << bits) - 1)
    planes = (symbols[..., None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & 1
    return [row.tobytes() for row in np.packbits(planes.reshape(b, -1), axis=1)]
