"""Throughput of ``mema-bench anonymize`` against ``deface`` on the same 512 px photos.

    python benchmarks/bench_deploy.py [--photos 48] [--methods blur blur_keep_eyes pixelate]
                                      [--cpus 0] [--deface-venv DIR]

Both tools run as command-line programs (start-up included) on the same folder of JPEG photos
built from scikit-image's bundled pictures (the astronaut, mirrored and shifted, and groups of
upscaled LFW faces), pinned to the same CPUs (``taskset``) with one thread per library.
deface (https://pypi.org/project/deface/: CenterFace detector on onnxruntime, blurs whole
faces) is installed from PyPI into a temporary virtual environment by this script only.
Prints photos per second of each and the ratio.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

_spec = importlib.util.spec_from_file_location(
    "deploy_photos", Path(__file__).resolve().parents[1] / "tests" / "data" / "deploy_photos.py")
photos = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(photos)


def make_photos(folder: Path, count: int, side: int = 512) -> None:
    """``count`` JPEG photos of ``side`` px, each with one to four real faces."""
    folder.mkdir(parents=True)
    astronaut = Image.fromarray(photos.astronaut()).resize((side, side))
    group = Image.fromarray(photos.group_picture())
    group = group.resize((side, side * group.height // group.width))
    for i in range(count):
        kind = i % 3
        if kind == 0:
            image = astronaut
        elif kind == 1:  # mirrored and shifted: another face position
            image = Image.new("RGB", (side, side), (128, 128, 128))
            image.paste(astronaut.transpose(Image.FLIP_LEFT_RIGHT), (-40 + i % 80, 20))
        else:
            image = Image.new("RGB", (side, side), (128, 128, 128))
            image.paste(group, (0, (side - group.height) // 2))
        image.save(folder / f"photo_{i:03d}.jpg", quality=92)


def timed(command: list[str], env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def deface_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing deface from PyPI into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "deface"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--methods", nargs="+", default=["blur", "blur_keep_eyes", "pixelate"])
    parser.add_argument("--cpus", default="0", help="CPU list for taskset, the same for both tools")
    parser.add_argument("--deface-venv", type=Path, help="reuse this venv for deface (default: a "
                        "temporary one, removed afterwards)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pin = ["taskset", "-c", args.cpus] if shutil.which("taskset") else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photos(tmp / "in", args.photos)
        venv = args.deface_venv or tmp / "deface-venv"
        python = deface_python(venv)
        shutil.copytree(tmp / "in", tmp / "deface")
        files = sorted(str(p) for p in (tmp / "deface").glob("*.jpg"))
        # deface writes <name>_anonymized.jpg beside each input; onnxruntime on the same CPUs
        seconds = timed(pin + [str(python), "-m", "deface.deface", *files], env)
        deface_rate = args.photos / seconds
        print(f"deface {'':16s} {args.photos} photos: {seconds:6.1f} s  {deface_rate:5.1f} photos/s")
        for method in args.methods:
            out = tmp / f"out-{method}"
            seconds = timed(pin + [sys.executable, "-m", "deploy", "anonymize", str(tmp / "in"),
                                   "--out", str(out), "--method", method, "--quiet"], env)
            rate = args.photos / seconds
            faces = sum(int(line.split(",")[1] or 0) for line in
                        (out / "report.csv").read_text().splitlines()[1:])
            print(f"mema-bench {method:14s} {args.photos} photos ({faces} faces): {seconds:6.1f} s  "
                  f"{rate:5.1f} photos/s  = {rate / deface_rate:.2f}x deface")


if __name__ == "__main__":
    main()
