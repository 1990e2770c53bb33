"""Privacy-utility sweeps: ``--sweep blur.sigma=1,2,4,8`` runs the method once per value of one
numeric constructor option and writes one leaderboard row per value, named
``blur[sigma=2]``; the frontier plot draws each method family as a curve (as SEBA does).
"""
from __future__ import annotations

import argparse
import copy
import re

_SPEC = re.compile(r"^(?P<method>[^=]+)\.(?P<option>[A-Za-z_]\w*)=(?P<values>.+)$")


def _number(text: str, spec: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"--sweep {spec!r}: {text!r} is not a number") from None


def parse_sweep(spec: str, method: str) -> tuple[str, list[int | float]]:
    """``METHOD.OPTION=V1,V2,...`` -> ``(option, values)``; METHOD must be ``--method``."""
    match = _SPEC.match(spec.strip())
    if not match:
        raise ValueError(f"--sweep {spec!r}: expected METHOD.OPTION=V1,V2,... "
                         "(e.g. blur.sigma=1,2,4,8)")
    if match["method"] != method:
        raise ValueError(f"--sweep {spec!r} names method {match['method']!r} but --method is "
                         f"{method!r}")
    values = [_number(v.strip(), spec) for v in match["values"].split(",") if v.strip()]
    if not values:
        raise ValueError(f"--sweep {spec!r}: no values")
    return match["option"], values


def run_label(method: str, option: str, value: int | float) -> str:
    return f"{method}[{option}={value:g}]"


def sweep_runs(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One copy of ``args`` per run: ``method_options`` (constructor keyword options),
    ``run_name`` (the leaderboard row's name) and ``sweep`` (``{option: value}``) set."""
    if not getattr(args, "sweep", None):
        return [args]
    option, values = parse_sweep(args.sweep, args.method)
    runs = []
    for value in values:
        run = copy.copy(args)
        run.method_options = {option: value}
        run.run_name = run_label(args.method, option, value)
        run.sweep_point = {option: value}
        runs.append(run)
    return runs
