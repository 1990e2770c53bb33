"""Time `python -m benchmark.run` (issue #3 speed targets; a benchmark, not a test).

    python benchmarks/bench_run.py [--method blur] [--profile quick] [--cache DIR]
                                   [--data-from CACHE]

1. first run on a fresh cache: MeMa-Synth generation + evaluator training + fit + evaluation
   (target < 10 min on a 2-core CPU);
2. second run, evaluators cached (target < 1 min);
3. evaluation overhead: the evaluation phase minus the method's own anonymize time, against
   2x anonymize + one evaluator pass (every evaluator over the test split).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch


def timed_run(method: str, profile: str, cache: Path, output: Path) -> tuple[float, dict]:
    env = {**os.environ, "MEMA_BENCH_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmark.run", "--method", method, "--profile",
                    profile, "--output", str(output), "--quiet"], env=env, check=True)
    seconds = time.perf_counter() - start
    record = json.loads((output / "runs" / "mema-synth" / f"{method}.json").read_text())
    return seconds, record


def evaluator_pass_seconds(record: dict, profile: str, cache: Path) -> float:
    """One pass of every evaluator over the test split: classifier, identity recogniser and
    (on the MeMa-Seg rows) the lesion segmenter."""
    os.environ["MEMA_BENCH_CACHE"] = str(cache)
    from benchmark.datasets import lesion_masks, load, locate
    from benchmark.evaluators import load_evaluators
    from benchmark.profiles import get_profile

    prof = get_profile(profile)
    root, fingerprint = locate("mema-synth", None, prof.image_size)
    dm, seg = load("mema-synth", root, prof.image_size, prof.batch_size, record["seed"])
    evaluators = load_evaluators(dm, seg, fingerprint, prof.evaluators)
    masks = lesion_masks(seg)
    start = time.perf_counter()
    with torch.no_grad():
        for batch in dm.test_dataloader():
            evaluators.classifier.predict(batch["image"], batch["landmarks"])
            evaluators.identity.embed(batch["image"])
            rows = [i for i, r in enumerate(batch["index"].tolist()) if r in masks]
            if rows and evaluators.segmenter is not None:
                evaluators.segmenter.predict(batch["image"][rows])
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="blur")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--cache", type=Path, help="cache folder (default: a fresh temp dir)")
    parser.add_argument("--data-from", type=Path, metavar="CACHE",
                        help="copy the generated datasets of this cache folder (its data/) into "
                             "the fresh cache, so the first run times evaluator training, fit "
                             "and evaluation without MeMa-Synth generation")
    args = parser.parse_args()
    cache = args.cache or Path(tempfile.mkdtemp(prefix="mema-bench-cache-"))
    if args.data_from:
        shutil.copytree(args.data_from / "data", cache / "data", dirs_exist_ok=True)
    output = Path(tempfile.mkdtemp(prefix="mema-bench-lb-"))

    first_s, first = timed_run(args.method, args.profile, cache, output)
    second_s, second = timed_run(args.method, args.profile, cache, output)
    pass_s = evaluator_pass_seconds(second, args.profile, cache)
    phases = second["phase_seconds"]
    anonymize_s = second["cost"]["anonymize_s"]
    overhead = phases["evaluation"] - anonymize_s
    budget = 2 * anonymize_s + pass_s
    print(f"cache: {cache}")
    print(f"first run (fresh cache): {first_s:.1f} s  [target < 600 s]  phases "
          + ", ".join(f"{k} {v:.1f}s" for k, v in first["phase_seconds"].items()))
    print(f"second run (cached evaluators): {second_s:.1f} s  [target < 60 s]  phases "
          + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()))
    print(f"evaluation phase {phases['evaluation']:.2f} s = anonymize {anonymize_s:.2f} s "
          f"+ overhead {overhead:.2f} s; budget 2x anonymize + one evaluator pass "
          f"({pass_s:.2f} s) = {budget:.2f} s -> {'met' if overhead <= budget else 'MISSED'}")
    print(f"anonymize throughput {second['cost']['images_per_s']:.0f} images/s, "
          f"peak memory {second['cost']['peak_memory_mb']:.0f} MB, {second['n_test']} test images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
