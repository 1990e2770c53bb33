"""Score one de-identification method on one dataset and update the leaderboard.

    python -m benchmark.run --method blur
    python -m benchmark.run --method mypkg.module:MyMethod --dataset mema --data-root DIR

Phases: data (MeMa-Synth is generated on first use), evaluators (trained once per dataset and
config, then loaded from the cache), fit (or load the cached fitted method), evaluation (one
pass over the test split), then the run record, the leaderboard rows and the qualitative grid
are written atomically under ``--output``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import lightning as L
import torch

from benchmark.api import DeIdMethod
from benchmark.attacks import ATTACKS, parse_attacks
from benchmark.evaluation import (
    Evaluation, attack_cache, attacker_training_data, evaluate_method,
)
from benchmark.evaluators import load_evaluators
from benchmark.leaderboard import record_path, safe_name, write_record
from benchmark.profiles import PROFILES, Profile, get_profile
from benchmark.qualitative import save_grid
from benchmark.registry import (
    MethodNotFoundError, PluginError, format_method_list, list_methods, load_method,
)
from benchmark.scores import summary_lines
from benchmark.sweep import sweep_runs
from benchmark.tables import rebuild
from benchmark.validation import MethodOutputError
from data.paths import cache_root

DATASETS = ("mema-synth", "mema", "mema-seg")
_VERSIONED = ("torch", "lightning", "torchmetrics", "timm", "segmentation-models-pytorch",
              "facenet-pytorch", "numpy", "pandas", "mema-bench")


class TrainingView(L.LightningDataModule):
    """What a method's ``fit`` sees: the train and val splits, class and sign names — never the
    test split, the evaluators or the dataset root."""

    def __init__(self, datamodule) -> None:
        super().__init__()
        self._datamodule = datamodule

    classes = property(lambda self: self._datamodule.classes)
    signs = property(lambda self: self._datamodule.signs)
    image_size = property(lambda self: self._datamodule.image_size)
    batch_size = property(lambda self: self._datamodule.batch_size)

    def setup(self, stage: str | None = None) -> None:
        self._datamodule.setup()

    def dataset(self, split: str):
        if split not in ("train", "val"):
            raise PermissionError(f"methods may only read the train and val splits, not {split!r}")
        return self._datamodule.dataset(split)

    def train_dataloader(self):
        return self._datamodule.train_dataloader()

    def val_dataloader(self):
        return self._datamodule.val_dataloader()

    def test_dataloader(self):
        raise PermissionError("methods may not read the test split")

    predict_dataloader = test_dataloader


# -- small helpers -------------------------------------------------------------------------
@contextmanager
def phase(times: dict[str, float], name: str):
    start = time.perf_counter()
    yield
    times[name] = times.get(name, 0.0) + time.perf_counter() - start


def package_versions() -> dict[str, str | None]:
    versions = {"python": sys.version.split()[0]}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The commit of the suite's code, with ``+dirty`` when the tree has local changes."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty.strip() else "")


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _device(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _devices(text: str) -> int | str:
    return int(text) if text.isdigit() else text


# -- phases --------------------------------------------------------------------------------
def prepare_data(dataset: str, data_root: Path | None, profile: Profile, seed: int):
    """Return ``(root, fingerprint, datamodule, seg_datamodule or None)``."""
    from data import (MeMaDataModule, MeMaFormatError, MeMaSegDataModule, dataset_fingerprint,
                      ensure_mema_synth)

    if dataset == "mema-synth":
        # drawn at the profile's resolution (never below the default 64 px), not upsampled
        root = Path(ensure_mema_synth(data_root, size=max(64, profile.image_size)))
    elif data_root is None:
        raise SystemExit(f"--dataset {dataset} needs --data-root DIR (a folder in the MeMa "
                         "layout: metadata.csv, classes.json, images/; see data/README)")
    else:
        root = Path(data_root)
    kwargs = dict(image_size=profile.image_size, batch_size=profile.batch_size, seed=seed)
    seg = MeMaSegDataModule(root, **kwargs)
    try:
        seg.setup()
    except MeMaFormatError:
        if dataset == "mema-seg":
            raise
        seg = None  # no lesion masks in some split: no segmenter, no Dice
    datamodule = seg if dataset == "mema-seg" else MeMaDataModule(root, **kwargs)
    datamodule.setup()
    return root, dataset_fingerprint(root), datamodule, seg


def fit_or_load(method: DeIdMethod, datamodule, fingerprint: str, profile: Profile,
                seed: int, refit: bool) -> tuple[Path, bool]:
    """Fit the method on the train/val view, or load its cached state; returns (path, fitted)."""
    key = _digest({"profile": profile.name, "seed": seed, "config": method.config(),
                   "image_size": profile.image_size})
    path = cache_root() / "methods" / safe_name(method.name) / f"{fingerprint}-{key}.pt"
    if path.is_file() and not refit:
        method.load_state_dict(torch.load(path, map_location="cpu", weights_only=False))
        return path, False
    try:
        method.fit(TrainingView(datamodule))
    except Exception as err:
        raise PluginError(f"method {method.name!r}: fit() raised {type(err).__name__}: {err}") from err
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(method.state_dict(), tmp)
    os.replace(tmp, path)
    return path, True


def lesion_masks(seg_datamodule) -> dict[int, torch.Tensor]:
    """Test-split lesion masks by metadata row, so Dice is scored in the same pass."""
    if seg_datamodule is None:
        return {}
    test = seg_datamodule.dataset("test")
    return {int(row): test[i]["mask"] for i, row in enumerate(test.rows)}


def build_record(args, method: DeIdMethod, evaluation: Evaluation, *, root, fingerprint,
                 profile: Profile, evaluator_dir, method_cache, times) -> dict:
    return {
        "method": getattr(args, "run_name", None) or method.name,
        "family": method.name,
        "sweep": getattr(args, "sweep_point", None),
        "class": f"{type(method).__module__}:{type(method).__qualname__}",
        "description": method.description,
        "reversible": bool(method.reversible),
        "key_bits": int(method.key_bits),
        "dataset": args.dataset,
        "dataset_root": str(root),
        "dataset_fingerprint": fingerprint,
        "profile": profile.name,
        "seed": args.seed,
        "n_test": evaluation.n_test,
        "scores": {k: v.as_dict() for k, v in evaluation.scores.items()},
        "chance": dict(evaluation.chance),
        **{f"{k}_chance": v for k, v in evaluation.chance.items()},
        "clean": {k: v.as_dict() for k, v in evaluation.clean.items()},
        "per_sign_f1": evaluation.per_sign_f1,
        "cost": evaluation.cost,
        "attacks": evaluation.extra.get("attacks", []),
        "reid_worst_of": evaluation.extra.get("reid_worst_of"),
        "method_config": method.config(),
        "evaluator_config": asdict(profile.evaluators),
        "evaluator_dir": str(evaluator_dir),
        "method_cache": str(method_cache),
        "phase_seconds": times,
        "versions": package_versions(),
        "git_revision": git_revision(),
        "device": str(_device(args.accelerator)),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args) -> dict:
    """All phases of one benchmark run; returns the run record."""
    profile, times = get_profile(args.profile), {}
    trainer_kwargs = {"accelerator": args.accelerator, "devices": _devices(args.devices)}
    if args.quiet:
        trainer_kwargs["enable_progress_bar"] = False
    # resolve the method first: a typo should not cost an evaluator training
    method = load_method(args.method, profile=profile.method_profile, seed=args.seed,
                         trainer_kwargs=trainer_kwargs, **getattr(args, "method_options", {}))
    attacks = parse_attacks(getattr(args, "attacks", None))
    with phase(times, "data"):
        root, fingerprint, datamodule, seg = prepare_data(args.dataset, args.data_root,
                                                          profile, args.seed)
    method.work_dir = cache_root() / "methods" / safe_name(method.name) / f"work-{fingerprint}"
    with phase(times, "evaluators"):
        evaluators = load_evaluators(datamodule, seg, fingerprint, profile.evaluators,
                                     retrain=args.retrain_evaluators,
                                     trainer_kwargs=trainer_kwargs,
                                     facenet_weights=args.facenet_weights)
    with phase(times, "fit"):
        method_cache, _ = fit_or_load(method, datamodule, fingerprint, profile, args.seed,
                                      args.refit_method)
    device = _device(args.accelerator)
    evaluators.to(device)
    method.to(device)
    with phase(times, "evaluation"):
        torch.manual_seed(args.seed)
        evaluation = evaluate_method(
            method, datamodule.test_dataloader(), evaluators, classes=datamodule.classes,
            signs=datamodule.signs, lesion_masks=lesion_masks(seg), seed=args.seed,
            device=device, resamples=profile.bootstrap_resamples,
            grid_images=profile.grid_images, progress=not args.quiet,
            clean_cache=evaluators.clean_cache_path(fingerprint, profile.image_size),
            attacks=attacks, attacker_data=attacker_training_data(datamodule.dataset("train")),
            attack_config=profile.attacks, evaluator_config=profile.evaluators,
            trainer_kwargs=trainer_kwargs,
            attack_cache=attack_cache(method, method_cache, fingerprint, evaluators, profile,
                                      args.seed))
    with phase(times, "writing"):
        record = build_record(args, method, evaluation, root=root, fingerprint=fingerprint,
                              profile=profile, evaluator_dir=evaluators.directory,
                              method_cache=method_cache, times=times)
        path = record_path(args.output, args.dataset, record["method"])
        grid_path = path.with_suffix(".png")
        save_grid(evaluation.grid, grid_path,
                  f"{record['method']} on {args.dataset} ({profile.name} profile)")
        record["qualitative"] = grid_path.name
        write_record(path, record)
        rebuild(args.output, [args.dataset])
    record["phase_seconds"] = times
    write_record(path, record)  # with the writing phase timed too
    return record


def summary(record: dict, output: Path) -> str:
    """The run in a few lines: one per score family and attack (from the declarations)."""
    lines = [f"{record['method']} on {record['dataset']} ({record['profile']} profile, "
             f"{record['n_test']} test images)"]
    lines += summary_lines(record)
    if record.get("reid_worst_of"):
        lines.append(f"  worst case: {record['reid_worst_of']}")
    lines.append(f"  peak memory {record['cost']['peak_memory_mb']:.0f} MB")
    lines.append("phase times: " + ", ".join(
        f"{k} {v:.1f}s" for k, v in record["phase_seconds"].items()))
    lines.append("attack times: " + ", ".join(
        f"{k} {v:.1f}s" for k, v in record["cost"].get("attack_seconds", {}).items()))
    lines.append(f"run record: {record_path(output, record['dataset'], record['method'])}")
    lines.append(f"leaderboard: {Path(output) / (record['dataset'] + '.csv')} (.md)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmark.run",
        description=(
            "Score a face de-identification method on MeMa-style data: identity leakage "
            "(re-identification by a clean-trained recogniser), medical utility (disease "
            "accuracy, sign F1, Cohen's kappa, lesion Dice), reversibility and cost, each with "
            "a bootstrap 95%% CI. Writes OUTPUT/runs/<dataset>/<method>.json, a qualitative "
            "PNG beside it, and the leaderboard OUTPUT/<dataset>.csv and .md."),
        epilog=("Evaluators are cached under $MEMA_BENCH_CACHE/evaluators/<fingerprint>/<config>/ "
                "and fitted methods under $MEMA_BENCH_CACHE/methods/<name>/ "
                f"(now {cache_root()}). Example: python -m benchmark.run --method blur"),
    )
    parser.add_argument("--method", help="registered name (see --list-methods) or "
                        "package.module:Class of any importable DeIdMethod")
    parser.add_argument("--list-methods", action="store_true",
                        help="list registered methods (name, reversible, description) and exit")
    parser.add_argument("--dataset", choices=DATASETS, default="mema-synth",
                        help="mema-synth (default; generated on first use), mema or mema-seg "
                        "(a MeMa-layout folder given by --data-root; mema-seg scores only the "
                        "rows with lesion masks)")
    parser.add_argument("--data-root", type=Path, help="dataset folder in the MeMa layout "
                        "(for mema-synth: where to generate it; default in the cache)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick",
                        help="quick: 64 px, small evaluators, CPU minutes (default); full: GPU "
                        "sized; toy: seconds, for tests")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the method, the keys and the bootstrap (default 0)")
    parser.add_argument("--output", type=Path, default=Path("leaderboards"),
                        help="folder for run records and tables (default ./leaderboards)")
    parser.add_argument("--retrain-evaluators", action="store_true",
                        help="retrain the evaluators even if cached")
    parser.add_argument("--refit-method", action="store_true",
                        help="fit the method again even if a fitted state is cached")
    parser.add_argument("--accelerator", default="auto",
                        help="Lightning accelerator for training and evaluation: auto, cpu, gpu")
    parser.add_argument("--devices", default="1",
                        help="Lightning devices for training (e.g. 1, 4, auto); evaluation "
                        "runs on one device")
    parser.add_argument("--facenet-weights", type=Path,
                        help="local InceptionResnetV1 state dict (facenet-pytorch); adds the "
                        "FaceNet attack (facenet_reid_*) to the scores. Never downloaded.")
    parser.add_argument("--attacks", default="all",
                        help="comma-separated attacks to run; 'all' (default) = "
                        f"{','.join(n for n, a in ATTACKS.items() if a.default)}; opt-in: "
                        f"{','.join(n for n, a in ATTACKS.items() if not a.default)} "
                        "(e.g. all,dlib); see docs/threat_model.md")
    parser.add_argument("--sweep", metavar="METHOD.OPTION=V1,V2,...",
                        help="run the method once per value of a numeric option and write one "
                        "row per value, e.g. --sweep blur.sigma=1,2,4,8")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_methods:
        print(format_method_list(list_methods()))
        return 0
    if not args.method:
        parser.error("--method is required (or --list-methods)")
    try:
        runs = sweep_runs(args)
        parse_attacks(args.attacks)
    except ValueError as err:
        parser.error(str(err))
    for run_args in runs:
        try:
            record = run(run_args)
        except (MethodNotFoundError, PluginError, MethodOutputError) as err:
            print(f"error: {err}", file=sys.stderr)
            print("no run record or leaderboard row was written.", file=sys.stderr)
            return 2
        print(summary(record, args.output))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
