"""Every bad argument is refused before any work starts (no dataset generated, no cache
written, no method imported), and ``--help`` imports nothing heavy."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from benchmark.run import main


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MEMA_BENCH_CACHE", str(cache))
    return cache


def _refused(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--seed", "-1"], "negative"),
    (["--seed", "x"], "not an integer"),
    (["--devices", "abc"], "not a device count"),
    (["--devices", "0"], "not a device count"),
    (["--method-timeout", "0"], "must be > 0"),
    (["--dataset", "mema"], "needs --data-root"),
    (["--data-root", "/nonexistent/x"], "--generate"),
    (["--dataset", "mema", "--data-root", "/nonexistent/x"], "does not exist"),
    (["--facenet-weights", "/nonexistent/w.pt"], "no such file"),
    ([], "--method is required"),
])
def test_bad_flags_are_refused_before_work(argv, message, empty_cache, capsys):
    if argv:
        argv = ["--method", "blur", *argv]
    assert message in _refused(argv, capsys)
    assert not empty_cache.exists()


def test_missing_data_root_is_generated_only_when_asked(tmp_path, empty_cache, capsys):
    root = tmp_path / "new-synth"
    assert "--generate" in _refused(["--method", "blur", "--data-root", str(root)], capsys)
    assert not root.exists()
    from benchmark.datasets import check_data_root

    check_data_root("mema-synth", root, generate=True)  # asked for: accepted


def test_method_class_is_checked_without_importing_it(tmp_path, monkeypatch, empty_cache,
                                                      capsys):
    marker = tmp_path / "imported"
    (tmp_path / "sideeffect.py").write_text(textwrap.dedent(f"""
        open({str(marker)!r}, "w").close()
        def helper():
            pass
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "defines no class 'Nope'" in _refused(["--method", "sideeffect:Nope"], capsys)
    assert "is a function" in _refused(["--method", "sideeffect:helper"], capsys)
    assert "not a subclass" in _refused(["--method", "os:system"], capsys)
    assert "no Python source" in _refused(["--method", "no_such_pkg.mod:Cls"], capsys)
    assert "package.module:Class" in _refused(["--method", "a b:C"], capsys)
    assert not marker.exists()


def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom benchmark.run import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'lightning', 'pandas', 'data') if m in sys.modules]\n"
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "--isolate" in done.stdout and "--generate" in done.stdout


def test_isolate_without_bubblewrap_is_refused_and_the_default_says_so(monkeypatch, capsys,
                                                                     empty_cache):
    import benchmark.sandbox

    monkeypatch.setattr(benchmark.sandbox, "bwrap_available", lambda: False)
    assert "needs bubblewrap" in _refused(["--method", "blur", "--isolate"], capsys)
    # the default falls back to a plain worker process, and says so once
    from benchmark.run import build_parser, check_args

    parser = build_parser()
    args = parser.parse_args(["--method", "blur"])
    check_args(parser, args)
    assert args.isolate is False
    assert capsys.readouterr().err.count("bubblewrap (bwrap) is not available") == 1
