"""JSON from outside, read into text that everything after can store and send.

`json.loads` turns an escaped half of a UTF-16 pair (`"\\ud83d"`, as JavaScript's
`JSON.stringify` writes a string cut in the middle of an emoji) into a lone surrogate: a
`str` that no UTF-8 encoder takes, so the HTTP client, SQLite and our own writers raise on
it, and a post holding one is retried for ever. Read here, each becomes U+FFFD.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

LONE_SURROGATE: Final = re.compile(r"[\ud800-\udfff]")  # json.loads joins whole pairs
# How one gets in: escaped, or (json.loads decodes bytes with "surrogatepass") encoded.
_MAY_HOLD_ONE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def loads(raw: bytes | str) -> Any:
    """`json.loads`, with every lone surrogate in the strings (keys too) made U+FFFD.
    Raises what `json.loads` raises. Walks the value only when the text may hold one."""
    value = json.loads(raw)
    encoded = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return clean(value) if _MAY_HOLD_ONE.search(encoded) else value


def clean(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    match value:
        case str():
            return LONE_SURROGATE.sub("\ufffd", value)
        case list():
            return [clean(item) for item in value]
        case dict():
            return {clean(k): clean(v) for k, v in value.items()}
    return value
