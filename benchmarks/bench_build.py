"""Time of the MeMa builder's quick profile: autoencoder and generator training + sampling +
filtering of 2,000 faces (target: <= 20 minutes on the 2-core CPU), and whether the kept faces show their
intended condition to a second, independently seeded classifier trained on the source.

    python benchmarks/bench_build.py [--out DIR] [--profile quick] [--source ROOT]

The generator and judges are trained from scratch in a private cache (the suite's cache is
untouched; the source MeMa-Synth set is generated there once if missing, not timed). Prints
phase times, rejection rates, KID, the plausibility agreement, and writes ``--out`` (default:
a temporary folder), which ``benchmarks/build_rank_agreement.py`` can then score.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from data import MeMaDataModule, ensure_mema_synth
from data.builder import build, get_profile
from data.calibration import disease_scores

TARGET_SECONDS = 20 * 60


def intended_condition_agreement(source: Path, built: Path, image_size: int, seed: int = 1234) -> dict:
    """Share of kept faces whose intended label is the top class of a classifier trained on the
    source with a seed the builder's judges never used (the filter's own classifier would
    agree by construction)."""
    dm = MeMaDataModule(source, image_size=image_size, batch_size=64, seed=seed)
    dm.setup()
    classifier, scores = disease_scores(dm, 15, seed)
    kept = MeMaDataModule(built, image_size=image_size, batch_size=256)
    hits = total = 0
    with torch.no_grad():
        for split in ("train", "val", "test"):
            data = kept.dataset(split)
            logits = classifier(data.images.float() / 255)[:, :len(dm.classes)]
            hits += int((logits.argmax(1) == data.labels).sum())
            total += len(data)
    return {"agreement": hits / total, "faces": total,
            "classifier_source_test_accuracy": scores["disease_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="where to write the built set (default: temporary)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--per-condition", type=int, help="faces per class (default: the profile's)")
    parser.add_argument("--source", type=Path, help="source root (default: MeMa-Synth in the cache)")
    parser.add_argument("--cache", type=Path, help="builder cache to train into (default: a fresh "
                        "temporary one; an existing one with a trained generator is not a timing)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = args.source or ensure_mema_synth()
    profile = get_profile(args.profile, per_condition=args.per_condition)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "built"
        start = time.perf_counter()
        record = build(source, out, profile, trainer_kwargs={"accelerator": "cpu"},
                       cache=args.cache or Path(tmp) / "builder-cache")
        seconds = time.perf_counter() - start
        check = intended_condition_agreement(source, out, profile.image_size)
    print(f"\nbuild of {record['generated']} faces ({args.profile} profile): {seconds:.0f} s "
          f"(target <= {TARGET_SECONDS} s: {'hit' if seconds <= TARGET_SECONDS else 'missed'})")
    print("phases: " + ", ".join(f"{k} {v:.0f}s" for k, v in record["phase_seconds"].items()))
    print(f"kept {record['kept']}; rejected {record['rejected']}; rates {record['rejection_rate']}")
    print(f"autoencoder reconstruction PSNR {record['autoencoder_psnr_db']['val']:.2f} dB (source val split; "
          f"train {record['autoencoder_psnr_db']['train']:.2f} dB)")
    print(f"KID vs source {record['kid']['mean']:.4f} +- {record['kid']['std']:.4f}")
    print(f"intended condition recognised on {check['agreement']:.3f} of {check['faces']} kept faces "
          f"by an independent source classifier (its source test accuracy "
          f"{check['classifier_source_test_accuracy']:.3f}; target >= 0.8)")
    print(json.dumps({"seconds": seconds, **check, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
