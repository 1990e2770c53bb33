"""Overhead of the method worker on a cached run (issue #8 target: <= 20 %; a benchmark, not
a test).

    python benchmarks/bench_worker.py [--method blur] [--profile quick] [--repeats 3]
                                      [--isolate | --no-isolate]

Runs ``benchmark.runner.run`` on MeMa-Synth with the method's fitted state and the evaluators
already cached, alternately (a) as the suite runs it — the method in its worker process, under
bubblewrap where available — and (b) with the method built in this process instead (what the
harness did before the worker existed), in one interpreter so that import time counts for
neither. Prints the median wall time and CPU time (this process plus the worker) of each, and the overhead of (a) over (b). On a machine shared with other jobs
the CPU time is the steadier figure: the worker's start-up (importing torch and the method's
own dependencies again) runs beside the data loading, and only costs wall time when no core
is free.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmark import runner
from benchmark.registry import load_method
from benchmark.run import build_parser, check_args


class InProcessMethod:
    """The method itself, with the few extras the runner asks of a ``MethodClient``."""

    usage: dict = {}

    def __init__(self, spec, options: dict) -> None:
        self._method = load_method(spec.target, **options)
        self.declared_name = ""
        cls = type(self._method)
        self.class_path = f"{cls.__module__}:{cls.__qualname__}"

    def __getattr__(self, name):
        return getattr(self._method, name)

    def __setattr__(self, name, value):
        if name in ("_method", "declared_name", "class_path"):
            object.__setattr__(self, name, value)
        else:
            setattr(self._method, name, value)

    def fit_state(self, payload: dict) -> dict:
        from benchmark.training_view import TrainingView

        self._method.fit(TrainingView(payload))
        return self._method.state_dict()

    def close(self, kill: bool = False) -> int:
        return 0


def in_process(args, spec, profile, fingerprint, data_root):
    options = {"profile": profile.method_profile, "seed": args.seed,
               "trainer_kwargs": runner.trainer_kwargs(args)}
    return InProcessMethod(spec, options)


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def timed(argv: list[str], start_method) -> tuple[float, float]:
    """(wall, CPU) seconds of one run; CPU counts this process and the method's worker (as
    the worker reports it: inside bubblewrap's PID namespace it escapes RUSAGE_CHILDREN)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    spec, (run_args,) = check_args(parser, args)  # one run: no --seeds, no --sweep
    methods = []

    def start(*pos):
        methods.append(start_method(*pos))
        return methods[-1]

    original, runner.start_method = runner.start_method, start
    try:
        wall, cpu = time.perf_counter(), _cpu_seconds()
        runner.run(run_args, spec)
        wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
        return wall, cpu + sum(m.usage.get("cpu_seconds", 0.0) for m in methods)
    finally:
        runner.start_method = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="blur")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--isolate", action=argparse.BooleanOptionalAction, default=None)
    options = parser.parse_args()
    output = Path(tempfile.mkdtemp(prefix="bench-worker-"))
    argv = ["--method", options.method, "--profile", options.profile, "--output", str(output),
            "--quiet"]
    if options.isolate is not None:
        argv.append("--isolate" if options.isolate else "--no-isolate")
    print("warm-up (fills the caches) ...", file=sys.stderr)
    timed(argv, runner.start_method)
    worker, local = [], []
    for _ in range(options.repeats):
        worker.append(timed(argv, runner.start_method))
        local.append(timed(argv, in_process))
    print(f"cached {options.method} run, {options.profile} profile, {options.repeats} repeats")
    for i, what in enumerate(("wall", "CPU")):
        w = statistics.median(t[i] for t in worker)
        p = statistics.median(t[i] for t in local)
        print(f"  {what} time: method worker {w:.2f} s "
              f"({', '.join(f'{t[i]:.2f}' for t in worker)}), in process {p:.2f} s "
              f"({', '.join(f'{t[i]:.2f}' for t in local)}): overhead {100 * (w - p) / p:+.1f} %"
              " (target <= 20 %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
