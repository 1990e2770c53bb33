"""All phases of one benchmark run (docs/architecture.md §5): data, evaluators, fit, evaluation, writing.

``benchmark.run`` turns the command line into one call of :func:`run`. The method runs in its
worker (``benchmark.worker``), never in this process; the evaluators, the test labels and
every file the run writes stay here. Nothing is written unless every phase succeeded.
"""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict
from importlib import metadata
from pathlib import Path

import torch

from benchmark import datasets, method_cache
from benchmark.evaluation import (
    Evaluation, attack_cache, attacker_training_data, evaluate_method,
)
from benchmark.evaluators import load_evaluators
from benchmark.leaderboard import record_path, write_record
from benchmark.profiles import Profile, get_profile
from benchmark.qualitative import save_grid
from benchmark.registry import MethodSpec, check_declared_name
from benchmark.scores import summary_lines
from benchmark.sandbox import BWRAP, PROCESS, bwrap_command
from benchmark.storage import CorruptCacheError
from benchmark.tables import rebuild
from benchmark.training_view import training_payload
from benchmark.validation import MethodOutputError
from benchmark.worker import MethodClient, WorkerError, silence_lightning
from data.paths import cache_root

_VERSIONED = ("torch", "lightning", "torchmetrics", "timm", "segmentation-models-pytorch",
              "facenet-pytorch", "numpy", "pandas", "mema-bench")


class Phases:
    """Times each phase and prints one line as it first starts, with the time elapsed so far
    (a phase may be entered again: its times add up)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, what: str = ""):
        begin = time.perf_counter()
        if name not in self.seconds:
            print(f"[{begin - self.start:7.1f} s] {name}… {what}".rstrip(), file=sys.stderr,
                  flush=True)
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - begin


# -- provenance --------------------------------------------------------------------------------
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


def portable_path(path: Path | None) -> str | None:
    """A path as a run record keeps it: relative to the cache root when inside it, else the
    folder's name only (records carry no machine paths)."""
    if path is None:
        return None
    path, cache = Path(path).resolve(), cache_root().resolve()
    return path.relative_to(cache).as_posix() if path.is_relative_to(cache) else path.name


