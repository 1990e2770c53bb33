"""Speed of MedSem-DeID: quick-profile training time, ``anonymize``/``recover`` images per second
at 64 px on the CPU, and peak memory (resident set of this process).

    python benchmarks/bench_medsem.py                    # train on MeMa-Synth, then time inference
    python benchmarks/bench_medsem.py --skip-training    # inference speed of an untrained network
    python benchmarks/bench_medsem.py --data-root DIR --work-dir DIR --batch-size 128

Training goes through ``MedSemDeID.fit`` exactly as the harness calls it (a fresh ``work_dir``
unless one is given, so nothing cached is reused by accident). Prints one JSON record.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time

import torch


def peak_rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_inference(method, batch_size: int, size: int, repeats: int) -> dict[str, float]:
    # smooth images: JPEG (inside the payload) costs more on pure noise than on any face
    images = torch.nn.functional.interpolate(torch.rand(batch_size, 3, size // 8, size // 8),
                                             size=(size, size), mode="bilinear")
    keys = torch.randint(0, 2, (batch_size, method.key_bits)).float()
    method.anonymize({"image": images}, keys)  # warm-up: oneDNN picks its kernels
    start = time.perf_counter()
    for _ in range(repeats):
        deid = method.anonymize({"image": images}, keys)
    anonymize_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        method.recover(deid, keys)
    recover_s = time.perf_counter() - start
    n = batch_size * repeats
    return {"anonymize_images_per_s": n / anonymize_s, "recover_images_per_s": n / recover_s}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=["medsem_deid", "medsem_deid_noprior"],
                        default="medsem_deid")
    parser.add_argument("--profile", choices=["quick", "full"], default="quick")
    parser.add_argument("--data-root", help="MeMa-layout folder (default: generated MeMa-Synth)")
    parser.add_argument("--work-dir", help="keep checkpoints here (default: a temporary folder)")
    parser.add_argument("--skip-training", action="store_true",
                        help="time inference of an untrained network only")
    parser.add_argument("--batch-size", type=int, default=128, help="images per anonymize call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from medsem_deid.method import MedSemDeID, MedSemDeIDNoPrior

    cls = MedSemDeIDNoPrior if args.method == "medsem_deid_noprior" else MedSemDeID
    record = {"method": args.method, "profile": args.profile, "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as scratch:
        method = cls(profile=args.profile, work_dir=args.work_dir or scratch,
                     trainer_kwargs={"accelerator": "cpu"})
        if args.skip_training:
            method.shapes = {"num_classes": 8, "num_signs": 19}
            method.load_state_dict({"config": method.config(), "shapes": method.shapes,
                                    "net": method._build_net(_untrained_prior(method)).state_dict(),
                                    "neutral_face": torch.full((3, 64, 64), 0.5)})
        else:
            from data import MeMaDataModule, ensure_mema_synth

            root = args.data_root or ensure_mema_synth()
            datamodule = MeMaDataModule(root, image_size=64, batch_size=64)
            start = time.perf_counter()
            method.fit(datamodule)
            record["train_s"] = time.perf_counter() - start
        record["train_peak_rss_mb"] = peak_rss_mb()
        record.update(time_inference(method, args.batch_size, 64, args.repeats))
    record["peak_rss_mb"] = peak_rss_mb()
    json.dump(record, sys.stdout, indent=1)
    print()
    return record


def _untrained_prior(method):
    from medsem_deid.torch_model import MedicalSemanticsEncoder

    if not method.use_medical_prior:
        return None
    return MedicalSemanticsEncoder(8, 19, method.cfg.med_width, method.cfg.med_channels)


if __name__ == "__main__":
    main()
