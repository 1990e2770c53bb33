"""The packaging recipe of docs/plugins.md §2 works as written: its pyproject.toml and
setup.cfg build an installable plugin whose entry point the registry finds."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmark.registry import list_methods, resolve

DOC = Path(__file__).parents[1] / "docs" / "plugins.md"


def _block(language: str) -> str:
    section = DOC.read_text().split("## 2. Package and register it")[1].split("\n## ")[0]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def test_the_documented_recipe_installs_a_registered_plugin(tmp_path, monkeypatch):
    project = tmp_path / "my-deid-plugin"
    package = project / "my_deid_plugin"
    package.mkdir(parents=True)
    (project / "pyproject.toml").write_text(_block("toml"))
    (project / "setup.cfg").write_text(_block("ini"))
    (package / "__init__.py").write_text("")
    (package / "methods.py").write_text(textwrap.dedent('''
        from benchmark.api import DeIdMethod

        class MyMethod(DeIdMethod):
            description = "what it does, in one line"

            def anonymize(self, batch, keys):
                return batch["image"]
    '''))
    site = tmp_path / "site"
    # offline: the build uses this environment's setuptools, and mema-bench is installed
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-build-isolation", "--no-index", "--target", str(site),
                           str(project)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    monkeypatch.syspath_prepend(str(site))
    listed = {info.name: info for info in list_methods()}
    assert listed["my_method"].description == "what it does, in one line"
    assert resolve("my_method").target == "my_deid_plugin.methods:MyMethod"
