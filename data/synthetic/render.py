"""Vectorised drawing of MeMa-Synth faces (numpy, a batch of faces per call, no pixel loops).

Every shape is a soft-edged alpha map over a ``[B,H,W]`` grid in *face coordinates*: the grid
of the image is mapped through the inverse of each image's pose (rotation, scale, shift), so a
face is drawn once in its own frame and lands where its pose puts it. Faces are drawn at
``supersample`` times the target size and box-downsampled, so lids and irises a few pixels
wide keep smooth edges.

Two guarantees the benchmark depends on are enforced here by construction:
- everything identity-related is clipped to (a slightly eroded) ``regions.face_mask``; outside
  it only the per-image background shows;
- every medical sign is blended through (a slightly eroded) ``regions.periocular_mask``.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import regions

F = np.float32
SKIN_DARK = np.array([0.35, 0.22, 0.15], F)
SCLERA = np.array([0.94, 0.92, 0.88], F)
INFLAMED = np.array([0.86, 0.30, 0.30], F)
LASH = np.array([0.10, 0.07, 0.06], F)
TUMOUR = np.array([0.93, 0.72, 0.70], F)
XANTHELASMA = np.array([0.97, 0.86, 0.45], F)
MOLE = np.array([0.28, 0.17, 0.11], F)


def col(x) -> np.ndarray:
    """Per-image scalar -> ``[B,1,1]`` for broadcasting over the grid."""
    return np.asarray(x, F)[:, None, None]


def rgb(x) -> np.ndarray:
    """Per-image colour ``[B,3]`` -> ``[B,1,1,3]``."""
    return np.asarray(x, F)[:, None, None, :]


class Canvas:
    """A batch of images being drawn, with the face-frame coordinates of every pixel."""

    def __init__(self, n: int, size: int, rot, scale, shift) -> None:
        self.size = size
        g = (np.arange(size, dtype=F) + 0.5) / size
        x, y = g[None, None, :], g[None, :, None]
        c, s = col(np.cos(rot)), col(np.sin(rot))
        dx, dy = x - 0.5 - col(shift[:, 0]), y - 0.5 - col(shift[:, 1])
        self.u = 0.5 + (c * dx + s * dy) / col(scale)
        self.v = 0.5 + (-s * dx + c * dy) / col(scale)
        self.x, self.y = x, y
        self.pose = (np.asarray(rot, F), np.asarray(scale, F), np.asarray(shift, F))
        self.r0 = self.c0 = 0  # offset of this canvas in the full image (see crop)
        # soft edge of about one supersampled pixel, in face units
        self.aa = col(1.0 / (size * np.asarray(scale, F)))
        self.img = np.zeros((n, size, size, 3), F)

    def crop(self, rows: slice, cols: slice) -> "Canvas":
        """A view of a window of this canvas: drawing on it draws here (saves work on
        small features such as the eyes)."""
        sub = object.__new__(Canvas)
        sub.size = self.size
        sub.u, sub.v = self.u[:, rows, cols], self.v[:, rows, cols]
        sub.x, sub.y = self.x[:, :, cols], self.y[:, rows, :]
        sub.aa, sub.img = self.aa, self.img[:, rows, cols]
        sub.pose, sub.r0, sub.c0 = self.pose, self.r0 + rows.start, self.c0 + cols.start
        sub.face = self.face[:, rows, cols] if hasattr(self, "face") else None
        return sub

    def blend(self, colour, alpha) -> None:
        """Paint ``colour`` (``[B,3]``, ``[B,1,1,3]`` or an image) with opacity ``alpha``;
        only the bounding box where some alpha is non-zero is touched."""
        alpha = np.broadcast_to(alpha, self.img.shape[:3])
        hit = alpha.max(axis=0) > 0
        rows, cols = np.flatnonzero(hit.any(1)), np.flatnonzero(hit.any(0))
        if len(rows) == 0:
            return
        box = (slice(None), slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        if np.ndim(colour) == 2:
            colour = rgb(colour)
        elif colour.shape[1] > 1 or colour.shape[2] > 1:
            colour = colour[box]
        img = self.img[box]
        img += (colour - img) * alpha[box][..., None]

    def edge(self, signed_distance) -> np.ndarray:
        """Alpha of a region given a signed distance (negative inside), anti-aliased."""
        return np.clip(0.5 - signed_distance / self.aa, 0.0, 1.0)

    def ellipse(self, cx, cy, rx, ry) -> np.ndarray:
        """Alpha of an axis-aligned ellipse in face coordinates, computed only inside the
        image window that holds it in every image of the batch."""
        n = self.img.shape[0]
        cx, cy, rx, ry = (np.broadcast_to(np.asarray(a, F).reshape(-1, 1, 1), (n, 1, 1)) for a in (cx, cy, rx, ry))
        rx, ry = np.maximum(rx, 1e-4), np.maximum(ry, 1e-4)  # zero radius = absent
        out = np.zeros(self.u.shape, F)
        rows, cols = self._window(cx.reshape(n), cy.reshape(n), np.maximum(rx, ry).reshape(n))
        if rows.stop <= rows.start or cols.stop <= cols.start:
            return out
        u, v = self.u[:, rows, cols], self.v[:, rows, cols]
        d = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
        out[:, rows, cols] = self.edge((d - 1.0) * np.minimum(rx, ry))
        return out

    def _window(self, cx, cy, radius) -> tuple[slice, slice]:
        """Pixel window of this canvas covering face-frame discs in every image."""
        rot, scale, shift = self.pose
        fx, fy = cx - 0.5, cy - 0.5
        x = 0.5 + shift[:, 0] + scale * (np.cos(rot) * fx - np.sin(rot) * fy)
        y = 0.5 + shift[:, 1] + scale * (np.sin(rot) * fx + np.cos(rot) * fy)
        reach = radius * scale + 2.0 / self.size
        h, w = self.u.shape[1:]
        r0 = int(np.floor((y - reach).min() * self.size)) - self.r0
        r1 = int(np.ceil((y + reach).max() * self.size)) + 1 - self.r0
        c0 = int(np.floor((x - reach).min() * self.size)) - self.c0
        c1 = int(np.ceil((x + reach).max() * self.size)) + 1 - self.c0
        return slice(max(r0, 0), min(r1, h)), slice(max(c0, 0), min(c1, w))

    def band(self, distance, half_width) -> np.ndarray:
        """Alpha of a stroke: points within ``half_width`` of a curve (``distance`` to it)."""
        return self.edge(np.abs(distance) - half_width)


def face_region(landmarks: np.ndarray, size: int, shrink: float = 0.95) -> np.ndarray:
    """``regions.face_mask`` with its radii scaled by ``shrink`` (``[B,H,W]`` float), so a
    face pixel never bleeds out of the evaluator's mask after downsampling."""
    pts = torch.from_numpy(np.ascontiguousarray(landmarks, dtype=F))
    iod = (pts[:, 1] - pts[:, 0]).norm(dim=-1)
    # scaling the landmarks about the ellipse centre scales the ellipse and keeps its centre
    centre = pts.mean(dim=1) - torch.stack([torch.zeros_like(iod), 0.35 * iod], -1)
    shrunk = centre[:, None] + shrink * (pts - centre[:, None])
    return regions.face_mask(shrunk, (size, size))[:, 0].numpy()


