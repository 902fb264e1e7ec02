"""The single-file supervisor as users get it, for tests that run it the way they do.

- `zipapp_path`: supervisor.pyz built once per test session by scripts/build_zipapp.py
  (into a temporary directory, never dist/; pip's cache keeps it to a few seconds).
- `bare_python`: a Python on which none of the runtime dependencies are importable, so a
  passing run proves the archive carries everything it needs.

Both are session-scoped and read-only: copy the archive before a test that needs a
directory of its own. To use them from another test module, list this module in
`pytest_plugins` (conftest.py or the test module itself).

PYTEST_DONT_REWRITE: this module has no assert to rewrite, and a test module may import
its helpers before `pytest_plugins` registers it (pytest would warn, and warnings fail).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_SCRIPT = ROOT / "scripts" / "build_zipapp.py"
# What the archive must bring along; a bare interpreter must not already have any of it.
RUNTIME_MODULES = (
    "trio", "trio_websocket", "httpx", "httpcore", "attrs", "cattrs", "certifi",
    "markdown_it", "mdurl", "hypercorn", "h11", "wsproto",
)


def build_zipapp(output: Path, *, root: Path = ROOT) -> str:
    """Run the build script of the tree at `root`; returns its summary line."""
    result = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "build_zipapp.py"),
            "--spec",
            str(root / "zipapp.spec"),
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"building the zipapp failed (exit {result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout.strip()


@pytest.fixture(scope="session")
def zipapp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("zipapp") / "supervisor.pyz"
    build_zipapp(output)
    return output


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interpreter of a fresh venv without pip: the standard library and nothing else.

    venv builds it on the base interpreter, not on the test venv, and without the system
    site-packages (which may hold trio and friends), so nothing leaks in.
    """
    where = tmp_path_factory.mktemp("bare-python") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    for module in RUNTIME_MODULES:
        probe = subprocess.run(
            [str(python), "-I", "-c", f"import {module}"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            pytest.fail(f"{python} can import {module}: it is not bare", pytrace=False)
    return python
