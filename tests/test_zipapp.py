"""The zipapp: self-contained, pure zipimport (never unpacked), fast to start, reproducible.

Each run uses `bare_python` (no dependency importable) with -I, from empty directories,
so only what is inside the archive can make it pass.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

import supervisor
from tests.zipapp_fixture import ROOT, RUNTIME_MODULES, build_zipapp

pytest_plugins = ["tests.zipapp_fixture"]  # zipapp_path, bare_python

# Directory names that mean "tests" in the packages we ship.
TEST_DIRS = {"tests", "test", "_tests"}

# Runs inside the bare interpreter: records every attempt to create, change or remove a
# file (an audit hook sees them even when the file is deleted again before exit, as
# certifi's extracted bundle is), runs BODY, then prints the record as the last line.
AUDIT_HARNESS = """
import json, os, sys

PYZ = sys.argv[1]
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
CHANGES = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.link", "os.symlink",
    "os.truncate", "os.chmod", "os.chown", "os.utime", "tempfile.mkstemp",
    "tempfile.mkdtemp", "shutil.copyfile", "shutil.copytree", "shutil.move", "shutil.rmtree",
}
writes = []

def audit(event, args):
    if event == "open":
        path, mode, flags = args
        # A path, not a file descriptor; /dev/null is opened O_RDWR by subprocess (trio
        # runs `ldconfig -p` at import to find libpthread), which stores nothing.
        if isinstance(path, (str, bytes)) and os.fsdecode(path) != os.devnull and (
            (isinstance(mode, str) and any(c in mode for c in "wax+"))
            or (isinstance(flags, int) and flags & WRITE_FLAGS)
        ):
            writes.append(f"open {os.fsdecode(path)} {mode!r}")
    elif event in CHANGES:
        writes.append(f"{event} {args!r}")

sys.addaudithook(audit)
sys.path.insert(0, PYZ)
BODY
print(json.dumps(writes))
"""

IMPORT_EVERYTHING = """
import importlib, pkgutil

def reraise(name):
    raise  # walk_packages would otherwise swallow a package's ImportError

import supervisor
for info in pkgutil.walk_packages(supervisor.__path__, "supervisor.", onerror=reraise):
    if info.name.rpartition(".")[2] != "__main__":  # __main__ would run the CLI
        importlib.import_module(info.name)
for name in MODULES:
    importlib.import_module(name)
