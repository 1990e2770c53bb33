"""Find de-identification methods by name (DESIGN.md §3).

Two ways to name a method, and no other: an entry point in the ``mema_bench.methods`` group
(the suite's built-ins are declared there in its own ``setup.cfg``, exactly as a third-party
package declares its plugins) or an importable ``package.module:Class``. The harness never
imports ``baselines`` or ``medsem_deid`` by name.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from benchmark.api import DeIdMethod

ENTRY_POINT_GROUP = "mema_bench.methods"


class MethodNotFoundError(LookupError):
    """No method of that name is registered."""


class PluginError(RuntimeError):
    """A method plugin could not be imported or built."""


@dataclass(frozen=True)
class MethodInfo:
    name: str
    target: str  # "module:Class" the name resolves to
    reversible: bool | None = None
    description: str = ""
    error: str | None = None  # why the plugin could not be loaded, if it could not


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        # first one wins, like the console-script resolution of pip; duplicates are rare
        found.setdefault(ep.name, ep)
    return found


def _check_class(cls: Any, target: str) -> type[DeIdMethod]:
    if not (isinstance(cls, type) and issubclass(cls, DeIdMethod)):
        raise PluginError(f"{target} is not a subclass of benchmark.api.DeIdMethod")
    return cls


def _import_target(target: str) -> type[DeIdMethod]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise MethodNotFoundError(f"{target!r} is not of the form package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # a plugin may fail to import in any way
        raise PluginError(f"cannot import {module_name!r} for method {target!r}: {err!r}") from err
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise PluginError(f"module {module_name!r} has no attribute {attr!r}") from None
    return _check_class(cls, target)


def method_class(name: str) -> tuple[str, type[DeIdMethod]]:
    """Resolve ``name`` (registered name or ``module:Class``) to ``(method name, class)``."""
    if ":" in name:
        cls = _import_target(name)
        return (cls.name or name), cls
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "(none installed)"
        raise MethodNotFoundError(
            f"unknown method {name!r}. Registered methods: {known}. "
            "Name an installed entry point of group 'mema_bench.methods' or 'package.module:Class'."
        )
    ep = eps[name]
    try:
        cls = ep.load()
    except Exception as err:
        raise PluginError(f"method {name!r} ({ep.value}) failed to import: {err!r}") from err
    return name, _check_class(cls, ep.value)


def load_method(name: str, **kwargs: Any) -> DeIdMethod:
    """Build the method ``name`` with keyword options (``profile``, ``seed``, ``work_dir``, ...)."""
    method_name, cls = method_class(name)
    try:
        method = cls(**kwargs)
    except Exception as err:
        raise PluginError(f"method {method_name!r} could not be constructed: {err!r}") from err
    if not method.name:
        method.name = method_name
    return method


def list_methods() -> list[MethodInfo]:
    """Every registered method; a broken plugin is listed with its error instead of raising."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        try:
            cls = _check_class(ep.load(), ep.value)
        except Exception as err:
            infos.append(MethodInfo(name, ep.value, error=f"{type(err).__name__}: {err}"))
            continue
        doc = (cls.__doc__ or "").strip().splitlines()
        description = cls.description or (doc[0] if doc else "")
        infos.append(MethodInfo(name, ep.value, bool(cls.reversible), description))
    return infos


def format_method_list(infos: list[MethodInfo]) -> str:
    width = max((len(i.name) for i in infos), default=4)
    lines = [f"{'name':<{width}}  reversible  description"]
    for info in infos:
        if info.error:
            lines.append(f"{info.name:<{width}}  {'?':<10}  BROKEN ({info.target}): {info.error}")
        else:
            rev = "yes" if info.reversible else "no"
            lines.append(f"{info.name:<{width}}  {rev:<10}  {info.description}")
    return "\n".join(lines)
