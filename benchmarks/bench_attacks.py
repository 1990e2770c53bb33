"""Time the attacks of `python -m benchmark.run` (issue #7 speed targets; a benchmark, not a
test).

    python benchmarks/bench_attacks.py [--method blur] [--profile quick] [--attacks all]

Uses the evaluators, datasets and fitted methods of ``$MEMA_BENCH_CACHE`` (linked, not
copied) with a fresh, empty attack cache, so that

1. the first run computes every attack (target: all attacks for one method <= 5 min on a
   2-core CPU, quick profile);
2. the second run reads them back (target: the whole run <= 1 min).

Prints the wall time of both runs, each attack's seconds and the headline scores.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_run(args, cache: Path, output: Path) -> tuple[float, float, dict]:
    """Wall and CPU seconds of one run (CPU time is what a shared machine's load does not
    inflate), and its record."""
    env = {**os.environ, "MEMA_BENCH_CACHE": str(cache)}
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, "-m", "benchmark.run", "--method", args.method,
                    "--profile", args.profile, "--attacks", args.attacks, "--output",
                    str(output), "--quiet"], env=env, check=True, stdout=subprocess.DEVNULL)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    from benchmark.leaderboard import record_path

    return seconds, cpu, json.loads(record_path(output, "mema-synth", args.method).read_text())


def linked_cache(source: Path) -> Path:
    """A cache folder sharing ``source``'s data, evaluators and fitted methods, with its own
    (empty) attack results."""
    cache = Path(tempfile.mkdtemp(prefix="mema-bench-attacks-"))
    for part in ("data", "evaluators", "methods"):
        if (source / part).exists():
            (cache / part).symlink_to((source / part).resolve(), target_is_directory=True)
    return cache


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="blur")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--attacks", default="all")
    args = parser.parse_args()
    from data.paths import cache_root

    cache = linked_cache(cache_root())
    output = Path(tempfile.mkdtemp(prefix="mema-bench-lb-"))
    first_s, first_cpu, first = timed_run(args, cache, output)
    second_s, second_cpu, _ = timed_run(args, cache, output)
    load = os.getloadavg()[0]
    attack_s = first["cost"]["attack_seconds"]
    print(f"method {args.method}, profile {args.profile}, {first['n_test']} test images")
    print(f"load average {load:.1f} on {os.cpu_count()} cores (wall times grow with it)")
    print(f"first run (attacks computed): {first_s:.0f} s wall, {first_cpu:.0f} s CPU; phases "
          + ", ".join(f"{k} {v:.0f}s" for k, v in first["phase_seconds"].items()))
    print("  attacks: " + ", ".join(f"{k} {v:.0f}s" for k, v in attack_s.items())
          + f"; all attacks {sum(attack_s.values()):.0f} s (target <= 300 s)")
    print(f"second run (attacks cached): {second_s:.0f} s wall, {second_cpu:.0f} s CPU "
          "(target <= 60 s)")
    for name in ("reid_worst", "reid_top1_identity", "parrot_top1_identity",
                 "parrot_deid_top1_identity", "reversal_top1_identity", "linkage_top1_identity",
                 "wrongkey_reid_top1_identity", "recovery_psnr", "accuracy", "kid"):
        score = first["scores"].get(name)
        if score:
            print(f"  {name:<28} {score['value']:.4f}  [{score['ci_low']}, {score['ci_high']}]")
    print(f"  worst attack: {first.get('reid_worst_of')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
