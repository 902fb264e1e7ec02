"""What every front end's codec shares: cattrs structuring that is strict about JSON's
primitive types, and the one way a payload that does not decode is explained in a log.

Owns no shapes: each front end's codec registers its own on the converter made here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import cattrs

T = TypeVar("T")

# Anything a hostile or buggy payload can make json/cattrs raise. RecursionError: deep
# nesting; AttributeError/KeyError: cattrs probing a value of the wrong shape.
DECODE_ERRORS = (
    cattrs.BaseValidationError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    RecursionError,
)


def strict(kind: type[T], label: str) -> Callable[[Any, Any], T]:
    def structure(value: Any, _: Any) -> T:
        # bool is an int in Python, but never one on the wire.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise TypeError(f"expected {label}, got {type(value).__name__}")
        return value

    return structure


def strict_converter() -> cattrs.Converter:
    """A converter that tolerates unknown keys but takes no "1" for 1 or 1 for True."""
    converter = cattrs.Converter(forbid_extra_keys=False)
    converter.register_structure_hook(str, strict(str, "a string"))
    converter.register_structure_hook(int, strict(int, "an integer"))
    converter.register_structure_hook(bool, strict(bool, "a boolean"))
    return converter


def decode_reason(exc: BaseException) -> str:
    """One line saying why a payload did not decode."""
    if isinstance(exc, cattrs.BaseValidationError):
        notes = cattrs.transform_error(exc)
        return "; ".join(notes) if notes else str(exc)
    return f"{type(exc).__name__}: {exc}"
