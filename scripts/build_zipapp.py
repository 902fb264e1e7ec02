#!/usr/bin/env python3
"""Build the single-file supervisor (dist/supervisor.pyz) as zipapp.spec describes.

Needs nothing but Python 3.11+ with pip: `python3 scripts/build_zipapp.py [--output PATH]`.

What the archive promises, and why the build does what it does:
- It runs by pure zipimport and never unpacks itself: pure-Python wheels only (pip is told
  to accept nothing else, and the result is checked again), no extraction step at start.
- It starts fast: every module has its bytecode BESIDE its source (`trio/_core/_run.pyc` next
  to `trio/_core/_run.py`). zipimport reads only that legacy layout and ignores `__pycache__/`; it
  never writes bytecode either, so without this every start would compile everything.
  The .pyc files are "unchecked-hash" pycs (PEP 552): the archive is immutable, so there is
  nothing to validate, and they carry no timestamp. The sources stay for tracebacks, and
  for Python versions whose bytecode differs (zipimport falls back to compiling them).
- Reproducible: the same sources and dependency versions give the same bytes - sorted
  entries, fixed timestamps (SOURCE_DATE_EPOCH if set) and permissions, no installer
  bookkeeping (RECORD, direct_url.json) that holds the build machine's paths.

It must never write into the source tree: the generated `_build_info.py` and `__main__.py`
exist only inside the archive, and the output file is the only thing written outside a
temporary directory.
"""

from __future__ import annotations

import sys

# tomllib appeared in 3.11, which is also the supervisor's floor. This script runs under
# whatever `python3` a fresh machine has (ruff assumes 3.11): say so instead of failing with
# an ImportError.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.exit("build_zipapp.py needs Python 3.11 or newer")

import argparse
import ast
import fnmatch
import importlib.util
import marshal
import os
import re
import subprocess
import tempfile
import time
import tomllib
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "zipapp.spec"
_COMPRESSION = {"stored": zipfile.ZIP_STORED, "deflated": zipfile.ZIP_DEFLATED}
# Anything that is machine code: a pure-Python zipapp cannot load it without unpacking.
_NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".dll")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can carry


class BuildError(Exception):
    """The build cannot produce a correct archive; the message says why."""


@dataclass(frozen=True)
class Spec:
    """zipapp.spec with the parts it takes from pyproject.toml filled in."""

    root: Path  # the spec's directory: relative paths start here
    output: Path
    entry_point: str  # "module:function"
    packages: tuple[str, ...]
    shebang: str
    compression: int
    compression_level: int | None
    requirements: tuple[str, ...]
    python_floor: tuple[int, int]
    version: str
    exclude: tuple[str, ...]
    keep: tuple[str, ...]

    def excludes(self, name: str) -> bool:
        """Whether the archive path `name` stays out of the archive."""
        return _matches(name, self.exclude) and not _matches(name, self.keep)


@dataclass(frozen=True)
class Built:
    path: Path
    size: int
    files: int
    seconds: float
    version: str
    commit: str


def _matches(name: str, patterns: Iterable[str]) -> bool:
    # fnmatchcase: the same answer on every OS (fnmatch folds case on Windows).
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _table(data: Mapping[str, Any], key: str, known: set[str], where: str) -> dict[str, Any]:
    table = data.get(key)
    if not isinstance(table, dict):
        raise BuildError(f"{where}: missing table [{key}]")
    unknown = set(table) - known
    if unknown:
        raise BuildError(f"{where}: unknown key(s) in [{key}]: {', '.join(sorted(unknown))}")
    return table


def load_spec(path: Path) -> Spec:
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BuildError(f"{where}: {error}") from None
    app = _table(
        data,
        "zipapp",
        {"output", "entry_point", "packages", "shebang", "compression", "compression_level"},
        where,
    )
    files = _table(data, "files", {"exclude", "keep"}, where)
    reqs = _table(data, "requirements", {"pyproject"}, where)
    root = path.resolve().parent
    try:
        project, tool = _pyproject(root / reqs["pyproject"])
        compression = _COMPRESSION[app.get("compression", "deflated")]
        packages = tuple(str(p) for p in app["packages"])
        return Spec(
            root=root,
            output=root / app["output"],
            entry_point=str(app["entry_point"]),
            packages=packages,
            shebang=str(app["shebang"]),
            compression=compression,
            compression_level=app.get("compression_level"),
            requirements=tuple(project.get("dependencies", ())),
            python_floor=_python_floor(project.get("requires-python", "")),
            version=_version(root, project, tool, packages),
            exclude=tuple(files.get("exclude", ())),
            keep=tuple(files.get("keep", ())),
        )
    except KeyError as error:
        raise BuildError(f"{where}: missing key or unknown value {error}") from None


