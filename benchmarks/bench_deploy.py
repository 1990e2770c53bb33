"""Throughput of ``mema-bench anonymize`` against ``deface`` on the same 512 px photos.

    python benchmarks/bench_deploy.py [--photos 96] [--small 6] [--repeats 3]
                                      [--methods blur blur_keep_eyes pixelate]
                                      [--cpus 0] [--deface-venv DIR]

Both tools run as command-line programs on the same folders of JPEG photos
built from scikit-image's bundled pictures (the astronaut, mirrored and shifted, and groups of
upscaled LFW faces), pinned to the same CPUs (``taskset``) with one thread per library.
deface (https://pypi.org/project/deface/: CenterFace detector on onnxruntime, blurs whole
faces) is installed from PyPI into a temporary virtual environment by this script only.
Prints, for each, photos per second end to end (start-up included) and in steady state (the
extra photos of a large folder over a small one, divided by the extra time: start-up, which
is 5 s of imports for torch and torchvision here and about 1 s for deface, cancels out), and
the ratio to deface.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def rates(tools: dict, small: Path, large: Path, repeats: int) -> dict[str, tuple[float, float]]:
    """``{tool: (end-to-end, steady-state) photos/s}`` of each ``tools[name](folder)``, from a
    small and a large folder, each timed ``repeats`` times with the tools interleaved (so they
    share the machine's load); end to end from the fastest large run, steady state the median
    over repeats (the machine is shared: single timings vary by tens of percent)."""
    n_small, n_large = (len(list(f.glob("*.jpg"))) for f in (small, large))
    times = {name: [] for name in tools}
    for _ in range(repeats):
        for name, run in tools.items():
            times[name].append((run(small), run(large)))
    result = {}
    for name, pairs in times.items():
        steady = statistics.median((n_large - n_small) / max(t_large - t_small, 1e-3)
                                   for t_small, t_large in pairs)
        result[name] = (n_large / min(t for _, t in pairs), steady)
    return result


def deface_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing deface from PyPI into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "deface"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=96, help="photos in the large folder")
    parser.add_argument("--small", type=int, default=6, help="photos in the small folder")
    parser.add_argument("--repeats", type=int, default=3, help="timings per folder and tool")
    parser.add_argument("--methods", nargs="+", default=["blur", "blur_keep_eyes", "pixelate"])
    parser.add_argument("--cpus", default="0", help="CPU list for taskset, the same for both tools")
    parser.add_argument("--deface-venv", type=Path, help="reuse this venv for deface (default: a "
                        "temporary one, removed afterwards)")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    pin = ["taskset", "-c", args.cpus] if shutil.which("taskset") else []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_photos(tmp / "small", args.small)
        make_photos(tmp / "large", args.photos)
        python = deface_python(args.deface_venv or tmp / "deface-venv")

        def deface(folder: Path) -> float:
            copy = tmp / f"deface-{folder.name}"  # deface writes <name>_anonymized.jpg beside each
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(folder, copy)
            return timed(pin + [str(python), "-m", "deface.deface", *sorted(map(str, copy.glob("*.jpg")))], env)

        def anonymize(method: str):
            def run(folder: Path) -> float:
                out = tmp / f"out-{method}-{folder.name}"
                return timed(pin + [sys.executable, "-m", "deploy", "anonymize", str(folder), "--out",
                                    str(out), "--method", method, "--quiet", "--overwrite"], env)
            return run

        tools = {"deface": deface, **{method: anonymize(method) for method in args.methods}}
        result = rates(tools, tmp / "small", tmp / "large", args.repeats)
        base_total, base_steady = result.pop("deface")
        print(f"{'deface':26s} {base_total:5.1f} photos/s end to end, {base_steady:5.1f} steady")
        for method, (total, steady) in result.items():
            report = (tmp / f"out-{method}-large" / "report.csv").read_text().splitlines()[1:]
            faces = sum(int(line.split(",")[1] or 0) for line in report)
            print(f"mema-bench {method:15s} {total:5.1f} photos/s end to end, {steady:5.1f} steady "
                  f"({faces} faces in {args.photos} photos) = {total / base_total:.2f}x / "
                  f"{steady / base_steady:.2f}x deface")


if __name__ == "__main__":
    main()
