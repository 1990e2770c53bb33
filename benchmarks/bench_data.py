"""Speed of the data pipeline: MeMa-Synth generation and one epoch of MeMaDataModule loading.

    python benchmarks/bench_data.py [--identities 400] [--images-per-identity 8] [--size 64]

Prints images per second; generates into a temporary folder, so the cache is untouched.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from data import MeMaDataModule
from data.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--identities", type=int, default=400)
    parser.add_argument("--images-per-identity", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0)
    args = parser.parse_args()
    n = args.identities * args.images_per_identity
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mema-synth"
        start = time.perf_counter()
        generate(root, args.identities, args.images_per_identity, args.size, seed=0, progress=False)
        gen = time.perf_counter() - start
        print(f"generate   {n} images at {args.size} px: {gen:6.1f} s  {n / gen:8.1f} images/s")

        start = time.perf_counter()
        dm = MeMaDataModule(root, image_size=args.size, batch_size=args.batch_size, num_workers=args.num_workers)
        dm.setup()
        setup = time.perf_counter() - start
        print(f"setup      {n} images (decode + validate): {setup:6.1f} s  {n / setup:8.1f} images/s")

        start, seen = time.perf_counter(), 0
        for batch in dm.train_dataloader():
            seen += len(batch["image"])
        epoch = time.perf_counter() - start
        print(f"epoch      {seen} train images, batch {args.batch_size}: {epoch:6.2f} s  {seen / epoch:8.1f} images/s")
        print(f"(torch threads {torch.get_num_threads()}, {torch.__version__})")


if __name__ == "__main__":
    main()