def _pyproject(pyproject: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Its [project] and [tool] tables."""
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise BuildError(f"{pyproject}: {error}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        raise BuildError(f"{pyproject}: no [project] table")
    return project, data.get("tool", {})


def _python_floor(requires_python: str) -> tuple[int, int]:
    # The zipapp's __main__ checks one floor; a richer specifier would need `packaging`,
    # which a bare Python lacks, so anything else is refused rather than misread.
    match = re.fullmatch(r"\s*>=\s*(\d+)\.(\d+)\s*", requires_python)
    if not match:
        raise BuildError(
            f"[project].requires-python must look like '>=3.11', not {requires_python!r}"
        )
    return int(match[1]), int(match[2])


def _version(
    root: Path, project: Mapping[str, Any], tool: Mapping[str, Any], packages: tuple[str, ...]
) -> str:
    if isinstance(project.get("version"), str):
        return str(project["version"])
    attr = tool.get("setuptools", {}).get("dynamic", {}).get("version", {})
    module, _, name = str(attr.get("attr", f"{packages[0]}.__version__")).rpartition(".")
    source = root / Path(*module.split("."))
    source = source / "__init__.py" if source.is_dir() else source.with_suffix(".py")
    # Parsed, not imported: importing would run package code and could write __pycache__
    # into the source tree.
    for node in ast.parse(source.read_bytes(), str(source)).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise BuildError(f"{source}: no `{name} = '...'` to take the version from")


def git_commit(root: Path) -> str:
    """`git rev-parse --short HEAD`, "-dirty" if anything differs; "" outside a checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # Untracked files count: the build copies every file of the package directory.
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return head + ("-dirty" if status.strip() else "")


def install_requirements(spec: Spec, target: Path) -> None:
    """pip-install the runtime requirements into `target`, pure-Python wheels only."""
    if importlib.util.find_spec("pip") is None:  # else pip's failure would blame the wheels
        raise BuildError(
            f"{sys.executable} has no pip: install it (Debian/Ubuntu: apt install python3-pip)"
        )
    floor = "{}.{}".format(*spec.python_floor)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target),
        "--no-compile",  # the build compiles bytecode itself, in the layout zipimport reads
        "--only-binary=:all:",
        # Tags that only pure wheels carry, for the oldest Python the zipapp promises to
        # run on: pip then refuses a compiled wheel (or one whose Requires-Python excludes
        # the floor) instead of quietly picking one for this machine.
        "--python-version",
        floor,
        "--implementation",
        "py",
        "--abi",
        "none",
        "--platform",
        "any",
        "--disable-pip-version-check",
        "--root-user-action=ignore",  # a throwaway --target directory, not the system
        "--no-input",
        "--quiet",
        *spec.requirements,
    ]
    if sys.version_info[:2] != spec.python_floor:
        # pip evaluates environment markers (`; python_version < "3.13"`) for the Python
        # running it, whatever --python-version says.
        print(
            f"note: dependency markers are evaluated for Python {sys.version_info[0]}."
            f"{sys.version_info[1]}; build with Python {floor} to be exact for the floor",
            file=sys.stderr,
        )
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        raise BuildError(
            f"pip install failed (exit {result.returncode}); its output is above. Only "
            "pure-Python wheels go into the zipapp: a requirement with compiled code, or "
            "without a wheel, cannot"
        )
    check_pure(target)


