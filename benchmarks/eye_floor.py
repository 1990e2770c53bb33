"""The eye floor: how much identity an eye-keeping de-identifier leaves when everything outside
its eye holes is a natural face of somebody else.

Two probe methods, scored by the harness like any plugin:

- ``EyeSwap`` fills the eye-keeping keyed DDIM region (the head with eye holes, at the canonical
  landmarks of the aligned crop) with the real face of another test image (the one half a batch
  away); only the source's eye pixels stay;
- ``HeadSwap``, the control, does the same on the whole head: it checks that the swap itself
  does not leak.

``EyeSwap``'s re-identification is the floor that an eye-keeping method with natural faces
meets (``baselines/keyed_ddim/README.md``). Run::

    python benchmarks/eye_floor.py --seed 0      # both probes, naive and parrot attacks
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from torch import Tensor

from benchmark.api import DeIdMethod
from benchmark.api.inpainting import composite
from baselines.keyed_ddim.method import canonical_region

ROOT = Path(__file__).resolve().parents[1]


class HeadSwap(DeIdMethod):
    """Another test face in the whole head region; the pixels outside it are the input's."""

    description = "probe: the head region filled with another test face (the eye floor's control)"
    keep_eyes = False

    def anonymize(self, batch: dict[str, Tensor], keys: Tensor | None) -> Tensor:
        image = batch["image"]
        region = canonical_region(tuple(image.shape[-2:]), self.keep_eyes).to(image.device)
        # half a batch away: another person (the test split holds a few photos per person)
        return composite(image, torch.roll(image, len(image) // 2, 0), region)


class EyeSwap(HeadSwap):
    """:class:`HeadSwap` with eye holes: only the source's periocular pixels stay."""

    description = "probe: another test face around the source's eye pixels (the eye floor)"
    keep_eyes = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the harness's seed (default 0)")
    parser.add_argument("--profile", default="quick", help="evaluators' profile (default quick)")
    parser.add_argument("--attacks", default="naive,parrot",
                        help="harness attacks (default naive,parrot)")
    parser.add_argument("--output", default="eye-floor", help="run records (default ./eye-floor)")
    args = parser.parse_args(argv)
    for probe in ("EyeSwap", "HeadSwap"):
        print(f"eye floor: {probe}", flush=True)
        subprocess.run([sys.executable, "-m", "benchmark.run", "--method",
                        f"benchmarks.eye_floor:{probe}", "--seed", str(args.seed),
                        "--profile", args.profile, "--attacks", args.attacks,
                        "--output", str(Path(args.output).resolve()), "--quiet"],
                       cwd=ROOT, check=True)  # the repository root: the worker imports the probe
    return 0


if __name__ == "__main__":
    sys.exit(main())
