"""Score one de-identification method on one dataset and update the leaderboard.

    python -m benchmark.run --method blur
    python -m benchmark.run --method mypkg.module:MyMethod --dataset mema --data-root DIR

This module only turns the command line into one call of ``benchmark.runner.run``: it checks
every argument before any work starts, and imports nothing heavy, so ``--help`` is instant.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.datasets import DATASETS, DatasetArgumentError, check_data_root
from benchmark.profiles import PROFILES


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative; seeds are >= 0")
    return value


def _devices(text: str) -> int | str:
    """Lightning's device spec: a count >= 1, -1 or ``auto`` (all), or indices ``0,1``."""
    if text in ("auto", "-1"):
        return -1 if text == "-1" else text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    if text.endswith(",") or "," in text:
        parts = [p for p in text.split(",") if p]
        if parts and all(p.isdigit() for p in parts):
            return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device count (>= 1), -1, auto or a "
                                     "list of device indices such as 0,1")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description=(
            "Score a face de-identification method on MeMa-style data: identity leakage "
            "under a knowing attacker (naive, parrot, reversal, linkage, storage and wrong-key "
            "attacks; the worst case is the privacy column), medical utility (disease "
            "accuracy, sign F1, Cohen's kappa, lesion Dice), naturalness (KID), "
            "reversibility and cost, each with a bootstrap 95%% CI resampled by identity. "
            "Writes OUTPUT/runs/<dataset>/<method>/seed-<seed>.json, a qualitative PNG beside "
            "it, and the leaderboard OUTPUT/<dataset>.csv and .md. The method runs in its own "
            "worker process, sandboxed with bubblewrap where available."),
        epilog=("Evaluators are cached under $MEMA_BENCH_CACHE/evaluators/<fingerprint>/<config>/ "
                "and fitted methods under $MEMA_BENCH_CACHE/methods/<name>/ (default cache: "
                "~/.cache/mema-bench). Example: python -m benchmark.run --method blur"),
    )
    parser.add_argument("--method", help="registered name (see --list-methods) or "
                        "package.module:Class of any importable DeIdMethod")
    parser.add_argument("--list-methods", action="store_true",
                        help="list registered methods (name, reversible, description) and exit")
    parser.add_argument("--dataset", choices=list(DATASETS), default="mema-synth",
                        help="; ".join(f"{d.name}: {d.help}" for d in DATASETS.values()))
    parser.add_argument("--data-root", type=Path, help="dataset folder in the MeMa layout "
                        "(for mema-synth: an existing MeMa-Synth folder, or where to generate "
                        "one with --generate; default in the cache)")
    parser.add_argument("--generate", action="store_true",
                        help="mema-synth: generate the dataset at --data-root if it is not there")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="quick: 64 px, small evaluators, CPU minutes (default); full: GPU "
                        "sized; toy: seconds, for tests")
    parser.add_argument("--seed", type=_seed, default=0,
                        help="seed (>= 0) of the evaluators, the method, the keys, the attacks "
                        "and the bootstrap (default 0)")
    parser.add_argument("--seeds", metavar="S1,S2,...",
                        help="run once per seed (e.g. 0,1,2), evaluators and method retrained "
                        "per seed; one run record each, combined into the row's mean ± std")
    parser.add_argument("--attacks", default="all",
                        help="comma-separated attacks to run; 'all' (default) = naive, "
                        "parrot, reversal, linkage, storage, wrong_key, attribute_floor; "
                        "opt-in: dlib (needs the [dlib] extra), e.g. all,dlib; see "
                        "docs/threat_model.md")
    parser.add_argument("--sweep", metavar="METHOD.OPTION=V1,V2,...",
                        help="run the method once per value of a numeric option and write one "
                        "row per value, e.g. --sweep blur.sigma=1,2,4,8")
    parser.add_argument("--output", type=Path, default=Path("leaderboards"),
                        help="folder for run records and tables (default ./leaderboards)")
    parser.add_argument("--retrain-evaluators", action="store_true",
                        help="retrain the evaluators even if cached (also rebuilds an "
                        "unreadable evaluator checkpoint)")
    parser.add_argument("--refit-method", action="store_true",
                        help="fit the method again even if a fitted state is cached (also "
                        "rebuilds an unreadable one)")
    parser.add_argument("--accelerator", choices=("auto", "cpu", "gpu", "cuda", "mps"),
                        default="auto",
                        help="Lightning accelerator for training and evaluation (default auto)")
    parser.add_argument("--devices", type=_devices, default=1,
                        help="Lightning devices for training: a count, -1/auto, or indices "
                        "such as 0,1 (default 1); evaluation runs on one device")
    parser.add_argument("--facenet-weights", type=Path,
                        help="local InceptionResnetV1 state dict (facenet-pytorch); adds the "
                        "FaceNet attack (facenet_reid_*) to the scores. Never downloaded.")
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None,
                        help="run the method's worker in a bubblewrap sandbox that hides the "
                        "data, the cache and the leaderboard folder and has no network "
                        "(default: on when bwrap works here)")
    parser.add_argument("--method-timeout", type=_seconds, default=600.0, metavar="SECONDS",
                        help="longest one call into the method (a batch of anonymize or "
                        "recover, loading its state) may take (default 600)")
    parser.add_argument("--fit-timeout", type=_seconds, default=None, metavar="SECONDS",
                        help="longest the method's fit may take (default: no limit)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars and no Lightning messages (phase lines stay)")
    return parser


