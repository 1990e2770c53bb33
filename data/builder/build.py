"""Build a private MeMa-like dataset from a source in the MeMa layout: train the latent
autoencoder and the conditional generator on its latents, sample faces under rich conditions,
filter them, write the kept ones.

Phases (each printed, with progress bars): source, autoencoder and generator (cached,
resumable), judges (cached), sampling (DDIM in the latent space, then decoding), filtering,
writing. The output is written to a temporary folder and
renamed at the end (``data.files.atomic_directory``), so a failed build leaves nothing.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from ..files import atomic_directory
from ..layout import METADATA, MeMaFormatError, dataset_fingerprint, read_metadata, write_classes
from ..mema import MeMaDataset
from ..paths import cache_root
from ..synthetic.generator import split_identities
from .conditions import ConditionSpace, sampling_plan
from .autoencoder import reconstruction_psnr, train_autoencoder, with_empty_mask
from .diffusion import identity_latents, sample, train_generator
from .filters import Judges, fit_judges
from .profiles import BuildProfile

#: why a generated face was not kept, in the order they are checked
REASONS = ("memorised", "memorised_person", "implausible", "too_few_images")
MASK_SOURCE = "pseudo:joint-diffusion"


@contextmanager
def phase(times: dict, name: str, verbose: bool):
    if verbose:
        print(f"[build] {name} ...", flush=True)
    start = time.perf_counter()
    yield
    times[name] = round(time.perf_counter() - start, 1)


def source_training_set(source: Path, size: int) -> tuple[torch.Tensor, pd.DataFrame, set[str]]:
    """Training images of the source in ``[-1,1]`` (a fourth channel holds the lesion mask
    when the source has masks), their metadata rows, and the labels that carry masks."""
    train = MeMaDataset(source, "train", size)
    table = read_metadata(source)[0].loc[train.rows].reset_index(drop=True)
    x = train.images.float() / 127.5 - 1
    try:
        seg = MeMaDataset(source, "train", size, with_masks=True)
    except MeMaFormatError:  # no masks in the training split: an RGB generator
        return x, table, set()
    masks = torch.full((len(x), 1, size, size), -1.0)
    position = {int(r): i for i, r in enumerate(train.rows)}
    for j, row in enumerate(seg.rows):
        masks[position[int(row)]] = seg.masks[j].float() * 2 - 1
    mask_labels = set(table.loc[table["mask"] != "", "label"])
    return torch.cat([x, masks], 1), table, mask_labels


def verdicts(judged: pd.DataFrame, person: np.ndarray, min_images: int) -> pd.Series:
    """One reason per rejected face ('' when kept): a memorised photo rejects its whole
    generated person (privacy is per person); people left with too few photos are dropped."""
    reason = pd.Series("", index=judged.index, dtype=object)
    reason[judged["memorised"].values] = "memorised"
    copied_people = set(person[judged["memorised"].values])
    reason[(reason == "") & np.isin(person, list(copied_people))] = "memorised_person"
    reason[(reason == "") & judged["implausible"].values] = "implausible"
    kept_per_person = pd.Series(person[(reason == "").values]).value_counts()
    few = kept_per_person.index[kept_per_person < min_images]
    reason[(reason == "") & np.isin(person, few)] = "too_few_images"
    return reason


def build(source: str | Path, out: str | Path, profile: BuildProfile, seed: int = 0,
          trainer_kwargs: dict | None = None, verbose: bool = True, cache: Path | None = None) -> dict:
    """Build a MeMa-layout dataset at ``out`` from ``source``; returns the provenance record
    (also written to ``out/build.json``). The generator and judges are cached under ``cache``
    (default ``cache_root()/builder``) by source fingerprint and settings."""
    source, out, times = Path(source), Path(out), {}
    gen, smp, flt = profile.generator, profile.sampling, profile.filters
    with phase(times, "source", verbose):
        fingerprint = dataset_fingerprint(source)
        names = read_metadata(source)[1]
        space = ConditionSpace.of(names)
        x, table, mask_labels = source_training_set(source, profile.image_size)
        conditions = space.encode(table["label"], table["signs"], table["age"], table["sex"])
    cache = Path(cache or cache_root() / "builder") / fingerprint
    trainer_kwargs = {"enable_progress_bar": verbose, **(trainer_kwargs or {})}
    with phase(times, "autoencoder", verbose):
        autoencoder, autoencoder_sha = train_autoencoder(
            x, profile.autoencoder, profile.stage_directory(cache, fingerprint, "autoencoder"), trainer_kwargs)
        # an empty mask channel where the autoencoder has one: the PSNR is measured on RGB
        held_out = with_empty_mask(MeMaDataset(source, "val", profile.image_size).images.float() / 127.5 - 1,
                                   x.shape[1])
        psnr = {"train": reconstruction_psnr(autoencoder, x), "val": reconstruction_psnr(autoencoder, held_out)}
    with phase(times, "generator", verbose):
        denoiser, weights_sha = train_generator(
            autoencoder.encode(x), conditions, gen,
            profile.stage_directory(cache, fingerprint, "generator"), trainer_kwargs)
    with phase(times, "judges", verbose):
        judges = fit_judges(source, profile.image_size, flt, profile.stage_directory(cache, fingerprint, "judges"))
    with phase(times, "sampling", verbose):
        plan = sampling_plan(table, space, smp.per_condition, smp.images_per_identity,
                             np.random.default_rng([seed, 1]))
        latent_shape = (profile.autoencoder.latent_channels, gen.image_size, gen.image_size)
        noise = identity_latents(torch.tensor(plan["person"].values), latent_shape, smp.identity_jitter, seed)
        latents = sample(denoiser, space.encode(plan["label"], plan["signs"], plan["age"], plan["sex"]),
                         noise, gen, smp, progress=verbose)
        generated = autoencoder.decode(latents)
    with phase(times, "filtering", verbose):
        faces = (generated[:, :3] + 1) / 2
        judged = judges.judge(faces, list(plan["label"]), list(plan["signs"]))
        plan = pd.concat([plan, judged], axis=1)
        plan["rejected"] = verdicts(judged, plan["person"].values, flt.min_images_per_identity)
        kept = (plan["rejected"] == "").values
        if len(set(plan["person"][kept])) < 3:
            counts = plan["rejected"].replace("", "kept").value_counts().to_dict()
            raise RuntimeError(f"only {len(set(plan['person'][kept]))} generated people passed the "
                               f"filters ({counts}); a dataset needs 3 (one per split). "
                               "Train longer or sample more.")
        kid = judges.kid(judges.source_images, faces[torch.tensor(kept)], flt.kid_subset_size, seed)
    record = provenance(source, fingerprint, profile, seed, {"autoencoder": autoencoder_sha, "generator": weights_sha},
                        psnr, judges, plan, kid, times)
    with phase(times, "writing", verbose):
        masks = generated[:, 3] > 0 if generated.shape[1] == 4 else None
        write_dataset(out, plan, faces, masks, mask_labels, names, record, seed)
    return record


def provenance(source, fingerprint, profile, seed, weights_sha: dict, psnr: dict, judges: Judges, plan, kid,
               times) -> dict:
    counts = plan["rejected"].replace("", "kept").value_counts()
    return {
        "source": str(source), "source_fingerprint": fingerprint, "profile": profile.name,
        "seed": seed, "autoencoder": asdict(profile.autoencoder), "generator": asdict(profile.generator),
        "sampling": asdict(profile.sampling), "filters": asdict(profile.filters),
        "autoencoder_sha256": weights_sha["autoencoder"], "generator_sha256": weights_sha["generator"],
        "autoencoder_psnr_db": psnr,
        "thresholds": {"id_similarity": judges.id_threshold, "pixel_rmse": judges.pixel_threshold,
                       "plausibility": judges.plausibility_threshold},
        "judges_on_source": judges.source_scores,
        "generated": len(plan), "kept": int(counts.get("kept", 0)),
        "rejected": {r: int(counts.get(r, 0)) for r in REASONS},
        "rejection_rate": {
            "memorisation": float(plan["memorised"].mean()),
            "implausible": float(plan["implausible"].mean()),
            "any": float((plan["rejected"] != "").mean()),
        },
        "kid": {"mean": kid[0], "std": kid[1], "features": "source-trained classifier (data.calibration.SmallCNN)"},
        "phase_seconds": times,
    }


def write_dataset(out: Path, plan: pd.DataFrame, faces: torch.Tensor, masks: torch.Tensor | None,
                  mask_labels: set[str], names, record: dict, seed: int) -> None:
    """The kept faces in the MeMa layout, with ``build.json`` (provenance), ``rejected.csv``
    (scores of the faces left out, no images) and ``preview.png``."""
    kept = plan[plan["rejected"] == ""]
    people = sorted(set(kept["person"]))
    split_of = dict(zip(people, split_identities(np.random.default_rng([seed, 2]), len(people))))
    rows = []
    with atomic_directory(out) as tmp:
        for i, rec in kept.iterrows():
            ident = f"g{rec['person']:05d}"
            rel = f"images/{ident}/{ident}_{i}.png"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(to_uint8(faces[i])).save(tmp / rel)
            mask, mask_source = "", ""
            if masks is not None and rec["label"] in mask_labels and masks[i].any():
                mask, mask_source = f"masks/{ident}_{i}.png", MASK_SOURCE
                (tmp / "masks").mkdir(exist_ok=True)
                Image.fromarray(masks[i].numpy().astype(np.uint8) * 255).save(tmp / mask)
            rows.append(dict(image=rel, split=split_of[rec["person"]], label=rec["label"], signs=rec["signs"],
                             identity=ident, age=rec["age"], sex=rec["sex"], mask=mask, landmarks="",
                             mask_source=mask_source, plausibility=rec["plausibility"],
                             memorisation_id_similarity=rec["memorisation_id_similarity"],
                             memorisation_pixel_rmse=rec["memorisation_pixel_rmse"]))
        pd.DataFrame(rows).to_csv(tmp / METADATA, index=False)
        write_classes(tmp, names.classes, names.signs)
        plan[plan["rejected"] != ""].drop(columns=["memorised", "implausible"]).to_csv(
            tmp / "rejected.csv", index_label="sample")
        (tmp / "build.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
        preview_grid(tmp / "preview.png", pd.DataFrame(rows), tmp, names.classes, record)
        MeMaDataset(tmp, "train", 16)  # the loader's own checks, before the rename


def to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().clip(0, 255).astype(np.uint8)


def preview_grid(png: Path, rows: pd.DataFrame, root: Path, classes: list[str], record: dict,
                 columns: int = 6) -> None:
    """Rows: conditions; columns: kept faces of that condition (green: pseudo-label mask)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(classes), columns, figsize=(1.5 * columns, 1.6 * len(classes)), squeeze=False)
    for r, label in enumerate(classes):
        chosen = rows[rows["label"] == label].head(columns)
        for c in range(columns):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            if c >= len(chosen):
                ax.set_frame_on(False)
            else:
                rec = chosen.iloc[c]
                ax.imshow(Image.open(root / rec["image"]), interpolation="nearest")
                if rec["mask"]:
                    ax.contour(np.asarray(Image.open(root / rec["mask"])) > 127, levels=[0.5],
                               colors="lime", linewidths=0.6)
                ax.set_title(f"{rec['identity']} {rec['sex']}{rec['age']}\n{rec['signs'] or 'no signs'}".replace(";", " "),
                             fontsize=5)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(f"MeMa build ({record['profile']} profile, seed {record['seed']}): "
                 f"{record['kept']} kept of {record['generated']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=130)
    plt.close(fig)


def format_summary(record: dict, out: Path) -> str:
    rate = record["rejection_rate"]
    t = record["thresholds"]
    return "\n".join([
        f"built {out}: {record['kept']} of {record['generated']} generated faces kept",
        "  rejected: " + ", ".join(f"{k} {v}" for k, v in record["rejected"].items()),
        f"  memorisation rate {rate['memorisation']:.3f} (identity similarity >= {t['id_similarity']:.3f} "
        f"or pixel RMSE <= {t['pixel_rmse']:.4f}); implausible rate {rate['implausible']:.3f} "
        f"(plausibility < {t['plausibility']:.2f})",
        f"  autoencoder reconstruction PSNR {record['autoencoder_psnr_db']['val']:.1f} dB on the source val split "
        f"({record['autoencoder_psnr_db']['train']:.1f} dB on train)",
        f"  KID vs source {record['kid']['mean']:.4f} +- {record['kid']['std']:.4f} (real val vs train: "
        f"{record['judges_on_source']['kid_val_vs_train'][0]:.4f})",
        "  phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in record["phase_seconds"].items()),
    ])
