"""Where the configuration file is, and reading it as TOML.

`find_config_path` picks the file (`--config`, `$SUPERVISOR_CONFIG`, `./supervisor.toml`,
`~/.config/supervisor/supervisor.toml`); `read_toml` parses it. Both raise `ConfigError`
with one sentence naming the file (or its line); what the values mean is
`supervisor.config`'s business. Never creates anything.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.config_codec import ConfigError

__all__ = ["find_config_path", "read_toml"]


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file at `path`; ConfigError (naming the file or line) if it cannot be."""
    shown = str(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(shown, f"the configuration file {shown} does not exist") from None
    except OSError as exc:
        raise ConfigError(
            shown, f"the configuration file {shown} cannot be read: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "Invalid value (at line 3, column 18)": lead with the line instead.
        where = re.search(r" \(at line (\d+), column (\d+)\)", str(exc))
        if where is None:
            raise ConfigError(shown, f"{shown} is not valid TOML: {exc}") from None
        key = f"{shown} line {where[1]}"
        what = str(exc).replace(where[0], "")
        raise ConfigError(key, f"{key} is not valid TOML: {what} at column {where[2]}") from None
    except UnicodeDecodeError:
        raise ConfigError(shown, f"{shown} is not valid TOML: it is not UTF-8 text") from None
    except ValueError as exc:  # Python's own limit, an integer of over 4300 digits
        raise ConfigError(shown, f"{shown} is not valid TOML: {str(exc).partition(':')[0]}") from None
    return data


def find_config_path(explicit: str | None, env: Mapping[str, str], cwd: Path | None, home: Path) -> Path:
    """The config file to use: `--config`, else `$SUPERVISOR_CONFIG`, else
    `./supervisor.toml`, else `~/.config/supervisor/supervisor.toml`.

    A file named explicitly (flag or variable) must exist; there is no falling through.
    `cwd` is None when the current directory no longer exists (deleted under a shell):
    only a relative name needs it.
    """

    def resolve(key: str, text: str) -> Path:
        if text == "~" or text.startswith("~/"):
            return home / text[2:]
        if cwd is None and not text.startswith("/"):
            raise ConfigError(key, f"the configuration file {text} (from {key}) is relative to the current "
                              "directory, which no longer exists: cd to one that does, or name the file in full")
        return Path(text) if cwd is None else cwd / text

    for key, given in (("--config", explicit), ("SUPERVISOR_CONFIG", env.get("SUPERVISOR_CONFIG"))):
        if given:
            path = resolve(key, given)
            if not _is_file(path):
                problem = "is not a file" if _exists(path) else "does not exist"
                raise ConfigError(key, f"the configuration file {path} (from {key}) {problem}")
            return path
    in_home = home / ".config" / "supervisor" / "supervisor.toml"
    candidates = (in_home,) if cwd is None else (cwd / "supervisor.toml", in_home)
    for path in candidates:
        if _is_file(path):
            return path
    looked = " and ".join(str(p) for p in candidates)
    raise ConfigError(
        "--config",
        f"no configuration file found (looked for {looked}); "
        "pass --config PATH or set SUPERVISOR_CONFIG",
    )


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the OS is simply not there
        return False


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False