def check_args(parser: argparse.ArgumentParser, args):
    """Refuse a bad argument before any work; returns the resolved method and the runs the
    command asks for (sweep points times seeds)."""
    from benchmark.registry import MethodNotFoundError, PluginError, resolve
    from benchmark.sandbox import bwrap_available

    if not args.method:
        parser.error("--method is required (or --list-methods)")
    try:
        check_data_root(args.dataset, args.data_root, args.generate)
    except DatasetArgumentError as err:
        parser.error(str(err))
    if args.generate and not DATASETS[args.dataset].generated:
        parser.error(f"--generate only applies to generated datasets, not {args.dataset}")
    if args.facenet_weights is not None and not args.facenet_weights.is_file():
        parser.error(f"--facenet-weights {args.facenet_weights}: no such file")
    if args.output.exists() and not args.output.is_dir():
        parser.error(f"--output {args.output} is a file, not a folder")
    if args.isolate is None:
        args.isolate = bwrap_available()
        if not args.isolate:
            print("note: bubblewrap (bwrap) is not available here, so the method runs in a "
                  "plain process that can read your files; install the Debian package "
                  "'bubblewrap' to sandbox it (--isolate)", file=sys.stderr)
    elif args.isolate and not bwrap_available():
        parser.error("--isolate needs bubblewrap: install the Debian package 'bubblewrap' "
                     "(and allow user namespaces), or pass --no-isolate")
    try:
        from benchmark.attacks import parse_attacks
        from benchmark.sweep import expand_runs

        args.attacks = parse_attacks(args.attacks)
        runs = expand_runs(args)
    except ValueError as err:
        parser.error(str(err))
    try:
        return resolve(args.method), runs
    except (MethodNotFoundError, PluginError) as err:
        parser.error(str(err))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_methods:
        from benchmark.registry import format_method_list, list_methods

        print(format_method_list(list_methods()))
        return 0
    spec, runs = check_args(parser, args)
    from benchmark import runner
    from benchmark.registry import PluginError
    from benchmark.storage import CorruptCacheError
    from benchmark.validation import MethodOutputError
    from data import MeMaFormatError

    for run_args in runs:
        try:
            record = runner.run(run_args, spec)
        except (PluginError, MethodOutputError, CorruptCacheError, MeMaFormatError) as err:
            print(f"error: {err}", file=sys.stderr)
            print("no run record or leaderboard row was written for this run.",
                  file=sys.stderr)
            return 2
        print(runner.summary(record, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
