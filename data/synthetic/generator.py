"""MeMa-Synth: procedural patient faces with eye-region diseases, written in the MeMa layout.

The MeMa release (Tian, Wang, Zhai, AAAI 2025) is not redistributable, so the suite embeds a
generator whose output flows through the same loader. Three groups of factors are drawn
independently (``data/README.md`` has the full list):

- identity (per person): face shape, skin tone, eye shape, spacing and tilt, iris colour,
  brows, nose, mouth, hair style/colour/texture, moles, freckles, facial hair, age lines;
- nuisance (per image): small pose, lighting, expression, gaze, background, sensor noise;
- medical (per image, prevalence depending on the person's age and sex, docs/conditions.md):
  one coarse condition with fine-grained signs and laterality, drawn only inside the
  periocular region. Eyelid tumours carry a pixel mask of the nodule (MeMa-Seg).

Left/right in sign names are as seen in the image (the landmark convention).
Same arguments, same bytes: every random draw comes from generators seeded by ``seed``.

CLI: ``python -m data.synthetic --out DIR [--identities N] [--images-per-identity K]
[--size S] [--seed N] [--preview PNG] [--report]``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..files import atomic_directory
from ..layout import METADATA, format_landmarks, write_classes
from ..paths import cache_root
from .render import draw_faces

#: bump when the drawing changes, so cached sets are regenerated
GENERATOR_VERSION = 3
DEFAULTS = dict(identities=400, images_per_identity=8, size=64, seed=0)
SPLIT_FRACTIONS = (("train", 0.6), ("val", 0.1), ("test", 0.3))

CLASSES = [
    "healthy", "ptosis", "thyroid_eye_disease", "red_eye",
    "eyelid_tumour", "chalazion", "xanthelasma", "strabismus",
]
SIDES = ("left", "right", "both")
SIGNS = (
    [f"ptosis_{s}" for s in SIDES]
    + [f"lid_retraction_{s}" for s in SIDES]
    + ["swelling_both"]
    + [f"redness_{s}" for s in SIDES]
    + ["tumour_left", "tumour_right", "chalazion_left", "chalazion_right"]
    + [f"xanthelasma_{s}" for s in SIDES]
    + ["strabismus_left", "strabismus_right"]
)

F = np.float32
SKIN_LIGHT, SKIN_DEEP = np.array([0.97, 0.82, 0.70]), np.array([0.38, 0.24, 0.16])
HAIR = np.array([
    [0.07, 0.06, 0.05], [0.22, 0.13, 0.07], [0.42, 0.27, 0.15], [0.55, 0.24, 0.10],
    [0.86, 0.72, 0.45], [0.75, 0.38, 0.14], [0.30, 0.28, 0.30],
])
GREY_HAIR = np.array([0.74, 0.73, 0.72])
IRIS = np.array([
    [0.22, 0.12, 0.05], [0.42, 0.25, 0.10], [0.52, 0.46, 0.20], [0.28, 0.55, 0.30],
    [0.30, 0.52, 0.88], [0.55, 0.62, 0.68], [0.68, 0.48, 0.12],
])
# hair styles: short, long, bald, fringe, curly volume, side parting
STYLE_P = {"F": [0.15, 0.45, 0.0, 0.2, 0.12, 0.08], "M": [0.42, 0.06, 0.2, 0.08, 0.12, 0.12]}


def condition_weights(age: np.ndarray, female: np.ndarray) -> np.ndarray:
    """Relative prevalence ``[N, classes]`` given age and sex (docs/conditions.md, last column)."""
    age = age.astype(float)
    ones = np.ones_like(age)
    return np.stack([
        1.0 * ones,                                                     # healthy
        0.5 + 0.9 * age / 80,                                           # ptosis: aponeurotic, with age
        np.where(female, 1.4, 0.32) * np.where((age >= 30) & (age <= 60), 1.3, 0.5),  # thyroid
        0.8 * ones,                                                     # red eye: all ages
        np.where(age >= 50, 1.4, np.where(age >= 35, 0.5, 0.12)) * np.where(female, 1.0, 1.15),
        np.where((age >= 18) & (age <= 50), 1.15, 0.6),                  # chalazion
        np.where(age >= 45, 1.2, 0.25) * np.where(female, 1.15, 1.0),   # xanthelasma
        np.where(age < 18, 1.4, 0.7),                                   # strabismus
    ], axis=1)


def sample_identities(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-person appearance, age and sex."""
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n, *shape)).astype(F)  # noqa: E731
    female = rng.random(n) < 0.5
    age = rng.integers(6, 86, n)
    d = u(0.27, 0.33)
    ey = u(0.40, 0.44)
    tone = u(0, 1)[:, None]
    skin = SKIN_LIGHT * (1 - tone) + SKIN_DEEP * tone + rng.normal(0, 0.02, (n, 3))
    hair = HAIR[rng.integers(0, len(HAIR), n)] + rng.normal(0, 0.03, (n, 3))
    grey = (age > 50) & (rng.random(n) < (age - 50) / 35)
    hair[grey] = GREY_HAIR + rng.normal(0, 0.03, (grey.sum(), 3))
    style = np.array([rng.choice(6, p=STYLE_P["F" if f else "M"]) for f in female])
    style[(style == 2) & (age < 25)] = 0
    face_cy, face_ry = ey + u(0.06, 0.10), u(0.36, 0.42)
    iris_r = u(0.14, 0.165) * d
    nose_y = ey + u(0.15, 0.19)
    p = dict(
        female=female, age=age, d=d, ey=ey, skin=skin.clip(0, 1).astype(F),
        face_rx=d / 2 + u(0.10, 0.14), face_ry=face_ry, face_cy=face_cy, jaw=u(0.0, 0.35),
        ear=u(0.8, 1.2), hair_col=hair.clip(0, 1).astype(F), hair_style=style,
        hair_vol=u(0.02, 0.07), hair_len=u(0.72, 0.95),
        hairline=np.where(style == 3, ey - 0.5 * d - u(0, 0.03), face_cy - face_ry + u(0.07, 0.13)).astype(F),
        part=np.where(style == 5, rng.choice([-1, 1], n) * u(0.15, 0.35), u(-0.05, 0.05)).astype(F),
        hair_freq=u(6, 16), hair_ang=u(0, np.pi), hair_phase=u(0, 2 * np.pi),
        brow_col=(hair * 0.75 + rng.normal(0, 0.03, (n, 3))).clip(0, 1).astype(F),
        brow_th=u(0.045, 0.075), brow_arch=u(0.0, 0.05), brow_slant=u(-0.04, 0.04),
        brow_gap=u(0.26, 0.31), brow_w=u(0.22, 0.27),
        iris_col=(IRIS[rng.integers(0, len(IRIS), n)] + rng.normal(0, 0.035, (n, 3))).clip(0, 1).astype(F),
        eye_w=u(0.24, 0.28) * d, iris_r=iris_r, h_up=u(0.85, 1.1) * iris_r, h_lo=u(0.65, 0.95) * iris_r,
        tilt=u(-0.012, 0.012), lash_th=u(0.003, 0.006), crease=u(0.4, 0.8),
        nose_y=nose_y, nose_w=u(0.025, 0.045), mouth_y=nose_y + u(0.11, 0.15), mouth_w=u(0.065, 0.095),
        lip_up=u(0.006, 0.013), lip_lo=u(0.008, 0.016),
        age_lines=np.clip((age - 45) // 12, 0, 3).astype(F),
        beard=np.where((~female) & (age > 17), rng.choice(4, n, p=[0.6, 0.13, 0.15, 0.12]), 0),
    )
    p["lip_col"] = (p["skin"] * np.array([0.85, 0.55, 0.55]) + np.array([0.1, 0.0, 0.02]) + rng.normal(0, 0.02, (n, 3))).clip(0, 1).astype(F)
    rx = p["face_rx"][:, None]
    n_moles = rng.choice(4, n, p=[0.35, 0.35, 0.2, 0.1])
    moles = np.stack([0.5 + u(-0.8, 0.8, 3) * rx, ey[:, None] - 0.12 + u(0, 1, 3) * (p["mouth_y"] - ey + 0.18)[:, None], u(0.007, 0.012, 3)], -1)
    moles[..., 2] *= np.arange(3)[None] < n_moles[:, None]
    side = rng.choice([-1, 1], (n, 12))
    freckles = np.stack([0.5 + side * u(0.05, 0.6, 12) * rx, ey[:, None] + 0.06 + u(0, 1, 12) * (nose_y - ey - 0.03)[:, None], u(0.0035, 0.006, 12)], -1)
    freckles[..., 2] *= (rng.random(n) < 0.25)[:, None]
    p["moles"], p["freckles"] = moles.astype(F), freckles.astype(F)
    return p


def sample_nuisance(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Per-image pose, light, expression, gaze, background and noise level."""
    u = lambda lo, hi, *shape: rng.uniform(lo, hi, (n, *shape)).astype(F)  # noqa: E731
    return dict(
        rot=np.clip(rng.normal(0, 0.04, n), -0.08, 0.08).astype(F), scale=u(0.94, 1.04), shift=u(-0.025, 0.025, 2),
        light_amp=u(0, 0.3), light_ang=u(0, 2 * np.pi), bright=u(0.85, 1.1), tint=u(-0.04, 0.04),
        smile=u(-0.006, 0.012), mouth_open=np.where(rng.random(n) < 0.7, 0, u(0.002, 0.008)).astype(F),
        gaze=np.stack([u(-0.12, 0.12), u(-0.1, 0.1)], -1),
        bg1=u(0.1, 0.95, 3), bg2=u(0.1, 0.95, 3), bg_ang=u(0, 2 * np.pi),
        blob=np.stack([u(0, 1), u(0, 1), u(0.05, 0.25)], -1), blob_col=u(0.1, 0.95, 3),
        noise=u(0.004, 0.02),
    )


def sample_conditions(rng, age, female, split) -> np.ndarray:
    """Coarse condition index per image from the age/sex prevalence. In small sets, classes
    missing from a split are forced in (eyelid tumour first, so every split of even a tiny
    set has MeMa-Seg masks), taking rows from classes that have more than one."""
    weights = condition_weights(age, female)
    cum = np.cumsum(weights / weights.sum(1, keepdims=True), axis=1)
    cond = (rng.random(len(age))[:, None] > cum).sum(1).clip(0, len(CLASSES) - 1)
    priority = [CLASSES.index("eyelid_tumour")] + [c for c in range(len(CLASSES)) if CLASSES[c] != "eyelid_tumour"]
    for name in sorted(set(split)):
        rows = np.flatnonzero(split == name)
        for c in priority:
            counts = np.bincount(cond[rows], minlength=len(CLASSES))
            if counts[c] or counts.max() < (1 if c == priority[0] else 2):
                continue
            donors = rows[cond[rows] == counts.argmax()]
            cond[donors[rng.integers(len(donors))]] = c
    return cond


def _side(rng, n, both=True, p_both=0.4):
    """Laterality index per image: 0 left, 1 right, 2 both."""
    if not both:
        return rng.integers(0, 2, n)
    return np.where(rng.random(n) < p_both, 2, rng.integers(0, 2, n))


def sample_medical(rng: np.random.Generator, cond: np.ndarray):
    """Per-eye sign strengths for each image, and the fine-grained sign names."""
    n = len(cond)
    zeros2 = lambda *extra: np.zeros((n, 2, *extra), F)  # noqa: E731
    m = dict(ptosis=zeros2(), retraction=zeros2(), redness=zeros2(), swelling=zeros2(),
             xanthelasma=zeros2(), strabismus=zeros2(), chalazion=zeros2(4), tumour=zeros2(3))
    signs = [[] for _ in range(n)]
    sev = rng.uniform(0.55, 1.0, n).astype(F)
    side = _side(rng, n)
    side2 = rng.integers(0, 2, n)
    extra = rng.random((n, 2))
    idx = np.arange(n)

    def apply(key, rows, sides, values, sign):
        for i, s in zip(rows, sides[rows]):
            eyes = (0, 1) if s == 2 else (s,)
            for e in eyes:
                m[key][i, e] = values[i]
            signs[i].append(f"{sign}_{SIDES[s]}")

    c = CLASSES.index
    apply("ptosis", idx[cond == c("ptosis")], side, sev, "ptosis")
    ted = idx[cond == c("thyroid_eye_disease")]
    apply("retraction", ted, _side(rng, n, p_both=0.6), sev, "lid_retraction")
    apply("swelling", ted[extra[ted, 0] < 0.5], np.full(n, 2), sev, "swelling")
    apply("redness", ted[extra[ted, 1] < 0.35], np.full(n, 2), 0.35 * sev, "redness")
    apply("redness", idx[cond == c("red_eye")], side, sev, "redness")
    tumour = np.stack([rng.uniform(0.12, 0.16, n), rng.random(n) < 0.3, rng.uniform(-1, 1, n)], -1).astype(F)
    apply("tumour", idx[cond == c("eyelid_tumour")], side2, tumour, "tumour")
    chalazion = np.stack([np.ones(n), rng.random(n) < 0.6, rng.uniform(-0.5, 0.5, n), rng.uniform(0.11, 0.14, n)], -1).astype(F)
    apply("chalazion", idx[cond == c("chalazion")], side2, chalazion, "chalazion")
    apply("xanthelasma", idx[cond == c("xanthelasma")], _side(rng, n, p_both=0.5), sev, "xanthelasma")
    turn = (rng.choice([-1, 1], n) * rng.uniform(0.4, 0.7, n)).astype(F)
    apply("strabismus", idx[cond == c("strabismus")], side2, turn, "strabismus")
    return m, [";".join(s) for s in signs]


def split_identities(rng: np.random.Generator, n: int) -> np.ndarray:
    """Identity-disjoint split, about 60/10/30, at least one identity each."""
    order = rng.permutation(n)
    n_val = max(1, round(SPLIT_FRACTIONS[1][1] * n))
    n_test = max(1, round(SPLIT_FRACTIONS[2][1] * n))
    n_train = n - n_val - n_test
    split = np.empty(n, dtype=object)
    split[order[:n_train]] = "train"
    split[order[n_train:n_train + n_val]] = "val"
    split[order[n_train + n_val:]] = "test"
    return split


def sample_dataset(identities: int, images_per_identity: int, seed: int, persistent_condition: bool = False):
    """All parameters of a MeMa-Synth set: identity, per-image nuisance and medical factors.

    By default each photo draws its own condition; with ``persistent_condition`` a person's
    condition, signs and side are drawn once and shown in all their photos (as in a clinic),
    which lets the diagnosis alone narrow down who a photo shows (the attribute-only
    re-identification floor, ``data.calibration.attribute_reid_floor``)."""
    if identities < 3 or images_per_identity < 1:
        raise ValueError("MeMa-Synth needs at least 3 identities (one per split) and 1 image each")
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    people = sample_identities(rng, identities)
    id_split = split_identities(rng, identities)
    person = np.repeat(np.arange(identities), images_per_identity)
    params = {k: v[person] for k, v in people.items()}
    params.update(sample_nuisance(rng, len(person)))
    if persistent_condition:
        cond = sample_conditions(rng, people["age"], people["female"], id_split)
        medical, signs = sample_medical(rng, cond)
        medical = {k: v[person] for k, v in medical.items()}
        cond, signs = cond[person], [signs[p] for p in person]
    else:
        cond = sample_conditions(rng, params["age"], params["female"], id_split[person])
        medical, signs = sample_medical(rng, cond)
    params.update(medical)
    return params, person, id_split[person], cond, signs


def render(params: dict, size: int, seed: int, start: int, stop: int):
    """Draw images ``start:stop``; the sensor noise comes from a generator keyed by the chunk."""
    chunk = {k: v[start:stop] for k, v in params.items()}
    noise_rng = np.random.default_rng([seed, GENERATOR_VERSION, start])
    chunk["noise_field"] = noise_rng.standard_normal((stop - start, size, size, 3)).astype(F)
    supersample = 2
    return draw_faces(chunk, size, supersample)


def generate(out: str | Path, identities: int = 400, images_per_identity: int = 8, size: int = 64,
             seed: int = 0, chunk: int = 128, progress: bool = True,
             persistent_condition: bool = False) -> Path:
    """Write a MeMa-Synth set to ``out`` (atomically: a temporary folder renamed at the end)."""
    if size < 32:
        raise ValueError(f"--size must be at least 32 px (got {size}); signs need >= 64 px to be clear")
    params, person, split, cond, signs = sample_dataset(identities, images_per_identity, seed,
                                                        persistent_condition)
    out = Path(out)
    rows = []
    with atomic_directory(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "masks").mkdir()
        bar = tqdm(total=len(person), desc="MeMa-Synth", unit="img", disable=not progress)
        for start in range(0, len(person), chunk):
            stop = min(start + chunk, len(person))
            images, tumour, landmarks = render(params, size, seed, start, stop)
            for j, i in enumerate(range(start, stop)):
                rows.append(_write_image(tmp, i, person[i], images_per_identity, images[j], tumour[j],
                                         landmarks[j], split[i], CLASSES[cond[i]], signs[i], params))
            bar.update(stop - start)
        bar.close()
        pd.DataFrame(rows).to_csv(tmp / METADATA, index=False)
        write_classes(tmp, CLASSES, SIGNS)
        (tmp / "synth.json").write_text(json.dumps(
            synth_info(identities, images_per_identity, size, seed, persistent_condition), indent=2) + "\n")
    return out


def _write_image(root, i, person, k, image, tumour, landmarks, split, label, signs, params) -> dict:
    ident = f"p{person:04d}"
    rel = f"images/{ident}/{ident}_{i % k}.png"
    (root / rel).parent.mkdir(exist_ok=True)
    Image.fromarray(image).save(root / rel)
    mask = ""
    if label == "eyelid_tumour":
        mask = f"masks/{ident}_{i % k}.png"
        Image.fromarray((tumour * 255).astype(np.uint8)).save(root / mask)
    return dict(image=rel, split=split, label=label, signs=signs, identity=ident,
                age=int(params["age"][i]), sex="F" if params["female"][i] else "M",
                mask=mask, landmarks=format_landmarks(landmarks))


def synth_info(identities: int, images_per_identity: int, size: int, seed: int,
               persistent_condition: bool = False) -> dict:
    """What ``synth.json`` records (the option appears only when on, so sets generated before
    it existed still match)."""
    info = dict(generator_version=GENERATOR_VERSION, identities=identities,
                images_per_identity=images_per_identity, size=size, seed=seed)
    return {**info, "persistent_condition": True} if persistent_condition else info


def default_root(identities: int, images_per_identity: int, size: int, seed: int,
                 persistent_condition: bool = False) -> Path:
    return cache_root() / "data" / (
        f"mema-synth-v{GENERATOR_VERSION}-{identities}x{images_per_identity}-{size}px-seed{seed}"
        + ("-persistent" if persistent_condition else ""))


def ensure_mema_synth(root: str | Path | None = None, *, identities: int = 400,
                      images_per_identity: int = 8, size: int = 64, seed: int = 0,
                      progress: bool = True, persistent_condition: bool = False) -> Path:
    """Generate MeMa-Synth into ``root`` (default: under ``cache_root()/data``) unless it is
    already there; returns the root. Generation is atomic, so a crash leaves no partial set.
    ``persistent_condition``: a person's condition is the same in all their photos."""
    root = Path(root) if root is not None else default_root(identities, images_per_identity, size, seed,
                                                            persistent_condition)
    wanted = synth_info(identities, images_per_identity, size, seed, persistent_condition)
    if (root / METADATA).is_file():
        info = root / "synth.json"
        found = json.loads(info.read_text()) if info.is_file() else None
        if found is not None and found != wanted:
            raise ValueError(f"{root} holds MeMa-Synth {found}, not the requested {wanted}; "
                             "choose another root or delete it")
        return root
    try:
        return generate(root, identities, images_per_identity, size, seed, progress=progress,
                        persistent_condition=persistent_condition)
    except FileExistsError:
        if (root / METADATA).is_file():  # another process finished first
            return root
        raise


def preview(png: str | Path, size: int = 64, seed: int = 0, people: int = 6) -> Path:
    """A grid (rows: conditions, columns: identities) to judge the faces and signs at a glance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params, *_ = sample_dataset(people, 1, seed)
    rng = np.random.default_rng([seed, 99])
    grid = {k: np.repeat(v, len(CLASSES), axis=0) for k, v in params.items()}
    cond = np.tile(np.arange(len(CLASSES)), people)
    medical, signs = sample_medical(rng, cond)
    grid.update(medical)
    images, tumour, _ = render(grid, size, seed, 0, len(cond))
    fig, axes = plt.subplots(len(CLASSES), people, figsize=(1.6 * people, 1.75 * len(CLASSES)))
    for i in range(len(cond)):
        ax = axes[cond[i], i // len(CLASSES)]
        ax.imshow(images[i], interpolation="nearest")
        if tumour[i].any():
            ax.contour(tumour[i], levels=[0.5], colors="lime", linewidths=0.6)
        ax.set_title(signs[i].replace(";", "\n") or "healthy", fontsize=6)
        ax.set_xticks([]), ax.set_yticks([])
        if i // len(CLASSES) == 0:
            ax.set_ylabel(CLASSES[cond[i]], fontsize=7)
    fig.suptitle(f"MeMa-Synth v{GENERATOR_VERSION}, {size}px, seed {seed} (green: tumour mask)", fontsize=8)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=130)
    plt.close(fig)
    return png