"""


def run(
    python: Path,
    args: Sequence[str],
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-I", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def audited(python: Path, pyz: Path, body: str, tmp_path: Path) -> list[str]:
    """What `body` tried to write, run from the archive with empty HOME, TMPDIR and cwd."""
    home, tmp, cwd = (tmp_path / name for name in ("home", "tmp", "cwd"))
    for directory in (home, tmp, cwd):
        directory.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"SSL_CERT_FILE", "SSL_CERT_DIR"}}
    # Without these httpx's default falls back to certifi.where(): the case to watch.
    env.update(HOME=str(home), TMPDIR=str(tmp))
    script = AUDIT_HARNESS.replace("BODY", body)
    # -B: bytecode caching of the *standard library* belongs to the Python installation
    # (and differs between machines); zipimport itself never writes bytecode.
    result = run(python, ["-B", "-c", script, str(pyz)], cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    writes: list[str] = json.loads(result.stdout.splitlines()[-1])
    return writes


def build_info(pyz: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    with zipfile.ZipFile(pyz) as archive:
        exec(archive.read("supervisor/_build_info.py"), namespace)
    return namespace


def archive_names(pyz: Path) -> list[str]:
    with zipfile.ZipFile(pyz) as archive:
        return archive.namelist()


def git_head() -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def test_version_runs_with_no_dependency_installed(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    info = build_info(zipapp_path)
    result = run(bare_python, [str(zipapp_path), "--version"], cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    commit = f" ({info['COMMIT']})" if info["COMMIT"] else ""
    assert result.stdout == f"supervisor {supervisor.__version__}{commit}\n"
    assert info["VERSION"] == supervisor.__version__
    assert info["COMMIT"].startswith(git_head())
    assert re.fullmatch(r"([0-9a-f]{4,}(-dirty)?)?", info["COMMIT"])


def test_no_arguments_prints_usage_and_exits_2(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    result = run(bare_python, [str(zipapp_path)], cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.startswith("usage: supervisor")
    assert result.stdout == ""


def test_runs_leave_home_tmp_cwd_and_the_archive_directory_untouched(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    home, tmp, cwd, bin_dir = (tmp_path / name for name in ("home", "tmp", "cwd", "bin"))
    for directory in (home, tmp, cwd, bin_dir):
        directory.mkdir()
    pyz = bin_dir / "supervisor.pyz"
    shutil.copy2(zipapp_path, pyz)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp)}

    for args in (["--version"], []):
        run(bare_python, [str(pyz), *args], cwd=cwd, env=env)

    assert list(home.iterdir()) == []
    assert list(tmp.iterdir()) == []
    assert list(cwd.iterdir()) == []
    assert list(bin_dir.iterdir()) == [pyz]  # no __pycache__ beside the archive


def test_importing_and_using_everything_writes_nothing(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    body = IMPORT_EVERYTHING.replace("MODULES", repr(RUNTIME_MODULES)) + (
        "import contextlib, io, httpx\n"
        "from supervisor.chat.tls import ssl_context\n"
        "httpx.AsyncClient(verify=ssl_context())\n"
        "from supervisor.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--version'])\n"
    )

    assert audited(bare_python, zipapp_path, body, tmp_path) == []


def test_httpx_default_client_would_unpack_certifi_from_the_archive(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    # Why supervisor.chat.tls exists, and proof that the audit above sees such writes:
    # httpx's default verify=True calls certifi.where(), which extracts cacert.pem from
    # the zip into TMPDIR (and deletes it at exit, so an empty TMPDIR afterwards proves
    # nothing).
    writes = audited(bare_python, zipapp_path, "import httpx\nhttpx.AsyncClient()\n", tmp_path)

    assert any(str(tmp_path / "tmp") in w and "cacert.pem" in w for w in writes), writes


def test_tls_context_trusts_certifis_bundle_read_from_the_archive(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    # An empty system store (OpenSSL reads it from these two variables), so every trusted
    # certificate must have come from the bundle inside the archive.
    (tmp_path / "empty.pem").touch()
    (tmp_path / "empty.d").mkdir()
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(tmp_path / "empty.pem"),
        "SSL_CERT_DIR": str(tmp_path / "empty.d"),
    }
    script = (
        "import importlib.resources, json, ssl, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from supervisor.chat.tls import ssl_context\n"
        "context = ssl_context()\n"
        "pem = importlib.resources.files('certifi').joinpath('cacert.pem').read_text()\n"
        "print(json.dumps([ssl.create_default_context().cert_store_stats()['x509_ca'],\n"
        "                  context.cert_store_stats()['x509_ca'],\n"
        "                  pem.count('BEGIN CERTIFICATE'),\n"
        "                  context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname]))\n"
    )
    result = run(bare_python, ["-c", script, str(zipapp_path)], cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    system, trusted, in_certifi, verifies = json.loads(result.stdout)

    assert system == 0
    assert in_certifi > 100
    assert trusted == in_certifi
    assert verifies


def test_every_module_is_loaded_from_bytecode_inside_the_archive(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    script = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        + IMPORT_EVERYTHING.replace("MODULES", repr(RUNTIME_MODULES))
        + "print(json.dumps({n: getattr(m, '__file__', None) for n, m in sys.modules.items()}))\n"
    )
    result = run(bare_python, ["-c", script, str(zipapp_path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])

    inside = {name: f for name, f in files.items() if f and f.startswith(f"{zipapp_path}/")}
    from_source = sorted(name for name, f in inside.items() if not f.endswith(".pyc"))
    assert from_source == []  # zipimport compiled these at start instead of using .pyc
    for module in (*RUNTIME_MODULES, "supervisor.cli", "supervisor.chat.tls"):
        assert module in inside, f"{module} was not imported from the archive"


def test_archive_has_bytecode_beside_each_source_and_no_tests(zipapp_path: Path) -> None:
    names = archive_names(zipapp_path)
    files = {n for n in names if not n.endswith("/")}
    sources = {n for n in files if n.endswith(".py")}

    assert sources and {n + "c" for n in sources} <= files
    assert not [n for n in names if "__pycache__" in PurePosixPath(n).parts]
    assert not [n for n in names if TEST_DIRS & set(PurePosixPath(n).parts)]


def test_spec_excludes_are_applied_and_licences_kept(zipapp_path: Path) -> None:
    spec = tomllib.loads((ROOT / "zipapp.spec").read_text())["files"]
    names = archive_names(zipapp_path)

    def matches(name: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    # The build's own bytecode (x.pyc beside x.py) matches "*.pyc" but is not subject to
    # the excludes; whether x.py itself belonged is what counts.
    files = [n for n in names if not n.endswith("/")]  # directories follow their files
    judged = {n[:-1] if n.endswith(".pyc") and n[:-1] in files else n for n in files}
    assert [n for n in judged if matches(n, spec["exclude"]) and not matches(n, spec["keep"])] == []
    dist_infos = {n.split("/")[0] for n in names if ".dist-info/" in n}
    for dist in dist_infos:
        assert f"{dist}/METADATA" in names
        assert any(n.startswith(dist) and "LICEN" in n.upper() for n in names), dist
    # Every runtime requirement made it in, under its own dist-info.
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]

    def normalized(name: str) -> str:  # PEP 503
        return re.sub(r"[-_.]+", "-", name).lower()

    shipped = {normalized(d.removesuffix(".dist-info").rsplit("-", 1)[0]) for d in dist_infos}
    for requirement in requirements:
        assert normalized(re.split(r"[<>=!~; \[]", requirement)[0]) in shipped, requirement


def test_build_info_exists_only_in_the_archive(zipapp_path: Path) -> None:
    assert "supervisor/_build_info.py" in archive_names(zipapp_path)
    assert not (ROOT / "supervisor" / "_build_info.py").exists()


def test_too_old_python_gets_one_clear_sentence(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    # Runs the archive's own __main__ in an interpreter that claims to be 3.10.
    script = (
        "import runpy, sys\n"
        "sys.version_info = (3, 10, 0, 'final', 0)\n"
        "sys.argv = [sys.argv[1], '--version']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    result = run(bare_python, ["-c", script, str(zipapp_path)], cwd=tmp_path)

    assert result.returncode == 1
    assert result.stderr.startswith("supervisor needs Python 3.11 or newer;")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_crash_traceback_shows_source_lines_from_the_archive(
    zipapp_path: Path, bare_python: Path, tmp_path: Path
) -> None:
    # The entry point is swapped for one that fails inside trio, then the archive's
    # __main__ runs: its excepthook must print the failing line read out of the zip.
    script = (
        "import runpy, sys, types\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import trio\n"
        "cli = types.ModuleType('supervisor.cli')\n"
        "cli.main = lambda: trio.CapacityLimiter(-1)\n"
        "sys.modules['supervisor.cli'] = cli\n"
        "runpy.run_path(sys.argv[1], run_name='__main__')\n"
    )
    result = run(bare_python, ["-c", script, str(zipapp_path)], cwd=tmp_path)

    assert result.returncode == 1
    assert 'File "supervisor.pyz/trio/_sync.py"' in result.stderr
    assert 'raise ValueError("total_tokens must be >= 0")' in result.stderr


@pytest.mark.slow  # two more full builds
def test_build_is_reproducible(tmp_path: Path) -> None:
    # A snapshot of the tree, so edits made elsewhere while the tests run cannot make the
    # two builds differ; it is no git checkout, which the build must handle too.
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "zipapp.spec"):
        shutil.copy2(ROOT / name, tree / name)
    for name in ("scripts", "supervisor"):
        shutil.copytree(ROOT / name, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
    outputs = [tmp_path / f"out{i}" / "supervisor.pyz" for i in (1, 2)]

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda out: build_zipapp(out, root=tree), outputs))

    digests = {hashlib.sha256(out.read_bytes()).hexdigest() for out in outputs}
    assert len(digests) == 1
    if subprocess.run(["git", "-C", str(tree), "rev-parse"], capture_output=True).returncode:
        assert build_info(outputs[0])["COMMIT"] == ""
    assert os.access(outputs[0], os.X_OK)
    assert outputs[0].read_bytes().startswith(b"#!/usr/bin/env python3\n")


def test_build_script_needs_nothing_but_the_standard_library() -> None:
    # It must run on a fresh machine with python3 and pip: no third-party import.
    tree = ast.parse((ROOT / "scripts" / "build_zipapp.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.partition(".")[0])

    assert imported
    assert imported - sys.stdlib_module_names - {"__future__"} == set()


def test_a_python_without_pip_is_told_so_rather_than_blamed_on_the_wheels(tmp_path: Path) -> None:
    """A stock Debian or Ubuntu has no python3-pip: the build said that a requirement had
    compiled code or no wheel. (`-S`: no site-packages, so no pip, as there.)"""
    build = [sys.executable, "-S", str(ROOT / "scripts" / "build_zipapp.py"), "--output", str(tmp_path / "x.pyz")]
    result = subprocess.run(build, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "has no pip: install it (Debian/Ubuntu: apt install python3-pip)" in result.stderr
    assert not (tmp_path / "x.pyz").exists()