def check_pure(target: Path) -> None:
    """Fail if anything pip installed is not pure Python (belt and braces for the tags)."""
    for wheel in sorted(target.glob("*.dist-info/WHEEL")):
        headers = _headers(wheel.read_text(encoding="utf-8"))
        tags = headers.get("Tag", [])
        purelib = headers.get("Root-Is-Purelib", [""])[0].lower() == "true"
        if not purelib or not tags or any(not tag.endswith("-none-any") for tag in tags):
            raise BuildError(f"{wheel.parent.name} is not a pure-Python wheel (tags {tags})")
    native = [
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if p.name.endswith(_NATIVE_SUFFIXES) or ".so." in p.name
    ]
    if native:
        raise BuildError(f"native code cannot run from a zipapp: {', '.join(sorted(native))}")


def _headers(text: str) -> dict[str, list[str]]:
    """RFC 822-style headers (WHEEL, METADATA) up to the first blank line."""
    headers: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            break
        key, sep, value = line.partition(":")
        if sep and not line[0].isspace():
            headers.setdefault(key.strip(), []).append(value.strip())
    return headers


def tree_files(directory: Path, prefix: str = "") -> dict[str, bytes]:
    """Every file under `directory`, keyed by its archive path."""
    files: dict[str, bytes] = {}
    for path in directory.rglob("*"):
        if path.is_file():
            name = str(PurePosixPath(prefix, path.relative_to(directory).as_posix()))
            files[name] = path.read_bytes()
    return files


def installed_versions(files: Mapping[str, bytes]) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name, data in files.items():
        if name.endswith(".dist-info/METADATA") and name.count("/") == 1:
            headers = _headers(data.decode("utf-8", errors="replace"))
            versions[headers["Name"][0]] = headers["Version"][0]
    return dict(sorted(versions.items(), key=lambda item: item[0].lower()))


def build_info(spec: Spec, commit: str, dependencies: Mapping[str, str]) -> bytes:
    python = "{}.{}".format(*sys.version_info[:2])
    return (
        '"""How this zipapp was built. Written by scripts/build_zipapp.py; exists only in\n'
        'the archive, never in the source tree."""\n\n'
        f"VERSION = {spec.version!r}\n"
        f"COMMIT = {commit!r}  # git rev-parse --short HEAD, '-dirty' if changed; '' if unknown\n"
        f"PYTHON = {python!r}  # the bytecode is for this version; others compile the sources\n"
        f"DEPENDENCIES = {dict(dependencies)!r}\n"
    ).encode()


def main_module(spec: Spec) -> bytes:
    module, sep, function = spec.entry_point.partition(":")
    if not sep or not module or not function.isidentifier():
        raise BuildError(
            f"[zipapp].entry_point must be 'module:function', not {spec.entry_point!r}"
        )
    major, minor = spec.python_floor
    # Only syntax that every Python parses (no f-strings, no annotations), so an old
    # interpreter reaches the sentence below instead of a SyntaxError in a dependency.
    return (
        "# The zipapp's entry point, written by scripts/build_zipapp.py.\n"
        "import sys\n"
        "\n"
        f"if sys.version_info < ({major}, {minor}):\n"
        "    sys.stderr.write(\n"
        f'        "supervisor needs Python {major}.{minor} or newer; %s is Python %s\\n"\n'
        '        % (sys.executable or "this interpreter", sys.version.split()[0])\n'
        "    )\n"
        "    sys.exit(1)\n"
        "\n"
        "\n"
        "def _print_crash(*exc_info):\n"
        "    # The interpreter's own handler cannot read source lines out of a zip; the\n"
        "    # traceback module can (through the zipimport loader), so crash reports show them.\n"
        "    import traceback\n"
        "\n"
        "    traceback.print_exception(*exc_info)\n"
        "\n"
        "\n"
        "sys.excepthook = _print_crash\n"
        "\n"
        f"from {module} import {function}\n"
        "\n"
        f"sys.exit({function}())\n"
    ).encode()


def bytecode(source: bytes, filename: str) -> bytes:
    """An unchecked-hash .pyc (PEP 552): magic, flags, source hash, marshalled code."""
    with warnings.catch_warnings():
        # Dependencies' SyntaxWarnings (invalid escapes and the like) are not ours to fix,
        # and ruff reports our own.
        warnings.simplefilter("ignore")
        try:
            code = compile(source, filename, "exec", dont_inherit=True, optimize=0)
        except SyntaxError as error:
            raise BuildError(f"cannot compile {filename}: {error}") from None
    flags = (0b01).to_bytes(4, "little")  # hash-based, check_source off
    return (
        importlib.util.MAGIC_NUMBER
        + flags
        + importlib.util.source_hash(source)
        + marshal.dumps(code)
    )


