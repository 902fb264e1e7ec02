"""TOML values -> frozen attrs classes, with every failure told as one sentence.

This module owns the machinery under `supervisor.config`: one cattrs converter with strict
hooks (a bool is not an int, a string is not an array, `~` follows the given `$HOME`,
directories are checked) and the translation of cattrs' error trees into the first broken
rule, as a dotted key (`sessions[1].cwd`) plus what is wrong with it; `ConfigError`, the
one sentence the user sees; and the validators several sections share (`positive`,
`at_least`, `not_empty`, `http_url`). It knows nothing about which keys exist: that is the
classes' business, in `supervisor.config` and each front end's own config module.

It must never echo a secret's value, and never let a user-written key put a newline into
a message.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import stat
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

V = TypeVar("V")
KeyPath = tuple[str | int, ...]

# Markers for `Annotated[Path, ...]` fields: what must hold once `~` is expanded.
EXISTING_DIRECTORY: Final = "an existing directory"
DIRECTORY_OR_ABSENT: Final = "a directory or absent"

# The largest integer a key may hold: what the runtime computes with one (deadlines, sizes,
# restarts) must fit 64 bits, or it fails at start (OverflowError), not here.
INT_MAX: Final = 2**63 - 1
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_UNKNOWN_KEY: Final = "unknown key "


class ConfigError(Exception):
    """An unusable configuration: `key` says where, `str()` is one sentence for the user."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


class Problem(ValueError):
    """A rule broken at `path`, relative to whatever is being structured.

    Raised by hooks and by the classes' attrs validators. A ValueError, so building a
    class by hand with a bad value fails the way attrs validators conventionally do.
    """

    def __init__(self, path: KeyPath, problem: str, *, lead: str = "") -> None:
        self.path = path
        self.problem = problem
        self.lead = lead
        super().__init__(sentence(path, problem, lead))


# What `converter().structure` raises for a configuration that breaks a rule.
STRUCTURE_ERRORS: Final = (ClassValidationError, IterableValidationError, Problem)


def format_key(path: KeyPath) -> str:
    """`sessions[1].cwd`; parts that are not bare TOML keys are quoted, so no newline or
    other surprise from a user's key ever reaches a message."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else json.dumps(part)
        out += f".{text}" if out else text
    return out


def sentence(path: KeyPath, problem: str, lead: str = "") -> str:
    return f"{lead}{format_key(path)} {problem}".strip()


def describe(value: object) -> str:
    """A short, single-line rendering of a value the user wrote."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


