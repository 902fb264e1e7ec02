"""The files of one session's thread: attachments saved into its directory, `!get` files sent.

Plain coroutines a session task runs (the file I/O in worker threads); they decide nothing
the core decides and show nothing themselves: each hands back what the thread should show.
"""

from __future__ import annotations

import base64
import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import attrs
import trio

from supervisor.chat import ChatError, ChatLink
from supervisor.core import uploads
from supervisor.core.agent_events import Image
from supervisor.core.session import QueuedPrompt
from supervisor.core.state import SessionRecord
from supervisor.core.thread_ops import PutPost
from supervisor.durable import write_atomically

T = TypeVar("T")
# File I/O in the session's directory is given up on after this long, its worker thread
# left behind: on a network mount that hangs it would hold the session's end (which waits
# for a `!get` under way) and the supervisor's stop. Generous: a big file on a slow disk.
DISK_PATIENCE_S = 60.0


async def _on_disk(work: Callable[..., T], *args: object) -> T:
    with trio.move_on_after(DISK_PATIENCE_S):
        return await trio.to_thread.run_sync(work, *args, abandon_on_cancel=True)
    raise OSError(errno.ETIMEDOUT, f"the disk did not answer within {DISK_PATIENCE_S:g} s (a network mount that hangs?)")


async def save_attachments(
    chat: ChatLink,
    cwd: str,
    prompt: QueuedPrompt,
    file_ids: tuple[str, ...],
    *,
    max_upload_bytes: int,
    max_image_bytes: int,
) -> tuple[QueuedPrompt, PutPost | None]:
    """Save a prompt's attachments under the session's upload folder; the prompt then
    names them (and carries the small images as image content). Also the notice of the
    files that were not saved, if any."""
    folder = Path(cwd) / uploads.upload_folder(prompt.post_id)
    saved: list[uploads.Saved] = []
    refused: list[str] = []
    images: list[Image] = []
    names: set[str] = set()  # given in this post, in order: the same on every try
    for file_id in file_ids:
        label = file_id  # the file's name once known: what the person sees in the notice
        try:
            info = await chat.file_info(file_id)
            label = info.name
            if info.size > max_upload_bytes:
                refused.append(f"{info.name} ({info.size / 1e6:.1f} MB, over the {max_upload_bytes / 1e6:.0f} MB limit)")
                continue
            data = await chat.download_file(file_id)
            name = uploads.safe_name(info.name, names)
            names.add(name)
            await _on_disk(_save_file, folder, name, data)
        except Exception as exc:  # refused, unreadable, or our disk: that file is not saved
            why = exc.message if isinstance(exc, ChatError) and exc.message else str(exc)  # a server's words
            refused.append(f"{label} ({why})")
            continue
        is_image = info.mime_type.startswith("image/") and len(data) <= max_image_bytes
        saved.append(uploads.Saved(str(folder.relative_to(cwd) / name), len(data), is_image))
        if is_image:
            images.append(Image(info.mime_type, base64.b64encode(data).decode()))
    notice = PutPost.last(f"files.{prompt.post_id}", "⚠️ Not saved: " + "; ".join(refused)) if refused else None
    text = uploads.prompt_with_files(prompt.text, saved, refused)
    return attrs.evolve(prompt, text=text, images=tuple(images)), notice


async def send_file(chat: ChatLink, record: SessionRecord, path: str, max_bytes: int) -> str | None:
    """Send the file `!get` asked for into the thread; None once sent, else what to show."""
    try:
        text = await _on_disk(_check_get_path, record.cwd, path, max_bytes)
    except OSError as exc:
        return f"⚠️ Could not send `{path}`: {exc.strerror}"
    if isinstance(text, Path):
        try:
            data = await _on_disk(text.read_bytes)
            file_id = await chat.upload_file(record.channel_id, text.name, data)
            await chat.create_post(record.channel_id, f"📎 `{path}`", root_id=record.root_id, file_ids=(file_id,))
            return None
        except Exception as exc:  # our disk, a refusal, or an answer we cannot read
            text = f"⚠️ Could not send `{path}`: {exc}"
    return text


def _save_file(folder: Path, name: str, data: bytes) -> None:
    """Write `data` as `folder/name`, whole and durable (`write_atomically`). The folder is
    its post's own, and a post is saved again only when its prompt was not handled (a
    kill before its turn began): that try replaces the earlier one's files, under the same
    names, and whatever a kill mid-write left. A folder something in the cwd made a link
    is refused: it would redirect the write."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        write_atomically(folder / name, data, folder_may_be_link=False)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # as Linux refuses to open a link as the folder
            raise OSError(exc.errno, "the post's upload folder is a link; nothing saved through it") from exc
        raise


def _check_get_path(cwd: str, path: str, max_bytes: int) -> Path | str:
    """The file `!get` may send, or the reason it may not."""
    try:
        base = Path(cwd).resolve()
        target = (base / os.path.expanduser(path)).resolve()
        if not target.is_relative_to(base):
            return f"⚠️ `{path}` is outside this session's directory; only files inside it are sent."
        if not target.is_file():
            return f"⚠️ `{path}` is not a file in this session's directory."
        size = target.stat().st_size
    except (OSError, RuntimeError, ValueError) as exc:  # a name too long, no permission, a link loop, a NUL
        return f"⚠️ `{path}` cannot be read here: {getattr(exc, 'strerror', None) or exc}."
    if size > max_bytes:
        return f"⚠️ `{path}` is {size / 1e6:.1f} MB, over the limit of {max_bytes / 1e6:.0f} MB for a file sent here."
    return target
