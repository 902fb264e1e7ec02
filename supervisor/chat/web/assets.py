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
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            found[name] = Asset(body, TYPES[suffix], etag)
    return found


def load_assets() -> dict[str, Asset]:
    """Static files by path under /static/ (e.g. "app.js", "vendor/purify.min.js")."""
    return _walk(importlib.resources.files("supervisor.chat.web") / "static", "")