def device_of(accelerator: str) -> torch.device:
    if accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def runtime_settings(args) -> dict:
    """How the run computed: the method's isolation, threads, device, determinism."""
    return {"isolation": BWRAP if args.isolate else PROCESS,
            "torch_threads": torch.get_num_threads(),
            "device": str(device_of(args.accelerator)),
            "deterministic": {
                "algorithms": torch.are_deterministic_algorithms_enabled(),
                "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}}


# -- the method --------------------------------------------------------------------------------
def start_method(args, spec: MethodSpec, profile: Profile, fingerprint: str,
                 data_root: Path) -> MethodClient:
    """Start the method's worker: sandboxed (``--isolate``) away from the data, the cache
    (but its own work_dir) and the leaderboard folder."""
    work_dir = method_cache.work_dir(spec.name, fingerprint)
    sandbox = None
    if args.isolate:
        from benchmark.sandbox import python_path

        hidden = [data_root, cache_root(), Path(args.output)]

        def sandbox(argv, work_dir):
            return bwrap_command(argv, hidden=hidden, work_dir=work_dir, visible=python_path())
    # sweep points (benchmark.sweep) set one constructor option of the method
    options = {"profile": profile.method_profile, "seed": args.seed,
               "trainer_kwargs": trainer_kwargs(args), **getattr(args, "method_options", {})}
    return MethodClient(spec.name, spec.target, options, work_dir=work_dir, sandbox=sandbox,
                        timeout=args.method_timeout, fit_timeout=args.fit_timeout,
                        quiet=args.quiet)


def trainer_kwargs(args) -> dict:
    kwargs = {"accelerator": args.accelerator, "devices": args.devices}
    if args.quiet:
        kwargs["enable_progress_bar"] = False
    return kwargs


def fit_or_load(method: MethodClient, datamodule, fingerprint: str, profile: Profile,
                seed: int, refit: bool) -> tuple[Path, bool]:
    """Load the method's cached fitted state, or fit it in its worker on the training view and
    cache what it learned; returns ``(cache file, fitted now)``."""
    path = method_cache.fitted_state_path(method.name, fingerprint, profile, seed,
                                          method.config())
    if path.is_file() and not refit:
        state = method_cache.load_fitted_state(path)
        try:
            method.load_state_dict(state)
        except WorkerError:
            raise
        except MethodOutputError as err:
            raise CorruptCacheError(f"{err} (cached state {path}); rerun with "
                                    f"{method_cache.REFIT_FLAG} to rebuild it") from None
        return path, False
    state = method.fit_state(training_payload(datamodule))
    method_cache.save_fitted_state(state, path)
    return path, True


# -- the run -----------------------------------------------------------------------------------
def run(args, spec: MethodSpec) -> dict:
    """Every phase of one run of ``spec`` (arguments checked by ``benchmark.run``); returns
    the run record."""
    profile, phases = get_profile(args.profile).for_seed(args.seed), Phases()
    if args.quiet:
        silence_lightning()
    with phases("data", args.dataset):
        root, fingerprint = datasets.locate(args.dataset, args.data_root, profile.image_size)
        method = start_method(args, spec, profile, fingerprint, root)  # starts while data load
    try:
        with phases("data"):
            datamodule, seg = datasets.load(args.dataset, root, profile.image_size,
                                            profile.batch_size, args.seed)
            # the worker has built the method by now: a wrong class or a taken name stops
            # the run before any evaluator is trained
            method.name = check_declared_name(spec, method.declared_name, method.class_path)
        with phases("evaluators"):
            evaluators = load_evaluators(datamodule, seg, fingerprint, profile.evaluators,
                                         retrain=args.retrain_evaluators,
                                         trainer_kwargs=trainer_kwargs(args),
                                         facenet_weights=args.facenet_weights)
        with phases("fit", method.name):
            cache_file, _ = fit_or_load(method, datamodule, fingerprint, profile, args.seed,
                                        args.refit_method)
        device = device_of(args.accelerator)
        evaluators.to(device)
        method.to(device)
        with phases("evaluation"):
            torch.manual_seed(args.seed)
            evaluation = evaluate_method(
                method, datamodule.test_dataloader(), evaluators, classes=datamodule.classes,
                signs=datamodule.signs, lesion_masks=datasets.lesion_masks(seg),
                seed=args.seed, device=device, resamples=profile.bootstrap_resamples,
                grid_images=profile.grid_images, progress=not args.quiet,
                clean_cache=evaluators.clean_cache_path(fingerprint, profile.image_size),
                attacks=args.attacks,
                attacker_data=attacker_training_data(datamodule.dataset("train")),
                attack_config=profile.attacks, evaluator_config=profile.evaluators,
                trainer_kwargs=trainer_kwargs(args),
                attack_cache=attack_cache(method, cache_file, fingerprint, evaluators, profile,
                                          args.seed))
    except BaseException:
        method.close(kill=True)
        raise
    method.close()
    with phases("writing"):
        record = build_record(args, method, evaluation, root=root, fingerprint=fingerprint,
                              profile=profile, evaluator_dir=evaluators.directory,
                              method_cache=cache_file, times=phases.seconds)
        path = record_path(args.output, args.dataset, record["method"], args.seed)
        grid_path = path.with_suffix(".png")
        save_grid(evaluation.grid, grid_path, f"{record['method']} on {args.dataset} "
                  f"({profile.name} profile, seed {args.seed})")
        record["qualitative"] = grid_path.name
        write_record(path, record)
        rebuild(args.output, [args.dataset])
    record["phase_seconds"] = phases.seconds
    write_record(path, record)  # with the writing phase timed too
    return record


def build_record(args, method: MethodClient, evaluation: Evaluation, *, root, fingerprint,
                 profile: Profile, evaluator_dir, method_cache, times) -> dict:
    return {
        # a sweep point is a row of its own, named after its value; ``family`` is the method
        "method": getattr(args, "run_name", None) or method.name,
        "family": method.name,
        "sweep": getattr(args, "sweep_point", None),
        "class": method.class_path,
        "description": method.description,
        "reversible": bool(method.reversible),
        "key_bits": int(method.key_bits),
        "dataset": args.dataset,
        "dataset_root": portable_path(root),
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
        "evaluator_dir": portable_path(evaluator_dir),
        "method_cache": portable_path(method_cache),
        "phase_seconds": times,
        # the method's own process: its CPU time and memory are not in "cost"
        "method_process": dict(method.usage),
        **runtime_settings(args),
        "versions": package_versions(),
        "git_revision": git_revision(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def summary(record: dict, output: Path) -> str:
    """The run in a few lines: one per score family and attack (from the declarations)."""
    lines = [f"{record['method']} on {record['dataset']} ({record['profile']} profile, seed "
             f"{record['seed']}, {record['n_test']} test images; method isolated: "
             f"{record['isolation']})"]
    lines += summary_lines(record)
    if record.get("reid_worst_of"):
        lines.append(f"  worst case: {record['reid_worst_of']}")
    lines.append(f"  peak memory {record['cost']['peak_memory_mb']:.0f} MB")
    lines.append("phase times: " + ", ".join(
        f"{k} {v:.1f}s" for k, v in record["phase_seconds"].items()))
    lines.append("attack times: " + ", ".join(
        f"{k} {v:.1f}s" for k, v in record["cost"].get("attack_seconds", {}).items()))
    lines.append("run record: "
                 f"{record_path(output, record['dataset'], record['method'], record['seed'])}")
    lines.append(f"leaderboard: {Path(output) / (record['dataset'] + '.csv')} (.md)")
    return "\n".join(lines)
