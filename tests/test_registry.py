"""Registry: built-in names, installed entry points, module:Class, unknown and broken plugins."""
from __future__ import annotations

import sys
import textwrap

import pytest

from benchmark.api import DeIdMethod
from benchmark.registry import (
    MethodNotFoundError, PluginError, format_method_list, list_methods, load_method, method_class,
)
from benchmark.run import main


class Halve(DeIdMethod):
    """Darkens every image (a test method loaded by module:Class)."""

    def anonymize(self, batch, keys):
        return batch["image"] * 0.5


def _install_fake_distribution(root, module: str, entry: str) -> None:
    """A minimal installed distribution: a module and a .dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(f"""
        from benchmark.api import DeIdMethod
        class Plug(DeIdMethod):
            description = "fake plugin"
            reversible = True
            def anonymize(self, batch, keys):
                return batch["image"]
    """))
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mema_bench.methods]\n{entry}\n")


def test_builtin_name_loads_the_declared_class():
    method = load_method("identity", profile="quick", seed=3)
    assert type(method).__module__ == "baselines.classic"
    assert method.name == "identity" and method.seed == 3


def test_module_colon_class_loads_anything_importable():
    name, cls = method_class(f"{__name__}:Halve")
    assert cls is Halve and name == f"{__name__}:Halve"
    assert load_method(f"{__name__}:Halve").name == f"{__name__}:Halve"


def test_installed_entry_point_is_found(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "fakeplug", "fake_method = fakeplug:Plug")
    monkeypatch.syspath_prepend(str(tmp_path))
    infos = {i.name: i for i in list_methods()}
    assert infos["fake_method"].reversible is True
    assert infos["fake_method"].description == "fake plugin"
    assert load_method("fake_method").name == "fake_method"


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(MethodNotFoundError, match="unknown method 'no_such'.*blur.*identity"):
        load_method("no_such")


def test_broken_plugin_is_a_clear_error_and_listed_as_broken(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "brokenplug", "broken_method = brokenplug_missing:Plug")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="broken_method.*failed to import"):
        load_method("broken_method")
    listed = {i.name: i for i in list_methods()}
    assert listed["broken_method"].error and "BROKEN" in format_method_list(list(listed.values()))
    with pytest.raises(PluginError, match="not a subclass"):
        method_class("benchmark.registry:MethodInfo")
    with pytest.raises(PluginError, match="no Python source file for module 'no_such_module_xyz'"):
        method_class("no_such_module_xyz:Thing")


def test_constructor_errors_name_the_method():
    with pytest.raises(PluginError, match="'identity' could not be constructed"):
        load_method("identity", no_such_option=1)


def test_list_methods_cli_prints_name_reversible_description(capsys):
    assert main(["--list-methods"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("mask_keep_eyes "))
    assert " no " in line and "periocular" in line


def test_help_explains_itself(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for flag in ("--method", "--dataset", "--profile", "--retrain-evaluators",
                 "--facenet-weights", "--list-methods", "--output"):
        assert flag in out
    assert sys.modules[__name__]  # the module stays importable for module:Class loading


def test_a_plugin_cannot_take_a_registered_name(monkeypatch):
    """A class whose ``name`` is a built-in's is refused; a class registered under a name
    gets that name (one row) however it is named on the command line."""
    from benchmark.registry import MethodSpec, check_declared_name, resolve

    spec = MethodSpec("pkg.mod:Claim", "pkg.mod:Claim")
    with pytest.raises(PluginError, match="declares name = 'medsem_deid'.*cannot take"):
        check_declared_name(spec, "medsem_deid", "pkg.mod:Claim")
    assert check_declared_name(spec, "my_own", "pkg.mod:Claim") == "pkg.mod:Claim"
    assert resolve("baselines.classic:Blur") == MethodSpec("blur", "baselines.classic:Blur")
    assert method_class("baselines.classic:Blur")[0] == "blur"
    assert load_method("baselines.classic:Blur").name == "blur"


def test_two_entry_points_with_one_name_are_refused(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "evilplug", "blur = evilplug:Plug")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="'blur' is declared by several entry points.*evilplug"):
        load_method("blur")
    with pytest.raises(SystemExit):
        main(["--method", "blur"])
    listed = {i.name: i for i in list_methods()}
    assert "several entry points" in listed["blur"].error
