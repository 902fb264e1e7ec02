"""Attachments handed to an agent: where each is saved and how the prompt mentions it.

Pure: turns untrusted file names into safe ones and decides what happens to each file;
the session shell downloads and writes. A saved file never lands outside
`<cwd>/.supervisor/uploads/<post id>/`, whatever its name.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from pathlib import PurePosixPath

import attrs

UPLOAD_DIR = PurePosixPath(".supervisor") / "uploads"
MAX_NAME = 120  # characters; long enough for real names
# File systems bound a name in bytes (255 on most), and the atomic write names its
# temporary file `.NAME.tmp`: 94 Japanese characters were 274 bytes, and not saved.
MAX_NAME_BYTES = 200
_UNSAFE = re.compile(r"[^\w.\- ()+,@=]")  # \w is unicode-aware: accents stay


def safe_name(name: str, taken: Collection[str] = ()) -> str:
    """A file name that is one plain path component, never hidden, never `..`, bounded in
    length, and not in `taken` (a numbered variant is chosen instead)."""
    name = unicodedata.normalize("NFC", name)
    name = name.replace("\\", "/").rsplit("/", 1)[-1]  # the last component of any path
    name = "".join(ch for ch in name if ch.isprintable())
    name = _UNSAFE.sub("_", name).strip(" .")  # no leading dots: no hidden files, no ".."
    if not name or set(name) <= {"_"}:
        name = "file"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem or len(ext) > 16:
        stem, ext = name, ""
    ext = f".{ext}" if ext else ""
    stem = stem[: MAX_NAME - len(ext) - 4]
    room = MAX_NAME_BYTES - len(ext.encode()) - 4  # 4: "-NNN" when the name is taken
    stem = stem.encode()[:room].decode(errors="ignore")  # a character cut in two is left out
    candidate, n = stem + ext, 1
    while candidate in taken:
        candidate, n = f"{stem}-{n}{ext}", n + 1
    return candidate


def upload_folder(post_id: str) -> PurePosixPath:
    """Relative to the session's cwd; post ids are server-made, but sanitised all the same.
    Distinct posts get distinct folders (Telegram's `tg:<chat>:<message>` becomes
    `tg_<chat>_<message>`): a folder is one post's own, so saving it again overwrites."""
    return UPLOAD_DIR / (re.sub(r"[^A-Za-z0-9_-]", "_", post_id)[:96] or "post")


@attrs.frozen
class Saved:
    path: str  # relative to the session's cwd
    size: int
    is_image: bool


def prompt_with_files(text: str, saved: list[Saved], refused: list[str]) -> str:
    """The prompt as the agent gets it: the person's text, then where the files are."""
    lines = [text.strip()] if text.strip() else []
    if saved:
        lines += ["", "Attached files (saved in the working directory):"]
        lines += [f"- {s.path} ({s.size} bytes)" for s in saved]
    if refused:
        lines += ["", "Attachments that were not saved: " + "; ".join(refused)]
    return "\n".join(lines)
