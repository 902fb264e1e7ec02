"""The page's files, read once from the package (inside the zipapp: from the zip itself).

`importlib.resources` reads them without unpacking anything; they are few and small, so
they are held in memory and served from there.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from importlib.resources.abc import Traversable

import attrs

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        if suffix in TYPES:
            found[name] = _asset(entry.read_bytes(), TYPES[suffix])
    return found


# The page's scripts, in the order they must run, served as one file: one request instead
# of four on the first load. The parts stay separate files in the package (the vendored
# ones beside their licences) and are also served on their own.
BUNDLE = ("vendor/marked.umd.js", "vendor/purify.min.js", "render.js", "app.js")


def _asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')


def load_assets() -> dict[str, Asset]:
    """Static files by path under /static/ (e.g. "app.js", "vendor/purify.min.js")."""
    found = _walk(importlib.resources.files("supervisor.chat.web") / "static", "")
    bundle = b"\n;\n".join(found[name].body for name in BUNDLE)
    found["bundle.js"] = _asset(bundle, TYPES[".js"])
    return found
