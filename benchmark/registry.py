"""Find de-identification methods by name (docs/architecture.md §3).

Two ways to name a method, and no other: an entry point in the ``mema_bench.methods`` group
(the suite's built-ins are declared there in its own ``setup.cfg``, exactly as a third-party
package declares its plugins) or an importable ``package.module:Class``. The harness never
imports ``baselines`` or ``medsem_deid`` by name, and during a run it imports no method at
all: :func:`resolve` and :func:`check_target` work from entry-point metadata and source files,
and the method's worker imports the class (:func:`import_method_class`).

Names are unique (docs/isolation.md): a row name is a registry name; two entry points with
one name, or a class claiming another method's name, are refused.
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from importlib.machinery import PathFinder
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
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


def _entry_points() -> dict[str, list[EntryPoint]]:
    """Entry points by name; the same declaration seen twice (an installed and a development
    copy of one distribution) counts once."""
    found: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        same = found.setdefault(ep.name, [])
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return found


def _single(name: str, eps: list[EntryPoint]) -> EntryPoint:
    """The one entry point of ``name``; two with one name are refused, so a third-party
    package cannot silently replace a method (or a built-in) by declaring its name."""
    if len(eps) > 1:
        claims = "; ".join(f"{ep.value} (from {_distribution(ep)})" for ep in eps)
        raise PluginError(f"method name {name!r} is declared by several entry points of group "
                          f"{ENTRY_POINT_GROUP!r}: {claims}. Uninstall all but one.")
    return eps[0]


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return getattr(dist, "name", None) or "an unknown distribution"


def _check_class(cls: Any, target: str) -> type[DeIdMethod]:
    if not (isinstance(cls, type) and issubclass(cls, DeIdMethod)):
        raise PluginError(f"{target} is not a subclass of benchmark.api.DeIdMethod")
    return cls


def _split_target(target: str) -> tuple[str, str]:
    module_name, _, attr = target.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in
                                               (*module_name.split("."), *attr.split("."))):
        raise MethodNotFoundError(f"{target!r} is not of the form package.module:Class")
    return module_name, attr


def import_method_class(target: str) -> type[DeIdMethod]:
    """Import ``package.module:Class`` and check it is a ``DeIdMethod`` (run in the method's
    worker: importing a plugin runs its code)."""
    module_name, attr = _split_target(target)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:  # a plugin may fail to import in any way
        raise PluginError(f"cannot import {module_name!r} for method {target!r}: {err!r}") from err
    cls = module
    for part in attr.split("."):
        try:
            cls = getattr(cls, part)
        except AttributeError:
            raise PluginError(f"module {module_name!r} has no attribute {attr!r}") from None
    return _check_class(cls, target)


def _module_source(module_name: str) -> str | None:
    """The file ``module_name`` would be imported from, found without importing anything
    (not even its parent packages); None when the import system finds no source file."""
    parts = module_name.split(".")
    try:  # a top-level name is looked up by every finder (editable installs too), unimported
        spec = importlib.util.find_spec(parts[0])
    except (ImportError, ValueError):
        return None
    for i in range(1, len(parts)):
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec = PathFinder.find_spec(".".join(parts[: i + 1]), spec.submodule_search_locations)
    return spec.origin if spec is not None and spec.has_location else None


def check_target(target: str) -> None:
    """Check, before any of its code runs, that ``package.module:Class`` can name a method:
    a module already imported must hold a ``DeIdMethod`` subclass under that name; any other
    must be a source file that defines (or imports) that name. The worker imports it and
    checks the class itself."""
    module_name, attr = _split_target(target)
    head = attr.split(".")[0]
    if module_name in sys.modules:  # importing it again runs nothing new
        _check_class(functools.reduce(getattr, attr.split("."), sys.modules[module_name])
                     if _has_path(sys.modules[module_name], attr) else None, target)
        return
    source = _module_source(module_name)
    if source is None or not source.endswith(".py"):
        raise PluginError(f"method {target!r}: no Python source file for module "
                          f"{module_name!r} on the Python path")
    try:
        tree = ast.parse(Path(source).read_text(), source)
    except (OSError, SyntaxError, ValueError) as err:
        raise PluginError(f"method {target!r}: cannot read {source}: {err}") from err
    if head not in _bound_names(tree):
        raise PluginError(f"method {target!r}: {source} defines no class {head!r}")
    if head in _bound_names(tree, kinds=(ast.FunctionDef, ast.AsyncFunctionDef)):
        raise PluginError(f"method {target!r}: {head!r} in {source} is a function, not a "
                          "DeIdMethod class")


def _has_path(obj: Any, attr: str) -> bool:
    for part in attr.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def _bound_names(tree: ast.Module, kinds: tuple = ()) -> set[str]:
    """Names a module binds at top level (classes, imports, assignments), or only the
    definitions of ``kinds``."""
    names = set()
    for node in tree.body:
        if kinds:
            if isinstance(node, kinds):
                names.add(node.name)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


@dataclass(frozen=True)
class MethodSpec:
    """A method named on the command line, resolved without importing it."""

    name: str    # the row name: the registry name, or the target of an unregistered class
    target: str  # package.module:Class


def resolve(name: str) -> MethodSpec:
    """Resolve a registered name or ``package.module:Class`` to its row name and class path,
    without importing method code. A class path that a registered name declares gets that
    name, so one method never has two rows."""
    eps = _entry_points()
    if ":" not in name:
        if name not in eps:
            known = ", ".join(sorted(eps)) or "(none installed)"
            raise MethodNotFoundError(
                f"unknown method {name!r}. Registered methods: {known}. Name an installed "
                f"entry point of group {ENTRY_POINT_GROUP!r} or 'package.module:Class'.")
        return MethodSpec(name, _single(name, eps[name]).value)
    check_target(name)
    for registered, declared in eps.items():
        if any(ep.value == name for ep in declared):
            _single(registered, declared)
            return MethodSpec(registered, name)
    return MethodSpec(name, name)


def check_declared_name(spec: MethodSpec, declared: str, class_path: str) -> str:
    """The row name of ``spec`` once its class is known: a class may not claim (through its
    ``name`` attribute) the name of another registered method; a class registered under a
    name gets that name however it was named on the command line."""
    eps = _entry_points()
    for registered, declared_eps in eps.items():
        if ":" in spec.name and any(ep.value == class_path for ep in declared_eps):
            return registered
    if declared and declared != spec.name and declared in eps:
        raise PluginError(f"method {spec.target!r} declares name = {declared!r}, the name of "
                          f"the registered method {eps[declared][0].value}; a method cannot "
                          "take another method's name (drop or change its `name`)")
    return spec.name


def method_class(name: str) -> tuple[str, type[DeIdMethod]]:
    """Resolve ``name`` (registered name or ``module:Class``) to ``(method name, class)``,
    importing it in this process (tests and tools; a run imports methods only in the worker)."""
    spec = resolve(name)
    try:
        cls = import_method_class(spec.target)
    except PluginError as err:
        if ":" in name:
            raise
        raise PluginError(f"method {name!r} ({spec.target}) failed to import: {err}") from err
    return check_declared_name(spec, getattr(cls, "name", "") or "",
                               f"{cls.__module__}:{cls.__qualname__}"), cls


def load_method(name: str, **kwargs: Any) -> DeIdMethod:
    """Build the method ``name`` with keyword options (``profile``, ``seed``, ``work_dir``, ...)."""
    method_name, cls = method_class(name)
    try:
        method = cls(**kwargs)
    except Exception as err:
        raise PluginError(f"method {method_name!r} could not be constructed: {err!r}") from err
    method.name = method_name  # the row name is the registry name, whatever the class says
    return method


def list_methods() -> list[MethodInfo]:
    """Every registered method; a broken plugin is listed with its error instead of raising."""
    infos = []
    for name, eps in sorted(_entry_points().items()):
        ep = eps[0]
        try:
            ep = _single(name, eps)
            cls = _check_class(ep.load(), ep.value)
        except Exception as err:
            infos.append(MethodInfo(name, ep.value, error=f"{type(err).__name__}: {err}"))
            continue
        infos.append(MethodInfo(name, ep.value, bool(cls.reversible), method_description(cls)))
    return infos


def method_description(cls: type[DeIdMethod]) -> str:
    """``description``, else the first line of the class docstring."""
    doc = (cls.__doc__ or "").strip().splitlines()
    return cls.description or (doc[0] if doc else "")


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