class FrozenMap(Mapping[str, V]):
    """A read-only, hashable mapping, so frozen classes holding tables stay hashable."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, V] | Iterable[tuple[str, V]] = ()) -> None:
        self._items: dict[str, V] = dict(items)

    def __getitem__(self, key: str) -> V:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"FrozenMap({self._items!r})"


def frozen_map(items: Mapping[str, V]) -> FrozenMap[V]:
    return items if isinstance(items, FrozenMap) else FrozenMap(items)


# --- rules on single values, shared by the sections' classes ---------------------------


def at_least(minimum: float) -> Callable[[Any, attrs.Attribute[Any], float], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
        if value < minimum:
            raise Problem((attribute.name,), f"must be {minimum} or more, not {value}")

    return check


def positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise Problem((attribute.name,), f"must be more than 0, not {value}")


def not_empty(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for index, item in enumerate(value):
        if not item:
            raise Problem((attribute.name, index), "must not be empty")


def http_url(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok or parts.query or parts.fragment:
        raise Problem((attribute.name,), f"must be an http(s)://host URL, not {describe(value)}")


def read_token(section: str, token: str, token_file: Path | None, variable: str) -> str:
    """A front end's effective token: `token`, or the stripped contents of `token_file`
    (never both). Problem, never quoting the token, when it is missing or unreadable."""
    if token and token_file is not None:
        raise Problem(("token",), f"and {section}.token_file are both set: keep only one")
    if token_file is not None:
        shown = describe(str(token_file))
        try:
            token = _read_regular_file(token_file).decode("utf-8").strip()
        except _NotRegular:
            # A FIFO or a terminal (/dev/stdin) would block the start for good, with the
            # stop signals held: nothing could end it. (A directory is refused here too.)
            raise Problem(("token_file",), f"{shown} is not a regular file") from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise Problem(("token_file",), f"{shown} cannot be read: {reason}") from None
        if not token:
            raise Problem(("token_file",), f"{shown} is empty")
    if not token:
        raise Problem(("token",), f"is missing: set {section}.token, {section}.token_file or {variable}")
    return token


class _NotRegular(Exception):
    pass


def _read_regular_file(path: Path) -> bytes:
    """The bytes of `path`; _NotRegular, without waiting, for anything but a regular file."""
    # O_NONBLOCK: opening a FIFO waits for a writer otherwise (a regular file ignores it).
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular
        with open(fd, "rb", closefd=False) as file:
            return file.read()
    finally:
        os.close(fd)


def token_problem(token_file: Path | None, problem: str) -> Problem:
    """A rule the token read by `read_token` breaks, keyed where the user wrote it: under
    `token_file`, naming the file, when it came from there (never quoting it either way)."""
    if token_file is None:
        return Problem(("token",), problem)
    return Problem(("token_file",), f"{describe(str(token_file))} holds a token that {problem}")


# --- hooks ------------------------------------------------------------------------------


def _type_error(expected: str, value: object) -> Problem:
    return Problem((), f"must be {expected}, not {describe(value)}")


def _structure_str(value: object, _: object) -> str:
    if not isinstance(value, str):
        raise _type_error("a string", value)
    if "\0" in value:  # no path, argument or environment value can hold one
        raise Problem((), "must not contain a NUL character")
    return value


def _structure_int(value: object, _: object) -> int:
    # bool is an int to Python, never to a person writing `timeout = true`.
    if type(value) is not int:
        raise _type_error("an integer", value)
    if abs(value) > INT_MAX:  # not repeated: it may be hundreds of digits
        raise Problem((), f"must be between {-INT_MAX} and {INT_MAX}")
    return value


def _structure_float(value: object, _: object) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _type_error("a number", value)
    if not math.isfinite(value):
        raise _type_error("a finite number", value)
    return float(value)


def _structure_bool(value: object, _: object) -> bool:
    if type(value) is not bool:
        raise _type_error("true or false", value)
    return value


def _structure_each(
    items: Iterable[tuple[str | int, object]], hook: Callable[[object], V]
) -> list[V]:
    """Structure every item, noting failures the way cattrs does so their paths survive."""
    out: list[V] = []
    errors: list[Exception] = []
    for where, value in items:
        try:
            out.append(hook(value))
        except Exception as exc:
            exc.add_note(IterableValidationNote(f"@ {where!r}", where, object))
            errors.append(exc)
    if errors:
        raise IterableValidationError("While structuring", errors, list)
    return out


class _Paths:
    """Turns what the user wrote into an absolute path, and checks it when asked."""

    def __init__(self, home: str, base_dir: Path) -> None:
        self.home = home
        self.base_dir = base_dir

    def path(self, value: object) -> Path:
        text = _structure_str(value, str)
        if not text:
            raise Problem((), "must not be empty")
        if text == "~" or text.startswith("~/"):
            text = self.home + text[1:]
        elif text.startswith("~"):
            text = os.path.expanduser(text)  # ~user: left as it is when unknown
        return self.base_dir / text

    def optional(self, value: object, _: object) -> Path | None:
        return None if value == "" else self.path(value)

    def checked(self, value: object, t: object) -> Path:
        path = self.path(value)
        try:
            mode: int | None = os.stat(path).st_mode
        except FileNotFoundError:
            mode = None
        except NotADirectoryError:  # a file on the way: it can never be made either
            raise Problem((), f"{describe(str(path))} cannot be a directory: a part of it is a file") from None
        except (OSError, ValueError) as exc:  # too long, no permission, ...
            reason = getattr(exc, "strerror", None) or str(exc)
            raise Problem((), f"{describe(str(path))} cannot be checked: {reason}") from None
        if mode is not None and stat.S_ISDIR(mode):
            return path
        if mode is None and DIRECTORY_OR_ABSENT in get_args(t):
            return path
        missing = "does not exist" if mode is None else "is not a directory"
        raise Problem((), f"{describe(str(path))} {missing}")


def _is_tuple_of(t: Any) -> bool:
    args = get_args(t)
    return get_origin(t) is tuple and len(args) == 2 and args[1] is Ellipsis


def _is_table_of(t: Any) -> bool:
    return get_origin(t) in (Mapping, dict) and get_args(t)[0] is str


def _is_checked_path(t: Any) -> bool:
    return get_origin(t) is Annotated and get_args(t)[0] is Path


@lru_cache(maxsize=8)
def converter(home: str, base_dir: Path) -> cattrs.Converter:
    """A converter whose hooks raise `Problem`s and whose paths resolve against `home`
    and `base_dir`; one per (home, base_dir), so no hook reads global state."""
    paths = _Paths(home, base_dir)
    conv = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    conv.register_structure_hook(float, _structure_float)
    # TOML has no null: an optional number is either absent (its default) or a number.
    conv.register_structure_hook_func(lambda t: t == (float | None), _structure_float)
    conv.register_structure_hook(bool, _structure_bool)
    conv.register_structure_hook_func(lambda t: t == (Path | None), paths.optional)
    conv.register_structure_hook_func(_is_checked_path, paths.checked)

    # cattrs' own hooks would turn a string into a tuple of characters, or fail with an
    # AttributeError on a string where a table belongs: these insist on the TOML shape.
    def tuple_hook(value: object, t: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _type_error("an array", value)
        item_type = get_args(t)[0]
        return tuple(_structure_each(enumerate(value), lambda v: conv.structure(v, item_type)))

    def table_hook(value: object, t: Any) -> FrozenMap[Any]:
        if not isinstance(value, Mapping):
            raise _type_error("a table", value)
        value_type = get_args(t)[1]
        keys = [str(key) for key in value]
        values = _structure_each(value.items(), lambda v: conv.structure(v, value_type))
        return FrozenMap(zip(keys, values, strict=True))

    def class_factory(cl: type[Any]) -> Callable[[object, Any], Any]:
        structure = make_dict_structure_fn(cl, conv, _cattrs_forbid_extra_keys=True)

        def hook(value: object, _: Any) -> Any:
            if not isinstance(value, Mapping):
                raise _type_error("a table", value)
            return structure(value, cl)

        return hook

    conv.register_structure_hook_func(_is_tuple_of, tuple_hook)
    conv.register_structure_hook_func(_is_table_of, table_hook)
    conv.register_structure_hook_factory(attrs.has, class_factory)
    return conv


# --- errors -----------------------------------------------------------------------------


def _problems(exc: BaseException, path: KeyPath) -> Iterator[tuple[KeyPath, str, str]]:
    """Every rule broken inside a cattrs error tree, as (path, problem, lead)."""
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            where = path
            for note in getattr(sub, "__notes__", ()):
                if isinstance(note, AttributeValidationNote):
                    where = (*path, note.name)
                elif isinstance(note, IterableValidationNote):
                    where = (*path, note.index)
            yield from _problems(sub, where)
    elif isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)]
        for extra in sorted(exc.extra_fields, key=str):
            guess = difflib.get_close_matches(str(extra), known, n=1)
            hint = f"(did you mean {format_key((*path, guess[0]))}?)" if guess else ""
            yield (*path, str(extra)), hint, _UNKNOWN_KEY
    elif isinstance(exc, Problem):
        yield (*path, *exc.path), exc.problem, exc.lead
    elif isinstance(exc, KeyError):  # cattrs looked up a required key that is absent
        yield path, "is required", ""
    else:  # a bug of ours, but the user still gets a sentence naming the key
        yield path, f"is invalid ({type(exc).__name__}: {exc})".replace("\n", " "), ""


def first_problem(exc: BaseException, secrets: Collection[KeyPath] = ()) -> tuple[str, str]:
    """The (key, sentence) to show for a structuring failure; values of `secrets` are
    never repeated."""
    problems = list(_problems(exc, ()))
    # A misspelt key is usually also why a required one is missing: name the cause.
    problems.sort(key=lambda found: found[2] != _UNKNOWN_KEY)
    path, problem, lead = problems[0]
    if path in secrets:
        problem = problem.split(", not ")[0]
    return format_key(path), sentence(path, problem, lead)