def periocular_region(landmarks: np.ndarray, size: int, shrink: float = 0.92) -> np.ndarray:
    """``regions.periocular_mask`` with each eye's ellipse shrunk about its own centre
    (same geometry as ``data.regions``; a test checks it stays inside the real mask)."""
    g = (np.arange(size, dtype=F) + 0.5) / size
    x, y = g[None, None, :], g[None, :, None]
    iod = col(np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=-1).clip(1e-3))
    out = np.zeros((len(landmarks), size, size), F)
    for eye in (0, 1):
        cx, cy = col(landmarks[:, eye, 0]), col(landmarks[:, eye, 1]) - 0.08 * iod
        rx, ry = shrink * 0.48 * iod, shrink * 0.40 * iod
        out = np.maximum(out, (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0).astype(F))
    return out


def draw_faces(p: dict[str, np.ndarray], size: int, supersample: int = 2):
    """Draw a batch of faces.

    ``p`` holds per-image parameter arrays (identity, nuisance and medical factors, see
    ``data.synthetic``); identity and medical arrays are already repeated per image.
    Returns ``images`` uint8 ``[B,size,size,3]``, ``tumour`` bool ``[B,size,size]`` (the
    nodule itself) and ``landmarks`` float ``[B,5,2]`` in pixels of the output image.
    """
    n, big = len(p["d"]), size * supersample
    cv = Canvas(n, big, p["rot"], p["scale"], p["shift"])
    landmarks = face_landmarks(p)
    draw_background(cv, p)
    background = cv.img.copy()
    draw_head(cv, p)
    draw_lower_face(cv, p)
    periocular = periocular_region(landmarks, big)
    # the eyes, brows and signs lie within about 0.6 eye distances of the eyes
    iod = np.linalg.norm(landmarks[:, 1] - landmarks[:, 0], axis=-1).max()
    lo = np.clip(((landmarks[:, :2].min(axis=(0, 1)) - 0.6 * iod) * big).astype(int), 0, big)
    hi = np.clip(((landmarks[:, :2].max(axis=(0, 1)) + 0.6 * iod) * big).astype(int) + 1, 0, big)
    window = (slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    tumour = np.zeros((n, big, big), F)
    tumour[:, window[0], window[1]] = draw_eyes(cv.crop(*window), p, periocular[:, window[0], window[1]])
    # identity lives only inside the face mask: outside it, the background is restored
    cv.img = np.where(face_region(landmarks, big)[..., None] > 0, cv.img, background)
    light = col(p["bright"]) * (
        1 + col(p["light_amp"]) * ((cv.x - 0.5) * col(np.cos(p["light_ang"])) + (cv.y - 0.5) * col(np.sin(p["light_ang"])))
    )
    img = cv.img * light[..., None] * rgb(np.stack([1 + p["tint"], np.ones(n, F), 1 - p["tint"]], -1))
    img = img.reshape(n, size, supersample, size, supersample, 3).mean(axis=(2, 4))
    img = img + p["noise"][:, None, None, None] * p["noise_field"]
    tumour = tumour.reshape(n, size, supersample, size, supersample).mean(axis=(2, 4)) > 0.5
    images = np.clip(np.round(img * 255), 0, 255).astype(np.uint8)
    return images, tumour, landmarks * size


def face_landmarks(p) -> np.ndarray:
    """Eyes, nose tip and mouth corners in the face frame, moved by the pose (normalised)."""
    d, ey = p["d"], p["ey"]
    half = 0.5 * np.ones_like(d)
    face = np.stack([
        np.stack([0.5 - d / 2, ey], -1), np.stack([0.5 + d / 2, ey], -1),
        np.stack([half, p["nose_y"]], -1),
        np.stack([0.5 - p["mouth_w"], p["mouth_y"]], -1), np.stack([0.5 + p["mouth_w"], p["mouth_y"]], -1),
    ], 1)
    c, s = np.cos(p["rot"])[:, None], np.sin(p["rot"])[:, None]
    fx, fy = face[..., 0] - 0.5, face[..., 1] - 0.5
    x = 0.5 + p["shift"][:, :1] + p["scale"][:, None] * (c * fx - s * fy)
    y = 0.5 + p["shift"][:, 1:] + p["scale"][:, None] * (s * fx + c * fy)
    return np.stack([x, y], -1).astype(F)


def draw_background(cv: Canvas, p) -> None:
    """A per-image gradient and blob, drawn in image (not face) coordinates: no identity."""
    t = np.clip(0.5 + (cv.x - 0.5) * col(np.cos(p["bg_ang"])) + (cv.y - 0.5) * col(np.sin(p["bg_ang"])), 0, 1)
    cv.img[:] = rgb(p["bg1"]) + (rgb(p["bg2"]) - rgb(p["bg1"])) * t[..., None]
    blob = np.sqrt((cv.x - col(p["blob"][:, 0])) ** 2 + (cv.y - col(p["blob"][:, 1])) ** 2) < col(p["blob"][:, 2])
    cv.blend(p["blob_col"], 0.6 * blob.astype(F))


def hair_colour(cv: Canvas, p) -> np.ndarray:
    """Hair colour with an identity-specific strand texture (fixed in the face frame)."""
    ang, freq = col(p["hair_ang"]), col(p["hair_freq"])
    wave = np.sin(2 * np.pi * freq * (cv.u * np.cos(ang) + cv.v * np.sin(ang)) + col(p["hair_phase"]))
    return rgb(p["hair_col"]) * (1 + 0.12 * wave)[..., None]


def draw_head(cv: Canvas, p) -> None:
    """Back hair, neck, ears, face oval, front hair, moles and freckles."""
    u, v = cv.u, cv.v
    rx, ry, cy = col(p["face_rx"]), col(p["face_ry"]), col(p["face_cy"])
    style, vol = p["hair_style"], col(p["hair_vol"])
    hair = hair_colour(cv, p)
    # back hair: a cap around the head, plus falling sides for long styles
    cap = cv.ellipse(0.5 * np.ones_like(p["d"]), p["face_cy"] - 0.04, p["face_rx"] + p["hair_vol"], p["face_ry"] * 0.75 + p["hair_vol"])
    long_sides = cv.edge(np.maximum(np.abs(u - 0.5) - (rx + 0.8 * vol), v - col(p["hair_len"]))) * (v > cy - 0.1)
    back = np.maximum(cap, long_sides * col(style == 1)) * col(style != 2)
    big = cv.ellipse(0.5 * np.ones_like(p["d"]), p["face_cy"] - 0.02, p["face_rx"] + 2.2 * p["hair_vol"], p["face_ry"] + 1.4 * p["hair_vol"])
    back = np.maximum(back, big * col(style == 4))
    cv.blend(hair, back)
    skin = p["skin"]
    neck = cv.edge(np.maximum(np.abs(u - 0.5) - 0.55 * rx, cy + 0.25 - v))
    cv.blend(skin * 0.82, neck)
    for side in (-1, 1):
        cv.blend(skin * 0.9, cv.ellipse(0.5 + side * p["face_rx"] * 0.97, p["ey"] + 0.04, 0.03 * p["ear"], 0.06 * p["ear"]))
    # face oval narrowing towards the jaw
    taper = 1 - col(p["jaw"]) * np.clip((v - cy) / ry, 0, 1) ** 2
    dist = np.sqrt(((u - 0.5) / (rx * taper)) ** 2 + ((v - cy) / ry) ** 2)
    shade = (1 - 0.10 * np.clip(dist, 0, 1) ** 3)[..., None]
    cv.face = cv.edge((dist - 1) * rx)
    cv.blend(rgb(skin) * shade, cv.face)
    if "age_lines" in p:
        for k in range(3):
            line = cv.band(v - (cy - 0.62 * ry + 0.025 * k) - 0.01 * np.sin(8 * u), 0.0025)
            cv.blend(skin * 0.8, 0.6 * line * (np.abs(u - 0.5) < 0.6 * rx) * col(p["age_lines"] > k))
    # front hair: above an identity-specific hairline, plus sideburn strips
    hairline = col(p["hairline"]) + col(p["part"]) * (u - 0.5) + 0.5 * (u - 0.5) ** 2
    head = cv.ellipse(0.5 * np.ones_like(p["d"]), p["face_cy"], p["face_rx"] + p["hair_vol"] * 0.5, p["face_ry"] + p["hair_vol"] * 0.5)
    front = head * np.maximum(cv.edge(v - hairline), cv.edge(np.maximum(0.86 * rx - np.abs(u - 0.5), v - col(p["ey"]) + 0.06)))
    cv.blend(hair, front * col(style != 2))
    for k in range(p["moles"].shape[1]):
        m = p["moles"][:, k]
        cv.blend(MOLE[None].repeat(len(m), 0), cv.ellipse(m[:, 0], m[:, 1], m[:, 2], m[:, 2]) * col(m[:, 2] > 0) * cv.face)
    for k in range(p["freckles"].shape[1]):
        f = p["freckles"][:, k]
        cv.blend(skin * 0.72, 0.55 * cv.ellipse(f[:, 0], f[:, 1], f[:, 2], f[:, 2]) * col(f[:, 2] > 0))


def draw_lower_face(cv: Canvas, p) -> None:
    """Nose, mouth (with expression) and facial hair."""
    u, v = cv.u, cv.v
    skin, ny, nw = p["skin"], col(p["nose_y"]), col(p["nose_w"])
    bridge = cv.band(u - 0.5 - 0.35 * nw, 0.006) * (v > col(p["ey"]) + 0.05) * (v < ny - 0.01)
    cv.blend(skin * 0.8, 0.35 * bridge)
    cv.blend(skin * 1.06, 0.5 * cv.ellipse(0.5 * np.ones_like(p["d"]), p["nose_y"] - 0.012, p["nose_w"] * 0.8, 0.022 * np.ones_like(p["d"])))
    for side in (-1, 1):
        cv.blend(skin * 0.45, cv.ellipse(0.5 + side * 0.5 * p["nose_w"], p["nose_y"] + 0.008, 0.011 + 0.1 * p["nose_w"], 0.0065 * np.ones_like(p["d"])))
    mw, my = col(p["mouth_w"]), col(p["mouth_y"])
    t = np.clip((u - 0.5) / mw, -1, 1)
    inside = cv.edge(np.abs(u - 0.5) - mw)
    centre = my + col(p["smile"]) * (1 - t**2)
    half_open = col(p["mouth_open"]) * np.sqrt(1 - t**2)
    lips = cv.edge(np.maximum(centre - half_open - col(p["lip_up"]) * np.sqrt(1 - t**2) - v, v - centre - half_open - col(p["lip_lo"]) * np.sqrt(1 - t**2))) * inside
    cv.blend(p["lip_col"], lips)
    gap = cv.edge(np.maximum(centre - half_open - v, v - centre - half_open) - 0.002) * inside
    cv.blend(np.full_like(skin, 0.22) * np.array([1.0, 0.5, 0.5], F), 0.8 * gap)
    beard = p["beard"]
    moustache = cv.edge(np.maximum(np.abs(u - 0.5) - mw * 1.05, np.abs(v - (my - col(p["lip_up"]) - 0.014)) - 0.009))
    chin = cv.ellipse(0.5 * np.ones_like(p["d"]), p["mouth_y"] + p["lip_lo"] + 0.05, 0.6 * p["mouth_w"], 0.045 * np.ones_like(p["d"])) * cv.face
    full = cv.edge(my - 0.015 - v) * (1 - lips) * (1 - gap) * cv.face
    growth = np.maximum.reduce([moustache * col(beard == 1), np.maximum(moustache, chin) * col(beard == 3), full * col(beard == 2)])
    cv.blend(hair_colour(cv, p) * 0.9, 0.85 * growth)


def draw_eyes(cv: Canvas, p, periocular: np.ndarray) -> np.ndarray:
    """Brows, lids, eyes and the eye-region signs; returns the tumour alpha ``[B,H,W]``."""
    tumour = np.zeros(cv.u.shape, F)
    for k, outward in ((0, -1.0), (1, 1.0)):  # left eye (as seen) looks out towards -x
        tumour = np.maximum(tumour, draw_eye(cv, p, periocular, k, outward))
    return tumour


def draw_eye(cv: Canvas, p, sign_region, k: int, outward: float) -> np.ndarray:
    u, v = cv.u, cv.v
    d, r, skin = col(p["d"]), col(p["iris_r"]), p["skin"]
    ex, ey = 0.5 + outward * d / 2, col(p["ey"])
    ptosis, retraction = col(p["ptosis"][:, k]), col(p["retraction"][:, k])
    h_up0, h_lo0 = col(p["h_up"]), col(p["h_lo"])
    w = col(p["eye_w"]) * (1 + 0.10 * retraction)  # proptosis: the eye looks wider
    # ptosis lowers the upper lid over the iris; retraction lifts it to show sclera above it
    h_up = h_up0 * (1 - 0.78 * ptosis) + retraction * (np.maximum(r - h_up0, 0) + 0.45 * r)
    h_lo = h_lo0 + retraction * 0.35 * r
    tt = (u - ex) / w
    shape = np.sqrt(np.clip(1 - tt**2, 0, 1))
    tilt = -col(p["tilt"]) * tt * outward  # positive tilt lifts the outer corner
    v_up, v_lo = ey + tilt - h_up * shape**0.7, ey + tilt + h_lo * shape**0.9

    def sign(alpha):  # every medical sign is confined to the periocular region
        return alpha * sign_region

    draw_lid_lesions(cv, p, sign, k, outward, ex, ey, w, h_up0, h_lo0)
    draw_brow(cv, p, sign, ex, ey, d, outward, ptosis)
    crease = ey + tilt - (h_up0 + col(p["crease"]) * r * (1 + 0.9 * ptosis)) * shape**0.7
    cv.blend(skin * 0.72, 0.45 * cv.band(v - crease, 0.0028) * (np.abs(tt) < 0.92))
    opening = cv.edge(np.maximum(np.maximum(v_up - v, v - v_lo), (np.abs(tt) - 1) * w))
    cv.blend(eyeball(cv, p, k, outward, ex, ey, w, r, v_up), opening)
    lash = cv.band(v - v_up, col(p["lash_th"])) * cv.edge((np.abs(tt) - 1.06) * w)
    cv.blend(LASH[None].repeat(len(d), 0), 0.9 * lash)
    cv.blend(skin * 0.7, 0.35 * cv.band(v - v_lo, 0.0022) * (np.abs(tt) < 1))
    redness = col(p["redness"][:, k])
    margins = np.maximum(cv.band(v - v_lo - 0.003, 0.003), cv.band(v - v_up + 0.006, 0.003)) * (np.abs(tt) < 1)
    cv.blend(INFLAMED[None].repeat(len(d), 0), sign(0.6 * redness * margins))
    return draw_tumour(cv, p, sign, k, outward, ex, ey, w, h_lo0, d)


def eyeball(cv: Canvas, p, k, outward, ex, ey, w, r, v_up) -> np.ndarray:
    """What shows through the lid opening: sclera (red when inflamed), iris, pupil, reflex."""
    u, v = cv.u, cv.v
    redness = col(p["redness"][:, k])[..., None]
    # a fixed web of vessels, visible only as the sclera reddens
    vessels = (np.sin(2 * np.pi * (70 * u + 4 * np.sin(60 * v))) > 0.6)[..., None]
    sclera = SCLERA + (INFLAMED - SCLERA) * redness * (0.55 + 0.4 * vessels)
    # strabismus: one iris turned in (-) or out (+), relative to the shared gaze
    gx = ex + col(p["gaze"][:, 0]) * w + col(p["strabismus"][:, k]) * outward * w
    gy = ey + col(p["gaze"][:, 1]) * r
    rr = np.sqrt((u - gx) ** 2 + (v - gy) ** 2) / r
    fibres = 1 + 0.12 * np.sin(14 * np.arctan2(v - gy, u - gx))
    iris = rgb(p["iris_col"]) * ((1 - 0.5 * np.clip((rr - 0.72) / 0.28, 0, 1)) * fibres)[..., None]
    a_iris, a_pupil = cv.edge((rr - 1) * r), cv.edge((rr - 0.42) * r)
    out = sclera * (1 - a_iris[..., None]) + iris * a_iris[..., None]
    out = out * (1 - a_pupil[..., None]) + 0.04 * a_pupil[..., None]
    glint = cv.ellipse(gx + 0.3 * r, gy - 0.35 * r, 0.2 * r, 0.2 * r)
    out = out + (0.97 - out) * 0.9 * glint[..., None]
    lid_shadow = 1 - 0.35 * np.clip(1 - (v - v_up) / (0.45 * r), 0, 1)
    return out * lid_shadow[..., None]


def draw_brow(cv: Canvas, p, sign, ex, ey, d, outward, ptosis) -> None:
    """Identity-shaped brow; ptosis raises it on that side (frontalis compensation)."""
    u, v = cv.u, cv.v
    half = col(p["brow_w"]) * d
    t = (u - ex - outward * 0.03 * d) / half * outward  # -1 at the inner end, +1 outer
    thick = col(p["brow_th"]) * d * (1 - 0.45 * np.clip((t + 1) / 2, 0, 1))
    inside = cv.edge((np.abs(t) - 1) * half)

    def brow(lift):
        centre = ey - (col(p["brow_gap"]) + lift) * d - col(p["brow_arch"]) * d * (1 - t**2) - col(p["brow_slant"]) * d * t
        return cv.band(v - centre, thick / 2) * inside

    healthy = brow(0.0)
    alpha = healthy + sign(brow(0.07 * ptosis) - healthy)
    texture = 1 + 0.2 * np.sin(2 * np.pi * 90 * (u + 0.3 * v))
    cv.blend(rgb(p["brow_col"]) * texture[..., None], 0.92 * alpha)


def draw_lid_lesions(cv: Canvas, p, sign, k, outward, ex, ey, w, h_up0, h_lo0) -> None:
    """Periorbital swelling (thyroid eye disease), xanthelasma and chalazion."""
    skin, d, inner = p["skin"], col(p["d"]), -outward
    swell = col(p["swelling"][:, k])
    cv.blend(skin * np.array([1.1, 0.95, 0.93], F), sign(0.6 * swell * cv.ellipse(ex, ey - h_up0 - 0.09 * d, 0.27 * d, 0.09 * d)))
    cv.blend(skin * np.array([0.92, 0.78, 0.8], F), sign(0.55 * swell * cv.ellipse(ex, ey + h_lo0 + 0.09 * d, 0.22 * d, 0.06 * d)))
    xan = col(p["xanthelasma"][:, k])
    plaque = cv.ellipse(ex + inner * 0.5 * w, ey - h_up0 - 0.05 * d, 0.15 * d * (0.6 + 0.4 * xan), 0.06 * d)
    cv.blend(XANTHELASMA[None].repeat(len(skin), 0), sign(0.85 * (xan > 0) * plaque))
    on, upper, offset, radius = (col(p["chalazion"][:, k, i]) for i in range(4))
    cy = np.where(upper > 0, ey - h_up0 - 0.07 * d, ey + h_lo0 + 0.07 * d)
    cx, rad = ex + offset * w, np.maximum(radius, 1e-3) * d
    # a firm round swelling: shadowed below, reddened, with a highlight on top
    cv.blend(skin * 0.62, sign(0.8 * on * cv.ellipse(cx, cy + 0.3 * rad, rad, rad * 0.85)))
    cv.blend(skin * np.array([1.08, 0.74, 0.72], F), sign(on * cv.ellipse(cx, cy, rad, rad * 0.85)))
    cv.blend(skin * 1.2, sign(0.65 * on * cv.ellipse(cx - 0.2 * rad, cy - 0.35 * rad, 0.45 * rad, 0.3 * rad)))


def draw_tumour(cv: Canvas, p, sign, k, outward, ex, ey, w, h_lo0, d) -> np.ndarray:
    """Basal cell carcinoma: pearly nodule with a rolled edge, a central dip and fine
    vessels, on the lower lid or the inner corner. Returns its alpha (the MeMa-Seg mask)."""
    radius, corner, offset = (col(p["tumour"][:, k, i]) for i in range(3))
    on = radius > 0
    rad = np.maximum(radius, 1e-3) * d
    lid_x = ex + offset * 0.5 * w
    lid_y = ey + h_lo0 * np.sqrt(1 - (offset * 0.5) ** 2)
    cx = np.where(corner > 0, ex - outward * (w + 0.25 * rad), lid_x)
    cy = np.where(corner > 0, ey + 0.05 * d, lid_y)
    nodule = sign(on * cv.ellipse(cx, cy, rad, rad * 0.85))
    cv.blend(TUMOUR[None].repeat(len(d), 0), nodule)
    cv.blend(np.tile(TUMOUR * 1.07, (len(d), 1)).clip(0, 1), sign(on * cv.ellipse(cx, cy, 0.62 * rad, 0.5 * rad)))
    cv.blend(np.tile(TUMOUR * 0.85, (len(d), 1)), sign(on * cv.ellipse(cx, cy, 0.28 * rad, 0.24 * rad)))
    vessels = cv.band(np.sin(2 * np.pi * (cv.u - cx) / (0.7 * rad) + 3 * (cv.v - cy) / rad), 0.25)
    cv.blend(INFLAMED[None].repeat(len(d), 0), 0.45 * vessels * nodule)
    return nodule
