"""Speed and memory of any registered method: training time on the training split,
``anonymize`` (and ``recover``) images per second at the dataset's resolution, peak memory.

    python benchmarks/bench_method.py --method medsem_deid            # quick profile, MeMa-Synth
    python benchmarks/bench_method.py --method ciagan --threads 1
    python benchmarks/bench_method.py --method my_pkg.module:MyMethod --data-root DIR

The method is fitted exactly as the harness fits it in its worker: on the training view of
the dataset (``benchmark.training_view``: train and val splits as tensors, no test split),
in a fresh ``work_dir`` unless one is given, so nothing cached is reused by accident.
Inference is timed on real test faces with their landmarks (masks need them), after one
warm-up call (oneDNN picks its kernels then). Prints one JSON record; a benchmark, not a test.
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


def inference_batch(datamodule, batch_size: int) -> dict[str, torch.Tensor]:
    """``batch_size`` test faces with only the keys a method may read at test time."""
    from benchmark.api import METHOD_INPUT_KEYS

    test = datamodule.dataset("test")
    samples = [test[i % len(test)] for i in range(batch_size)]
    return {k: torch.stack([torch.as_tensor(s[k]) for s in samples])
            for k in METHOD_INPUT_KEYS if k in samples[0]}


def time_inference(method, batch: dict, repeats: int) -> dict[str, float]:
    n = len(batch["image"])
    keys = torch.randint(0, 2, (n, method.key_bits)).float() if method.key_bits else None
    timings = {}
    deid = method.anonymize(batch, keys)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        deid = method.anonymize(batch, keys)
    timings["anonymize_images_per_s"] = n * repeats / (time.perf_counter() - start)
    if method.reversible:
        method.recover(deid, keys)
        start = time.perf_counter()
        for _ in range(repeats):
            method.recover(deid, keys)
        timings["recover_images_per_s"] = n * repeats / (time.perf_counter() - start)
    return timings


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", required=True,
                        help="registered name (see --list-methods of benchmark.run) or module:Class")
    parser.add_argument("--profile", choices=["toy", "quick", "full"], default="quick",
                        help="the method's training preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", help="MeMa-layout folder (default: generated MeMa-Synth)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--work-dir", help="keep checkpoints here (default: a temporary folder)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per anonymize call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--fast-dev-run", action="store_true",
                        help="train one batch per stage (checks that the profile builds, trains "
                             "and runs on the accelerator; times inference only)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from benchmark.registry import load_method
    from benchmark.training_view import TrainingView, training_payload
    from data import MeMaDataModule, ensure_mema_synth

    print("data ...", file=sys.stderr)
    root = args.data_root or ensure_mema_synth()
    datamodule = MeMaDataModule(root, image_size=args.image_size, batch_size=64, seed=args.seed)
    datamodule.setup()
    record = {"method": args.method, "profile": args.profile, "seed": args.seed,
              "threads": torch.get_num_threads(), "accelerator": args.accelerator}
    with tempfile.TemporaryDirectory() as scratch:
        method = load_method(args.method, profile=args.profile, seed=args.seed,
                             work_dir=args.work_dir or scratch,
                             trainer_kwargs={"accelerator": args.accelerator,
                                             "fast_dev_run": args.fast_dev_run})
        print(f"fit {args.method} ({args.profile}) ...", file=sys.stderr)
        start = time.perf_counter()
        method.fit(TrainingView(training_payload(datamodule)))
        record["train_s"] = time.perf_counter() - start
        record["train_peak_rss_mb"] = peak_rss_mb()
        method.to("cuda" if args.accelerator == "gpu" else "cpu")
        print("inference ...", file=sys.stderr)
        batch = {k: v.to(method.device) for k, v in
                 inference_batch(datamodule, args.batch_size).items()}
        with torch.no_grad():
            record.update(time_inference(method, batch, args.repeats))
    record["peak_rss_mb"] = peak_rss_mb()
    if torch.cuda.is_available():
        record["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    json.dump(record, sys.stdout, indent=1)
    print()
    return record


if __name__ == "__main__":
    main()