def with_bytecode(files: Mapping[str, bytes], archive_name: str) -> dict[str, bytes]:
    out = dict(files)
    for name, data in files.items():
        if name.endswith(".py"):
            # The file name tracebacks show. The archive's final location is unknown at
            # build time; "supervisor.pyz/trio/_core/_run.py" says where the code lives,
            # and linecache still finds the line through the module's zipimport loader.
            out[name + "c"] = bytecode(data, f"{archive_name}/{name}")
    return out


def _zip_time() -> tuple[int, int, int, int, int, int]:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return _ZIP_EPOCH
    t = time.gmtime(int(epoch))
    return max(_ZIP_EPOCH, (t.tm_year, t.tm_mon, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec))


def write_archive(spec: Spec, files: Mapping[str, bytes], output: Path) -> None:
    """Shebang + zip, sorted and timestamp-free, written atomically and made executable."""
    date_time = _zip_time()
    # Directory entries too: zipimport in 3.11 only treats a path as a directory (for
    # namespace packages) when the archive has an entry for it.
    directories = {str(parent) + "/" for name in files for parent in PurePosixPath(name).parents}
    directories.discard("./")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".part")
    with partial.open("wb") as stream:
        stream.write(b"#!" + spec.shebang.encode() + b"\n")
        with zipfile.ZipFile(stream, "w") as archive:
            for name in sorted(directories | set(files)):
                info = zipfile.ZipInfo(name, date_time)
                info.create_system = 3  # Unix, whatever builds it, so the bytes match
                if name in directories:
                    info.external_attr = (0o40755 << 16) | 0x10  # Unix mode, MS-DOS dir bit
                    archive.writestr(info, b"")
                else:
                    info.external_attr = 0o100644 << 16
                    info.compress_type = spec.compression
                    archive.writestr(info, files[name], compresslevel=spec.compression_level)
    partial.chmod(0o755)
    partial.replace(output)


def collect(spec: Spec, staging: Path, commit: str) -> dict[str, bytes]:
    """Every file of the archive, keyed by archive path, excludes applied, bytecode added."""
    files = tree_files(staging)
    for package in spec.packages:
        own = tree_files(spec.root / package, package)
        clash = sorted(name for name in own if name in files)
        if clash:
            raise BuildError(f"a dependency installs files of our package: {clash[:5]}")
        files.update(own)
    dependencies = installed_versions(files)
    files = {name: data for name, data in files.items() if not spec.excludes(name)}
    top_package = spec.entry_point.partition(":")[0].partition(".")[0]
    files[f"{top_package}/_build_info.py"] = build_info(spec, commit, dependencies)
    files["__main__.py"] = main_module(spec)
    return with_bytecode(files, spec.output.name)


def build(spec: Spec, output: Path) -> Built:
    started = time.monotonic()
    commit = git_commit(spec.root)
    with tempfile.TemporaryDirectory(prefix="supervisor-zipapp-") as staging:
        install_requirements(spec, Path(staging))
        files = collect(spec, Path(staging), commit)
    write_archive(spec, files, output)
    return Built(
        path=output,
        size=output.stat().st_size,
        files=len(files),
        seconds=time.monotonic() - started,
        version=spec.version,
        commit=commit,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="default: %(default)s")
    parser.add_argument("--output", type=Path, help="default: the spec's [zipapp].output")
    args = parser.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        built = build(spec, (args.output or spec.output).absolute())
    except BuildError as error:
        print(f"build_zipapp: {error}", file=sys.stderr)
        return 1
    print(
        f"{built.path}: {built.size / 2**20:.2f} MiB, {built.files} files, "
        f"{built.seconds:.1f} s (supervisor {built.version}"
        f"{' ' + built.commit if built.commit else ''}, bytecode for Python "
        f"{sys.version_info[0]}.{sys.version_info[1]})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
